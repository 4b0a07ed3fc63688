"""Review (审核) marks: an auditor's record that a device's fields are invalid (or valid again) over
a time range, and why. Append-only, in SQLite (``rollup.review_store``).

A mark never changes a stored reading: the raw values stay where they are, and the rollups leave
out the samples an ``invalidate`` mark covers (``Marks.verdict``). The newest mark covering a
sample decides, so a later ``restore`` over the same range brings the samples back and the
recomputed figures are exactly those before the invalidation. Rows are never updated or deleted
(SQLite triggers refuse both): the table is the history of who did what, when and why.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Action = Literal["invalidate", "restore"]
ACTIONS: tuple[Action, ...] = ("invalidate", "restore")
# Why a range is marked: the fixed list auditors choose from (issue 16); "other" needs a comment.
REASONS = (
    "calibration",
    "maintenance",
    "power_cut",
    "communication_loss",
    "instrument_fault",
    "abnormal_value",
    "suspected_tampering",
    "exceptional_event",
    "other",
)
# HJ 663-2026 例外事件 (sand and dust, wildfire, …): the data are valid and stay in every rollup;
# the period assessment (report/air_assessment.py) leaves the marked days out. So the rollups
# ignore marks with these reasons (``rollup_marks``).
EXCEPTIONAL_EVENT = "exceptional_event"
ASSESSMENT_ONLY: frozenset[str] = frozenset({EXCEPTIONAL_EVENT})
ALL_FIELDS = "*"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS review_marks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms INTEGER NOT NULL,
    actor TEXT NOT NULL,
    device_id TEXT NOT NULL,
    fields TEXT NOT NULL,
    from_ms INTEGER NOT NULL,
    to_ms INTEGER NOT NULL,
    action TEXT NOT NULL,
    reason TEXT NOT NULL,
    comment TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS review_marks_device ON review_marks (device_id, from_ms);
CREATE TRIGGER IF NOT EXISTS review_marks_no_update BEFORE UPDATE ON review_marks
BEGIN SELECT RAISE(ABORT, 'review marks are append-only'); END;
CREATE TRIGGER IF NOT EXISTS review_marks_no_delete BEFORE DELETE ON review_marks
BEGIN SELECT RAISE(ABORT, 'review marks are append-only'); END;
"""


class ReviewError(ValueError):
    """A mark that cannot be recorded; the message says what to fix."""


@dataclass(frozen=True, slots=True)
class Mark:
    """One review record: ``fields`` is a tuple of field names, or ``("*",)`` for all of them;
    the range is [from_ms, to_ms)."""

    device_id: str
    fields: tuple[str, ...]
    from_ms: int
    to_ms: int
    action: Action
    reason: str
    actor: str
    comment: str = ""
    at_ms: int = 0  # when it was recorded (set by the store)
    id: int = 0  # set by the store

    def covers(self, field: str, ts_ms: int) -> bool:
        """Whether the mark speaks for this field at this instant."""
        return self.from_ms <= ts_ms < self.to_ms and (
            self.fields == (ALL_FIELDS,) or field in self.fields
        )

    def describe(self) -> str:
        """E.g. ``maintenance (mark 3 by alice)``, for reports."""
        text = f"{self.reason} (mark {self.id} by {self.actor})"
        return f"{text}: {self.comment}" if self.comment else text


def check(mark: Mark) -> None:
    """ReviewError unless the mark is one the store may record."""
    if not mark.device_id:
        raise ReviewError("device_id is empty")
    if not mark.fields or any(not f for f in mark.fields):
        raise ReviewError('fields: name at least one field, or "*" for all of them')
    if ALL_FIELDS in mark.fields and mark.fields != (ALL_FIELDS,):
        raise ReviewError('fields: "*" stands alone (it means every field)')
    if mark.to_ms <= mark.from_ms:
        raise ReviewError("to must be after from")
    if mark.action not in ACTIONS:
        raise ReviewError(f"action must be one of {', '.join(ACTIONS)}")
    if mark.reason not in REASONS:
        raise ReviewError(f"reason must be one of {', '.join(REASONS)}")
    if mark.reason == "other" and not mark.comment.strip():
        raise ReviewError('reason "other" needs a comment saying what happened')


