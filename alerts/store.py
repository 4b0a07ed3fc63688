"""Alert state, history, silences and the notification outbox in one SQLite file (WAL).

The engine records a transition and the notifications it causes in one transaction, so after a
crash either both exist or neither does: a restart neither repeats nor loses a notification.
Other processes (``envgrid alerts ack``) may open the same file; WAL lets them read while the
service writes, and ``busy_timeout`` makes writers take turns.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Value = float | int | bool | str

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY,
    rule_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    device_id TEXT NOT NULL,
    series TEXT NOT NULL DEFAULT '',
    site TEXT NOT NULL DEFAULT '',
    county TEXT NOT NULL DEFAULT '',
    severity TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'firing', 'resolved')),
    field TEXT NOT NULL DEFAULT '',
    value TEXT,
    message TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    standard TEXT NOT NULL DEFAULT '',
    labels TEXT NOT NULL DEFAULT '{}',
    started_ms INTEGER NOT NULL,
    seen_wall_ms INTEGER NOT NULL,
    fired_ms INTEGER,
    resolved_ms INTEGER,
    updated_ms INTEGER NOT NULL,
    last_ts INTEGER NOT NULL,
    silenced INTEGER NOT NULL DEFAULT 0,
    notified INTEGER NOT NULL DEFAULT 0,
    acked_by TEXT,
    acked_ms INTEGER,
    ack_comment TEXT
);
-- At most one open episode per rule and subject: the store itself refuses a duplicate alert.
CREATE UNIQUE INDEX IF NOT EXISTS alerts_open
    ON alerts (rule_id, device_id, series) WHERE state != 'resolved';
CREATE INDEX IF NOT EXISTS alerts_subject ON alerts (rule_id, device_id, series, state);
CREATE INDEX IF NOT EXISTS alerts_state ON alerts (state, id);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY,
    alert_id INTEGER NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    ts_ms INTEGER NOT NULL,
    event TEXT NOT NULL,
    by TEXT,
    comment TEXT,
    value TEXT,
    message TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS history_alert ON history (alert_id, id);
CREATE TABLE IF NOT EXISTS silences (
    id INTEGER PRIMARY KEY,
    matchers TEXT NOT NULL,
    starts_ms INTEGER NOT NULL,
    ends_ms INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    comment TEXT NOT NULL DEFAULT '',
    created_ms INTEGER NOT NULL,
    deleted_ms INTEGER,
    deleted_by TEXT
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    history_id INTEGER NOT NULL,
    alert_id INTEGER NOT NULL,
    target TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_ms INTEGER NOT NULL,
    delivered_ms INTEGER,
    failed_ms INTEGER,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (target, id) WHERE delivered_ms IS NULL
    AND failed_ms IS NULL;
CREATE TABLE IF NOT EXISTS devices (
    kind TEXT NOT NULL,
    device_id TEXT NOT NULL,
    site TEXT NOT NULL DEFAULT '',
    county TEXT NOT NULL DEFAULT '',
    first_seen_ms INTEGER NOT NULL,
    PRIMARY KEY (kind, device_id)
);
"""

OPEN_STATES = ("pending", "firing")


class StoreError(RuntimeError):
    """The alert store cannot be opened or used; the message says which file and why."""


@dataclass(slots=True)
class AlertRecord:
    """One alert episode: a rule breached by one subject (a device, or one of its series)."""

    id: int
    rule_id: str
    kind: str
    device_id: str
    series: str
    site: str
    county: str
    severity: str
    state: str
    field: str
    value: Value | None
    message: str
    description: str
    standard: str
    labels: Mapping[str, str]  # the rule's own mapping while open (never mutated)
    started_ms: int  # reading time of the first breaching reading
    seen_wall_ms: int  # wall time it arrived (the tick measures `for` from here)
    fired_ms: int | None
    resolved_ms: int | None
    updated_ms: int
    last_ts: int  # reading time of the newest reading applied
    silenced: bool = False
    notified: bool = False
    acked_by: str | None = None
    acked_ms: int | None = None
    ack_comment: str | None = None


