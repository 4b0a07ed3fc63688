"""This host as a cluster member, inside the ``--workers`` supervisor.

Before the ingest workers start, the member takes its own lease (waiting while an adopter
still drains its sessions, so two processes never hold one session). Then, every
``cluster.renew``:

- it renews its lease and the holds of sessions it is draining; a member that cannot renew for
  ``failover - renew`` (cut off from the database) kills its own ingest workers before anyone
  may adopt their sessions (nothing acknowledged is lost: acks follow durability, and what was
  not acked is redelivered to whoever holds the session next). A watchdog counts that time
  from the start of the last renewal that succeeded: behind a cut cable a call to the
  database hangs rather than fails, so the fence cannot wait for an error;
- it looks for members whose lease ran out and claims one (a conditional UPDATE: one survivor
  wins), then runs one ``envgrid.cluster.adopt`` process per dead worker, renews the hold
  while they drain, and releases the ids once every one exited 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from envgrid.cluster.members import Members, Orphan, client_base
from envgrid.settings import Settings

log = logging.getLogger("envgrid.cluster")


@dataclass
class Adoption:
    """One dead member's sessions being drained here."""

    orphan: Orphan
    procs: dict[int, asyncio.subprocess.Process] = field(default_factory=dict)
    done: set[int] = field(default_factory=set)


