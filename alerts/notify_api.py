"""HTTP API of notifications: what was sent for an alert, who is on call, receivers, tests."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel

from alerts.api import ERRORS, NOT_FOUND, Id, bearer_guard
from alerts.dispatch import Dispatcher, notifications
from alerts.store import AlertStore


class SentOut(BaseModel):
    """One message that named the alert."""

    receiver: str
    reason: str
    result: str
    created_at: datetime
    delivered_at: datetime | None
    attempts: int
    error: str | None
    alerts_in_message: int


class ReceiverOut(BaseModel):
    """A receiver: its queue, totals, last error and last test message (secrets never shown)."""

    name: str
    type: str
    queued: int
    delivered: int
    failed: int
    last_error: str | None
    last_test: str | None
    last_test_at: datetime | None
    last_test_error: str | None


class OnCallOut(BaseModel):
    """Who is on duty in a rota now, and until the next weekly handover."""

    rota: str
    person: str | None
    name: str | None
    until: datetime


def _dt(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


def create_notify_router(
    store: AlertStore, dispatcher: Dispatcher | None, token: str | None
) -> APIRouter:
    """``/api/alerts/{id}/notifications``, ``/api/oncall``, ``/api/receivers/{name}/test``."""
    router = APIRouter(prefix="/api", tags=["notifications"])
    write = [Depends(bearer_guard(token))]

    @router.get("/alerts/{alert_id}/notifications", response_model=list[SentOut])
    async def alert_notifications(alert_id: Id) -> list[SentOut]:
        return [
            SentOut(
                receiver=s.target,
                reason=s.reason,
                result=s.result,
                created_at=_dt(s.created_ms) or datetime.now(UTC),
                delivered_at=_dt(s.delivered_ms or s.failed_ms),
                attempts=s.attempts,
                error=s.last_error,
                alerts_in_message=s.alerts_in_message,
            )
            for s in notifications(store, alert_id)
        ]

    @router.get("/oncall", response_model=list[OnCallOut])
    async def oncall() -> list[OnCallOut]:
        if dispatcher is None:
            return []
        now = datetime.now(UTC)
        return [
            OnCallOut(rota=r, person=p.id if p else None, name=p.label if p else None, until=u)
            for r, p, u in dispatcher.routing.oncall.board(now)
        ]

    @router.post(
        "/receivers/{name}/test",
        dependencies=write,
        status_code=202,
        responses={**ERRORS, **NOT_FOUND},
    )
    async def test_receiver(name: str) -> dict[str, str]:
        if dispatcher is None or name not in dispatcher.receivers:
            raise HTTPException(404, f"no receiver {name!r} in ENVGRID_ALERTS__ROUTING")
        dispatcher.send_test(name)
        return {"queued": name, "result": "see last_test in GET /api/receivers"}

    @router.get("/receivers", response_model=list[ReceiverOut])
    async def receivers() -> list[ReceiverOut]:
        if dispatcher is None:
            return []
        return [
            ReceiverOut(
                name=r.name,
                type=r.type,
                queued=r.queued,
                delivered=r.delivered,
                failed=r.failed,
                last_error=r.last_error,
                last_test=r.last_test.result if r.last_test else None,
                last_test_at=_dt(r.last_test.created_ms) if r.last_test else None,
                last_test_error=r.last_test.last_error if r.last_test else None,
            )
            for r in dispatcher.status()
        ]

    return router