@dataclass(slots=True)
class HistoryEntry:
    """One event in an alert's life: pending, firing, resolved, acked, silenced, unsilenced."""

    id: int
    alert_id: int
    ts_ms: int
    event: str
    by: str | None
    comment: str | None
    value: Value | None
    message: str


@dataclass(frozen=True, slots=True)
class Matchers:
    """What a silence covers: globs per dimension; an empty list matches anything."""

    rules: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    sites: tuple[str, ...] = ()
    counties: tuple[str, ...] = ()
    severities: tuple[str, ...] = ()

    def covers(self, rec: AlertRecord) -> bool:
        """Whether the silence covers an alert: every restricted dimension matches a glob.

        The one matcher: the engine mutes with it and the console shows silences with it.
        """
        return (
            _glob(self.rules, rec.rule_id)
            and _glob(self.kinds, rec.kind)
            and _glob(self.devices, rec.device_id)
            and _glob(self.sites, rec.site)
            and _glob(self.counties, rec.county)
            and _glob(self.severities, rec.severity)
        )

    def empty(self) -> bool:
        """Whether no dimension is restricted (such a silence would mute everything)."""
        return not any(getattr(self, f) for f in _MATCHER_FIELDS)

    def to_json(self) -> str:
        """The JSON stored in the silences table."""
        return json.dumps({f: list(getattr(self, f)) for f in _MATCHER_FIELDS})

    @classmethod
    def from_json(cls, text: str) -> Matchers:
        """Read matchers stored by :meth:`to_json`."""
        d = json.loads(text)
        return cls(**{k: tuple(v) for k, v in d.items() if k in _MATCHER_FIELDS})


_MATCHER_FIELDS = ("rules", "kinds", "devices", "sites", "counties", "severities")


@dataclass(slots=True)
class Silence:
    """Mutes notifications of matching alerts from ``starts_ms`` until ``ends_ms``."""

    id: int
    matchers: Matchers
    starts_ms: int
    ends_ms: int
    created_by: str
    comment: str
    created_ms: int
    deleted_ms: int | None = None
    deleted_by: str | None = None

    def active(self, now_ms: int) -> bool:
        """Whether the silence is in force at ``now_ms``."""
        return self.deleted_ms is None and self.starts_ms <= now_ms < self.ends_ms


@dataclass(slots=True)
class OutboxItem:
    """One notification for one target, kept until the target took it."""

    id: int
    history_id: int
    alert_id: int
    target: str
    payload: str
    created_ms: int
    attempts: int
    next_ms: int
    last_error: str | None = None


@dataclass(slots=True)
class KnownDevice:
    """A device the engine has seen (so no-data rules watch it after a restart)."""

    kind: str
    device_id: str
    site: str = ""
    county: str = ""


_ALERT_COLS = [f for f in AlertRecord.__dataclass_fields__ if f != "id"]
_SELECT = "SELECT id, " + ", ".join(_ALERT_COLS) + " FROM alerts"
_INSERT = (
    f"INSERT INTO alerts ({', '.join(_ALERT_COLS)}) VALUES ({', '.join('?' for _ in _ALERT_COLS)})"
)


@dataclass
class AlertFilter:
    """Filters of ``list_alerts`` (None = any)."""

    state: str | None = None
    severity: str | None = None
    kind: str | None = None
    site: str | None = None
    county: str | None = None
    device_id: str | None = None
    rule_id: str | None = None
    silenced: bool | None = None
    limit: int = 100
    offset: int = 0


