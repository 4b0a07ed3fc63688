"""Zero data loss under faults (issue 3): each test counts every reading.

The service runs as it does in production: the installed ``envgrid run`` in a subprocess,
configured only through ``ENVGRID_*`` environment variables, against real mosquitto and influxd.
A test publishes uniquely timestamped valid readings at a steady rate, breaks something in the
middle, and at the end InfluxDB must hold exactly the published set of (device, time) per
measurement, each once.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import pytest

from envgrid.localstack import LocalInfluxDB, LocalMosquitto
from ingest.mqtt import Message
from tests.helpers import mqtt_client
from tests.service_proc import (
    FLEET,
    Stream,
    assert_exact,
    keys,
    readings,
    service,
    stored_total,
    wait_stored,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def own_influx(tmp_path: Path) -> Iterable[LocalInfluxDB]:
    """An influxd of this test's own, free to stop and start."""
    with LocalInfluxDB(tmp_path / "influxdb") as server:
        server.create_database("envgrid")
        yield server


# ------------------------------------------------------------------------- the faults


async def test_kill_9_mid_stream_then_restart(
    fresh_mosquitto: LocalMosquitto, influxdb: LocalInfluxDB, influx_db: str, tmp_path: Path
) -> None:
    msgs = readings(4000)
    async with (
        service(
            tmp_path, fresh_mosquitto, influxdb.url, influx_db, ingest__flush_interval="1s"
        ) as svc,
        mqtt_client(fresh_mosquitto, client_id="publisher") as pub,
    ):
        stream = Stream(pub, msgs, rate=250)
        await svc.until(lambda: stored_total(influxdb, influx_db) >= 800, 20, "800 readings stored")

        async def holding() -> bool:
            m = await svc.metrics()
            return await svc.received() - m["envgrid_points_written_total"] >= 100

        await svc.until(holding, 10, "100 readings in memory", interval=0.02)
        svc.kill()  # with readings in memory, unacked: none of them may be lost
        assert not stream.task.done()
        await asyncio.sleep(2)  # the stream goes on; the broker queues for the session
        svc.start()
        await svc.ready()
        await stream.done(30)
        await wait_stored(svc, influxdb, influx_db, keys(msgs), 30)
        code, _ = await svc.terminate()
        assert code == 0, svc.tail()
    assert_exact(influxdb, influx_db, keys(msgs))


async def test_influxdb_down_30_s_mid_stream(
    fresh_mosquitto: LocalMosquitto, own_influx: LocalInfluxDB, tmp_path: Path
) -> None:
    msgs = readings(3600)
    async with (
        service(tmp_path, fresh_mosquitto, own_influx.url, "envgrid") as svc,
        mqtt_client(fresh_mosquitto, client_id="publisher") as pub,
    ):
        stream = Stream(pub, msgs, rate=100)  # 36 s: 3 s before, 30 s down, 3 s after
        await asyncio.sleep(3)
        await asyncio.to_thread(own_influx.stop)
        down = time.monotonic()
        await svc.metric_reaches("envgrid_spool_records", 1, 15)
        assert await svc.metric("envgrid_influx_up") == 0
        await asyncio.sleep(30 - (time.monotonic() - down))
        spooled = await svc.metric("envgrid_spooled_points_total")
        assert spooled > 1000, spooled  # most of the outage went through the spool
        await asyncio.to_thread(own_influx.start)
        await stream.done(20)
        await wait_stored(svc, own_influx, "envgrid", keys(msgs), 30)

        async def drained() -> bool:
            return await svc.metric("envgrid_spool_records") == 0

        await svc.until(drained, 15, "the spool drained to zero")
        assert await svc.metric("envgrid_influx_up") == 1
        code, _ = await svc.terminate()
        assert code == 0, svc.tail()
    assert_exact(own_influx, "envgrid", keys(msgs))
    status = svc.cli("spool", "status")
    assert status.returncode == 0 and "0 batches, 0 bytes" in status.stdout, status


async def test_mosquitto_restart_mid_stream(
    fresh_mosquitto: LocalMosquitto, influxdb: LocalInfluxDB, influx_db: str, tmp_path: Path
) -> None:
    msgs = readings(3000)
    async with (
        service(tmp_path, fresh_mosquitto, influxdb.url, influx_db) as svc,
        mqtt_client(fresh_mosquitto, client_id="publisher") as pub,
    ):
        # The publisher resends what did not get a PUBACK when it reconnects: the guarantee
        # covers every reading the broker accepted.
        stream = Stream(pub, msgs, rate=200)
        await svc.until(lambda: stored_total(influxdb, influx_db) >= 600, 20, "600 stored")
        # Freeze the service for a moment so the broker holds messages for its session (queued,
        # or sent and unacknowledged) when it restarts: they must survive the restart.
        assert svc.proc is not None
        svc.proc.send_signal(signal.SIGSTOP)
        held = len(stream.acked)
        await asyncio.sleep(1.5)
        assert len(stream.acked) - held >= 200
        await asyncio.to_thread(fresh_mosquitto.restart)  # SIGTERM (saves), start, same port
        svc.proc.send_signal(signal.SIGCONT)
        await svc.until(
            lambda: "broker connection lost" in svc.log.read_text(), 10, "the service to notice"
        )
        await svc.ready()  # reconnected by itself
        await stream.done(30)
        await wait_stored(svc, influxdb, influx_db, keys(msgs), 30)
        assert await svc.metric("envgrid_mqtt_connected") == 1
        assert "session resumed" in svc.log.read_text()
        code, _ = await svc.terminate()
        assert code == 0, svc.tail()
    assert_exact(influxdb, influx_db, keys(msgs))


