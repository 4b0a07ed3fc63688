"""Per-value acceptance of JSON readings (issue 16) through the real mosquitto and InfluxDB: an
out-of-range value is stored apart as ``<field>_invalid`` with its ``<field>_flag`` and the rest
of the reading is stored under the normal names; a reading with no valid value left is still
dead-lettered whole, and each set-apart value counts in ``envgrid_values_rejected_total``."""

from __future__ import annotations

import json
import time
from pathlib import Path

from prometheus_client import generate_latest

from envgrid.localstack import LocalInfluxDB, LocalMosquitto
from ingest.mqtt import Message
from tests.helpers import make_settings, mqtt_client, running_service, wait_for

DEVICE = "AQ-VAL-1"


async def test_a_bad_value_is_set_apart_and_the_rest_stored(
    fresh_mosquitto: LocalMosquitto, influxdb: LocalInfluxDB, influx_db: str, tmp_path: Path
) -> None:
    ts = int(time.time() * 1000) - 60_000
    mixed = {
        "ts": ts,
        "pm25_ug_m3": -3,
        "so2_ug_m3": 8,
        "no2_ug_m3": 20,
        "o3_ug_m3": 60,
        "co_mg_m3": 0.6,
    }
    only_bad = {"ts": ts + 1, "pm25_ug_m3": -3}  # nothing valid left: dead-lettered whole
    unknown = {"ts": ts + 2, "pm25_ug_m3": -3, "so2_ug_m3": 8, "colour": "red"}
    letters: list[Message] = []
    settings = make_settings(fresh_mosquitto, influxdb, influx_db, tmp_path)
    async with (
        mqtt_client(fresh_mosquitto, ["envgrid/deadletter/#"], letters.append, "dl-sink"),
        running_service(settings) as service,
        mqtt_client(fresh_mosquitto, client_id="val-pub") as pub,
    ):
        for payload in (mixed, only_bad, unknown):
            await pub.publish(f"envgrid/air/{DEVICE}", json.dumps(payload).encode())
        await wait_for(lambda: influxdb.count("air_quality", influx_db) >= 1, 20, "the reading")
        await wait_for(lambda: len(letters) >= 2, 20, "two dead letters")
        await wait_for(lambda: service.mqtt.unacked_count == 0, 10, "everything acked")
        body = generate_latest(service.metrics).decode()

    (row,) = influxdb.points(f"SELECT * FROM air_quality WHERE device_id = '{DEVICE}'", influx_db)
    assert (row["so2_ug_m3"], row["no2_ug_m3"], row["o3_ug_m3"], row["co_mg_m3"]) == (
        8.0,
        20.0,
        60.0,
        0.6,
    )
    assert row.get("pm25_ug_m3") is None  # never under the normal name
    assert (row["pm25_ug_m3_invalid"], row["pm25_ug_m3_flag"]) == (-3.0, "below_range")
    reasons = sorted(json.loads(m.payload)["reason"] for m in letters)
    assert "no valid reading left" in reasons[0] and "unknown field `colour`" in reasons[1]
    assert (
        'envgrid_values_rejected_total{field="pm25_ug_m3",kind="air",reason="below_range"} 1.0'
        in body
    )
    assert 'envgrid_messages_rejected_total{reason="invalid"} 2.0' in body
