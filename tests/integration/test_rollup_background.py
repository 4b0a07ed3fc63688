"""The service's rollup task against the real InfluxDB: it rolls up the last closed hour on start
and picks up a late reading on a later pass."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from devices.registry import Device, Registry
from envgrid.localstack import LocalInfluxDB
from envgrid.settings import Settings, load_settings
from rollups.runner import start_background


def settings_for(influxdb: LocalInfluxDB, db: str, **rollup: object) -> Settings:
    return load_settings(
        None,
        influx={"url": influxdb.url, "database": db},
        rollup={"enabled": True, "interval": 0.2, **rollup},
    )


async def hourly_n(influxdb: LocalInfluxDB, db: str, at_ms: int, want: int) -> None:
    deadline = time.monotonic() + 20
    got = None
    while time.monotonic() < deadline:
        rows = influxdb.points(
            f'SELECT "pm25_ug_m3_n" FROM "air_quality_hourly" WHERE time = {at_ms}ms', db
        )
        got = rows[0]["pm25_ug_m3_n"] if rows else None
        if got == want:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"hourly point at {at_ms}: pm25_ug_m3_n {got}, wanted {want}")


async def test_background_task_rolls_up_closed_hours_and_late_data(
    influxdb: LocalInfluxDB, influx_db: str
) -> None:
    # The last closed hour (Asia/Shanghai hours fall on UTC hours).
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    start = int(hour.timestamp() * 1000)
    lines = [
        f"air_quality,device_id=AQ-B,site=s,county=c pm25_ug_m3=30.0 {start + i * 60_000}"
        for i in range(60)
    ]
    influxdb.write("\n".join(lines), influx_db)
    registry = Registry([Device(id="AQ-B", kind="air", site="s", county="c", known=True)])
    task = start_background(settings_for(influxdb, influx_db), registry)
    assert task is not None
    try:
        await hourly_n(influxdb, influx_db, start, 60)  # the start-up pass
        influxdb.write(
            f"air_quality,device_id=AQ-B,site=s,county=c pm25_ug_m3=90.0 {start + 1}", influx_db
        )
        await hourly_n(influxdb, influx_db, start, 61)  # a periodic pass within the lateness
    finally:
        await task.stop()
    rows = influxdb.points('SELECT * FROM "air_quality_hourly" GROUP BY *', influx_db)
    assert len(rows) == 1 and rows[0]["pm25_ug_m3"] == (60 * 30.0 + 90.0) / 61
    assert task._task.done()


def test_background_task_only_when_enabled_and_on_the_first_worker(
    influxdb: LocalInfluxDB,
) -> None:
    off = load_settings(None, influx={"url": influxdb.url}, rollup={"enabled": False})
    assert start_background(off, Registry()) is None
    assert start_background(settings_for(influxdb, "x"), Registry(), worker=1) is None
