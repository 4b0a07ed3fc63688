"""Routing, grouping, reminders and escalation, kept in the alert store so a restart loses nothing.

The engine's notifications reach the ``route`` target of the outbox like any other target. For
each one, :meth:`Dispatcher.accept` finds its routes and stores it as *pending* in the route's
group, keyed by its ``event_id`` and route, so a notification delivered twice (the outbox is at
least once) is kept once. A firing alert on a route with ``repeat_interval`` or
``escalate_after`` is *watched*.

:meth:`Dispatcher.tick` (on the engine's timer) turns due watches into pending reminders and
escalations, and flushes each group whose ``group_wait`` (first message) or ``group_interval``
(later ones) has passed: one outbox row per receiver and message, written in the same
transaction that marks the group's items flushed. A crash before that commit flushes the same
items after the restart; after it, the outbox owns delivery. Nothing is lost or repeated.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from alerts.routing import Route, Routing
from alerts.store import AlertStore

log = logging.getLogger("envgrid.alerts.dispatch")

ROUTE_TARGET = "route"
ESCALATE = "!escalate"  # group key suffix of a route's escalations
KEEP_FLUSHED_MS = 7 * 86_400_000  # flushed items stay this long to recognise a redelivery

_SCHEMA = """
CREATE TABLE IF NOT EXISTS notify_pending (
    id INTEGER PRIMARY KEY,
    group_key TEXT NOT NULL,
    route TEXT NOT NULL,
    receivers TEXT NOT NULL,
    reason TEXT NOT NULL,
    dedup TEXT NOT NULL UNIQUE,
    alert_id INTEGER NOT NULL,
    payload TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    flushed_ms INTEGER
);
CREATE INDEX IF NOT EXISTS notify_pending_open ON notify_pending (group_key, id)
    WHERE flushed_ms IS NULL;
