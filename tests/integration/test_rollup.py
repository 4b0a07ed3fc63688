"""Rollups against the real InfluxDB: hourly/daily air and water points, city figures, late data,
idempotence, and the ``envgrid rollup`` back-fill command.

Expected numbers are worked by hand below from the seeded values (HJ 633 tables and GB 3838-2002
limits as in /work/shared/standards.md), never by calling the code under test.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from typer.testing import CliRunner

from devices.registry import Device, Registry
from envgrid.cli.main import app
from envgrid.localstack import LocalInfluxDB, free_port
from envgrid.settings import load_settings
from rollups.runner import Rollup

TZ = ZoneInfo("Asia/Shanghai")
D1 = datetime(2026, 2, 28, tzinfo=TZ)  # HJ 633-2012 still applies
D2 = datetime(2026, 3, 1, tzinfo=TZ)  # HJ 633-2026 from this day
NOW = datetime(2026, 3, 2, 1, 0, tzinfo=TZ)  # both days closed, 2 March 00:00-01:00 too
AIR_OUT = ("air_quality_hourly", "air_quality_daily", "city_air_daily")
POLLUTANTS = ("pm25_ug_m3", "pm10_ug_m3", "so2_ug_m3", "no2_ug_m3", "co_mg_m3", "o3_ug_m3")


def ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


# Seeded air values by local hour h, the same on both days; constant within an hour.
def station_a(h: int) -> dict[str, float]:
    return {
        "pm25_ug_m3": 58.5 + h,
        "pm10_ug_m3": 80.0,
        "so2_ug_m3": 10.0,
        "no2_ug_m3": 30.0,
        "co_mg_m3": 0.8,
        "o3_ug_m3": 20.0 + 5 * h,
    }


def station_b(h: int) -> dict[str, float]:
    return {
        "pm25_ug_m3": 28.5 + h,
        "pm10_ug_m3": 60.0,
        "so2_ug_m3": 6.0,
        "no2_ug_m3": 20.0,
        "co_mg_m3": 0.5,
        "o3_ug_m3": 40.0 + 4 * h,
    }


STATIONS = {  # id: (site, county, assessment, values by hour)
    "AQ-T1": ("站A", "清江浦区", "national", station_a),
    "AQ-T2": ("站B", "淮安区", "national", station_b),
    "AQ-T3": ("站C", "淮阴区", "provincial", lambda h: {"pm25_ug_m3": 300.0}),
}


def in_maintenance(device: str, t: datetime) -> tuple[str, ...]:
    """Fields flagged M: station A all of 00:00-04:59 on 28 Feb and 08:00-08:19 on 1 March;
    station B's O3 analyser 09:00-12:59 on 1 March."""
    if device == "AQ-T1" and t.date() == D1.date() and t.hour <= 4:
        return POLLUTANTS
    if device == "AQ-T1" and t.date() == D2.date() and t.hour == 8 and t.minute < 20:
        return POLLUTANTS
    if device == "AQ-T2" and t.date() == D2.date() and 9 <= t.hour <= 12:
        return ("o3_ug_m3",)
    return ()


def air_line(device: str, t: datetime, fields: str, extra_tag: str = "") -> str:
    site, county, assessment, _ = STATIONS[device]
    edition = "2012" if t.date() < D2.date() else "2026"
    return (
        f"air_quality,aqi_edition={edition},assessment={assessment},county={county}"
        f"{extra_tag},device_id={device},site={site} {fields} {ms(t)}"
    )


def seed_air(influxdb: LocalInfluxDB, db: str) -> None:
    lines = []
    for device, (_, _, _, values) in STATIONS.items():
        for minute in range(2 * 1440):  # 28 Feb 00:00 .. 1 March 23:59, every minute
            t = D1 + timedelta(minutes=minute)
            flagged = in_maintenance(device, t)
            # The HJ 212 intake's storage of flagged values: never under the normal name.
            fields = ",".join(
                f'{k}_invalid={x},{k}_flag="M"' if k in flagged else f"{k}={x}"
                for k, x in values(t.hour).items()
            )
            lines.append(air_line(device, t, fields))
    # Station C's own hourly value for 05:00-06:00 on 28 Feb (HJ 212 CN 2061), at the hour start.
    lines.append(air_line("AQ-T3", D1 + timedelta(hours=5), "pm25_ug_m3=999", ",data_kind=hourly"))
    influxdb.write("\n".join(lines), db)


