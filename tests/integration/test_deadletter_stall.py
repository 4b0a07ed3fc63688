"""One message whose dead letter the broker refuses must never stall ingestion.

Before the fix, a dead letter the broker refused (a topic over MQTT's 65,535 bytes, or a
packet over its Maximum Packet Size) cleared the acknowledgements of its whole batch: with
Receive Maximum 100, one such message among 151 valid readings left 99 stored and 0 acked, and
the session redelivered the same stall after every restart while /readyz said ready.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from envgrid.localstack import LocalInfluxDB, LocalMosquitto
from ingest.deadletter import LocalDeadLetters
from ingest.mqtt import Message
from ingest.service import IngestService
from tests.helpers import make_settings, mqtt_client, running_service, wait_for

DEVICE = "PV-XH-0001"


def pv_reading(i: int) -> bytes:
    ts = int(time.time() * 1000) - 60_000 + i
    return json.dumps({"ts": ts, "ac_power_w": 1000.0 + i, "energy_total_kwh": 10.0 + i}).encode()


async def publish(pub_topic_payloads: list[tuple[str, bytes]], mosquitto: LocalMosquitto) -> None:
    async with mqtt_client(mosquitto, client_id="stall-pub") as pub:
        for topic, payload in pub_topic_payloads:  # in order: the bad one first
            await pub.publish(topic, payload)


async def drained(service: IngestService, influxdb: LocalInfluxDB, db: str, n: int) -> None:
    await wait_for(lambda: influxdb.count("pv_inverter", db) >= n, 30, f"{n} readings stored")
    await wait_for(lambda: service.mqtt.unacked_count == 0, 10, "every message acknowledged")


@pytest.fixture
async def letters(fresh_mosquitto: LocalMosquitto) -> AsyncIterator[list[Message]]:
    got: list[Message] = []
    async with mqtt_client(fresh_mosquitto, ["envgrid/deadletter/#"], got.append, "dl-sink"):
        yield got


async def test_a_dead_letter_over_the_topic_limit_is_cut_and_nothing_stalls(
    fresh_mosquitto: LocalMosquitto,
    influxdb: LocalInfluxDB,
    influx_db: str,
    tmp_path: Path,
    letters: list[Message],
) -> None:
    settings = make_settings(
        fresh_mosquitto, influxdb, influx_db, tmp_path, mqtt={"receive_maximum": 100}
    )
    long_topic = "envgrid/pv/" + "P" * 65_509
    messages = [(long_topic, pv_reading(0))]
    messages += [(f"envgrid/pv/{DEVICE}", pv_reading(i)) for i in range(1, 152)]
    async with running_service(settings) as service:
        await publish(messages, fresh_mosquitto)
        await drained(service, influxdb, influx_db, 151)
        await wait_for(lambda: len(letters) == 1, 10, "the dead letter")
        # 152, and the dead letter itself: it comes back through <prefix>/#, acked unprocessed.
        await wait_for(lambda: service.stats.acked == 153, 10, "every message acked")
        assert service.stats.deadletters_local == 0
        ok, why = service.readiness()
        assert ok, why
    letter = letters[0]
    body = json.loads(letter.payload)
    assert body["topic_size"] == len(long_topic)
    assert long_topic.startswith(body["topic"]) and len(body["topic"]) < len(long_topic)
    assert letter.topic == f"envgrid/deadletter/{body['topic']}"
    assert "device" in body["reason"]

    # The session holds nothing: a second run receives no redelivery.
    async with running_service(settings) as again:
        await asyncio.sleep(1.5)
        assert sum(again.stats.received.values()) == 0


async def test_a_dead_letter_over_the_maximum_packet_size_is_cut_to_fit(
    tmp_path: Path, influxdb: LocalInfluxDB, influx_db: str
) -> None:
    with LocalMosquitto(tmp_path / "mq", extra=["max_packet_size 600"]) as broker:
        settings = make_settings(
            broker, influxdb, influx_db, tmp_path, mqtt={"receive_maximum": 100}
        )
        got: list[Message] = []
        bad = json.dumps({"ts": "not a time", "note": "x" * 400}).encode()
        async with (
            mqtt_client(broker, ["envgrid/deadletter/#"], got.append, "dl-sink"),
            running_service(settings) as service,
        ):
            messages = [(f"envgrid/pv/{DEVICE}", bad)]
            messages += [(f"envgrid/pv/{DEVICE}", pv_reading(i)) for i in range(1, 152)]
            await publish(messages, broker)
            await drained(service, influxdb, influx_db, 151)
            await wait_for(lambda: len(got) == 1, 10, "the dead letter")
            assert service.mqtt.max_packet_size == 600
            # 152, and the dead letter itself: back through <prefix>/#, acked unprocessed.
            await wait_for(lambda: service.stats.acked == 153, 10, "every message acked")
        body = json.loads(got[0].payload)
        assert body["truncated"] is True and body["size"] == len(bad)
        assert bad.decode().startswith(body["payload"])
        assert len(got[0].payload) + len(got[0].topic) < 600


async def test_a_dead_letter_the_broker_refuses_goes_to_the_local_file(
    tmp_path: Path, influxdb: LocalInfluxDB, influx_db: str
) -> None:
    # Too small for even the smallest dead letter, large enough for the readings.
    with LocalMosquitto(tmp_path / "mq", extra=["max_packet_size 180"]) as broker:
        settings = make_settings(
            broker, influxdb, influx_db, tmp_path, mqtt={"receive_maximum": 100}
        )
        bad = b'{"ts": 1, "ac_power_w": "many"}'
        async with running_service(settings) as service:
            messages = [(f"envgrid/pv/{DEVICE}", bad)]
            messages += [(f"envgrid/pv/{DEVICE}", pv_reading(i)) for i in range(1, 152)]
            messages.append((f"envgrid/pv/{DEVICE}", bad))
            await publish(messages, broker)
            await drained(service, influxdb, influx_db, 151)
            assert service.stats.acked == 153
            assert service.stats.deadletters_local == 2
            metrics = service.metrics
            assert metrics.get_sample_value("envgrid_deadletters_local_total") == 2
        records = LocalDeadLetters(tmp_path / "spool" / "deadletters.jsonl").read()
        assert len(records) == 2
        for rec in records:
            assert "Maximum Packet Size 180" in rec["refused"]
            assert rec["deadletter_topic"] == f"envgrid/deadletter/envgrid/pv/{DEVICE}"
            assert rec["deadletter"]["topic"].startswith("envgrid/pv/")


async def test_acks_that_stop_progressing_make_readyz_unready(
    fresh_mosquitto: LocalMosquitto, influxdb: LocalInfluxDB, tmp_path: Path
) -> None:
    """A hung InfluxDB holds a batch unacked: the watch says so, and clears when it moves."""
    hold = asyncio.Event()

    async def hung(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await hold.wait()  # answer nothing until released, then hang up: the write fails
        writer.close()

    server = await asyncio.start_server(hung, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = make_settings(
        fresh_mosquitto,
        influxdb,
        "db",
        tmp_path,
        influx={"url": f"http://127.0.0.1:{port}", "timeout_s": 60},
        ingest={"ack_stall_after": 1, "spool_dir": tmp_path / "spool", "flush_interval": 0.1},
    )
    try:
        async with running_service(settings) as service:
            await publish(
                [(f"envgrid/pv/{DEVICE}", pv_reading(i)) for i in range(5)], fresh_mosquitto
            )
            await wait_for(lambda: service.stats.ack_stalled, 10, "the stall to be seen")
            ok, why = service.readiness()
            assert not ok and any("acknowledgements stalled" in w for w in why), why
            assert service.metrics.get_sample_value("envgrid_ack_stalled") == 1
            assert service.metrics.get_sample_value("envgrid_oldest_unacked_seconds") > 1
            assert service.metrics.get_sample_value("envgrid_ack_stalls_total") == 1
            hold.set()  # the write fails, the batch is spooled and acked
            await wait_for(lambda: not service.stats.ack_stalled, 10, "acks to progress")
            assert service.stats.acked == 5 and service.stats.spooled_points == 5
            assert service.readiness()[0]
    finally:
        hold.set()
        server.close()