CREATE INDEX IF NOT EXISTS notify_pending_alert ON notify_pending (alert_id);
CREATE TABLE IF NOT EXISTS notify_groups (
    group_key TEXT PRIMARY KEY,
    last_flush_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS notify_watch (
    alert_id INTEGER NOT NULL,
    route TEXT NOT NULL,
    next_repeat_ms INTEGER,
    escalate_ms INTEGER,
    PRIMARY KEY (alert_id, route)
);
CREATE TABLE IF NOT EXISTS notify_sent (
    outbox_id INTEGER NOT NULL,
    alert_id INTEGER NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (outbox_id, alert_id)
);
CREATE INDEX IF NOT EXISTS notify_sent_alert ON notify_sent (alert_id);
"""


class Splitter(Protocol):
    """What the dispatcher needs of a receiver: cutting a group into messages that fit."""

    def split(
        self, base: Mapping[str, Any], alerts: list[Mapping[str, Any]]
    ) -> list[list[Any]]: ...


@dataclass(frozen=True, slots=True)
class Sent:
    """One line of an alert's notifications page: what went to whom, when, with what result."""

    target: str
    reason: str
    created_ms: int
    delivered_ms: int | None
    failed_ms: int | None
    attempts: int
    last_error: str | None
    alerts_in_message: int = 1

    @property
    def result(self) -> str:
        """delivered, failed (refused for good), retrying, queued or grouping."""
        if self.delivered_ms is not None:
            return "delivered"
        if self.failed_ms is not None:
            return "failed"
        if self.reason == "grouping":
            return "grouping"
        return "retrying" if self.attempts else "queued"


@dataclass(frozen=True, slots=True)
class ReceiverStatus:
    """A receiver as admins see it."""

    name: str
    type: str
    queued: int
    delivered: int
    failed: int
    last_error: str | None
    last_test: Sent | None


class Dispatcher:
    """Routes notifications into groups and flushes them to receivers through the outbox."""

    def __init__(
        self,
        store: AlertStore,
        routing: Routing,
        receivers: Mapping[str, Splitter],
        *,
        clock: Callable[[], float] = time.time,
        console_url: str | None = None,
        enrich: Callable[[dict[str, Any]], None] | None = None,
        on_enqueue: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.routing = routing
        self.receivers = dict(receivers)
        self._clock = clock
        self.console_url = console_url
        self._enrich = enrich
        self.on_enqueue = on_enqueue
        ensure_schema(store)

    def _now(self) -> int:
        return int(self._clock() * 1000)

    # ------------------------------------------------------------------ intake
    def accept(self, event: dict[str, Any]) -> None:
        """Take one engine notification (the ``route`` target): group it, watch it."""
        routes = self.routing.match(event)
        if not routes:
            return
        if self._enrich is not None:
            self._enrich(event)
        now = self._now()
        alert_id = int(event["alert_id"])
        db = self.store.db
        with self.store.transaction():
            for r in routes:
                self._pending(
                    r.name,
                    r,
                    r.receivers,
                    "notify",
                    f"ev:{event['event_id']}:{r.name}",
                    alert_id,
                    event,
                    now,
                )
                if event.get("event") == "firing" and (r.repeat_ms or r.escalate_ms):
                    # Counted from the firing itself: a notification that waited in the outbox
                    # (the service was down) does not push the escalation back.
                    fired = _ms(event.get("fired_at")) or now
                    db.execute(
                        "INSERT OR IGNORE INTO notify_watch VALUES (?, ?, ?, ?)",
                        (
                            alert_id,
                            r.name,
                            fired + r.repeat_ms if r.repeat_ms else None,
                            fired + r.escalate_ms if r.escalate_ms else None,
                        ),
                    )
            if event.get("event") == "resolved":
                db.execute("DELETE FROM notify_watch WHERE alert_id = ?", (alert_id,))

    def _pending(
        self,
        group_key: str,
        route: Route,
        receivers: tuple[str, ...],
        reason: str,
        dedup: str,
        alert_id: int,
        event: Mapping[str, Any],
        now: int,
    ) -> None:
        self.store.db.execute(
            "INSERT OR IGNORE INTO notify_pending (group_key, route, receivers, reason, dedup, "
            "alert_id, payload, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                group_key,
                route.name,
                json.dumps(list(receivers)),
                reason,
                dedup,
                alert_id,
                json.dumps(event, ensure_ascii=False),
                now,
            ),
        )

    # ------------------------------------------------------------------ timer
    def tick(self, now_ms: int | None = None) -> int:
        """Reminders and escalations that are due, then groups that are due; outbox rows made."""
        now = self._now() if now_ms is None else now_ms
        db = self.store.db
        # Most ticks have nothing to do: look before taking the write lock.
        busy = db.execute(
            "SELECT EXISTS (SELECT 1 FROM notify_watch) "
            "OR EXISTS (SELECT 1 FROM notify_pending WHERE flushed_ms IS NULL)"
        ).fetchone()[0]
        if not busy:
            return 0
        with self.store.transaction():
            self._watch(now)
            made = self._flush(now)
        if made and self.on_enqueue is not None:
            self.on_enqueue()
        return made

    def _watch(self, now: int) -> None:
        db = self.store.db
        rows = db.execute(
            "SELECT w.alert_id, w.route, w.next_repeat_ms, w.escalate_ms, a.state, a.acked_ms, "
            "a.silenced FROM notify_watch w LEFT JOIN alerts a ON a.id = w.alert_id "
            # Only what is due or over: thousands of quiet watches cost one index scan.
            "WHERE w.next_repeat_ms <= ? OR w.escalate_ms <= ? OR a.state IS NULL "
            "OR a.state != 'firing' "
            "OR a.acked_ms IS NOT NULL",
            (now, now),
        ).fetchall()
        for alert_id, route_name, repeat_at, escalate_at, state, acked, silenced in rows:
            route = self.routing.route(route_name)
            if route is None or state != "firing" or acked is not None:
                # Acknowledged, resolved or its route is gone: no more reminders nor escalation.
                db.execute(
                    "DELETE FROM notify_watch WHERE alert_id = ? AND route = ?",
                    (alert_id, route_name),
                )
                continue
            if silenced:
                continue  # a silence mutes reminders and escalation too, while it lasts
            event = self._latest_event(alert_id)
            if event is None:
                continue
            if escalate_at is not None and now >= escalate_at and route.escalate_to:
                self._pending(
                    route.name + ESCALATE,
                    route,
                    route.escalate_to,
                    "escalation",
                    f"esc:{alert_id}:{route.name}",
                    alert_id,
                    event,
                    now,
                )
                db.execute(
                    "UPDATE notify_watch SET escalate_ms = NULL WHERE alert_id = ? AND route = ?",
                    (alert_id, route_name),
                )
            if repeat_at is not None and now >= repeat_at and route.repeat_ms:
                self._pending(
                    route.name,
                    route,
                    route.receivers,
                    "reminder",
                    f"rep:{alert_id}:{route.name}:{repeat_at}",
                    alert_id,
                    event,
                    now,
                )
                nxt = repeat_at + route.repeat_ms * max(1, (now - repeat_at) // route.repeat_ms + 1)
                db.execute(
                    "UPDATE notify_watch SET next_repeat_ms = ? WHERE alert_id = ? AND route = ?",
                    (nxt, alert_id, route_name),
                )

    def _latest_event(self, alert_id: int) -> dict[str, Any] | None:
        row = self.store.db.execute(
            "SELECT payload FROM notify_pending WHERE alert_id = ? AND reason = 'notify' "
            "ORDER BY id DESC LIMIT 1",
            (alert_id,),
        ).fetchone()
        return json.loads(row[0]) if row else None

    def _flush(self, now: int) -> int:
        db = self.store.db
        groups = db.execute(
            "SELECT p.group_key, MIN(p.created_ms), MIN(p.route), MAX(g.last_flush_ms) "
            "FROM notify_pending p LEFT JOIN notify_groups g ON g.group_key = p.group_key "
            "WHERE p.flushed_ms IS NULL GROUP BY p.group_key"
        ).fetchall()
        made = 0
        for key, first_ms, route_name, last_flush in groups:
            route = self.routing.route(route_name)
            wait = route.group_wait_ms if route else 0
            interval = route.group_interval_ms if route else 0
            due = first_ms + wait
            if last_flush is not None:
                due = max(due, last_flush + interval)
            if now < due:
                continue
            made += self._flush_group(key, route_name, now)
        if made or groups:
            db.execute(
                "DELETE FROM notify_pending WHERE flushed_ms IS NOT NULL AND flushed_ms < ?",
                (now - KEEP_FLUSHED_MS,),
            )
        return made

    def _flush_group(self, key: str, route_name: str, now: int) -> int:
        db = self.store.db
        rows = db.execute(
            "SELECT p.id, p.receivers, p.reason, p.alert_id, p.payload, a.state, a.acked_ms "
            "FROM notify_pending p LEFT JOIN alerts a ON a.id = p.alert_id "
            "WHERE p.group_key = ? AND p.flushed_ms IS NULL ORDER BY p.id",
            (key,),
        ).fetchall()
        db.executemany(
            "UPDATE notify_pending SET flushed_ms = ? WHERE id = ?", [(now, r[0]) for r in rows]
        )
        db.execute(
            "INSERT INTO notify_groups VALUES (?, ?) ON CONFLICT (group_key) "
            "DO UPDATE SET last_flush_ms = excluded.last_flush_ms",
            (key, now),
        )
        # A reminder or escalation still waiting in its group is dropped once its alert has
        # been acknowledged or has resolved.
        live = [r for r in rows if r[2] == "notify" or (r[5] == "firing" and r[6] is None)]
        if not live:
            return 0
        receivers: list[str] = []
        for r in live:
            receivers += [x for x in json.loads(r[1]) if x not in receivers]
        reason = (
            "escalation"
            if key.endswith(ESCALATE)
            else ("notify" if any(r[2] == "notify" for r in live) else "reminder")
        )
        alerts = [json.loads(r[4]) for r in live]
        made = 0
        for name in receivers:
            target = self.receivers.get(name)
            if target is None:
                log.warning("route %s: receiver %r is not configured; skipped", route_name, name)
                continue
            base = self.base_payload(name, route_name, reason, now)
            for chunk in target.split(base, alerts):
                made += self._enqueue(name, {**base, "alerts": chunk}, reason, now)
        return made

    def base_payload(self, receiver: str, route: str, reason: str, now: int) -> dict[str, Any]:
        """What every message to a receiver carries besides its alerts: who is on duty now."""
        conf = self.routing.receivers.get(receiver)
        people: list[dict[str, str]] = []
        mobiles: list[str] = list(conf.spec.mobiles) if conf else []
        emails: list[str] = []
        if conf is not None and conf.spec.oncall:
            p = self.routing.oncall.now(conf.spec.oncall, datetime.fromtimestamp(now / 1000, UTC))
            if p is not None:
                people.append(
                    {
                        "id": p.id,
                        "name": p.label,
                        "mobile": p.mobile,
                        "email": p.email,
                        "feishu_id": p.feishu_id,
                        "wecom_id": p.wecom_id,
                    }
                )
                if p.mobile and p.mobile not in mobiles:
                    mobiles.append(p.mobile)
                if p.email:
                    emails.append(p.email)
        return {
            "type": "alerts",
            "reason": reason,
            "route": route,
            "receiver": receiver,
            "console_url": self.console_url or "",
            "people": people,
            "mobiles": mobiles,
            "emails": emails,
            "ts_ms": now,
        }

    def _enqueue(self, target: str, payload: dict[str, Any], reason: str, now: int) -> int:
        alerts = payload.get("alerts") or []
        first = int(alerts[0]["alert_id"]) if alerts else 0
        cur = self.store.db.execute(
            "INSERT INTO outbox (history_id, alert_id, target, payload, created_ms, next_ms) "
            "VALUES (0, ?, ?, ?, ?, ?)",
            (first, target, json.dumps(payload, ensure_ascii=False), now, now),
        )
        oid = int(cur.lastrowid or 0)
        # A test message names no alert: it is recorded against alert 0.
        ids = [int(a["alert_id"]) for a in alerts] or [0]
        self.store.db.executemany(
            "INSERT OR IGNORE INTO notify_sent VALUES (?, ?, ?)", [(oid, i, reason) for i in ids]
        )
        return 1

    def send_test(self, receiver: str) -> None:
        """Queue a test message to one receiver (the console's and CLI's 'send a test')."""
        now = self._now()
        payload = {**self.base_payload(receiver, "", "test", now), "alerts": []}
        with self.store.transaction():
            self._enqueue(receiver, payload, "test", now)
        if self.on_enqueue is not None:
            self.on_enqueue()

    def status(self) -> list[ReceiverStatus]:
        """Each receiver: its type, queue, totals, last error and last test (for admins)."""
        db = self.store.db
        out = []
        for name, conf in self.routing.receivers.items():
            queued, delivered, failed = db.execute(
                "SELECT COALESCE(SUM(CASE WHEN delivered_ms IS NULL AND failed_ms IS NULL "
                "THEN 1 ELSE 0 END), 0), "
                "COUNT(delivered_ms), COUNT(failed_ms) FROM outbox WHERE target = ?",
                (name,),
            ).fetchone()
            err = db.execute(
                "SELECT last_error FROM outbox WHERE target = ? AND last_error IS NOT NULL "
                "ORDER BY id DESC LIMIT 1",
                (name,),
            ).fetchone()
            test = db.execute(
                "SELECT o.created_ms, o.delivered_ms, o.failed_ms, o.attempts, o.last_error "
                "FROM outbox o JOIN notify_sent s ON s.outbox_id = o.id AND s.reason = 'test' "
                "WHERE o.target = ? ORDER BY o.id DESC LIMIT 1",
                (name,),
            ).fetchone()
            last_test = (
                Sent(name, "test", test[0], test[1], test[2], test[3], test[4]) if test else None
            )
            out.append(
                ReceiverStatus(
                    name,
                    conf.spec.type,
                    int(queued),
                    int(delivered),
                    int(failed),
                    err[0] if err else None,
                    last_test,
                )
            )
        return out


def _ms(iso: object) -> int | None:
    if not isinstance(iso, str):
        return None
    try:
        return int(datetime.fromisoformat(iso).timestamp() * 1000)
    except ValueError:
        return None


# --------------------------------------------------------------------------- reading


def notifications(store: AlertStore, alert_id: int) -> list[Sent]:
    """An alert's notifications page: every message that named it, oldest first."""
    db = store.db
    if not _has_tables(store):
        ensure_schema(store)
    rows = db.execute(
        "SELECT o.target, COALESCE(s.reason, 'event'), o.created_ms, o.delivered_ms, o.failed_ms, "
        "o.attempts, o.last_error, (SELECT COUNT(*) FROM notify_sent x WHERE x.outbox_id = o.id) "
        "FROM outbox o LEFT JOIN notify_sent s ON s.outbox_id = o.id AND s.alert_id = ? "
        "WHERE (o.alert_id = ? AND o.history_id != 0) OR s.alert_id IS NOT NULL ORDER BY o.id",
        (alert_id, alert_id),
    ).fetchall()
    out = [Sent(r[0], r[1], r[2], r[3], r[4], r[5], r[6], max(1, r[7])) for r in rows]
    waiting = db.execute(
        "SELECT receivers, created_ms FROM notify_pending WHERE alert_id = ? "
        "AND flushed_ms IS NULL ORDER BY id",
        (alert_id,),
    ).fetchall()
    for receivers, created in waiting:
        out += [Sent(r, "grouping", created, None, None, 0, None) for r in json.loads(receivers)]
    return out


def ensure_schema(store: AlertStore) -> None:
    """Create the dispatcher's tables in the alert store (idempotent)."""
    store.db.executescript(_SCHEMA)


def _has_tables(store: AlertStore) -> bool:
    row = store.db.execute(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'notify_sent'"
    ).fetchone()
    return bool(row[0])


def failed_counts(store: AlertStore) -> dict[str, int]:
    """Notifications refused for good, by target (for /metrics)."""
    rows = store.db.execute(
        "SELECT target, COUNT(*) FROM outbox WHERE failed_ms IS NOT NULL GROUP BY target"
    ).fetchall()
    return {r[0]: int(r[1]) for r in rows}


class RouteTarget:
    """The outbox target that hands the engine's notifications to the dispatcher."""

    name = ROUTE_TARGET

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher

    async def send(self, event: dict[str, Any], body: str) -> None:
        """Group and watch (a local write; never fails for the vendor's reasons)."""
        self.dispatcher.accept(event)

    async def close(self) -> None:
        """Nothing to release."""