async def test_field_type_conflict_dead_letters_one_device(
    fresh_mosquitto: LocalMosquitto, influxdb: LocalInfluxDB, influx_db: str, tmp_path: Path
) -> None:
    # Twelve devices, one of which (a water station) also reports BOD5, which no other
    # station sends; the database already holds bod5_mg_l as a string in that measurement,
    # so exactly that station's lines are refused, in batches shared with the others.
    per_kind = {"water": 4, "air": 2, "shore_power": 2, "pv": 2, "ev_charger": 2}
    devices = [d for k, n in per_kind.items() for d in [d for d in FLEET if d.kind == k][:n]]
    odd = devices[0]
    msgs = readings(1200, devices)
    for m in msgs:
        if m.device_id == odd.id:
            body = json.loads(m.payload)
            body["bod5_mg_l"] = 3.5
            m.payload = json.dumps(body).encode()
    span = [min(m.ts_ms for m in msgs), max(m.ts_ms for m in msgs)]
    # Field types are per shard: seed both ends of the span (at most two shards).
    influxdb.write(
        "\n".join(f'water_quality,device_id=LAB bod5_mg_l="pending" {t}' for t in span), influx_db
    )
    bad = [m for m in msgs if m.device_id == odd.id]
    good = [m for m in msgs if m.device_id != odd.id]
    assert len(bad) == 100

    letters: list[Message] = []
    async with (
        service(tmp_path, fresh_mosquitto, influxdb.url, influx_db) as svc,
        mqtt_client(fresh_mosquitto, ["envgrid/deadletter/#"], letters.append, "dl") as _,
        mqtt_client(fresh_mosquitto, client_id="publisher") as pub,
    ):
        stream = Stream(pub, msgs, rate=300)
        await stream.done(30)
        await svc.until(lambda: len(letters) >= len(bad), 40, "100 dead letters")
        await wait_stored(svc, influxdb, influx_db, keys(good), 20)
        metrics = await svc.http.get("/metrics")
        assert 'envgrid_messages_rejected_total{reason="storage_rejected"} 100.0' in metrics.text
        code, _ = await svc.terminate()
        assert code == 0, svc.tail()

    seeded = {("water_quality", "LAB", t) for t in span}
    assert_exact(influxdb, influx_db, keys(good) | seeded)
    by_payload = Counter[bytes]()
    for letter in letters:
        body = json.loads(letter.payload)
        assert letter.topic == f"envgrid/deadletter/envgrid/water/{odd.id}"
        # InfluxDB's own message, as InfluxDB 1.x words it.
        assert "InfluxDB 400" in body["reason"], body["reason"]
        assert "field type conflict" in body["reason"] and "bod5_mg_l" in body["reason"]
        by_payload[body["payload"].encode()] += 1
    assert by_payload == Counter(m.payload for m in bad)


async def test_spool_full_pauses_then_resumes(
    fresh_mosquitto: LocalMosquitto, own_influx: LocalInfluxDB, tmp_path: Path
) -> None:
    limit = 1 << 16
    msgs = readings(4000)
    async with (
        # Batches of ~125 readings (~35 KB): the second one spooled no longer fits in 64 KiB.
        service(
            tmp_path,
            fresh_mosquitto,
            own_influx.url,
            "envgrid",
            ingest__spool_max_bytes=str(limit),
            ingest__flush_interval="500ms",
        ) as svc,
        mqtt_client(fresh_mosquitto, client_id="publisher") as pub,
    ):
        stream = Stream(pub, msgs, rate=250)  # 16 s
        await asyncio.sleep(3)
        await asyncio.to_thread(own_influx.stop)

        async def unready() -> bool:
            return (await svc.readyz())[0] == 503

        await svc.until(unready, 20, "/readyz 503")
        status, body = await svc.readyz()
        assert status == 503 and body["ready"] is False
        assert any("spool" in r and "consumption paused" in r for r in body["reasons"]), body
        assert await svc.metric("envgrid_consumer_paused") == 1
        # Paused means paused: nothing more is taken from the broker while the stream goes on.
        before = await svc.received()
        published = len(stream.acked)
        await asyncio.sleep(3)
        assert len(stream.acked) > published + 200  # the broker keeps accepting
        assert await svc.received() == before
        assert await svc.metric("envgrid_spool_bytes") <= limit
        assert "cannot spool (full at" in svc.log.read_text()  # a batch was held, not dropped
        await asyncio.to_thread(own_influx.start)
        await svc.ready(30)  # resumes by itself
        await stream.done(30)
        await wait_stored(svc, own_influx, "envgrid", keys(msgs), 40)
        code, _ = await svc.terminate()
        assert code == 0, svc.tail()
    assert_exact(own_influx, "envgrid", keys(msgs))


