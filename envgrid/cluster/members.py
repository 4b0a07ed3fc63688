"""Member leases in PostgreSQL: who runs, and who holds each member's MQTT sessions.

One row per member. ``lease_until`` says the member is alive; ``holder`` says which process may
connect with the member's worker client ids: the member itself, a survivor that adopted them,
or nobody. Every change is one conditional UPDATE, so PostgreSQL's row lock decides every race
(a returning member against an adopter, two adopters against each other) and two processes
never hold one session. Times are the database's ``now()``: hosts' clocks do not matter.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta

import psycopg

from envgrid.cluster.leader import connect

log = logging.getLogger("envgrid.cluster")

SCHEMA = """
CREATE TABLE IF NOT EXISTS envgrid_members (
    member_id TEXT PRIMARY KEY,
    token TEXT NOT NULL,
    epoch BIGINT NOT NULL DEFAULT 1,
    workers INTEGER NOT NULL,
    lease_until TIMESTAMPTZ NOT NULL,
    holder TEXT,
    holder_token TEXT,
    holder_until TIMESTAMPTZ,
    drained_epoch BIGINT NOT NULL DEFAULT 0
);
"""


def client_base(mqtt_client_id: str, member: str) -> str:
    """The client id base of a member's workers (``<base>-w<i>`` each)."""
    return f"{mqtt_client_id or 'envgrid'}-{member}"


@dataclass(frozen=True, slots=True)
class Orphan:
    """A member whose lease ran out and whose sessions nobody drained yet."""

    member_id: str
    epoch: int
    workers: int


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a member's sessions, and for how much longer (seconds)."""

    holder: str | None
    remaining_s: float


class Members:
    """This process's view of the member table (one connection, autocommit)."""

    def __init__(self, conn: psycopg.AsyncConnection, member: str, failover: timedelta) -> None:
        self.conn = conn
        self.member = member
        self.token = secrets.token_hex(8)  # this incarnation: a restart is someone else
        self.failover = failover
        self.epoch = 0

    @classmethod
    async def connect(cls, url: str, member: str, failover: timedelta) -> Members:
        """Connect and create the table if needed; psycopg.OperationalError when unreachable."""
        conn = await connect(url, failover)
        try:
            async with conn.transaction():
                # Hosts starting together would race on CREATE TABLE IF NOT EXISTS.
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext('envgrid_schema'))")
                await conn.execute(SCHEMA)
        except BaseException:
            await conn.close()
            raise
        return cls(conn, member, failover)

    async def close(self) -> None:
        await self.conn.close()

    async def join(self, workers: int) -> bool:
        """Take our own lease and sessions; False while someone else holds them (an adopter
        still draining, or an earlier run of ours whose lease has not run out)."""
        cur = await self.conn.execute(
            "INSERT INTO envgrid_members AS m (member_id, token, workers, lease_until, holder, "
            "holder_token, holder_until) VALUES (%(m)s, %(t)s, %(w)s, now() + %(f)s, %(m)s, "
            "%(t)s, now() + %(f)s) ON CONFLICT (member_id) DO UPDATE SET token = excluded.token, "
            "epoch = m.epoch + 1, workers = excluded.workers, lease_until = excluded.lease_until, "
            "holder = excluded.holder, holder_token = excluded.holder_token, "
            "holder_until = excluded.holder_until "
            "WHERE (m.holder IS NULL OR m.holder_until < now()) "
            "AND (m.lease_until < now() OR m.holder IS NULL) RETURNING epoch",
            {"m": self.member, "t": self.token, "w": workers, "f": self.failover},
        )
        row = await cur.fetchone()
        if row is None:
            return False
        self.epoch = int(row[0])
        return True

    async def holder(self, member: str) -> Holder:
        """Who holds ``member``'s sessions now."""
        cur = await self.conn.execute(
            "SELECT CASE WHEN holder_until >= now() THEN holder END, "
            "GREATEST(0, EXTRACT(EPOCH FROM holder_until - now())) "
            "FROM envgrid_members WHERE member_id = %s",
            (member,),
        )
        row = await cur.fetchone()
        return Holder(None, 0.0) if row is None else Holder(row[0], float(row[1] or 0))

    async def renew(self) -> tuple[bool, list[str]]:
        """Extend our lease and our holds: (whether we still hold our own sessions, the
        members whose sessions we still hold for draining)."""
        cur = await self.conn.execute(
            "UPDATE envgrid_members SET holder_until = now() + %(f)s, "
            "lease_until = CASE WHEN member_id = %(m)s THEN now() + %(f)s ELSE lease_until END "
            "WHERE holder = %(m)s AND holder_token = %(t)s AND holder_until >= now() "
            "RETURNING member_id",
            {"m": self.member, "t": self.token, "f": self.failover},
        )
        held = [r[0] for r in await cur.fetchall()]
        return self.member in held, [m for m in held if m != self.member]

    async def leave(self) -> None:
        """Give up our lease now (a clean stop): survivors drain our sessions at once."""
        await self.conn.execute(
            "UPDATE envgrid_members SET lease_until = now(), holder = NULL, holder_token = NULL, "
            "holder_until = NULL WHERE member_id = %s AND holder_token = %s",
            (self.member, self.token),
        )

    async def orphans(self) -> list[Orphan]:
        """Members whose lease ran out, with sessions nobody holds or drained."""
        cur = await self.conn.execute(
            "SELECT member_id, epoch, workers FROM envgrid_members WHERE member_id != %s "
            "AND lease_until < now() AND drained_epoch < epoch "
            "AND (holder IS NULL OR holder_until < now()) ORDER BY member_id",
            (self.member,),
        )
        return [Orphan(r[0], int(r[1]), int(r[2])) for r in await cur.fetchall()]

    async def adopt(self, orphan: Orphan) -> bool:
        """Claim an orphan's sessions (one survivor wins); whether we did."""
        cur = await self.conn.execute(
            "UPDATE envgrid_members SET holder = %(m)s, holder_token = %(t)s, "
            "holder_until = now() + %(f)s WHERE member_id = %(o)s AND epoch = %(e)s "
            "AND lease_until < now() AND drained_epoch < epoch "
            "AND (holder IS NULL OR holder_until < now()) RETURNING 1",
            {
                "m": self.member,
                "t": self.token,
                "f": self.failover,
                "o": orphan.member_id,
                "e": orphan.epoch,
            },
        )
        return await cur.fetchone() is not None

    async def release(self, orphan: Orphan) -> bool:
        """The orphan's sessions are drained and ended: free its ids for its return."""
        cur = await self.conn.execute(
            "UPDATE envgrid_members SET holder = NULL, holder_token = NULL, holder_until = NULL, "
            "drained_epoch = %(e)s WHERE member_id = %(o)s AND holder = %(m)s "
            "AND holder_token = %(t)s RETURNING 1",
            {"m": self.member, "t": self.token, "o": orphan.member_id, "e": orphan.epoch},
        )
        return await cur.fetchone() is not None
