"""Notifications on the console: what an alert sent to whom, the receivers, who is on call.

Everything is read from the alert store through :mod:`alerts.dispatch`, the functions behind
``/api/alerts/{id}/notifications``, ``/api/receivers`` and ``/api/oncall``, so the page and the
API never disagree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from alerts.dispatch import ROUTE_TARGET, Dispatcher, Sent, notifications
from alerts.store import AlertStore
from console.i18n import Lang, translator
from console.present import Clock


def sent_row(s: Sent, clock: Clock, lang: Lang) -> dict[str, Any]:
    """One message of an alert's notifications section."""
    t = translator(lang)
    done = s.delivered_ms or s.failed_ms
    return {
        "receiver": s.target,
        "reason": t("why_" + s.reason),
        "result": s.result,
        "result_label": t("sent_" + s.result),
        "created": clock.full(s.created_ms),
        "done": clock.full(done) if done else "",
        "attempts": s.attempts,
        # The vendor's answer (errcode/code and message) as the receiver recorded it.
        "error": s.last_error or "",
        "grouped": s.alerts_in_message,
    }


def alert_notifications(
    store: AlertStore, alert_id: int, clock: Clock, lang: Lang
) -> list[dict[str, Any]]:
    """Every message that named the alert, oldest first (as the API lists them).

    The hand-over to the routing (target ``route``) reaches nobody: the messages it leads to
    are listed under their receivers, so it is left out here.
    """
    return [
        sent_row(s, clock, lang) for s in notifications(store, alert_id) if s.target != ROUTE_TARGET
    ]


def receiver_rows(d: Dispatcher, clock: Clock, lang: Lang) -> list[dict[str, Any]]:
    """Each receiver's type, queue, totals, last error and last test (never its URL or secret)."""
    rows = []
    for r in d.status():
        test = sent_row(r.last_test, clock, lang) if r.last_test else None
        rows.append(
            {
                "name": r.name,
                "type": r.type,
                "queued": r.queued,
                "delivered": r.delivered,
                "failed": r.failed,
                "last_error": r.last_error or "",
                "test": test,
            }
        )
    return rows


def oncall_rows(
    d: Dispatcher | None, clock: Clock, now: datetime | None = None
) -> list[dict[str, Any]]:
    """Who is on duty now in each rota, and until the next handover."""
    if d is None:
        return []
    at = now or datetime.now(UTC)
    return [
        {
            "rota": rota,
            "person": p.label if p else "",
            "id": p.id if p else "",
            "until": clock.full(int(until.timestamp() * 1000)),
        }
        for rota, p, until in d.routing.oncall.board(at)
    ]