class ClusterMember:
    """Lease, fencing and adoption for one supervisor."""

    def __init__(
        self,
        settings: Settings,
        workers: int,
        group: str,
        config: Path | None,
        log_level: str,
        preexec: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.c = settings.cluster
        self.workers = workers
        self.group = group
        self.config = config
        self.log_level = log_level
        self.preexec = preexec
        self.member = self.c.member()
        self.members: Members | None = None
        self.adoptions: dict[str, Adoption] = {}
        self.adopted_total = 0  # sessions drained here since start
        self.fenced = asyncio.Event()  # set when we lost our own lease: the workers must go
        self.joined = asyncio.Event()  # set while we hold our own sessions
        self._last_renew = time.monotonic()

    def client_id_base(self) -> str:
        """The MQTT client id base of this member's workers."""
        return client_base(self.settings.mqtt.client_id, self.member)

    async def _connect(self) -> Members:
        while True:
            try:
                return await Members.connect(self.c.database_url(), self.member, self.c.failover)
            except psycopg.Error as e:
                log.warning("cluster database unusable (%s): retrying", _first_line(e))
                await asyncio.sleep(self.c.renew.total_seconds())

    async def join(self, stopping: asyncio.Event) -> bool:
        """Wait until this member holds its own sessions; False if stopped meanwhile."""
        if self.members is None:
            self.members = await self._connect()
        waited = False
        while not stopping.is_set():
            try:
                sent = time.monotonic()
                if await self.members.join(self.workers):
                    self._last_renew = sent
                    self.fenced.clear()
                    self.joined.set()
                    log.info(
                        "cluster member %s joined (epoch %d); worker client ids %s-w<i>",
                        self.member,
                        self.members.epoch,
                        self.client_id_base(),
                    )
                    return True
                h = await self.members.holder(self.member)
                if not waited:
                    log.warning(
                        "member %s: our sessions are held by %s for up to %.0f s more "
                        "(draining, or an earlier run of ours): waiting",
                        self.member,
                        h.holder or "an earlier run",
                        h.remaining_s,
                    )
                    waited = True
            except psycopg.Error as e:
                log.warning("cluster database: %s", _first_line(e))
                self.members = await self._reconnect()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.c.renew.total_seconds())
        return False

    async def _reconnect(self) -> Members:
        old = self.members
        if old is not None:
            with contextlib.suppress(Exception):
                await old.close()
        fresh = await self._connect()
        if old is not None:
            fresh.token, fresh.epoch = old.token, old.epoch  # the same incarnation
        return fresh

    async def run(self, stopping: asyncio.Event) -> None:
        """Renew, fence and adopt until stopping."""
        watchdog = asyncio.create_task(self._watchdog(stopping))
        try:
            await self._renew_loop(stopping)
        finally:
            watchdog.cancel()
            await asyncio.gather(watchdog, return_exceptions=True)

    async def _watchdog(self, stopping: asyncio.Event) -> None:
        """Fence once no renewal succeeded for ``failover - renew``, even while a call hangs."""
        renew = self.c.renew.total_seconds()
        fence_after = (self.c.failover - self.c.renew).total_seconds()
        while not stopping.is_set():
            left = self._last_renew + fence_after - time.monotonic()
            if left <= 0 and not self.fenced.is_set():
                log.error(
                    "no lease renewal for %.0f s: stopping the ingest workers and drains "
                    "before another member may take their sessions",
                    fence_after,
                )
                self._fence()
                for name in list(self.adoptions):
                    self._kill(self.adoptions.pop(name))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), min(renew, left) if left > 0 else renew)

    async def _renew_loop(self, stopping: asyncio.Event) -> None:
        renew = self.c.renew.total_seconds()
        while not stopping.is_set():
            try:
                assert self.members is not None
                sent = time.monotonic()
                mine, held = await self.members.renew()
                if mine:
                    # The database stamped the lease after ``sent``: count from there.
                    self._last_renew = sent
                if not mine and not self.fenced.is_set():
                    log.error("member %s lost its lease: stopping its ingest workers", self.member)
                    self._fence()
                for name in list(self.adoptions):
                    if name not in held:
                        log.error("lost the hold on %s's sessions: stopping their drain", name)
                        self._kill(self.adoptions.pop(name))
                await self._reap()
                if not self.fenced.is_set():
                    for orphan in await self.members.orphans():
                        if await self.members.adopt(orphan):
                            await self._start_adoption(orphan)
            except psycopg.Error as e:
                log.warning("cluster database: %s", _first_line(e))
                with contextlib.suppress(Exception):
                    self.members = await asyncio.wait_for(self._reconnect(), renew)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), renew)

    def _fence(self) -> None:
        self.joined.clear()
        self.fenced.set()

    async def _start_adoption(self, orphan: Orphan) -> None:
        log.warning(
            "member %s is gone (lease expired): adopting its %d sessions",
            orphan.member_id,
            orphan.workers,
        )
        a = Adoption(orphan)
        self.adoptions[orphan.member_id] = a
        for i in range(orphan.workers):
            a.procs[i] = await self._spawn(orphan.member_id, i)

    async def _spawn(self, member: str, worker: int) -> asyncio.subprocess.Process:
        cmd = [sys.executable, "-m", "envgrid.cluster.adopt", "--member", member]
        cmd += ["--worker", str(worker), "--group", self.group, "--log-level", self.log_level]
        if self.config is not None:
            cmd += ["--config", str(self.config)]
        env = dict(os.environ)
        env["ENVGRID_ALERTS__ENABLED"] = "false"
        return await asyncio.create_subprocess_exec(
            *cmd, env=env, stdin=asyncio.subprocess.DEVNULL, preexec_fn=self.preexec
        )

    async def _reap(self) -> None:
        """Collect finished drains; release a member once all its sessions are drained."""
        assert self.members is not None
        for name, a in list(self.adoptions.items()):
            for i, proc in list(a.procs.items()):
                if proc.returncode is None:
                    continue
                if proc.returncode == 0:
                    a.done.add(i)
                    del a.procs[i]
                else:
                    log.warning("drain of %s-w%d exited with %d: again", name, i, proc.returncode)
                    a.procs[i] = await self._spawn(name, i)
            if len(a.done) == a.orphan.workers:
                if await self.members.release(a.orphan):
                    self.adopted_total += a.orphan.workers
                    log.info("member %s: all sessions drained and ended; ids released", name)
                del self.adoptions[name]

    def _kill(self, a: Adoption) -> None:
        for proc in a.procs.values():
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGKILL)

    async def leave(self) -> None:
        """Stop drains and give the lease up (the workers have stopped)."""
        for a in self.adoptions.values():
            for proc in a.procs.values():
                if proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.send_signal(signal.SIGTERM)
            await asyncio.gather(*(p.wait() for p in a.procs.values()), return_exceptions=True)
        if self.members is not None:
            with contextlib.suppress(psycopg.Error):
                await self.members.leave()
            await self.members.close()


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]