def rollup_marks(marks: Iterable[Mark]) -> list[Mark]:
    """The marks that take samples out of the rollups: not those that only speak for the
    period assessment (``ASSESSMENT_ONLY``)."""
    return [m for m in marks if m.reason not in ASSESSMENT_ONLY]


class Marks:
    """The marks that matter for a span, newest last; says which samples are left out."""

    def __init__(self, marks: Iterable[Mark]) -> None:
        self._by_device: dict[str, list[Mark]] = {}
        for m in sorted(marks, key=lambda m: m.id):
            self._by_device.setdefault(m.device_id, []).append(m)

    def __bool__(self) -> bool:
        return bool(self._by_device)

    def for_device(self, device_id: str) -> Sequence[Mark]:
        """The device's marks, oldest first."""
        return self._by_device.get(device_id, ())

    def devices(self) -> list[str]:
        """Devices with marks."""
        return sorted(self._by_device)

    def verdict(self, device_id: str, field: str, ts_ms: int) -> Mark | None:
        """The ``invalidate`` mark that leaves this sample out, or None (no mark, or the newest
        covering mark is a ``restore``)."""
        for m in reversed(self._by_device.get(device_id, ())):
            if m.covers(field, ts_ms):
                return m if m.action == "invalidate" else None
        return None


class ReviewStore:
    """The marks in one SQLite file, created with the first mark; safe to share between
    threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def _db(self, create: bool) -> sqlite3.Connection | None:
        # Called with the lock held. Until a mark is recorded there is no file (reads see none).
        if self._conn is None:
            if not create and not self.path.exists():
                return None
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            # A recorded mark is the audit trail: fsynced before the API says it is recorded.
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            self._conn = db
        return self._conn

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def add(self, mark: Mark, now_ms: int | None = None) -> Mark:
        """Record a mark (checked first); the mark as stored, with its id and time."""
        check(mark)
        at = int(time.time() * 1000) if now_ms is None else now_ms
        with self._lock:
            db = self._db(create=True)
            assert db is not None
            cur = db.execute(
                "INSERT INTO review_marks (at_ms, actor, device_id, fields, from_ms, to_ms, "
                "action, reason, comment) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    at,
                    mark.actor,
                    mark.device_id,
                    ",".join(mark.fields),
                    mark.from_ms,
                    mark.to_ms,
                    mark.action,
                    mark.reason,
                    mark.comment,
                ),
            )
            new_id = int(cur.lastrowid or 0)
        return Mark(
            mark.device_id,
            mark.fields,
            mark.from_ms,
            mark.to_ms,
            mark.action,
            mark.reason,
            mark.actor,
            mark.comment,
            at,
            new_id,
        )

    def marks(
        self,
        device_id: str | None = None,
        from_ms: int | None = None,
        to_ms: int | None = None,
        device_ids: Iterable[str] | None = None,
    ) -> list[Mark]:
        """Marks overlapping [from_ms, to_ms) (either end open when None), oldest first."""
        where: list[str] = []
        args: list[str | int] = []
        if device_id is not None:
            where.append("device_id = ?")
            args.append(device_id)
        if device_ids is not None:
            ids = sorted(set(device_ids))
            if not ids:
                return []
            where.append(f"device_id IN ({','.join('?' * len(ids))})")
            args.extend(ids)
        if from_ms is not None:
            where.append("to_ms > ?")
            args.append(from_ms)
        if to_ms is not None:
            where.append("from_ms < ?")
            args.append(to_ms)
        sql = "SELECT id, at_ms, actor, device_id, fields, from_ms, to_ms, action, reason, comment "
        sql += "FROM review_marks" + (" WHERE " + " AND ".join(where) if where else "")
        with self._lock:
            db = self._db(create=False)
            rows = db.execute(sql + " ORDER BY id", args).fetchall() if db is not None else []
        return [
            Mark(
                device_id=r[3],
                fields=tuple(str(r[4]).split(",")),
                from_ms=r[5],
                to_ms=r[6],
                action=r[7],
                reason=r[8],
                actor=r[2],
                comment=r[9],
                at_ms=r[1],
                id=r[0],
            )
            for r in rows
        ]