def air_registry() -> Registry:
    return Registry(
        Device(id=d, kind="air", site=s, county=c, facts={"assessment": a}, known=True)
        for d, (s, c, a, _) in STATIONS.items()
    )


def snapshot(influxdb: LocalInfluxDB, db: str, measurements: tuple[str, ...]) -> dict[str, Any]:
    return {m: influxdb.points(f'SELECT * FROM "{m}" GROUP BY *', db) for m in measurements}


def row(rows: list[dict[str, Any]], t: datetime, **tags: str) -> dict[str, Any]:
    found = [r for r in rows if r["time"] == ms(t) and all(r.get(k) == v for k, v in tags.items())]
    assert len(found) == 1, (t, tags, len(found))
    return found[0]


def ceil(x: float) -> int:
    return math.ceil(round(x, 9))  # HJ 633 rounds sub-indices up


async def test_air_rollups_late_data_and_idempotence(
    influxdb: LocalInfluxDB, influx_db: str
) -> None:
    seed_air(influxdb, influx_db)
    # Constant synthetic values all day: QC's flat-line test would fail them (test_qc.py).
    settings = load_settings(
        None, influx={"url": influxdb.url, "database": influx_db}, qc={"enabled": False}
    )
    async with Rollup(settings, air_registry(), kinds=["air"]) as rollup:
        await rollup.run_range(D1, D1 + timedelta(days=2), now=NOW)
        before = snapshot(influxdb, influx_db, AIR_OUT)
        b_hour12 = row(before["air_quality_hourly"], D2 + timedelta(hours=12), device_id="AQ-T2")
        assert (b_hour12["pm25_ug_m3"], b_hour12["pm25_ug_m3_n"]) == (40.5, 60)
        b_day2 = row(before["air_quality_daily"], D2, device_id="AQ-T2")
        assert b_day2["pm25_ug_m3"] == 40.0  # 28.5 + mean(0..23) = 28.5 + 11.5

        # A late reading for B at 12:00:30 on 1 March, after the first run.
        late = D2 + timedelta(hours=12, seconds=30)
        influxdb.write(air_line("AQ-T2", late, "pm25_ug_m3=100.5"), influx_db)
        await rollup.run_recent(now=NOW)  # lateness 3 h: 1 March closed at 00:00, redone whole
        after = snapshot(influxdb, influx_db, AIR_OUT)

        # Running again (back-fill and the periodic pass) changes nothing.
        await rollup.run_range(D1, D1 + timedelta(days=2), now=NOW)
        await rollup.run_recent(now=NOW)
        assert snapshot(influxdb, influx_db, AIR_OUT) == after
    counts = {m: len(rows) for m, rows in after.items()}
    # Hourly: A 19 h on 28 Feb (00-04 in maintenance, no valid value) + 24 on 1 March,
    # B and C 48 each; daily: 3 stations × 2 days; city: 2 days.
    assert counts == {
        "air_quality_hourly": 19 + 24 + 48 + 48,
        "air_quality_daily": 6,
        "city_air_daily": 2,
    }
    for m in AIR_OUT:
        assert influxdb.count(m, influx_db) == counts[m]

    hourly, daily, city = (after[m] for m in AIR_OUT)
    for r in hourly + daily + city:
        day = datetime.fromtimestamp(r["time"] / 1000, tz=TZ).date()
        assert r["aqi_edition"] == ("2012" if day < date(2026, 3, 1) else "2026")

    # --- hourly ------------------------------------------------------------------------------
    a6 = row(hourly, D1 + timedelta(hours=6), device_id="AQ-T1")
    # 1 h means 06:00: PM2.5 64.5, PM10 80, SO2 10, NO2 30, CO 0.8, O3 50 (60 values each).
    # 2012: PM2.5 50 + 50/40 × (64.5 − 35) = 86.875 → 87; PM10 50 + 50/100 × 30 = 65;
    # O3 1 h 50 × 50/160 = 15.6 → 16; SO2 1 h 3.3 → 4; NO2 1 h 15; CO 1 h 8.
    assert (a6["pm25_ug_m3"], a6["o3_ug_m3"], a6["pm25_ug_m3_n"]) == (64.5, 50.0, 60)
    assert (a6["aqi"], a6["aqi_category"], a6["primary_pollutant"]) == (87, 2, "pm25_ug_m3")
    assert (a6["valid"], a6["source"], a6["assessment"], a6["site"]) == (
        True,
        "computed",
        "national",
        "站A",
    )
    a_feb = [r["time"] for r in hourly if r["device_id"] == "AQ-T1" and r["time"] < ms(D2)]
    assert min(a_feb) == ms(D1 + timedelta(hours=5))  # 00-04 held no valid value
    a8 = row(hourly, D2 + timedelta(hours=8), device_id="AQ-T1")
    # 08:00 on 1 March: 20 minutes in maintenance, 40 valid minutes < 45 → not valid.
    # 2026: PM2.5 66.5 → 100 + 50/55 × 6.5 = 105.9 → 106 (2012 would say 50 + 1.25 × 31.5 → 90).
    assert (a8["pm25_ug_m3"], a8["pm25_ug_m3_n"], a8["valid"]) == (66.5, 40, False)
    assert (a8["aqi"], a8["aqi_category"]) == (106, 3)
    b12 = row(hourly, D2 + timedelta(hours=12), device_id="AQ-T2")
    # The late value joins hour 12: (60 × 40.5 + 100.5) / 61.
    assert b12["pm25_ug_m3"] == pytest.approx((60 * 40.5 + 100.5) / 61, abs=1e-12)
    assert (b12["pm25_ug_m3_n"], b12["pm10_ug_m3_n"]) == (61, 60)
    # B's O3 in maintenance 09-12 on 1 March: no O3 in those hours, so they are not valid.
    assert "o3_ug_m3" not in b12 or b12["o3_ug_m3"] is None
    assert (b12["valid"], row(hourly, D2 + timedelta(hours=13), device_id="AQ-T2")["valid"]) == (
        False,
        True,
    )
    c5 = row(hourly, D1 + timedelta(hours=5), device_id="AQ-T3")
    # The station's own hourly value replaces the mean of its 60 readings of 300.
    assert (c5["pm25_ug_m3"], c5["pm25_ug_m3_n"], c5["source"]) == (999.0, 1, "station")
    assert row(hourly, D1 + timedelta(hours=6), device_id="AQ-T3")["pm25_ug_m3"] == 300.0

    # --- station days --------------------------------------------------------------------------
    a1 = row(daily, D1, device_id="AQ-T1")
    # 19 valid hours (5-23): PM2.5 58.5 + (276 − 10) / 19 = 72.5; not valid (< 20 hours).
    pm25 = 58.5 + (276 - (0 + 1 + 2 + 3 + 4)) / 19
    assert a1["pm25_ug_m3"] == pytest.approx(pm25, abs=1e-12) and a1["pm25_ug_m3_n"] == 19
    # O3 8 h means need ≥ 6 of their 8 hours: windows ending 07, 08, 09 hold 3, 4, 5 hours;
    # windows ending 10-23 are valid: 14 windows, just enough (HJ 663: ≥ 14), so the day is
    # invalid for PM and the rest alone. Max: hours 16-23, 20 + 5 × 19.5 = 117.5; 1 h max 135.
    assert (a1["o3_8h_ug_m3"], a1["o3_8h_ug_m3_n"], a1["o3_1h_max_ug_m3"]) == (117.5, 14, 135.0)
    # 2012: PM2.5 50 + 1.25 × 37.5 = 96.875 → 97; O3 8 h 50 + 50/60 × 17.5 = 64.6 → 65.
    assert a1["aqi"] == ceil(50 + 50 / 40 * (pm25 - 35)) == 97
    assert (a1["good_day"], a1["valid"], a1["primary_pollutant"]) == (True, False, "pm25_ug_m3")

    a2 = row(daily, D2, device_id="AQ-T1")
    # 23 valid hours (08:00 short): PM2.5 58.5 + (276 − 8) / 23 = 70.152, valid.
    pm25 = 58.5 + (276 - 8) / 23
    assert a2["pm25_ug_m3"] == pytest.approx(pm25, abs=1e-12) and a2["pm25_ug_m3_n"] == 23
    assert (a2["o3_8h_ug_m3"], a2["o3_8h_ug_m3_n"]) == (117.5, 17)  # every window ≥ 7 hours
    # 2026: PM2.5 100 + 50/55 × (70.152 − 60) = 109.2 → 110: not a good day (2012 would be 94).
    assert a2["aqi"] == ceil(100 + 50 / 55 * (pm25 - 60)) == 110
    assert (a2["good_day"], a2["valid"], a2["aqi_category"]) == (False, True, 3)

    b1 = row(daily, D1, device_id="AQ-T2")
    # PM2.5 40 → 50 + 1.25 × 5 = 56.25 → 57; O3 8 h max 40 + 4 × 19.5 = 118 → 50 + 50/60 × 18 = 65.
    assert (b1["pm25_ug_m3"], b1["o3_8h_ug_m3"], b1["aqi"]) == (40.0, 118.0, 65)
    assert (b1["primary_pollutant"], b1["good_day"], b1["valid"]) == ("o3_8h_ug_m3", True, True)
    b2 = row(daily, D2, device_id="AQ-T2")
    pm25 = (24 * 40 - 40.5 + (60 * 40.5 + 100.5) / 61) / 24  # hour 12 replaced by the late mean
    assert b2["pm25_ug_m3"] == pytest.approx(pm25, abs=1e-12)
    # 2026: PM2.5 50 + 50/25 × 5.04 = 60.1 → 61, PM10 50 + 50/70 × 10 = 57.1 → 58; O3 8 h 65.
    assert (b2["aqi"], b2["primary_pollutant"], b2["pm10_ug_m3"]) == (65, "o3_8h_ug_m3", 60.0)
    # O3 hours 09-12 missing: windows ending 11-17 hold ≤ 5 hours; valid: 07-10 and 18-23 = 10
    # windows < 14, so the day is not valid though every other pollutant has 24 hours.
    # Max: hours 16-23, 40 + 4 × 19.5 = 118; 1 h max 40 + 4 × 23 = 132 of 20 hours.
    assert (b2["o3_8h_ug_m3"], b2["o3_8h_ug_m3_n"], b2["pm25_ug_m3_n"]) == (118.0, 10, 24)
    assert (b2["o3_1h_max_ug_m3"], b2["o3_1h_max_ug_m3_n"], b2["valid"]) == (132.0, 20, False)

    # --- city (national stations A and B; C is provincial) --------------------------------------
    c1 = row(city, D1, assessment="national")
    # City hour = mean of A and B where valid: 43.5 + h; hours 0-4 only B: 28.5 + h.
    # PM2.5: (5 × 28.5 + 10 + 19 × 43.5 + 266) / 24 = 1245 / 24 = 51.875 → 50 + 1.25 × 16.875 → 72.
    assert c1["pm25_ug_m3"] == pytest.approx(1245 / 24, abs=1e-12) and c1["pm25_ug_m3_n"] == 24
    # PM10: (19 × 70 + 5 × 60) / 24 = 67.92; O3: city hours 30 + 4.5 h (0-4: B's 40 + 4 h),
    # max 8 h over hours 16-23: 30 + 4.5 × 19.5 = 117.75; 1 h max 30 + 4.5 × 23 = 133.5.
    assert c1["pm10_ug_m3"] == pytest.approx((19 * 70 + 5 * 60) / 24, abs=1e-12)
    assert (c1["o3_8h_ug_m3"], c1["o3_1h_max_ug_m3"]) == (117.75, 133.5)
    assert (c1["aqi"], c1["good_day"], c1["valid"], c1["stations"]) == (72, True, True, 2)
    c2 = row(city, D2, assessment="national")
    # PM2.5: hour 8 only B (36.5), others 43.5 + h: 23 × 43.5 + 268 + 36.5 = 1305; hour 12
    # becomes (70.5 + late B mean) / 2 instead of 55.5. O3 hours 9-12 come from A alone, so every
    # city 8 h window is complete and the city day is valid though B's O3 day is not.
    pm25 = (1305 - 55.5 + (70.5 + (60 * 40.5 + 100.5) / 61) / 2) / 24
    assert c2["pm25_ug_m3"] == pytest.approx(pm25, abs=1e-12)
    # 2026: 50 + 50/25 × (54.40 − 35) = 88.8 → 89.
    assert c2["aqi"] == ceil(50 + 50 / 25 * (pm25 - 35)) == 89
    assert (c2["primary_pollutant"], c2["good_day"], c2["valid"]) == ("pm25_ug_m3", True, True)
    assert (c2["o3_8h_ug_m3"], c2["o3_8h_ug_m3_n"]) == (117.75, 17)


