"""Automatic QC on water, end to end (issue 16): readings published over MQTT through the real
service into InfluxDB, then the real rollup of the day.

WQ-003 reports every 10 minutes with DO near 4.2 mg/L (GB 3838 Class IV) and one reading of 20 at
10:30: the spike fails QC, so the 10:00 hour's mean and class are those of the five real readings
(Class IV, not the Class II a mean with the 900%-high value would give), and the hour and the day
name what was left out. WQ-006's DO and pH stick at one value for the whole day (flat line,
suspect): flagged, kept in the figures. Natural data of the same day is not flagged.
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from devices.registry import load_registry
from envgrid.app import DEFAULT_REGISTRY
from envgrid.localstack import LocalInfluxDB, LocalMosquitto
from envgrid.settings import load_settings
from rollups.runner import Rollup
from tests.helpers import mqtt_client
from tests.service_proc import service

TZ = ZoneInfo("Asia/Shanghai")
SPIKY, STUCK = "WQ-003", "WQ-006"


def ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def reading(device: str, t: datetime, rnd: random.Random) -> dict[str, Any]:
    if device == STUCK:
        return {"ts": ms(t), "do_mg_l": 6.5, "ph": 7.4, "temp_c": 14.0}
    do = 20.0 if (t.hour, t.minute) == (10, 30) else round(4.2 + rnd.gauss(0, 0.05), 2)
    return {"ts": ms(t), "do_mg_l": do, "ph": round(7.6 + rnd.gauss(0, 0.03), 2), "temp_c": 14.0}


@pytest.mark.slow
async def test_water_qc_flags_a_spike_and_a_flat_line_and_the_rollup_leaves_the_fail_out(
    mosquitto: LocalMosquitto, influxdb: LocalInfluxDB, influx_db: str, tmp_path: Path
) -> None:
    day = datetime.now(TZ).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    prefix = f"w{uuid.uuid4().hex[:8]}"
    async with (
        service(tmp_path, mosquitto, influxdb.url, influx_db, mqtt__topic_prefix=prefix) as svc,
        mqtt_client(mosquitto, client_id=f"pub-{prefix}") as pub,
    ):
        for device in (SPIKY, STUCK):
            rnd = random.Random(device)
            for i in range(144):
                body = json.dumps(reading(device, day + timedelta(minutes=10 * i), rnd))
                await pub.publish(f"{prefix}/water/{device}", body.encode(), qos=1)
        await svc.until(
            lambda: influxdb.count("water_quality", influx_db, "do_mg_l") >= 288, 20, "stored"
        )
    settings = load_settings(
        None,
        influx={"url": influxdb.url, "database": influx_db},
        rollup={"review_store": str(tmp_path / "review.db")},
    )
    async with Rollup(settings, load_registry(DEFAULT_REGISTRY), kinds=["water"]) as rollup:
        await rollup.run_range(day, day + timedelta(days=1))
        flags = influxdb.points('SELECT * FROM "water_quality_qc" GROUP BY *', influx_db)
        await rollup.run_range(day, day + timedelta(days=1))  # idempotent
        assert influxdb.points('SELECT * FROM "water_quality_qc" GROUP BY *', influx_db) == flags

    spike = ms(day + timedelta(hours=10, minutes=30))
    spiky = [f for f in flags if f["device_id"] == SPIKY]
    assert [(f["time"], f["do_mg_l_qc"], f["do_mg_l_qc_test"]) for f in spiky] == [
        (spike, 4, "spike")
    ]
    assert all(f.get("ph_qc") is None for f in spiky)  # natural pH: no flag
    stuck = [f for f in flags if f["device_id"] == STUCK]
    assert len(stuck) == 144
    assert {(f["do_mg_l_qc"], f["do_mg_l_qc_test"]) for f in stuck} == {(3, "flat_line")}
    assert {(f["ph_qc"], f["ph_qc_test"]) for f in stuck} == {(3, "flat_line")}

    hourly = influxdb.points(
        f"SELECT * FROM water_quality_hourly WHERE device_id = '{SPIKY}'", influx_db
    )
    ten = next(r for r in hourly if r["time"] == ms(day + timedelta(hours=10)))
    assert ten["do_mg_l_n"] == 5 and 4.0 < ten["do_mg_l"] < 4.4  # the 20 is not in the mean
    assert ten["water_class"] == 4  # GB 3838 Class IV (DO ≥ 3 mg/L)
    assert ten["left_out"] == "do_mg_l: qc fail (spike)"
    nine = next(r for r in hourly if r["time"] == ms(day + timedelta(hours=9)))
    assert nine["do_mg_l_n"] == 6 and nine["left_out"] == ""
    (daily,) = influxdb.points(
        f"SELECT * FROM water_quality_daily WHERE device_id = '{SPIKY}'", influx_db
    )
    assert daily["water_class"] == 4 and daily["do_mg_l"] < 4.4
    assert daily["left_out"] == "do_mg_l 10:00-11:00: qc fail (spike)"
    stuck_hour = influxdb.points(
        f"SELECT do_mg_l, do_mg_l_n FROM water_quality_hourly WHERE device_id = '{STUCK}'",
        influx_db,
    )
    assert {(r["do_mg_l"], r["do_mg_l_n"]) for r in stuck_hour} == {(6.5, 6)}  # suspect stays
