"""HJ 212 gateways on two hosts behind a (simulated) TCP load balancer (issue 21).

Hosts a and b each run ``envgrid run`` with an HJ 212 port and the same cluster database, in
network namespaces of their own; broker, InfluxDB and PostgreSQL stay in the test's namespace
(reached through relays). A simulated data logger connects to a. A command posted to b's API
reaches it through a (stored in PostgreSQL, nudged over MQTT, claimed by a), and its answer is
visible from b. Then a is killed whole (cable cut, SIGKILL) with a command in flight: b shows
the station as not connected once a's lease has run out; a command posted meanwhile waits in
PostgreSQL; the logger reconnects, now to b (what the load balancer does when a fails its
health check): b sends the one in flight again (same QN), then the waiting one exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from devices.registry import load_registry
from envgrid.app import DEFAULT_REGISTRY
from envgrid.localstack import LocalInfluxDB, LocalMosquitto
from envgrid.ports import free_port
from hj212.intake import load_stations
from hj212.station import DataLogger, LoggerState
from tests.cluster_support import NetHost, forward, netns_unavailable, pg_url, postgres
from tests.hj212_support import rtd_factors
from tests.integration.test_hj212_gateway import AIR
from tests.service_proc import ENVGRID, Service

__all__ = ["pg_url", "postgres"]  # fixtures

TOKEN = "cluster-hj212-token"


class GatewayHost(Service):
    """``envgrid run`` with an HJ 212 port, in a network namespace when ``net`` is given."""

    def __init__(
        self, tmp: Path, broker: LocalMosquitto, influx: str, db: str, net: NetHost | None,
        **env: str,
    ) -> None:  # fmt: skip
        tmp.mkdir(parents=True, exist_ok=True)
        super().__init__(tmp, broker, influx, db, **env)
        self.net = net
        self.address = net.inside if net is not None else "127.0.0.1"
        self.hj212_port = free_port()
        self.env["ENVGRID_HTTP__HOST"] = self.address
        self.env["ENVGRID_HJ212__HOST"] = self.address
        self.env["ENVGRID_HJ212__PORT"] = str(self.hj212_port)
        self.http = httpx.AsyncClient(
            base_url=f"http://{self.address}:{self.port}",
            trust_env=False,
            headers={"Authorization": f"Bearer {TOKEN}"},
        )

    def start(self) -> None:
        prefix = self.net.prefix if self.net is not None else []
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [*prefix, ENVGRID, "run"],
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill_host(self) -> None:
        """Cut the host's cable, then SIGKILL every process of it."""
        assert self.proc is not None
        if self.net is not None:
            self.net.cut()
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    async def station(self, mn: str) -> dict[str, Any]:
        r = await self.http.get("/api/hj212/stations", timeout=5)
        assert r.status_code == 200, r.text
        return next(s for s in r.json() if s["mn"] == mn)

    async def command(self, qn: str, mn: str) -> dict[str, Any]:
        r = await self.http.get("/api/hj212/commands", params={"mn": mn}, timeout=5)
        assert r.status_code == 200, r.text
        return next(c for c in r.json() if c["qn"] == qn)

    async def post(self, mn: str, cn: str) -> dict[str, Any]:
        r = await self.http.post("/api/hj212/commands", json={"mn": mn, "cn": cn}, timeout=10)
        assert r.status_code == 201, r.text
        body: dict[str, Any] = r.json()
        return body


async def _connect(state: LoggerState, host: GatewayHost) -> DataLogger:
    """Connect the logger (retrying while the gateway starts) and send one real-time packet."""
    logger = DataLogger(state)
    deadline = time.monotonic() + 20
    while True:
        try:
            await logger.connect(host.address, host.hj212_port)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.3)
    await logger.upload("2011", state.now(), rtd_factors(AIR))
    return logger


def _sent(state: LoggerState, qn: str) -> int:
    """How many times the logger received the request with this QN."""
    return sum(1 for p in state.requests if p.qn == qn)