# ------------------------------------------------------------------- water, through the CLI

WATER = {  # id: (site, section type, assessment)
    "WQ-LAKE": ("白马湖断面", "lake", "national"),
    "WQ-RIVER": ("古黄河断面", "river", "provincial"),
}


def test_backfill_command_classes_a_lake_and_a_river_with_the_same_tp(
    influxdb: LocalInfluxDB, influx_db: str, tmp_path: Path
) -> None:
    registry = tmp_path / "registry.yaml"
    registry.write_text(
        yaml.safe_dump(
            {
                "devices": [
                    {
                        "id": d,
                        "kind": "water",
                        "site": s,
                        "county": "洪泽区",
                        "section_type": t,
                        "assessment": a,
                    }
                    for d, (s, t, a) in WATER.items()
                ]
            },
            allow_unicode=True,
        )
    )
    lines = []
    for device, (site, section, _) in WATER.items():
        for i in range(6 * 24):  # every 10 minutes on 28 Feb
            t = D1 + timedelta(minutes=10 * i)
            lines.append(
                f"water_quality,county=洪泽区,device_id={device},section_type={section},site={site}"
                f" ph=7.5,do_mg_l=8.0,codmn_mg_l=1.5,nh3n_mg_l=0.1,tp_mg_l=0.08 {ms(t)}"
            )
    influxdb.write("\n".join(lines), influx_db)
    env = {
        "ENVGRID_INFLUX__URL": influxdb.url,
        "ENVGRID_INFLUX__DATABASE": influx_db,
        "ENVGRID_DEVICES__REGISTRY": str(registry),
    }
    runner = CliRunner()
    result = runner.invoke(app, ["rollup", "--from", "2026-02-28", "--kind", "water"], env=env)
    assert result.exit_code == 0, result.output
    assert "rolled up 2026-02-28..2026-02-28" in result.output
    assert "water_section_daily 2" in result.output

    # TP 0.08, every other item Class I. GB 3838-2002 TP: river ≤ 0.1 is II (0.02 < 0.08);
    # lake and reservoir ≤ 0.1 is IV (0.05 < 0.08). Class III or better: river yes, lake no.
    want = {"WQ-LAKE": (4, False), "WQ-RIVER": (2, True)}
    for m, n in (("water_quality_hourly", 48), ("water_quality_daily", 2)):
        rows = influxdb.points(f'SELECT * FROM "{m}" GROUP BY *', influx_db)
        assert len(rows) == n
        for r in rows:
            assert (r["water_class"], r["meets_iii"]) == want[r["device_id"]]
            assert r["limiting_items"] == "tp_mg_l" and r["valid"] is True
    daily = {
        r["device_id"]: r
        for r in influxdb.points('SELECT * FROM "water_quality_daily" GROUP BY *', influx_db)
    }
    assert daily["WQ-LAKE"]["tp_mg_l_n"] == 24 and daily["WQ-LAKE"]["section_type"] == "lake"
    sections = influxdb.points('SELECT * FROM "water_section_daily" GROUP BY *', influx_db)
    got = {
        (r["site"], r["section_type"], r["assessment"], r["water_class"], r["meets_iii"])
        for r in sections
    }
    assert got == {
        ("白马湖断面", "lake", "national", 4, False),
        ("古黄河断面", "river", "provincial", 2, True),
    }
    assert {r["time"] for r in sections} == {ms(D1)}

    again = runner.invoke(app, ["rollup", "--from", "2026-02-28", "--kind", "water"], env=env)
    assert again.exit_code == 0 and influxdb.count("water_quality_hourly", influx_db) == 48


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "2026-02-30"], "--from '2026-02-30' is not a date: write it as YYYY-MM-DD"),
        (["--from", "2026-03-02", "--to", "2026-03-01"], "--to 2026-03-01 is before --from"),
        (["--from", "2026-03-01", "--kind", "soil"], "--kind 'soil' is not a rollup kind"),
    ],
)
def test_backfill_command_bad_input_is_one_line(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["rollup", *args])
    assert result.exit_code == 2
    assert message in result.output and result.output.count("\n") == 1
    assert "Traceback" not in result.output


def test_backfill_command_unreachable_influxdb_is_one_line() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = {"ENVGRID_INFLUX__URL": url, "ENVGRID_INFLUX__TIMEOUT_S": "2"}
    result = CliRunner().invoke(app, ["rollup", "--from", "2026-03-01"], env=env)
    assert result.exit_code == 1
    assert "did not answer" in result.output and result.output.count("\n") == 1
