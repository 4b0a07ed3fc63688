"""The HJ 212 command store and station state in PostgreSQL, for gateways on several hosts.

Same interface as the SQLite store (``hj212/store.py``), chosen when ``ENVGRID_CLUSTER__DATABASE``
is set. Three more tables make several gateways behind a TCP load balancer act as one:

- ``hj212_gateways``: one lease per running gateway process (renewed every ``cluster.renew``,
  run out ``cluster.failover`` after its last renewal: a dead host's gateway drops out);
- ``hj212_stations``: the gateway holding each station's connection (the newest connection
  wins), since when, from where, and the state the API shows; a station whose gateway's lease
  ran out is not connected;
- ``hj212_commands`` has ``claimed_by``: a gateway sends a command only after claiming it in one
  conditional UPDATE. A claim is good while its gateway's lease is alive *and* that gateway
  still holds the station, so PostgreSQL's row lock decides between two gateways that both
  think they hold a station, a station that moved to another host takes its commands along,
  and a dead host's commands are free once its lease ran out. Every write of a command's
  progress is conditional on the claim too: a gateway that lost it stops at its next step.

Times of commands and stations are epoch seconds like the SQLite store's; leases use the
database's ``now()``, so the hosts' clocks do not decide who holds what.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

import psycopg

from hj212.commands import OPEN, Command
from hj212.store import find_clause

if TYPE_CHECKING:
    from hj212.dispatch import StationState

__all__ = ["PgCommandStore", "SharedConfig", "SharedStation", "StoreError"]

log = logging.getLogger("envgrid.hj212.commands")

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS hj212_commands (
    qn TEXT PRIMARY KEY,
    mn TEXT NOT NULL,
    cn TEXT NOT NULL,
    params TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    created DOUBLE PRECISION NOT NULL,
    expires DOUBLE PRECISION NOT NULL,
    status TEXT NOT NULL,
    qn_rtn INTEGER,
    exe_rtn INTEGER,
    packets INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    updated DOUBLE PRECISION NOT NULL,
    result TEXT NOT NULL DEFAULT '{}',
    detail TEXT NOT NULL DEFAULT '',
    claimed_by TEXT,
    claimed_member TEXT
);
CREATE INDEX IF NOT EXISTS hj212_commands_mn ON hj212_commands (mn, created);
CREATE INDEX IF NOT EXISTS hj212_commands_open ON hj212_commands (mn, created, qn)
    WHERE status IN ('queued', 'sent', 'accepted');
CREATE TABLE IF NOT EXISTS hj212_station_pw (
    mn TEXT PRIMARY KEY,
    pw TEXT NOT NULL,
    updated DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS hj212_gateways (
    id TEXT PRIMARY KEY,
    member TEXT NOT NULL,
    until TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS hj212_stations (
    mn TEXT PRIMARY KEY,
    gateway TEXT,
    member TEXT NOT NULL DEFAULT '',
    peer TEXT NOT NULL DEFAULT '',
    connected_at DOUBLE PRECISION,
    disconnected_at DOUBLE PRECISION,
    last_seen DOUBLE PRECISION,
    edition TEXT NOT NULL DEFAULT '',
    last_packet DOUBLE PRECISION NOT NULL DEFAULT 0,
    packets BIGINT NOT NULL DEFAULT 0,
    last_command TEXT NOT NULL DEFAULT '',
    last_result TEXT NOT NULL DEFAULT '',
    clock_offset_s DOUBLE PRECISION,
    gaps INTEGER NOT NULL DEFAULT 0
);
"""

_COLUMNS: Final = (
    "qn", "mn", "cn", "params", "requested_by", "created", "expires", "status", "qn_rtn",
    "exe_rtn", "packets", "attempts", "updated", "result", "detail",
)  # fmt: skip
_SELECT: Final = ", ".join(f"c.{c}" for c in _COLUMNS)
_OPEN_SQL: Final = "(" + ", ".join(f"'{s}'" for s in sorted(OPEN)) + ")"
# Whether the claim on command row ``c`` no longer counts: nobody's, or its gateway's lease ran
# out, or its gateway no longer holds the station (it moved to another gateway).
_CLAIM_GONE: Final = (
    "(c.claimed_by IS NULL OR NOT EXISTS (SELECT 1 FROM hj212_gateways g "
    "WHERE g.id = c.claimed_by AND g.until >= now()) OR NOT EXISTS (SELECT 1 FROM "
    "hj212_stations s WHERE s.mn = c.mn AND s.gateway = c.claimed_by))"
)


class StoreError(RuntimeError):
    """The command database cannot be opened; the message says what to check."""


