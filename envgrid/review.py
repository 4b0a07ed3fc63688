"""Review (审核) wiring: the marks API over the store, the console's sessions and the rollups.

The review API lives in ``rollups`` and cannot see the console (a higher layer); here it gets a
function that names a request's signed-in operator and role, and a recompute that reruns the
rollups over the windows a new mark touches.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from fastapi import APIRouter, Request

from console.auth import Operator, same_token
from console.web import Console
from devices.registry import Registry
from envgrid.settings import Settings
from ingest.influxql import QueryError
from rollups.review import Mark, ReviewStore
from rollups.review_api import Desk, router
from rollups.runner import Rollup, RollupError
from rollups.windows import ROLLUP_KINDS

log = logging.getLogger("envgrid.review")


def role_of(op: Operator) -> str:
    """An operator's role (``admin: true`` in an operators file reads as ``role: admin``)."""
    return op.role


def build_review(
    settings: Settings, registry: Registry, console: Console | None
) -> tuple[APIRouter, ReviewStore]:
    """The review router and its store (close the store on shutdown)."""
    store = ReviewStore(settings.rollup.review_store)

    def session(request: Request) -> tuple[str, str] | None:
        if console is None:
            return None
        s = console.session(request)
        if s is None:
            return None
        # A cookie rides along with any cross-site form: writes need the session's CSRF token.
        if request.method != "GET" and not same_token(request.headers.get("x-csrf-token"), s.csrf):
            return None
        return s.operator.name, role_of(s.operator)

    async def recompute(mark: Mark) -> None:
        # The mark is stored whatever happens here; a failed pass is redone by
        # `envgrid rollup --from --to` (docs/review.md).
        try:
            async with Rollup(settings, registry, kinds=tuple(ROLLUP_KINDS)) as rollup:
                await rollup.run_range(_utc(mark.from_ms), _utc(mark.to_ms))
        except (QueryError, RollupError, OSError) as e:
            log.warning("review mark %d stored; its windows were not recomputed: %s", mark.id, e)

    token = settings.http.token.get_secret_value() if settings.http.token else None
    if console is not None:
        console.review = Desk(store, recompute)  # the 审核 page records as the API does
    return router(store, token, session=session, recompute=recompute), store


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
