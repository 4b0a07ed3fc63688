"""One leader among several processes: a named lease in PostgreSQL (the alert engine's, the
rollups').

The holder renews the lease every ``cluster.renew``; the others try to take it every
``cluster.renew`` and get it once it has run out (``cluster.failover`` after the leader's last
renewal). A leader that cannot renew for ``failover - renew`` steps down on its own, before
anyone else may take over, so two leaders never act at once while the clocks of the database
and of the hosts run at the same rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

import psycopg

log = logging.getLogger("envgrid.cluster")

SCHEMA = """
CREATE TABLE IF NOT EXISTS envgrid_leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    token TEXT NOT NULL,
    until TIMESTAMPTZ NOT NULL
);
"""


async def connect(url: str, failover: timedelta) -> psycopg.AsyncConnection:
    """An autocommit connection whose calls fail, instead of hanging, once the network is cut:
    the kernel gives up on unacknowledged data after a third of ``failover``
    (``tcp_user_timeout``), so a lease holder's next call errors and it reconnects."""
    third = failover / 3
    return await psycopg.AsyncConnection.connect(
        url,
        autocommit=True,
        connect_timeout=max(2, min(10, int(third.total_seconds()))),  # libpq's floor is 2 s
        tcp_user_timeout=max(1, int(third.total_seconds() * 1000)),
    )


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
        conn = await connect(url, failover)
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


class Elected:
    """Run a job on one process of the cluster at a time: the holder of lease ``name``.

    Every process runs :meth:`run`; the one holding the lease runs the job, the others stand by
    and try every ``renew``. Leading ends at ``failover - renew`` after the start of the last
    renewal that succeeded, measured here, not when a call to the database fails: a cut cable
    makes calls hang rather than fail, and the job must stop before anyone else may start it.
    A clean stop releases the lease (a standby takes over at its next try); a cancelled
    :meth:`run` (the process dying) leaves it to run out.
    """

    def __init__(
        self, url: Callable[[], str], name: str, holder: str, failover: timedelta, renew: timedelta
    ) -> None:
        self.url = url
        self.name = name
        self.holder = holder
        self.failover = failover
        self.renew = renew.total_seconds()
        self.token = secrets.token_hex(8)  # one per process: a restart is someone else
        self.leading = False
        self.terms = 0  # times this process became the leader
        self._valid_until = 0.0  # monotonic: we may act until then
        self._changed = asyncio.Event()  # the renewer learned something
        self._lease: Lease | None = None

    async def run(self, stop: asyncio.Event, job: Callable[[], Awaitable[None]]) -> None:
        """Until ``stop``: run ``job()`` while holding the lease; cancel it on losing the lease.
        ``job`` should return soon once ``stop`` is set (it is awaited, not cancelled, then)."""
        renewer = asyncio.create_task(self._renew_loop(stop), name=f"lease {self.name}")
        work: asyncio.Future[None] | None = None
        try:
            while not stop.is_set():
                left = self._valid_until - time.monotonic()
                if left > 0 and work is None:
                    self.leading, self.terms = True, self.terms + 1
                    log.warning("%s: this process leads (member %s)", self.name, self.holder)
                    work = asyncio.ensure_future(job())
                    work.add_done_callback(self._ended)
                elif left <= 0 and work is not None:
                    log.error("%s: lease not renewed in time: standing by", self.name)
                    await _cancel(work)
                    work, self.leading = None, False
                self._changed.clear()
                wait = min(self.renew, left) if left > 0 else self.renew
                await _first(stop.wait(), self._changed.wait(), timeout=max(0.01, wait))
            if work is not None:
                await asyncio.gather(work, return_exceptions=True)  # it returns: stop is set
                work = None
            await _cancel(renewer)
            if self.leading and self._lease is not None:
                with contextlib.suppress(psycopg.Error, OSError, TimeoutError):
                    await asyncio.wait_for(self._lease.release(), self.renew)
        finally:
            self.leading = False
            if work is not None:
                await _cancel(work)
            await _cancel(renewer)
            if self._lease is not None:
                with contextlib.suppress(Exception):
                    await self._lease.close()
                self._lease = None

    def _ended(self, task: asyncio.Future[None]) -> None:
        if not task.cancelled() and (e := task.exception()) is not None:
            log.error("%s: the job failed: %r (again when this process next leads)", self.name, e)

    async def _renew_loop(self, stop: asyncio.Event) -> None:
        margin = self.failover.total_seconds() - self.renew
        while not stop.is_set():
            sent = time.monotonic()
            try:
                if self._lease is None:
                    self._lease = await Lease.connect(
                        self.url(), self.name, self.holder, self.failover
                    )
                    self._lease.token = self.token
                if await self._lease.acquire():
                    # The database stamped the lease after ``sent``: it runs to at least
                    # sent + failover; keep one renew period of it as the margin.
                    self._valid_until = sent + margin
                else:
                    self._valid_until = 0.0
                self._changed.set()
            except Exception as e:
                # Keep trying whatever failed: a renewer that ended would leave the lease
                # unheld by this process for good, silently.
                if isinstance(e, psycopg.Error | OSError):
                    log.warning("%s: cluster database: %s", self.name, _first_line(e))
                else:
                    log.exception("%s: lease renewal failed", self.name)
                if self._lease is not None:
                    with contextlib.suppress(Exception):
                        await self._lease.close()
                    self._lease = None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, sent + self.renew - time.monotonic()))


async def _cancel(task: asyncio.Future[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _first(*aws: Awaitable[object], timeout: float) -> None:
    """Wait until the first of ``aws`` completes, or ``timeout``; cancel the rest."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]