@pytest.mark.slow
async def test_commands_reach_the_station_wherever_it_is_connected(
    fresh_mosquitto: LocalMosquitto,
    influxdb: LocalInfluxDB,
    influx_db: str,
    pg_url: str,
    tmp_path: Path,
) -> None:
    why_not = netns_unavailable()
    nets = [] if why_not else [NetHost(11), NetHost(12)]
    print(f"hosts: {'network namespaces' if nets else f'process groups on loopback ({why_not})'}")
    relays: list[asyncio.Server] = []
    hosts: list[GatewayHost] = []
    pg_port = int(pg_url.rsplit(":", 1)[1].split("/", 1)[0])
    stations = load_stations(load_registry(DEFAULT_REGISTRY), "Asia/Shanghai")
    station = next(s for s in stations.values() if s.kind == "air")
    mn = station.mn
    try:
        for i, member in enumerate(("a", "b")):
            env = {
                "cluster__database": pg_url,
                "cluster__member_id": member,
                "cluster__failover": "4s",
                "cluster__renew": "1s",
                "alerts__enabled": "false",
                "mqtt__client_id": f"envgrid-{member}",
                "http__token": TOKEN,
                "hj212__backfill": "false",
            }
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
            hosts.append(
                GatewayHost(tmp_path / member, fresh_mosquitto, influxdb.url, influx_db, net, **env)
            )
        a, b = hosts
        a.start()
        b.start()
        await a.ready(40)
        await b.ready(40)

        # The load balancer sends the station to a.
        state = LoggerState(station)
        logger = await _connect(state, a)
        await b.until(lambda: logger.replies, 10, "the gateway on a replied to the logger's packet")

        async def held_by(member: str | None) -> bool:
            s = await b.station(mn)
            return bool(s["online"]) if member is None else s["member"] == member

        await b.until(lambda: held_by("a"), 10, "b's API shows the station connected to a")

        # A command posted to b's API reaches the station through a; b sees its outcome.
        first = await b.post(mn, "1061")
        assert first["status"] == "queued"

        async def finished(qn: str) -> bool:
            return (await b.command(qn, mn))["status"] == "succeeded"

        await b.until(lambda: finished(first["qn"]), 15, "the first command succeeded")
        done = await b.command(first["qn"], mn)
        assert done["result"] == {"RtdInterval": "30"}
        assert _sent(state, first["qn"]) == 1
        # The CLI on any host queues into the same store and follows the outcome there.
        cli = await asyncio.to_thread(b.cli, "hj212", "command", mn, "1063", "--wait", "20")
        assert cli.returncode == 0 and " succeeded " in cli.stdout, cli.stdout + cli.stderr
        by_cli = cli.stdout.split()[0]

        # A command in flight on a when it dies: sent, the logger has not answered yet.
        state.ignore = 1000
        flying = await b.post(mn, "1011")

        async def sent(qn: str) -> bool:
            return (await b.command(qn, mn))["status"] == "sent"

        await b.until(lambda: sent(flying["qn"]), 10, "a sent the third command")

        # Host a dies whole; the station's connection to it is left half-open.
        a.kill_host()
        killed = time.monotonic()

        async def offline() -> bool:
            return not (await b.station(mn))["online"]

        await b.until(offline, 15, "b shows the station not connected once a's lease ran out")
        print(f"station shown not connected {time.monotonic() - killed:.1f} s after the kill")
        second = await b.post(mn, "1063")  # while the station is connected nowhere
        await asyncio.sleep(1.5)  # gateways look at the store every cluster.renew: still waits
        assert (await b.command(second["qn"], mn))["status"] == "queued"

        # The load balancer sends the station's next connection to b; the logger answers again.
        await logger.close()
        state.ignore = 0
        sent_by_a = _sent(state, flying["qn"])
        logger = await _connect(state, b)
        await b.until(lambda: finished(second["qn"]), 15, "the waiting command succeeded")
        # The one in flight went out again first (oldest first, same QN), now from b.
        assert (await b.command(flying["qn"], mn))["status"] == "succeeded"
        assert _sent(state, flying["qn"]) == sent_by_a + 1
        assert (await b.command(second["qn"], mn))["result"] == {"MinInterval": "10"}
        await b.until(lambda: held_by("b"), 10, "b's API shows the station connected to b")
        await asyncio.sleep(1.5)  # a second send would come within a share tick
        assert _sent(state, second["qn"]) == 1
        assert _sent(state, first["qn"]) == 1
        with psycopg.connect(pg_url) as c:
            rows = c.execute("SELECT qn, claimed_member FROM hj212_commands").fetchall()
        claimed: dict[str, str] = {str(r[0]): str(r[1]) for r in rows}
        # Each was sent by the gateway holding the station at the time.
        assert claimed == {first["qn"]: "a", by_cli: "a", flying["qn"]: "b", second["qn"]: "b"}
        await logger.close()
        code, _ = await b.terminate(30)
        assert code == 0, b.tail()
    finally:
        for h in hosts:
            if h.running():
                assert h.proc is not None
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(h.proc.pid, signal.SIGKILL)
                h.proc.wait(10)
            await h.close()
        for r in relays:
            r.close()
        for net in nets:
            net.remove()