async def test_sigterm_during_burst_exits_0_within_grace(
    fresh_mosquitto: LocalMosquitto, influxdb: LocalInfluxDB, influx_db: str, tmp_path: Path
) -> None:
    grace = 5.0
    # A few bad messages too: their dead letters are in flight when SIGTERM comes, and the
    # shutdown must wait for their PUBACKs without running out the grace period.
    msgs = readings(40_000, bad_fraction=0.002)
    async with (
        service(
            tmp_path, fresh_mosquitto, influxdb.url, influx_db, ingest__shutdown_grace="5s"
        ) as svc,
        mqtt_client(fresh_mosquitto, client_id="publisher") as pub,
    ):
        stream = Stream(pub, msgs, rate=None)  # as fast as the broker takes them

        async def busy() -> bool:
            return await svc.received() >= 3000

        await svc.until(busy, 20, "the burst under way", interval=0.02)
        code, took = await svc.terminate()
        assert code == 0, svc.tail()
        assert took <= grace, f"exit took {took:.1f} s"
        assert "stopped:" in svc.tail(3)
        await stream.done(30)
        written = stored_total(influxdb, influx_db)
        assert 0 < written < len(msgs)  # SIGTERM came in the middle of the burst
        svc.start()
        await svc.ready()
        await wait_stored(svc, influxdb, influx_db, keys(msgs), 40)
        code, _ = await svc.terminate()
        assert code == 0, svc.tail()
    assert_exact(influxdb, influx_db, keys(msgs))


async def test_sigterm_while_influxdb_hangs_spools_within_grace(
    fresh_mosquitto: LocalMosquitto, own_influx: LocalInfluxDB, tmp_path: Path
) -> None:
    # InfluxDB answers nothing (SIGSTOP) and its timeout is longer than the grace period:
    # the service must still exit 0 in time, with nothing lost.
    msgs = readings(3000)
    async with (
        service(
            tmp_path,
            fresh_mosquitto,
            own_influx.url,
            "envgrid",
            ingest__shutdown_grace="5s",
            influx__timeout_s="10",
        ) as svc,
        mqtt_client(fresh_mosquitto, client_id="publisher") as pub,
    ):
        stream = Stream(pub, msgs, rate=300)
        await svc.until(lambda: stored_total(own_influx, "envgrid") >= 300, 20, "300 stored")
        own_influx.pause()
        await asyncio.sleep(1.5)
        assert await svc.received() > await svc.metric("envgrid_points_written_total")
        code, took = await svc.terminate()
        assert code == 0, svc.tail()
        assert took <= 5.0, f"exit took {took:.1f} s"
        await stream.done(30)
        own_influx.resume()
        svc.start()
        await svc.ready()
        await wait_stored(svc, own_influx, "envgrid", keys(msgs), 40)
        code, _ = await svc.terminate()
        assert code == 0, svc.tail()
    assert_exact(own_influx, "envgrid", keys(msgs))


async def test_kill_9_while_spooling_keeps_the_spool(
    fresh_mosquitto: LocalMosquitto, own_influx: LocalInfluxDB, tmp_path: Path
) -> None:
    msgs = readings(3000)
    async with (
        service(tmp_path, fresh_mosquitto, own_influx.url, "envgrid") as svc,
        mqtt_client(fresh_mosquitto, client_id="publisher") as pub,
    ):
        stream = Stream(pub, msgs, rate=200)  # 15 s
        await asyncio.sleep(2)
        await asyncio.to_thread(own_influx.stop)
        await svc.metric_reaches("envgrid_spooled_points_total", 300, 10)
        svc.kill()  # mid-spool: acked batches are on disk, the rest is the broker's
        svc.start()  # InfluxDB still down: the new run spools on top of the old segments
        await svc.ready()
        await svc.metric_reaches("envgrid_spooled_points_total", 300, 10)  # spooling again
        await asyncio.to_thread(own_influx.start)
        await stream.done(20)
        await wait_stored(svc, own_influx, "envgrid", keys(msgs), 30)

        async def drained() -> bool:
            return await svc.metric("envgrid_spool_records") == 0

        await svc.until(drained, 15, "the spool drained to zero")
        code, _ = await svc.terminate()
        assert code == 0, svc.tail()
    assert_exact(own_influx, "envgrid", keys(msgs))
