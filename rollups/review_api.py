"""The review (审核) HTTP API: record a mark, list the marks.

``POST /api/review/marks`` needs either the machine token (``Authorization: Bearer <token>``,
``ENVGRID_HTTP__TOKEN``; its marks are recorded as ``api``) or a console session whose operator
has the role ``auditor`` or ``admin`` (recorded under the operator's name); any other signed-in
operator gets 403. The console is a higher layer: the composition root hands this router a
``session`` function that names the request's operator and role. After a mark is stored the
windows it touches are recomputed (``recompute``), so the figures follow the review.
``GET /api/review/marks?device_id=&from=&to=`` lists the marks, oldest first (open, like the
alerts API's reads).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field

from rollups.review import ALL_FIELDS, Mark, ReviewError, ReviewStore

API_ACTOR = "api"
REVIEW_ROLES = ("auditor", "admin")
# (operator name, role) of the request's console session, or None when there is none.
SessionOf = Callable[[Request], tuple[str, str] | None]
Recompute = Callable[[Mark], Awaitable[None]]
FieldName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_]+$")]


class MarkIn(BaseModel):
    """A mark as posted."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    device_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    fields: list[FieldName] | Literal["*"] = Field(description='field names, or "*" for all')
    from_: datetime = Field(alias="from", description="start, ISO 8601 with offset")
    to: datetime = Field(description="end (exclusive), ISO 8601 with offset")
    action: Literal["invalidate", "restore"]
    reason: str = Field(description="calibration, maintenance, power_cut, … (docs/review.md)")
    comment: str = Field(default="", max_length=1000)


class MarkOut(BaseModel):
    """A mark as stored."""

    id: int
    at: datetime = Field(description="when it was recorded")
    actor: str = Field(description="the operator, or 'api' for the machine token")
    device_id: str
    fields: list[str] | Literal["*"]
    from_: datetime = Field(serialization_alias="from")
    to: datetime
    action: str
    reason: str
    comment: str

    @classmethod
    def of(cls, m: Mark) -> MarkOut:
        """From the store's record."""
        return cls(
            id=m.id,
            at=_dt(m.at_ms),
            actor=m.actor,
            device_id=m.device_id,
            fields="*" if m.fields == (ALL_FIELDS,) else list(m.fields),
            from_=_dt(m.from_ms),
            to=_dt(m.to_ms),
            action=m.action,
            reason=m.reason,
            comment=m.comment,
        )


class Desk:
    """Where a mark is recorded: checked and stored, then the windows it touches recomputed.
    The API and the console's 审核 page both record through it, so they cannot differ."""

    def __init__(self, store: ReviewStore, recompute: Recompute | None = None) -> None:
        self.store = store
        self._recompute = recompute

    async def record(self, mark: Mark) -> Mark:
        """The mark as stored (ReviewError when it cannot be), after the recomputation."""
        stored = self.store.add(mark)
        if self._recompute is not None:
            await self._recompute(stored)
        return stored


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _ms(dt: datetime, name: str) -> int:
    if dt.tzinfo is None:
        raise HTTPException(422, f"{name}: give a UTC offset")
    return int(dt.timestamp() * 1000)


def router(
    store: ReviewStore,
    token: str | None,
    *,
    session: SessionOf | None = None,
    recompute: Recompute | None = None,
) -> APIRouter:
    """The review routes over ``store``."""
    r = APIRouter(prefix="/api/review", tags=["review"])
    desk = Desk(store, recompute)

    def actor(request: Request) -> str:
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            given = header[7:].strip()
            if token and hmac.compare_digest(given.encode(), token.encode()):
                return API_ACTOR
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong API token")
        who = session(request) if session is not None else None
        if who is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "sign in to the console as an auditor, or send the API token as a bearer token",
            )
        name, role = who
        if role not in REVIEW_ROLES:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"operator {name!r} has the role {role!r}; reviewing needs auditor or admin",
            )
        return name

    @r.post("/marks", status_code=status.HTTP_201_CREATED, response_model_by_alias=True)
    async def add_mark(body: MarkIn, request: Request) -> MarkOut:
        who = actor(request)
        fields = (ALL_FIELDS,) if body.fields == ALL_FIELDS else tuple(dict.fromkeys(body.fields))
        mark = Mark(
            device_id=body.device_id,
            fields=fields,
            from_ms=_ms(body.from_, "from"),
            to_ms=_ms(body.to, "to"),
            action=body.action,
            reason=body.reason,
            actor=who,
            comment=body.comment,
        )
        try:
            stored = await desk.record(mark)
        except ReviewError as e:
            raise HTTPException(422, str(e)) from None
        return MarkOut.of(stored)

    @r.get("/marks", response_model_by_alias=True)
    async def list_marks(
        device_id: Annotated[str | None, Query(max_length=64)] = None,
        from_: Annotated[datetime | None, Query(alias="from")] = None,
        to: Annotated[datetime | None, Query()] = None,
    ) -> list[MarkOut]:
        marks = store.marks(
            device_id=device_id,
            from_ms=_ms(from_, "from") if from_ is not None else None,
            to_ms=_ms(to, "to") if to is not None else None,
        )
        return [MarkOut.of(m) for m in marks]

    return r
