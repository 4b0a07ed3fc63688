"""Hourly validity by covered time against the real InfluxDB (issue 16), default settings: a
station reporting every 5 minutes (interval learned), one every 30 s (registry ``interval``) and
one sending a single spot value per hour; the report's air days say why a day did not count."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from devices.registry import Device, Registry
from envgrid.localstack import LocalInfluxDB
from envgrid.settings import load_settings
from report.plan import air_day
from rollups.runner import Rollup

TZ = ZoneInfo("Asia/Shanghai")
DAY = datetime(2026, 3, 2, tzinfo=TZ)
NOW = DAY + timedelta(days=1, hours=1)
VALUES = "pm25_ug_m3=30,pm10_ug_m3=50,so2_ug_m3=8,no2_ug_m3=20,co_mg_m3=0.6,o3_ug_m3=60"
# id: (seconds between readings, registry facts)
STATIONS = {
    "AQ-5MIN": (300, {"assessment": "national"}),
    "AQ-30S": (30, {"assessment": "provincial", "interval": "30s"}),
    "AQ-SPOT": (3600, {"assessment": "national"}),
}


def ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def seed(influxdb: LocalInfluxDB, db: str) -> None:
    lines = []
    for device, (step, _) in STATIONS.items():
        offset = 1200 if step == 3600 else 0  # the spot value at :20 past each hour
        for s in range(offset, 86400, step):
            t = DAY + timedelta(seconds=s)
            lines.append(f"air_quality,device_id={device},site=S,county=C {VALUES} {ms(t)}")
    influxdb.write("\n".join(lines), db)


async def test_covered_time_decides_hours_and_the_report_says_why(
    influxdb: LocalInfluxDB, influx_db: str
) -> None:
    seed(influxdb, influx_db)
    registry = Registry(
        Device(id=d, kind="air", site="S", county="C", facts=f, known=True)
        for d, (_, f) in STATIONS.items()
    )
    # Constant values all day (QC's flat-line test would fail them): this is about coverage.
    settings = load_settings(
        None, influx={"url": influxdb.url, "database": influx_db}, qc={"enabled": False}
    )
    async with Rollup(settings, registry, kinds=["air"]) as rollup:
        await rollup.run_range(DAY, DAY + timedelta(days=1), now=NOW)

    hourly = influxdb.points('SELECT * FROM "air_quality_hourly" GROUP BY *', influx_db)
    daily = influxdb.points('SELECT * FROM "air_quality_daily" GROUP BY *', influx_db)

    def hours(device: str) -> list[dict[str, object]]:
        return [r for r in hourly if r["device_id"] == device]

    def day(device: str) -> dict[str, object]:
        (r,) = [r for r in daily if r["device_id"] == device]
        return r

    for device, interval_s in (("AQ-5MIN", 300), ("AQ-30S", 30)):
        rows = hours(device)
        assert len(rows) == 24 and all(r["valid"] is True for r in rows), device
        assert {r["interval_s"] for r in rows} == {interval_s}
        assert {r["pm25_ug_m3_covered_min"] for r in rows} == {60}
        d = day(device)
        assert (d["valid"], d["invalid_reason"], d["pm25_ug_m3_n"]) == (True, "", 24)
        # PM2.5 30 µg/m³ over the day: HJ 633-2026 IAQI 50 × 30/35 = 42.9 → 43 (优).
        assert isinstance(d["aqi"], int) and d["good_day"] is True

    spot = hours("AQ-SPOT")
    assert len(spot) == 24 and not any(r["valid"] for r in spot)
    assert {r["pm25_ug_m3_covered_min"] for r in spot} == {15}
    assert day("AQ-SPOT")["valid"] is False

    # The city (AQ-5MIN and AQ-SPOT are national): the 5-minute station alone makes 24 valid
    # city hours, so the day counts. The report's day carries the reason only when invalid.
    (city,) = influxdb.points('SELECT * FROM "city_air_daily" GROUP BY *', influx_db)
    assert city["valid"] is True and city["invalid_reason"] == ""
    spot_reason = str(day("AQ-SPOT")["invalid_reason"])
    assert "pm25_ug_m3: 0 valid hours of 20 needed (24 h with data cover at most 15 of 45" in (
        spot_reason
    )
    shown = air_day(DAY.date(), {"valid": False, "invalid_reason": spot_reason})
    assert (shown.status, shown.reason) == ("invalid", spot_reason)
