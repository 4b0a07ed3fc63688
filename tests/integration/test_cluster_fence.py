"""A host that lives on behind a cut cable fences itself (issue 21).

Host a's cable to the broker, InfluxDB and PostgreSQL is cut, not its processes killed: its
supervisor can no longer renew its lease, and must kill its own ingest workers before host b
may adopt their sessions, so no two live processes ever hold one client id. The test watches
both hosts' processes and the lease table from outside, every 50 ms: a's workers are gone
before b claims a's ids, and a's workers and b's drain processes never run at once. Then the
cable is mended while b still drains: a waits for its ids, rejoins with fresh sessions, and
the broker sees no session of a taken over after that. Every reading is stored exactly once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from envgrid.localstack import LocalInfluxDB, LocalMosquitto
from tests.cluster_support import NetHost, netns_unavailable, pg_url, postgres, processes, wire
from tests.helpers import mqtt_client
from tests.service_proc import ENVGRID, Service, Stream, assert_exact, keys, readings, stored_total

__all__ = ["pg_url", "postgres"]  # fixtures

FAILOVER_S, RENEW_S = 4, 1


class Host(Service):
    """``envgrid run --workers 2`` in network namespace ``net``, in a process group of its own."""

    def __init__(self, tmp: Path, broker: LocalMosquitto, db: str, net: NetHost, **env: str):
        tmp.mkdir(parents=True, exist_ok=True)
        super().__init__(tmp, broker, "http://unused", db, **env)
        self.env["ENVGRID_MQTT__CLIENT_ID"] = "envgrid"  # workers: envgrid-<member>-w<i>
        self.env["ENVGRID_HTTP__HOST"] = net.inside
        self.http = httpx.AsyncClient(base_url=f"http://{net.inside}:{self.port}", trust_env=False)
        self.net = net

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [*self.net.prefix, ENVGRID, "run", "--workers", "2"],
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def workers(self) -> list[int]:
        assert self.proc is not None
        return processes(self.proc.pid, "--role ingest")

    def drains(self) -> list[int]:
        assert self.proc is not None
        return processes(self.proc.pid, "envgrid.cluster.adopt")


async def _holder(db: psycopg.AsyncConnection, member: str) -> str | None:
    cur = await db.execute(
        "SELECT CASE WHEN holder_until >= now() THEN holder END FROM envgrid_members "
        "WHERE member_id = %s",
        (member,),
    )
    row = await cur.fetchone()
    return None if row is None else row[0]


@pytest.mark.slow
async def test_a_host_behind_a_cut_cable_fences_itself_and_rejoins_without_a_fight(
    fresh_mosquitto: LocalMosquitto,
    influxdb: LocalInfluxDB,
    influx_db: str,
    pg_url: str,
    tmp_path: Path,
) -> None:
    why_not = netns_unavailable()
    if why_not:
        pytest.skip(f"a cable can be cut only between network namespaces: {why_not}")
    nets = [NetHost(3), NetHost(4)]
    relays: list[asyncio.Server] = []
    hosts: list[Host] = []
    db = await psycopg.AsyncConnection.connect(pg_url, autocommit=True)
    try:
        for net, member in zip(nets, ("a", "b"), strict=True):
            net.create()
            env = {
                "cluster__member_id": member,
                "cluster__failover": f"{FAILOVER_S}s",
                "cluster__renew": f"{RENEW_S}s",
                # b's drain lasts long enough for a to come back while it holds a's ids.
                "cluster__drain_quiet": "3s",
                "alerts__enabled": "false",
                "rollup__enabled": "false",
            }
            relays += await wire(net, env, pg_url, fresh_mosquitto.port, influxdb.port)
            hosts.append(Host(tmp_path / member, fresh_mosquitto, influx_db, net, **env))
        a, b = hosts
        a.start()
        b.start()
        await a.ready(40)
        await b.ready(40)
        assert len(a.workers()) == 2
        want = readings(3000, seed=31)
        async with mqtt_client(fresh_mosquitto, client_id="fence-pub") as pub:
            stream = Stream(pub, want, rate=600)
            await b.until(lambda: len(stream.acked) > 600, 30, "publishing under way")
            a.net.cut()
            cut = time.monotonic()
            gone: float | None = None  # a's workers all dead
            claimed: float | None = None  # b holds a's ids
            mended: float | None = None
            while True:
                a_workers, b_drains = a.workers(), b.drains()
                holder = await _holder(db, "a")
                now = time.monotonic() - cut
                assert not (a_workers and b_drains), (
                    f"{now:.2f} s: a's workers {a_workers} and b's drains {b_drains} at once\n"
                    + a.tail(60)
                )
                assert not (a_workers and holder == "b"), f"{now:.2f} s: b claimed a live a"
                if gone is None and not a_workers:
                    gone = now
                if claimed is None and holder == "b":
                    claimed = now
                    a.net.mend()  # a comes back while b drains its sessions
                    mended = now
                if holder is None and claimed is not None:
                    released = fresh_mosquitto.log_file.stat().st_size
                    break  # b released a's ids: from now on nobody else connects as a
                assert now < 40, f"no fence/adoption/release 40 s after the cut\n{a.tail(60)}"
                await asyncio.sleep(0.05)
            await stream.done(60)
        print(f"a fenced {gone:.1f} s after the cut; b claimed a's ids at {claimed:.1f} s")
        assert gone is not None and claimed is not None and mended is not None
        assert gone < claimed
        assert "stopping the ingest workers" in a.tail(400), a.tail(60)
        assert "member a is gone (lease expired): adopting its 2 sessions" in b.tail(400)

        # a waits for its ids, then rejoins with fresh sessions: nobody's session is taken over.
        await b.until(lambda: "held by b" in a.tail(400), 30, "a waited for its ids")
        await b.until(lambda: a.tail(400).count("cluster member a joined") == 2, 30, "a rejoins")
        await b.until(lambda: len(a.workers()) == 2, 30, "a's workers running again")
        await a.ready(40)  # connected to the broker again
        more = readings(1000, seed=32)
        async with mqtt_client(fresh_mosquitto, client_id="fence-pub2") as pub:
            await Stream(pub, more, rate=None).done(60)
        everything = keys(want) | keys(more)
        await b.until(
            lambda: stored_total(influxdb, influx_db) >= len(everything), 60, "all stored"
        )
        assert_exact(influxdb, influx_db, everything)
        with fresh_mosquitto.log_file.open("rb") as f:
            f.seek(released)
            after = f.read().decode(errors="replace")
        assert "envgrid-a-w" in after  # a's workers connected again…
        assert "already connected" not in after, after  # …without taking a session over
        assert "session taken over" not in a.tail(600) + b.tail(600)
        for h in (a, b):
            code, _ = await h.terminate(60)
            assert code == 0, h.tail()
    finally:
        await db.close()
        for h in hosts:
            if h.running():
                assert h.proc is not None
                os.killpg(h.proc.pid, signal.SIGKILL)
                h.proc.wait(10)
            await h.close()
        for r in relays:
            r.close()
        for net in nets:
            net.remove()
