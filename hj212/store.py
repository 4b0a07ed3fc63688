"""The command store: every HJ 212 command and its progress, in the alerts' SQLite file.

One table, ``hj212_commands``, keyed by QN. Every change is committed (WAL, synchronous FULL)
before the gateway acts on it, so a command taken from the broker survives a restart, and one
that was in flight is sent again with the same QN.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

from hj212.commands import OPEN, Command

if TYPE_CHECKING:
    from hj212.dispatch import StationState

__all__ = ["CommandStore", "Store"]

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS hj212_commands (
    qn TEXT PRIMARY KEY,
    mn TEXT NOT NULL,
    cn TEXT NOT NULL,
    params TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL NOT NULL,
    status TEXT NOT NULL,
    qn_rtn INTEGER,
    exe_rtn INTEGER,
    packets INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    updated REAL NOT NULL,
    result TEXT NOT NULL DEFAULT '{}',
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS hj212_commands_mn ON hj212_commands (mn, created);
CREATE INDEX IF NOT EXISTS hj212_commands_status ON hj212_commands (status);
CREATE TABLE IF NOT EXISTS hj212_station_pw (
    mn TEXT PRIMARY KEY,
    pw TEXT NOT NULL,
    updated REAL NOT NULL
);
"""

_COLUMNS: Final = (
    "qn", "mn", "cn", "params", "requested_by", "created", "expires", "status", "qn_rtn",
    "exe_rtn", "packets", "attempts", "updated", "result", "detail",
)  # fmt: skip


def _row(cmd: Command) -> tuple[Any, ...]:
    return (
        cmd.qn, cmd.mn, cmd.cn, json.dumps(cmd.params), cmd.requested_by, cmd.created,
        cmd.expires, cmd.status, cmd.qn_rtn, cmd.exe_rtn, cmd.packets, cmd.attempts,
        cmd.updated, json.dumps(cmd.result), cmd.detail,
    )  # fmt: skip


def _command(row: sqlite3.Row) -> Command:
    values = dict(zip(_COLUMNS, row, strict=True))
    values["params"] = json.loads(values["params"])
    values["result"] = json.loads(values["result"])
    return Command(**values)


def find_clause(
    mark: str,
    prefix: str,
    mn: str | None,
    status: str | None,
    cn: str | None,
    since: float | None,
    limit: int,
) -> tuple[str, list[Any]]:
    """The WHERE/ORDER BY/LIMIT of a command search and its arguments, shared by both stores
    (``mark``: the driver's placeholder; ``prefix``: the table alias, e.g. ``"c."``)."""
    where: list[str] = []
    args: list[Any] = []
    for column, value in (("mn", mn), ("status", status), ("cn", cn)):
        if value is not None:
            where.append(f"{prefix}{column} = {mark}")
            args.append(value)
    if since is not None:
        where.append(f"{prefix}updated >= {mark}")
        args.append(since)
    sql = " WHERE " + " AND ".join(where) if where else ""
    sql += f" ORDER BY {prefix}created DESC, {prefix}qn DESC LIMIT {mark}"
    args.append(max(1, min(limit, 10_000)))
    return sql, args


class Store(Protocol):
    """What the dispatcher, the API and the inbox need of a command store: this SQLite one on a
    single host, :class:`hj212.store_pg.PgCommandStore` when gateways share PostgreSQL."""

    shared: bool  # True: several gateways use it (claims, shared station state)

    def close(self) -> None: ...
    def add(self, cmd: Command) -> bool: ...
    def save(self, cmd: Command) -> bool: ...
    def get(self, qn: str) -> Command | None: ...
    def find(
        self,
        mn: str | None = None,
        status: str | None = None,
        cn: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[Command]: ...
    def open_commands(self, mn: str | None = None) -> list[Command]: ...
    def claim(self, mn: str) -> Command | None: ...
    def set_pw(self, mn: str, pw: str) -> None: ...
    def passwords(self) -> dict[str, str]: ...
    # Shared station state; no-ops on a single host.
    def renew(self) -> None: ...
    def hold(self, mn: str, peer: str, edition: str) -> None: ...
    def let_go(self, mn: str) -> None: ...
    def publish(self, states: Iterable[StationState]) -> None: ...
    def waiting(self, mns: Collection[str]) -> set[str]: ...


class CommandStore:
    """Commands by QN; small and synchronous (a command is a few hundred bytes, rarely)."""

    shared = False

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        # The dispatcher commits from a worker thread, everything else from the event loop.
        self._lock = threading.Lock()

    def _exec(self, sql: str, args: Any = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, args)

    def _rows(self, sql: str, args: Any = ()) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    def add(self, cmd: Command) -> bool:
        """Store a new command; False if its QN is already there (a redelivery)."""
        cur = self._exec(
            f"INSERT OR IGNORE INTO hj212_commands ({', '.join(_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(_COLUMNS))})",
            _row(cmd),
        )
        return cur.rowcount == 1

    def save(self, cmd: Command) -> bool:
        """Write a command's current state (True: one gateway, nobody else claims commands)."""
        self._exec(
            f"INSERT OR REPLACE INTO hj212_commands ({', '.join(_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(_COLUMNS))})",
            _row(cmd),
        )
        return True

    def get(self, qn: str) -> Command | None:
        """The command with this QN."""
        rows = self._rows(f"SELECT {', '.join(_COLUMNS)} FROM hj212_commands WHERE qn = ?", (qn,))
        return _command(rows[0]) if rows else None

    def find(
        self,
        mn: str | None = None,
        status: str | None = None,
        cn: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[Command]:
        """Commands, newest first, filtered by MN, status, CN and creation time."""
        tail, args = find_clause("?", "", mn, status, cn, since, limit)
        sql = f"SELECT {', '.join(_COLUMNS)} FROM hj212_commands{tail}"
        return [_command(r) for r in self._rows(sql, args)]

    def open_commands(self, mn: str | None = None) -> list[Command]:
        """Commands still waiting for their station, oldest first."""
        marks = ", ".join("?" * len(OPEN))
        sql = f"SELECT {', '.join(_COLUMNS)} FROM hj212_commands WHERE status IN ({marks})"
        args: list[Any] = sorted(OPEN)
        if mn is not None:
            sql += " AND mn = ?"
            args.append(mn)
        sql += " ORDER BY created, qn"
        return [_command(r) for r in self._rows(sql, args)]

    def claim(self, mn: str) -> Command | None:
        """The station's oldest open command, to send next (one gateway: nobody to race)."""
        pending = self.open_commands(mn)
        return pending[0] if pending else None

    def renew(self) -> None:
        """Nothing to renew: one gateway."""

    def hold(self, mn: str, peer: str, edition: str) -> None:
        """Station state stays in the dispatcher on a single host."""

    def let_go(self, mn: str) -> None:
        """Station state stays in the dispatcher on a single host."""

    def publish(self, states: Iterable[StationState]) -> None:
        """Station state stays in the dispatcher on a single host."""

    def waiting(self, mns: Collection[str]) -> set[str]:
        """Stations among ``mns`` with open commands."""
        return {c.mn for c in self.open_commands() if c.mn in mns}

    def set_pw(self, mn: str, pw: str) -> None:
        """A station confirmed a new access password (1072): it replaces the registry's."""
        self._exec(
            "INSERT OR REPLACE INTO hj212_station_pw (mn, pw, updated) VALUES (?, ?, ?)",
            (mn, pw, time.time()),
        )

    def passwords(self) -> dict[str, str]:
        """Passwords stations confirmed by 1072, by MN (they win over the registry's)."""
        return dict(self._rows("SELECT mn, pw FROM hj212_station_pw"))