@dataclass(frozen=True, slots=True)
class SharedConfig:
    """Where the shared store is and how long a gateway's lease lasts ([cluster] settings)."""

    url: str  # never logged
    member: str
    renew_s: float = 5.0
    failover_s: float = 30.0


@dataclass(frozen=True, slots=True)
class SharedStation:
    """One station as every host sees it."""

    mn: str
    online: bool  # held by a gateway whose lease is alive
    member: str
    peer: str
    connected_at: float | None
    last_seen: float | None
    edition: str
    last_packet: float
    packets: int
    last_command: str
    last_result: str
    clock_offset_s: float | None
    gaps: int


def _row(cmd: Command) -> dict[str, Any]:
    values: dict[str, Any] = {c: getattr(cmd, c) for c in _COLUMNS}
    values["params"] = json.dumps(cmd.params)
    values["result"] = json.dumps(cmd.result)
    return values


def _command(row: tuple[Any, ...]) -> Command:
    values = dict(zip(_COLUMNS, row, strict=True))
    values["params"] = json.loads(values["params"])
    values["result"] = json.loads(values["result"])
    return Command(**values)


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


class PgCommandStore:
    """Commands, claims and station state in PostgreSQL (one connection, autocommit).

    ``gateway=False`` opens it for a process that only reads and queues (an API without a
    gateway): it holds no lease and claims nothing."""

    shared = True

    def __init__(self, cfg: SharedConfig, *, gateway: bool = True) -> None:
        u = urlsplit(cfg.url)
        self.path = f"postgresql://{u.hostname}:{u.port or 5432}{u.path}"  # shown, no password
        self.cfg = cfg
        self.member = cfg.member
        # This process: a restarted gateway is another one (its old claims die with the lease).
        self.gateway = f"{cfg.member}/{secrets.token_hex(4)}" if gateway else None
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        # A gateway is built on its event loop's thread. Once the connection is lost, calls
        # made there fail at once instead of waiting out a reconnect (which could hold up
        # every station's packets): the dispatcher's own thread reconnects, every renew.
        self._fail_fast_on = threading.get_ident() if gateway else None
        self._published: dict[str, tuple[Any, ...]] = {}
        try:
            with self._lock:
                conn = self._connect()
                with conn.transaction():
                    # Hosts starting together would race on CREATE … IF NOT EXISTS.
                    conn.execute("SELECT pg_advisory_xact_lock(hashtext('envgrid_hj212_schema'))")
                    conn.execute(_SCHEMA.encode())
        except psycopg.Error as e:
            raise StoreError(
                f"{self.path}: cannot open the HJ 212 command store ({_first_line(e)}); check "
                "ENVGRID_CLUSTER__DATABASE and that PostgreSQL is reachable"
            ) from None
        if self.gateway is not None:
            self.renew()

    # ---------------------------------------------------------------- connection
    def _connect(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            if self._conn is not None:
                if threading.get_ident() == self._fail_fast_on:
                    raise psycopg.OperationalError(
                        "the connection to the cluster database was lost: reconnecting"
                    )
                self._conn.close()
            # A host cut off from the database must fail a statement within seconds, not hang
            # on TCP retransmissions for many minutes with the gateway's sender waiting.
            self._conn = psycopg.connect(
                self.cfg.url,
                autocommit=True,
                connect_timeout=10,
                keepalives=1,
                keepalives_idle=5,
                keepalives_interval=2,
                keepalives_count=3,
                tcp_user_timeout=10_000,
            )
        return self._conn

    def _rows(self, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
        with self._lock:
            cur = self._connect().execute(sql, args)
            return cur.fetchall() if cur.description else []

    def _count(self, sql: str, args: Any = None) -> int:
        with self._lock:
            return self._connect().execute(sql, args).rowcount

    def close(self) -> None:
        """Give up this gateway's lease, stations and claims at once (a clean stop), close."""
        with self._lock:
            conn = self._conn
            if conn is None or conn.closed:
                return
            if self.gateway is not None and not conn.broken:
                try:
                    with conn.transaction():
                        g = {"g": self.gateway, "t": time.time()}
                        conn.execute(
                            "UPDATE hj212_gateways SET until = now() - interval '1 ms' "
                            "WHERE id = %(g)s",
                            g,
                        )
                        conn.execute(
                            "UPDATE hj212_stations SET gateway = NULL, disconnected_at = %(t)s "
                            "WHERE gateway = %(g)s",
                            g,
                        )
                        conn.execute(
                            "UPDATE hj212_commands SET claimed_by = NULL WHERE claimed_by = %(g)s "
                            f"AND status IN {_OPEN_SQL}",
                            g,
                        )
                except psycopg.Error as e:
                    log.warning("HJ 212: could not give up this gateway's stations: %s", e)
            conn.close()

    # ---------------------------------------------------------------- commands
    def add(self, cmd: Command) -> bool:
        """Store a new command; False if its QN is already there (a redelivery)."""
        names = ", ".join(_COLUMNS)
        marks = ", ".join(f"%({c})s" for c in _COLUMNS)
        return (
            self._count(
                f"INSERT INTO hj212_commands ({names}) VALUES ({marks}) ON CONFLICT DO NOTHING",
                _row(cmd),
            )
            == 1
        )

    def save(self, cmd: Command) -> bool:
        """Write a command's progress if it is still open and ours to write (claimed by this
        gateway, or nobody's: an expiry); False when another gateway holds it now."""
        sets = ", ".join(f"{c} = %({c})s" for c in _COLUMNS if c != "qn")
        args = _row(cmd) | {"g": self.gateway}
        return (
            self._count(
                f"UPDATE hj212_commands c SET {sets} WHERE c.qn = %(qn)s "
                f"AND c.status IN {_OPEN_SQL} AND (c.claimed_by = %(g)s OR {_CLAIM_GONE})",
                args,
            )
            == 1
        )

    def get(self, qn: str) -> Command | None:
        """The command with this QN."""
        rows = self._rows(f"SELECT {_SELECT} FROM hj212_commands c WHERE c.qn = %s", (qn,))
        return _command(rows[0]) if rows else None

    def claimed_by(self, qn: str) -> tuple[str | None, str | None]:
        """(gateway, member) that claimed the command last."""
        rows = self._rows(
            "SELECT claimed_by, claimed_member FROM hj212_commands WHERE qn = %s", (qn,)
        )
        return (rows[0][0], rows[0][1]) if rows else (None, None)

    def find(
        self,
        mn: str | None = None,
        status: str | None = None,
        cn: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[Command]:
        """Commands, newest first, filtered by MN, status, CN and time of last change."""
        tail, args = find_clause("%s", "c.", mn, status, cn, since, limit)
        sql = f"SELECT {_SELECT} FROM hj212_commands c{tail}"
        return [_command(r) for r in self._rows(sql, args)]

    def open_commands(self, mn: str | None = None) -> list[Command]:
        """Commands still waiting for their station, oldest first."""
        sql = f"SELECT {_SELECT} FROM hj212_commands c WHERE c.status IN {_OPEN_SQL}"
        args: list[Any] = []
        if mn is not None:
            sql += " AND c.mn = %s"
            args.append(mn)
        sql += " ORDER BY c.created, c.qn"
        return [_command(r) for r in self._rows(sql, args)]

    def claim(self, mn: str) -> Command | None:
        """Claim the station's oldest open command for this gateway, to send it next.

        None when it has none, when this gateway does not hold the station (another host's
        connection is newer), or when another live gateway holding the station claimed it:
        the row lock makes one of two racing gateways win, the other gets None."""
        if self.gateway is None:
            return None
        rows = self._rows(
            "UPDATE hj212_commands c SET claimed_by = %(g)s, claimed_member = %(m)s "
            "WHERE c.qn = (SELECT qn FROM hj212_commands WHERE mn = %(mn)s "
            f"AND status IN {_OPEN_SQL} ORDER BY created, qn LIMIT 1 FOR UPDATE) "
            f"AND (c.claimed_by = %(g)s OR {_CLAIM_GONE}) "
            "AND EXISTS (SELECT 1 FROM hj212_stations s WHERE s.mn = %(mn)s "
            f"AND s.gateway = %(g)s) RETURNING {_SELECT}",
            {"g": self.gateway, "m": self.member, "mn": mn},
        )
        return _command(rows[0]) if rows else None

    def waiting(self, mns: Collection[str]) -> set[str]:
        """Stations among ``mns`` with open commands nobody else may be sending."""
        if not mns:
            return set()
        rows = self._rows(
            f"SELECT DISTINCT c.mn FROM hj212_commands c WHERE c.status IN {_OPEN_SQL} "
            f"AND c.mn = ANY(%(mns)s) AND (c.claimed_by = %(g)s OR {_CLAIM_GONE})",
            {"mns": list(mns), "g": self.gateway},
        )
        return {r[0] for r in rows}

    # ---------------------------------------------------------------- passwords
    def set_pw(self, mn: str, pw: str) -> None:
        """A station confirmed a new access password (1072): every gateway takes it."""
        self._count(
            "INSERT INTO hj212_station_pw (mn, pw, updated) VALUES (%s, %s, %s) "
            "ON CONFLICT (mn) DO UPDATE SET pw = excluded.pw, updated = excluded.updated",
            (mn, pw, time.time()),
        )

    def passwords(self) -> dict[str, str]:
        """Passwords stations confirmed by 1072, by MN (they win over the registry's)."""
        return {r[0]: r[1] for r in self._rows("SELECT mn, pw FROM hj212_station_pw")}

    # ---------------------------------------------------------------- station state
    def renew(self) -> None:
        """Extend this gateway's lease (its stations show as connected, its claims count)."""
        if self.gateway is None:
            return
        self._count(
            "INSERT INTO hj212_gateways (id, member, until) VALUES (%(g)s, %(m)s, "
            "now() + make_interval(secs => %(f)s)) ON CONFLICT (id) DO UPDATE "
            "SET until = excluded.until",
            {"g": self.gateway, "m": self.member, "f": self.cfg.failover_s},
        )

    def hold(self, mn: str, peer: str, edition: str) -> None:
        """This gateway has the station's connection now (the newest connection wins)."""
        if self.gateway is None:
            return
        now = time.time()
        self._count(
            "INSERT INTO hj212_stations (mn, gateway, member, peer, connected_at, last_seen, "
            "edition, last_packet) VALUES (%(mn)s, %(g)s, %(m)s, %(p)s, %(t)s, %(t)s, %(e)s, "
            "%(t)s) ON CONFLICT (mn) DO UPDATE SET gateway = excluded.gateway, "
            "member = excluded.member, peer = excluded.peer, connected_at = excluded.connected_at, "
            "last_seen = excluded.last_seen, edition = excluded.edition, "
            "last_packet = excluded.last_packet",
            {"mn": mn, "g": self.gateway, "m": self.member, "p": peer, "t": now, "e": edition},
        )
        self._published.pop(mn, None)

    def let_go(self, mn: str) -> None:
        """The station's connection here closed: it is nobody's until it connects again, and
        its open commands claimed here are free for the gateway it connects to next."""
        if self.gateway is None:
            return
        with self._lock:
            conn = self._connect()
            with conn.transaction():
                args = {"mn": mn, "g": self.gateway, "t": time.time()}
                conn.execute(
                    "UPDATE hj212_stations SET gateway = NULL, disconnected_at = %(t)s "
                    "WHERE mn = %(mn)s AND gateway = %(g)s",
                    args,
                )
                conn.execute(
                    "UPDATE hj212_commands SET claimed_by = NULL WHERE mn = %(mn)s "
                    f"AND claimed_by = %(g)s AND status IN {_OPEN_SQL}",
                    args,
                )
        self._published.pop(mn, None)

    def holds(self, mn: str) -> bool:
        """Whether this gateway still holds the station (no newer connection elsewhere)."""
        rows = self._rows(
            "SELECT 1 FROM hj212_stations WHERE mn = %s AND gateway = %s", (mn, self.gateway)
        )
        return bool(rows)

    def publish(self, states: Iterable[StationState]) -> None:
        """Write the state of stations held here that changed since the last call (the
        dispatcher calls it every ``cluster.renew``, not per packet)."""
        if self.gateway is None:
            return
        rows = []
        for s in states:
            key = (
                s.edition, s.last_packet, s.packets, s.last_command, s.last_result,
                s.clock_offset_s, s.gaps,
            )  # fmt: skip
            if self._published.get(s.mn) == key:
                continue
            rows.append((s.mn, key))
        if not rows:
            return
        now = time.time()
        with self._lock:
            conn = self._connect()
            with conn.cursor() as cur:
                cur.executemany(
                    "UPDATE hj212_stations SET last_seen = %s, edition = %s, last_packet = %s, "
                    "packets = %s, last_command = %s, last_result = %s, clock_offset_s = %s, "
                    "gaps = %s WHERE mn = %s AND gateway = %s",
                    [(now, *key, mn, self.gateway) for mn, key in rows],
                )
        self._published.update(rows)

    def stations(self) -> list[SharedStation]:
        """Every station any gateway has seen, as the API on any host shows it."""
        rows = self._rows(
            "SELECT s.mn, (s.gateway IS NOT NULL AND g.until IS NOT NULL AND g.until >= now()), "
            "s.member, s.peer, s.connected_at, s.last_seen, s.edition, s.last_packet, s.packets, "
            "s.last_command, s.last_result, s.clock_offset_s, s.gaps FROM hj212_stations s "
            "LEFT JOIN hj212_gateways g ON g.id = s.gateway ORDER BY s.mn"
        )
        return [SharedStation(*r) for r in rows]
