"""Topics outside the pattern arrive and are dead-lettered with their reason (issue 20), against
the real mosquitto and InfluxDB; envgrid's own topics under the prefix are acked, not
dead-lettered again; a filter dropped from the config stops delivering to the stored session.

Before: ``envgrid/PV/x``, ``envgrid/solar/x``, ``envgrid/pv/a/b``, ``/envgrid/pv/x`` and
``envgrid/pv/x/`` matched no subscription, so the broker never delivered them: no dead letter,
no metric.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from envgrid.localstack import LocalInfluxDB, LocalMosquitto
from ingest.mqtt import Message
from tests.helpers import make_settings, mqtt_client, running_service, wait_for

OUTSIDE = ["envgrid/PV/x", "envgrid/solar/x", "envgrid/pv/a/b", "/envgrid/pv/x", "envgrid/pv/x/"]


def pv(i: int = 0) -> bytes:
    ts = int(time.time() * 1000) - 60_000 + i
    return json.dumps({"ts": ts, "ac_power_w": 1000.0 + i}).encode()


async def test_topics_outside_the_pattern_are_dead_lettered_once(
    fresh_mosquitto: LocalMosquitto, influxdb: LocalInfluxDB, influx_db: str, tmp_path: Path
) -> None:
    letters: list[Message] = []
    settings = make_settings(fresh_mosquitto, influxdb, influx_db, tmp_path)
    async with (
        mqtt_client(fresh_mosquitto, ["envgrid/deadletter/#"], letters.append, "dl-sink"),
        running_service(settings) as service,
        mqtt_client(fresh_mosquitto, client_id="outside-pub") as pub,
    ):
        for topic in OUTSIDE:
            await pub.publish(topic, pv())
        await pub.publish("envgrid/pv/PV-XH-0001", pv(1))  # and a valid one between them
        await pub.publish("envgrid/alerts/major/pv/PV-XH-0001", b'{"alert": 1}')  # ours
        await wait_for(lambda: influxdb.count("pv_inverter", influx_db) == 1, 20, "the reading")
        await wait_for(lambda: len(letters) >= len(OUTSIDE), 20, "the dead letters")
        await wait_for(lambda: service.mqtt.unacked_count == 0, 10, "everything acked")
        await asyncio.sleep(1.0)  # our dead letters come back through <prefix>/#: no new ones
        assert service.stats.rejected["unknown_topic"] == len(OUTSIDE)
        assert service.stats.deadlettered == len(OUTSIDE)
        assert service.mqtt.unacked_count == 0
        body = await service_metrics(service)
    assert sorted(json.loads(m.payload)["topic"] for m in letters) == sorted(OUTSIDE)
    reasons = {json.loads(m.payload)["topic"]: json.loads(m.payload)["reason"] for m in letters}
    assert "lower case" in reasons["envgrid/PV/x"]
    assert "starts with '/'" in reasons["/envgrid/pv/x"]
    assert f'envgrid_messages_rejected_total{{reason="unknown_topic"}} {len(OUTSIDE)}' in body


async def service_metrics(service: object) -> str:
    from prometheus_client import generate_latest

    return generate_latest(service.metrics).decode()  # type: ignore[attr-defined]


async def test_a_filter_dropped_from_the_config_stops_delivering(
    fresh_mosquitto: LocalMosquitto, influxdb: LocalInfluxDB, influx_db: str, tmp_path: Path
) -> None:
    """Run 1 routes plant/+/inv/{device_id}; run 2 no longer does. mosquitto keeps the
    session's subscriptions across runs: without UNSUBSCRIBE, run 2 still received (and
    dead-lettered) plant/… messages."""
    route = {"topics": [{"pattern": "plant/+/inv/{device_id}", "kind": "pv"}]}
    first = make_settings(fresh_mosquitto, influxdb, influx_db, tmp_path, mqtt=route)
    async with running_service(first) as service:
        assert "plant/+/inv/+" in service.topics.subscriptions()
    record = json.loads((tmp_path / "spool" / "subscriptions.json").read_text())
    assert any("plant/+/inv/+" in filters for filters in record["sessions"].values())
    second = make_settings(fresh_mosquitto, influxdb, influx_db, tmp_path)
    async with running_service(second) as service:
        async with mqtt_client(fresh_mosquitto, client_id="plant-pub") as pub:
            await pub.publish("plant/north/inv/PV-XH-0001", pv(2))
            await pub.publish("envgrid/pv/PV-XH-0001", pv(3))  # a marker after it
        await wait_for(lambda: influxdb.count("pv_inverter", influx_db) == 1, 20, "the marker")
        await asyncio.sleep(0.5)
        assert service.stats.rejected["unknown_topic"] == 0
        assert service.stats.deadlettered == 0
    record = json.loads((tmp_path / "spool" / "subscriptions.json").read_text())
    assert all("plant/+/inv/+" not in filters for filters in record["sessions"].values())
