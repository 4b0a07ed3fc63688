"""Two envgrid hosts share one stream; one is killed whole and stays down (issue 21).

Each host is a Linux network namespace joined by a veth cable (``envgrid run --workers 2`` in
it, with its own member id, spool folder and HTTP port); broker, InfluxDB and PostgreSQL stay
in the test's namespace, reached through a relay on the cable's far end. Killing a host cuts
its cable first, then SIGKILLs its whole process group: nothing it had open is closed towards
the broker, which keeps its half-open connections (until keepalive) as after a real power
loss. The survivor must adopt the dead member's sessions (its CONNECT takes them over): every
reading is stored exactly once within 60 s of the kill, without waiting for the dead host.

Where the kernel refuses network namespaces, the hosts are process groups on loopback instead
(the kill then closes their connections at once), and the test says so in its output.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from envgrid.localstack import LocalInfluxDB, LocalMosquitto
from tests.cluster_support import NetHost, forward, netns_unavailable, pg_url, postgres
from tests.helpers import mqtt_client
from tests.service_proc import (
    ENVGRID,
    Service,
    Stream,
    assert_exact,
    keys,
    readings,
    stored_total,
)

__all__ = ["pg_url", "postgres"]  # fixtures


class Host(Service):
    """One cluster member: ``envgrid run --workers 2`` in a process group of its own, inside
    a network namespace when ``net`` is given."""

    def __init__(
        self,
        tmp: Path,
        broker: LocalMosquitto,
        influx: str,
        db: str,
        net: NetHost | None = None,
        **env: str,
    ):
        tmp.mkdir(parents=True, exist_ok=True)
        super().__init__(tmp, broker, influx, db, **env)
        self.env["ENVGRID_MQTT__CLIENT_ID"] = "envgrid"  # workers: envgrid-<member>-w<i>
        self.net = net
        if net is not None:
            self.env["ENVGRID_HTTP__HOST"] = net.inside
            self.http = httpx.AsyncClient(
                base_url=f"http://{net.inside}:{self.port}", trust_env=False
            )

    def start(self) -> None:
        prefix = self.net.prefix if self.net is not None else []
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [*prefix, ENVGRID, "run", "--workers", "2"],
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill_host(self) -> None:
        """Cut the host's cable, then every process of the host at once (SIGKILL)."""
        assert self.proc is not None
        if self.net is not None:
            self.net.cut()
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


def _cluster_env(pg: str, member: str) -> dict[str, str]:
    return {
        "cluster__database": pg,
        "cluster__member_id": member,
        "cluster__failover": "6s",
        "cluster__renew": "1s",
        "alerts__enabled": "false",
    }


@pytest.mark.slow
async def test_a_host_killed_mid_stream_loses_nothing_and_rejoins(
    fresh_mosquitto: LocalMosquitto,
    influxdb: LocalInfluxDB,
    influx_db: str,
    pg_url: str,
    tmp_path: Path,
) -> None:
    why_not = netns_unavailable()
    nets = [] if why_not else [NetHost(1), NetHost(2)]
    relays: list[asyncio.Server] = []
    print(f"hosts: {'network namespaces' if nets else f'process groups on loopback ({why_not})'}")
    hosts = []
    pg_port = int(pg_url.rsplit(":", 1)[1].split("/", 1)[0])
    for i, member in enumerate(("a", "b")):
        env = _cluster_env(pg_url, member)
        net = nets[i] if nets else None
        if net is not None:
            net.create()
            ports = {}
            for name, target in (
                ("mqtt", fresh_mosquitto.port),
                ("influx", influxdb.port),
                ("pg", pg_port),
            ):
                relays.append(await forward(net.outside, 0, target))
                ports[name] = relays[-1].sockets[0].getsockname()[1]
            env["mqtt__url"] = f"mqtt://{net.outside}:{ports['mqtt']}"
            env["influx__url"] = f"http://{net.outside}:{ports['influx']}"
            env["cluster__database"] = pg_url.replace(
                f"127.0.0.1:{pg_port}", f"{net.outside}:{ports['pg']}"
            )
        hosts.append(Host(tmp_path / member, fresh_mosquitto, influxdb.url, influx_db, net, **env))
    a, b = hosts
    a.start()
    b.start()
    try:
        await a.ready(40)
        await b.ready(40)
        msgs = readings(20_000, seed=21)
        async with mqtt_client(fresh_mosquitto, client_id="cluster-pub") as pub:
            stream = Stream(pub, msgs, rate=2000)
            await a.until(lambda: len(stream.acked) > 5000, 30, "publishing under way")
            a.kill_host()
            killed_at = time.monotonic()
            await stream.done(60)
            want = keys(msgs)
            await b.until(
                lambda: stored_total(influxdb, influx_db) >= len(want),
                60 - (time.monotonic() - killed_at),
                f"{len(want)} readings stored within 60 s of the kill",
            )
        print(f"every reading stored {time.monotonic() - killed_at:.1f} s after the kill")
        assert_exact(influxdb, influx_db, want)
        log = b.tail(400)
        assert "member a is gone (lease expired): adopting its 2 sessions" in log, log
        await b.until(
            lambda: "member a: all sessions drained and ended; ids released" in b.tail(400),
            30,
            "a's sessions released",
        )

        # The dead host returns: its ids are free, it joins without a session fight and
        # takes its share of new readings.
        if a.net is not None:
            a.net.mend()
        a.start()
        await a.ready(40)
        assert "cluster member a joined" in a.tail(200)
        more = readings(2000, seed=22)
        async with mqtt_client(fresh_mosquitto, client_id="cluster-pub2") as pub:
            await Stream(pub, more, rate=None).done(60)
        await b.until(
            lambda: stored_total(influxdb, influx_db) >= len(want | keys(more)), 60, "rejoined"
        )
        assert_exact(influxdb, influx_db, want | keys(more))
        assert "session taken over" not in a.tail(400) + b.tail(400)
        code, _ = await a.terminate(60)
        assert code == 0, a.tail()
    finally:
        for h in (a, b):
            if h.running():
                assert h.proc is not None
                os.killpg(h.proc.pid, signal.SIGKILL)
                h.proc.wait(10)
            await h.close()
        for r in relays:
            r.close()
        for net in nets:
            net.remove()
