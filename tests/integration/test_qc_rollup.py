"""Automatic QC before the rollups, against the real InfluxDB (issue 16): a station whose PM2.5
sticks at one value for six hours and spikes once, beside a natural one; the flags are stored as
``<field>_qc`` points of ``air_quality_qc``, the failed value is left out of the hourly mean and
the day names it, the raw readings stay as they were."""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from devices.registry import Registry
from envgrid.localstack import LocalInfluxDB
from envgrid.settings import load_settings
from rollups.runner import Rollup

TZ = ZoneInfo("Asia/Shanghai")
DAY = datetime(2026, 3, 2, tzinfo=TZ)


def ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def pm25(device: str, minute: int, rnd: random.Random) -> float:
    if device == "AQ-STUCK" and 10 * 60 <= minute < 16 * 60:
        return 35.0  # frozen analyser 10:00-16:00
    if device == "AQ-STUCK" and minute == 5 * 60 + 30:
        return 900.0  # one reading of 900 at 05:30
    return round(45 + 15 * math.sin(minute / 1440 * 2 * math.pi) + rnd.gauss(0, 3), 1)


async def test_qc_flags_stuck_and_spiking_values_and_the_rollup_leaves_failures_out(
    influxdb: LocalInfluxDB, influx_db: str, tmp_path: Path
) -> None:
    lines = []
    for device in ("AQ-STUCK", "AQ-NATURAL"):
        rnd = random.Random(device)
        for minute in range(1440):
            t = ms(DAY + timedelta(minutes=minute))
            v = pm25(device, minute, rnd)
            lines.append(f"air_quality,device_id={device},site=S,county=C pm25_ug_m3={v} {t}")
    influxdb.write("\n".join(lines), influx_db)
    settings = load_settings(None, influx={"url": influxdb.url, "database": influx_db})
    async with Rollup(settings, Registry([]), kinds=["air"]) as rollup:
        await rollup.run_range(DAY, DAY + timedelta(days=1))
        flags = influxdb.points('SELECT * FROM "air_quality_qc" GROUP BY *', influx_db)
        await rollup.run_range(DAY, DAY + timedelta(days=1))  # idempotent
        assert influxdb.points('SELECT * FROM "air_quality_qc" GROUP BY *', influx_db) == flags

    assert {f["device_id"] for f in flags} == {"AQ-STUCK"}  # natural data: no flag
    stuck = {f["time"]: (f["pm25_ug_m3_qc"], f["pm25_ug_m3_qc_test"]) for f in flags}
    frozen = {ms(DAY + timedelta(minutes=m)) for m in range(10 * 60, 16 * 60)}
    spike = ms(DAY + timedelta(minutes=5 * 60 + 30))
    assert set(stuck) == frozen | {spike}
    assert {stuck[t] for t in frozen} == {(3, "flat_line")}  # 6 h: suspect (fail from 8 h)
    assert stuck[spike] == (4, "spike")

    hourly = influxdb.points(
        "SELECT * FROM \"air_quality_hourly\" WHERE device_id = 'AQ-STUCK'", influx_db
    )
    five = next(r for r in hourly if r["time"] == ms(DAY + timedelta(hours=5)))
    assert five["pm25_ug_m3_n"] == 59 and five["pm25_ug_m3"] < 100  # the 900 left out
    assert five["left_out"] == "pm25_ug_m3: qc fail (spike)"
    eleven = next(r for r in hourly if r["time"] == ms(DAY + timedelta(hours=11)))
    assert (eleven["pm25_ug_m3"], eleven["pm25_ug_m3_n"]) == (35.0, 60)  # suspect stays in
    (daily,) = influxdb.points(
        "SELECT * FROM \"air_quality_daily\" WHERE device_id = 'AQ-STUCK'", influx_db
    )
    assert daily["left_out"] == "pm25_ug_m3 05:00-06:00: qc fail (spike)"
    # Thresholds raised (a device override turning the tests off): the next pass drops the flags.
    relaxed = tmp_path / "qc.yaml"
    relaxed.write_text(
        "devices:\n  AQ-STUCK:\n    pm25_ug_m3: {spike_suspect: null, spike_fail: null,"
        " rate_suspect: null, flat_suspect: null, flat_fail: null}\n",
        encoding="utf-8",
    )
    settings = load_settings(
        None, influx={"url": influxdb.url, "database": influx_db}, qc={"config": relaxed}
    )
    async with Rollup(settings, Registry([]), kinds=["air"]) as rollup:
        await rollup.run_range(DAY, DAY + timedelta(days=1))
    assert influxdb.points('SELECT * FROM "air_quality_qc" GROUP BY *', influx_db) == []
    # The raw reading is never rewritten.
    raw = influxdb.points(
        f"SELECT pm25_ug_m3 FROM air_quality WHERE device_id = 'AQ-STUCK' AND time = {spike}ms",
        influx_db,
    )
    assert [r["pm25_ug_m3"] for r in raw] == [900.0]
