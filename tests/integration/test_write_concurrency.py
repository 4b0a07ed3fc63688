"""Concurrent InfluxDB writes (``ingest.write_concurrency``): acks still go in arrival order.

A loopback HTTP proxy in front of the real influxd holds the first /write until a later one
has been answered, so the second batch is durable before the first. MQTT wants PUBACKs in the
order the PUBLISHes came: the service must hold the second batch's acks until the first is
durable, and lose nothing.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from devices.kinds import KINDS
from envgrid.localstack import LocalInfluxDB, LocalMosquitto
from envgrid.simulator import SimMessage, publish_all
from ingest.mqtt import Message
from ingest.service import IngestService
from tests.helpers import make_settings, mqtt_client, running_service, stored_count, wait_for


class HoldFirstWrite:
    """Forwards to influxd; the first /write waits until a later /write was answered."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.later_answered = asyncio.Event()
        self.writes = 0
        self.in_flight = 0
        self.most_in_flight = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        write = request.path == "/write"
        first = False
        if write:
            self.writes += 1
            first = self.writes == 1
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if first:
                await asyncio.wait_for(self.later_answered.wait(), timeout=10)
            async with (
                aiohttp.ClientSession() as s,
                s.request(
                    request.method,
                    self.upstream + request.path_qs,
                    data=body,
                    headers={"Content-Type": request.headers.get("Content-Type", "")},
                ) as r,
            ):
                answer = web.Response(status=r.status, body=await r.read())
            if write and not first:
                self.later_answered.set()
            return answer
        finally:
            if write:
                self.in_flight -= 1


async def test_a_later_batch_durable_first_is_acked_after_the_earlier(
    mosquitto: LocalMosquitto,
    influxdb: LocalInfluxDB,
    influx_db: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy = HoldFirstWrite(influxdb.url)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]

    t0 = (int(time.time()) - 600) * 1000
    n = 60
    msgs = [
        SimMessage(f"envgrid/pv/PV-C{i:03d}", b'{"ts":%d,"ac_power_w":%d.0}' % (t0 + i, i))
        for i in range(n)
    ]
    received: list[int] = []  # packet ids in arrival order
    acked: list[int] = []  # packet ids in PUBACK order
    on_message = IngestService._on_message

    def seen(self: IngestService, m: Message) -> None:
        received.append(m.packet_id)
        on_message(self, m)

    # The client holds the bound handler from construction on: patch the class beforehand.
    monkeypatch.setattr(IngestService, "_on_message", seen)
    settings = make_settings(
        mosquitto,
        influxdb,
        influx_db,
        tmp_path,
        influx={"url": f"http://127.0.0.1:{port}"},
        ingest={"batch_size": 20, "write_concurrency": 3, "stats_interval": 3600},
    )
    try:
        async with running_service(settings) as service:
            ack_many = service.mqtt.ack_many

            def ack(items: list[tuple[int, int]]) -> int:
                acked.extend(p for p, _ in items)
                return ack_many(items)

            service.mqtt.ack_many = ack  # type: ignore[method-assign]
            async with mqtt_client(mosquitto, client_id="publisher-conc") as pub:
                await publish_all(pub, iter(msgs), window=n)
                await wait_for(lambda: service.stats.acked >= n, 20, "every message acked")
    finally:
        await runner.cleanup()

    assert proxy.most_in_flight >= 2, "the writes never overlapped"
    assert proxy.later_answered.is_set()
    assert len(received) == n and acked == received
    assert stored_count(influxdb, influx_db, [KINDS["pv"].measurement]) == n
