"""One leader among several processes: a named lease in PostgreSQL (the alert engine's).

The holder renews the lease every ``cluster.renew``; the others try to take it every
``cluster.renew`` and get it once it has run out (``cluster.failover`` after the leader's last
renewal). A leader that cannot renew for ``failover - renew`` steps down on its own, before
anyone else may take over, so two leaders never act at once while the clocks of the database
and of the hosts run at the same rate.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

import psycopg

SCHEMA = """
CREATE TABLE IF NOT EXISTS envgrid_leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    token TEXT NOT NULL,
    until TIMESTAMPTZ NOT NULL
);
"""


class Lease:
    """A named lease held by at most one process (this one, when :meth:`acquire` says so)."""

    def __init__(self, conn: psycopg.AsyncConnection, name: str, holder: str, failover: timedelta):
        self.conn = conn
        self.name = name
        self.holder = holder
        self.token = secrets.token_hex(8)
        self.failover = failover

    @classmethod
    async def connect(cls, url: str, name: str, holder: str, failover: timedelta) -> Lease:
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True, connect_timeout=10)
        try:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext('envgrid_schema'))")
                await conn.execute(SCHEMA)
        except BaseException:
            await conn.close()
            raise
        return cls(conn, name, holder, failover)

    async def acquire(self) -> bool:
        """Take the lease if it is free or ours; extend it if ours. Whether we hold it."""
        cur = await self.conn.execute(
            "INSERT INTO envgrid_leases AS l (name, holder, token, until) "
            "VALUES (%(n)s, %(h)s, %(t)s, now() + %(f)s) ON CONFLICT (name) DO UPDATE "
            "SET holder = excluded.holder, token = excluded.token, until = excluded.until "
            "WHERE l.until < now() OR l.token = excluded.token RETURNING 1",
            {"n": self.name, "h": self.holder, "t": self.token, "f": self.failover},
        )
        return await cur.fetchone() is not None

    async def current(self) -> str | None:
        """Who holds the lease now (None: nobody)."""
        cur = await self.conn.execute(
            "SELECT holder FROM envgrid_leases WHERE name = %s AND until >= now()", (self.name,)
        )
        row = await cur.fetchone()
        return None if row is None else str(row[0])

    async def release(self) -> None:
        """Give the lease up now (a clean stop): a standby takes over at its next try."""
        await self.conn.execute(
            "UPDATE envgrid_leases SET until = now() - interval '1 ms' "
            "WHERE name = %s AND token = %s",
            (self.name, self.token),
        )

    async def close(self) -> None:
        await self.conn.close()