class AlertStore:
    """The SQLite file of alerts, history, silences, outbox and known devices."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            if str(path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE … COMMIT).
            self._db = sqlite3.connect(
                str(path), isolation_level=None, check_same_thread=False, timeout=10.0
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed transition (and its notifications) survives a power cut too;
            # transitions are rare, so the fsync per commit costs nothing that matters.
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA busy_timeout=10000")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path}: written by a newer envgrid (schema {version}); upgrade envgrid "
                    "or point ENVGRID_ALERTS__STORE at another file"
                )
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as e:
            raise StoreError(
                f"{self.path}: cannot open the alert store ({e}); check the path and its "
                "permissions, or set ENVGRID_ALERTS__STORE"
            ) from e
        self._depth = 0

    @property
    def db(self) -> sqlite3.Connection:
        """The connection, for modules keeping their own tables in this file (alerts/dispatch.py).

        Their writes join :meth:`transaction`, so they commit atomically with the outbox.
        """
        return self._db

    def close(self) -> None:
        """Close the database (committed data is already on disk)."""
        self._db.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic unit of writes; nested calls join the outer transaction."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._db.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")
        finally:
            self._depth = 0

    # ------------------------------------------------------------------- alerts
    def insert_alert(self, rec: AlertRecord) -> int:
        """Store a new episode; returns its id (also set on ``rec``)."""
        cur = self._db.execute(_INSERT, [enc(getattr(rec, c)) for c, enc in _ENCODERS])
        rec.id = int(cur.lastrowid or 0)
        return rec.id

    def update_alert(self, alert_id: int, **cols: Any) -> None:
        """Update some columns of one alert (only those given: others may be set elsewhere)."""
        if not cols:
            return
        for k in cols:
            if k not in _ALERT_COLS:
                raise KeyError(k)
        vals = [_encode_col(k, v) for k, v in cols.items()]
        self._db.execute(
            f"UPDATE alerts SET {', '.join(f'{k} = ?' for k in cols)} WHERE id = ?",
            [*vals, alert_id],
        )

    def delete_alert(self, alert_id: int) -> None:
        """Forget an episode that never fired (a pending breach that ended early)."""
        self._db.execute("DELETE FROM history WHERE alert_id = ?", (alert_id,))
        self._db.execute("DELETE FROM alerts WHERE id = ?", (alert_id,))

    def get_alert(self, alert_id: int) -> AlertRecord | None:
        """One alert by id."""
        row = self._db.execute(_SELECT + " WHERE id = ?", (alert_id,)).fetchone()
        return _alert(row) if row else None

    def open_alerts(self) -> list[AlertRecord]:
        """Alerts pending or firing (the engine's state to resume from)."""
        rows = self._db.execute(
            _SELECT + " WHERE state IN ('pending', 'firing') ORDER BY id"
        ).fetchall()
        return [_alert(r) for r in rows]

    def watermarks(self) -> dict[tuple[str, str, str], int]:
        """Per (rule, device, series): the reading time that resolved its latest episode.

        A reading not newer than this (a redelivery after a crash) must not start a new episode.
        """
        rows = self._db.execute(
            "SELECT rule_id, device_id, series, MAX(last_ts) FROM alerts "
            "WHERE state = 'resolved' GROUP BY rule_id, device_id, series"
        ).fetchall()
        return {(r[0], r[1], r[2]): int(r[3]) for r in rows}

    def list_alerts(self, f: AlertFilter | None = None) -> list[AlertRecord]:
        """Alerts matching the filter, newest first."""
        f = f or AlertFilter()
        where, args = [], []
        for col in ("state", "severity", "kind", "site", "county", "device_id", "rule_id"):
            v = getattr(f, col)
            if v is not None:
                where.append(f"{col} = ?")
                args.append(v)
        if f.silenced is not None:
            where.append("silenced = ?")
            args.append(int(f.silenced))
        sql = _SELECT
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ? OFFSET ?"
        rows = self._db.execute(sql, [*args, f.limit, f.offset]).fetchall()
        return [_alert(r) for r in rows]

    def ack(self, alert_id: int, by: str, comment: str, now_ms: int) -> AlertRecord | None:
        """Record who acknowledged an alert and why; None if there is no such alert."""
        with self.transaction():
            rec = self.get_alert(alert_id)
            if rec is None:
                return None
            self.update_alert(alert_id, acked_by=by, acked_ms=now_ms, ack_comment=comment)
            self.add_history(alert_id, now_ms, "acked", by=by, comment=comment)
        return self.get_alert(alert_id)

    # ------------------------------------------------------------------- history
    def add_history(
        self,
        alert_id: int,
        ts_ms: int,
        event: str,
        *,
        by: str | None = None,
        comment: str | None = None,
        value: Value | None = None,
        message: str = "",
    ) -> int:
        """Append one event to an alert's history; returns its id."""
        cur = self._db.execute(
            "INSERT INTO history (alert_id, ts_ms, event, by, comment, value, message) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (alert_id, ts_ms, event, by, comment, _dump(value), message),
        )
        return int(cur.lastrowid or 0)

    def history(self, alert_id: int) -> list[HistoryEntry]:
        """An alert's events, oldest first."""
        rows = self._db.execute(
            "SELECT id, alert_id, ts_ms, event, by, comment, value, message FROM history "
            "WHERE alert_id = ? ORDER BY id",
            (alert_id,),
        ).fetchall()
        return [HistoryEntry(r[0], r[1], r[2], r[3], r[4], r[5], _load(r[6]), r[7]) for r in rows]

    # ------------------------------------------------------------------- silences
    def add_silence(
        self, matchers: Matchers, starts_ms: int, ends_ms: int, by: str, comment: str, now_ms: int
    ) -> Silence:
        """Store a silence; returns it with its id."""
        cur = self._db.execute(
            "INSERT INTO silences (matchers, starts_ms, ends_ms, created_by, comment, created_ms) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (matchers.to_json(), starts_ms, ends_ms, by, comment, now_ms),
        )
        return Silence(int(cur.lastrowid or 0), matchers, starts_ms, ends_ms, by, comment, now_ms)

    def get_silence(self, silence_id: int) -> Silence | None:
        """One silence by id."""
        row = self._db.execute("SELECT * FROM silences WHERE id = ?", (silence_id,)).fetchone()
        return _silence(row) if row else None

    def silences(self, *, current_at: int | None = None) -> list[Silence]:
        """All silences, or those not yet ended nor deleted at ``current_at``."""
        if current_at is None:
            rows = self._db.execute("SELECT * FROM silences ORDER BY id").fetchall()
        else:
            rows = self._db.execute(
                "SELECT * FROM silences WHERE deleted_ms IS NULL AND ends_ms > ? ORDER BY id",
                (current_at,),
            ).fetchall()
        return [_silence(r) for r in rows]

    def delete_silence(self, silence_id: int, by: str, now_ms: int) -> Silence | None:
        """End a silence now (kept for the record); None if unknown or already deleted."""
        cur = self._db.execute(
            "UPDATE silences SET deleted_ms = ?, deleted_by = ? "
            "WHERE id = ? AND deleted_ms IS NULL",
            (now_ms, by, silence_id),
        )
        return self.get_silence(silence_id) if cur.rowcount else None

    # ------------------------------------------------------------------- outbox
    def enqueue(
        self, history_id: int, alert_id: int, targets: Iterable[str], payload: str, now_ms: int
    ) -> None:
        """One outbox row per target for a notification (inside the transition's transaction)."""
        self._db.executemany(
            "INSERT INTO outbox (history_id, alert_id, target, payload, created_ms, next_ms) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(history_id, alert_id, t, payload, now_ms, now_ms) for t in targets],
        )

    def next_for(self, target: str) -> OutboxItem | None:
        """The oldest notification not yet delivered to ``target`` (delivery keeps order)."""
        row = self._db.execute(
            "SELECT id, history_id, alert_id, target, payload, created_ms, attempts, next_ms, "
            "last_error FROM outbox WHERE target = ? AND delivered_ms IS NULL "
            "AND failed_ms IS NULL ORDER BY id LIMIT 1",
            (target,),
        ).fetchone()
        return OutboxItem(*row) if row else None

    def delivered(self, item_id: int, now_ms: int) -> None:
        """Mark a notification as taken by its target."""
        self._db.execute("UPDATE outbox SET delivered_ms = ? WHERE id = ?", (now_ms, item_id))

    def retry_later(self, item_id: int, attempts: int, next_ms: int, error: str) -> None:
        """Record a failed attempt and when to try again."""
        self._db.execute(
            "UPDATE outbox SET attempts = ?, next_ms = ?, last_error = ? WHERE id = ?",
            (attempts, next_ms, error[:500], item_id),
        )

    def give_up(self, item_id: int, now_ms: int, error: str) -> None:
        """Stop trying a notification its target refuses for good (kept with the reason)."""
        self._db.execute(
            "UPDATE outbox SET failed_ms = ?, last_error = ? WHERE id = ?",
            (now_ms, error[:500], item_id),
        )

    def outbox_backlog(self) -> dict[str, int]:
        """Undelivered notifications per target."""
        rows = self._db.execute(
            "SELECT target, COUNT(*) FROM outbox WHERE delivered_ms IS NULL AND failed_ms IS NULL "
            "GROUP BY target"
        ).fetchall()
        return {r[0]: int(r[1]) for r in rows}

    # ------------------------------------------------------------------- devices
    def known_devices(self) -> list[KnownDevice]:
        """Every device seen so far."""
        rows = self._db.execute("SELECT kind, device_id, site, county FROM devices").fetchall()
        return [KnownDevice(*r) for r in rows]

    def remember_devices(self, devices: Iterable[KnownDevice], now_ms: int) -> None:
        """Record devices (new ones are added; a known device's site and county are updated)."""
        self._db.executemany(
            "INSERT INTO devices (kind, device_id, site, county, first_seen_ms) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (kind, device_id) DO UPDATE SET "
            "site = excluded.site, county = excluded.county",
            [(d.kind, d.device_id, d.site, d.county, now_ms) for d in devices],
        )


# ----------------------------------------------------------------------- row mapping


def _dump(v: Any) -> str | None:
    return None if v is None else json.dumps(v, ensure_ascii=False)


def _load(s: str | None) -> Any:
    return None if s is None else json.loads(s)


def _plain(v: Any) -> Any:
    return v


def _labels(v: Mapping[str, str]) -> str:
    return json.dumps(v, ensure_ascii=False)


# The SQLite value of each column, its encoder looked up once per column rather than decided
# per value: an alert storm inserts tens of thousands of rows in one tick.
_ENCODER: dict[str, Callable[[Any], Any]] = {c: _plain for c in _ALERT_COLS} | {
    "value": _dump,
    "labels": _labels,
    "silenced": int,
    "notified": int,
}
_ENCODERS = list(_ENCODER.items())


def _encode_col(col: str, v: Any) -> Any:
    return _ENCODER[col](v)


def _alert(row: tuple[Any, ...]) -> AlertRecord:
    d: Mapping[str, Any] = dict(zip(_ALERT_COLS, row[1:], strict=True))
    out = {c: d[c] for c in _ALERT_COLS}
    out["value"] = _load(d["value"])
    out["labels"] = json.loads(d["labels"])
    out["silenced"], out["notified"] = bool(d["silenced"]), bool(d["notified"])
    return AlertRecord(id=row[0], **out)


def _silence(row: tuple[Any, ...]) -> Silence:
    return Silence(
        id=row[0],
        matchers=Matchers.from_json(row[1]),
        starts_ms=row[2],
        ends_ms=row[3],
        created_by=row[4],
        comment=row[5],
        created_ms=row[6],
        deleted_ms=row[7],
        deleted_by=row[8],
    )


def _glob(patterns: tuple[str, ...], value: str) -> bool:
    return not patterns or any(fnmatch.fnmatchcase(value, p) for p in patterns)
