"""The HJ 212 gateway against hostile peers (issue 20), each reproduction of the audit as a test.

Real gateway, real mosquitto, real InfluxDB. The attacker connects from 127.0.0.1, the real
station from 127.0.0.2 (both loopback addresses on Linux), so per-source limits can tell them
apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry

from envgrid.localstack import LocalInfluxDB, LocalMosquitto
from ingest.mqtt import Message
from tests.helpers import make_settings, mqtt_client, wait_for
from tests.hj212_support import StationLink, local_now, packet, service_with_gateway
from tests.integration.test_hj212_gateway import AQ, WATER, WQ, rtd

STATION_ADDR = "127.0.0.2"


async def _station_link(port: int) -> StationLink:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(STATION_ADDR, 0))
    link = StationLink(reader, writer)
    link.task = asyncio.create_task(link._read())
    return link


async def _closed(reader: asyncio.StreamReader, timeout: float = 5.0) -> bool:
    """True when the gateway closes the connection (EOF or reset) within ``timeout``."""
    try:
        async with asyncio.timeout(timeout):
            while await reader.read(4096):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    return True


async def _real_station_served(port: int) -> None:
    link = await _station_link(port)
    qn, frame = packet(WQ, "2011", local_now(minutes_ago=3), rtd(WATER))
    await link.send(frame)
    await wait_for(lambda: link.replies == [qn], 10, "the real station's reply")
    await link.close()


async def test_pw_guessing_closes_the_connection_and_backs_off_the_source(
    mosquitto: LocalMosquitto, influxdb: LocalInfluxDB, influx_db: str, tmp_path: Path
) -> None:
    # Before: 2,000 wrong PWs on one connection in 0.68 s, the connection kept open.
    settings = make_settings(
        mosquitto,
        influxdb,
        influx_db,
        tmp_path,
        hj212={"port": 0, "host": "127.0.0.1", "wrong_pw_backoff": "1s"},
    )
    t = local_now(minutes_ago=5)
    letters: list[Message] = []
    async with (
        mqtt_client(mosquitto, ["envgrid/deadletter/#"], letters.append, "hj212-hostile-pw"),
        service_with_gateway(settings) as (_service, gateway),
    ):
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        guesses = b"".join(packet(WQ, "2011", t, rtd(WATER), pw=f"{i:06d}")[1] for i in range(2000))
        with contextlib.suppress(ConnectionError):
            writer.write(guesses)
            await writer.drain()
        assert await _closed(reader)
        writer.close()
        assert gateway.stats.closed["wrong_pw"] == 1
        assert gateway.stats.total("wrong_pw") == 3  # the default max_wrong_pw
        # The source backs off: a new connection is refused at once...
        reader2, writer2 = await asyncio.open_connection("127.0.0.1", gateway.port)
        assert await _closed(reader2)
        writer2.close()
        assert gateway.stats.refused_by["backoff"] == 1
        # ...while a station elsewhere is served as usual.
        await _real_station_served(gateway.port)
        # After the back-off the source may try again; a repeat offence doubles it (2 s).
        await asyncio.sleep(1.2)
        reader3, writer3 = await asyncio.open_connection("127.0.0.1", gateway.port)
        with contextlib.suppress(ConnectionError):
            writer3.write(guesses[: len(guesses) // 500])
            await writer3.drain()
        assert await _closed(reader3)
        writer3.close()
        assert gateway.stats.closed["wrong_pw"] == 2
        await asyncio.sleep(1.2)  # 2.4 s after the first offence: still inside the 2 s back-off
        reader4, writer4 = await asyncio.open_connection("127.0.0.1", gateway.port)
        assert await _closed(reader4)
        writer4.close()
        assert gateway.stats.refused_by["backoff"] == 2
        await wait_for(
            lambda: len([m for m in letters if b"wrong PW" in m.payload]) == 6, 10, "dead letters"
        )
    reasons = [json.loads(m.payload)["reason"] for m in letters if b"wrong PW" in m.payload]
    for reason in reasons:  # the reason names the station, never a password
        assert reason.startswith("wrong PW for MN 320800210000000000000001 (WQ-001) [")


async def test_idle_connections_from_one_address_do_not_lock_out_a_station(
    mosquitto: LocalMosquitto, influxdb: LocalInfluxDB, influx_db: str, tmp_path: Path
) -> None:
    # Before: 2,000 idle connections from one address filled max_connections (2,000).
    settings = make_settings(
        mosquitto, influxdb, influx_db, tmp_path, hj212={"port": 0, "host": "127.0.0.1"}
    )
    async with service_with_gateway(settings) as (_service, gateway):
        conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        try:
            for _ in range(2000):
                conns.append(await asyncio.open_connection("127.0.0.1", gateway.port))
            await wait_for(
                lambda: gateway.stats.refused_by["per_source"] == 2000 - 256,
                20,
                "every connection over the per-source limit refused",
            )
            assert len(gateway.stats.open) == 256
            await _real_station_served(gateway.port)
        finally:
            for _r, w in conns:
                w.close()


async def test_unknown_mn_flood_is_closed_with_bounded_dead_letters_and_metrics(
    mosquitto: LocalMosquitto, influxdb: LocalInfluxDB, influx_db: str, tmp_path: Path
) -> None:
    # Before: 5,000 unknown-MN frames on one connection were all dead-lettered.
    settings = make_settings(
        mosquitto,
        influxdb,
        influx_db,
        tmp_path,
        hj212={"port": 0, "host": "127.0.0.1", "max_deadletters_per_connection": 10},
    )
    t = local_now(minutes_ago=5)
    letters: list[Message] = []
    metrics = CollectorRegistry()
    async with (
        mqtt_client(mosquitto, ["envgrid/deadletter/#"], letters.append, "hj212-hostile-mn"),
        service_with_gateway(settings) as (_service, gateway),
    ):
        metrics.register(gateway.stats.collector())
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        flood = b"".join(
            packet(AQ, "2011", t, rtd({"a34004": 30.0}), mn=f"99990022{i:016d}")[1]
            for i in range(5000)
        )
        with contextlib.suppress(ConnectionError):
            writer.write(flood)
            await writer.drain()
        assert await _closed(reader)
        writer.close()
        assert gateway.stats.closed["flood"] == 1, gateway.stats.closed
        refused = gateway.stats.total("unknown_mn")
        assert refused == 21  # max_rejects_in_a_row (20) + the one that closed it
        # The cut-off frame at the close is one more refusal; ten got dead letters.
        cut = gateway.stats.total("garbage")
        assert gateway.stats.deadletters_suppressed == refused + cut - 10
        await wait_for(lambda: len(letters) == 10, 10, "ten dead letters")
        await asyncio.sleep(0.5)
        assert len(letters) == 10
        # Metric labels name registered MNs only: 5,000 unknown MNs are one 'unknown' series.
        assert set(gateway.stats.packets) == {"unknown"}
        text = generate_latest(metrics).decode()
        assert "9999002200000000" not in text
        # A good station interleaving a refusal with good packets is never closed as a flood.
        link = await _station_link(gateway.port)
        sent = []
        for i in range(30):
            qn, frame = packet(WQ, "2011", local_now(minutes_ago=60 - i), rtd(WATER))
            sent.append(qn)
            bad = packet(WQ, "2011", t, rtd(WATER), mn="320800229999999999999999")[1]
            await link.send(frame + bad)
        await wait_for(lambda: link.replies == sent, 10, "the station's replies")
        assert gateway.stats.closed["flood"] == 1
        await link.close()
