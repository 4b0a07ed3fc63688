"""Rollup math (rollups.windows): windows, hourly and daily means, 8 h O3, validity, AQI, class.

Expected values are worked by hand in the comments from GB 3095-2012 Table 4 / HJ 663-2013
(validity), HJ 633 (AQI, tables in /work/shared/standards.md) and GB 3838-2002 (water class).
"""

from __future__ import annotations

import math
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from rollups.windows import (
    AIR_DAILY,
    AIR_HOURLY,
    CITY_AIR_DAILY,
    WATER_DAILY,
    WATER_HOURLY,
    WATER_SECTION_DAILY,
    Aggregate,
    HourValue,
    Options,
    Point,
    Station,
    Validity,
    Window,
    air_rollup,
    circular_mean_deg,
    daily_max_8h,
    daily_mean,
    day_window,
    hour_value,
    hour_windows,
    hourly_values,
    local_days,
    moving_8h,
    water_rollup,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
H = 3_600_000
M = 60_000
POLL = ("so2_ug_m3", "no2_ug_m3", "co_mg_m3", "o3_ug_m3", "pm10_ug_m3", "pm25_ug_m3")


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


# ------------------------------------------------------------------------------------ windows


def test_shanghai_day_is_24_hours_from_local_midnight() -> None:
    hours = hour_windows(date(2026, 3, 1), SHANGHAI)
    assert len(hours) == 24
    # 2026-03-01 00:00 +08:00 is 2026-02-28 16:00 UTC.
    assert hours[0] == Window(ms("2026-02-28T16:00:00+00:00"), ms("2026-02-28T17:00:00+00:00"))
    assert hours[-1].end_ms == ms("2026-03-01T16:00:00+00:00")
    assert day_window(date(2026, 3, 1), SHANGHAI) == Window(hours[0].start_ms, hours[-1].end_ms)


def test_dst_days_have_23_and_25_hours_and_half_hour_zones_align_locally() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    assert len(hour_windows(date(2026, 3, 29), berlin)) == 23  # clocks go forward
    assert len(hour_windows(date(2026, 10, 25), berlin)) == 25  # clocks go back
    kolkata = hour_windows(date(2026, 3, 1), ZoneInfo("Asia/Kolkata"))
    # +05:30: local hours start at :30 UTC.
    assert kolkata[0].start_ms == ms("2026-02-28T18:30:00+00:00")


def test_local_days_overlapping_a_period() -> None:
    start = ms("2026-02-28T15:59:00+00:00")  # 23:59 on the 28th in Shanghai
    end = ms("2026-03-01T16:00:00+00:00")  # 00:00 on 2 March: excluded
    assert local_days(start, end, SHANGHAI) == [date(2026, 2, 28), date(2026, 3, 1)]
    assert local_days(end, end, SHANGHAI) == []


# ------------------------------------------------------------------------------ hourly values


def test_hour_needs_45_minutes_covered() -> None:
    t0 = ms("2026-03-01T10:00:00+08:00")
    # 45 one-minute samples cover 45 minutes: valid (GB 3095-2012 Table 4: ≥ 45 min sampling).
    hv = hour_value("pm25_ug_m3", [(t0 + i * M, 10.0 + i) for i in range(45)], 45)
    assert hv == HourValue(value=10 + 22.0, n=45, valid=True, covered_ms=45 * M)  # mean 32
    # 44 minutes: not valid, but the mean and its count are still reported.
    hv = hour_value("pm25_ug_m3", [(t0 + i * M, 1.0) for i in range(44)], 45)
    assert hv is not None and (hv.valid, hv.n) == (False, 44)
    # 30-second data over 40 minutes: 80 values but only 40 minutes of coverage.
    hv = hour_value("pm25_ug_m3", [(t0 + i * 30_000, 2.0) for i in range(80)], 45)
    assert hv is not None and (hv.valid, hv.n, hv.value) == (False, 80, 2.0)
    assert hour_value("pm25_ug_m3", [], 45) is None


def test_station_hourly_value_replaces_the_mean() -> None:
    day = date(2026, 3, 1)
    hours = hour_windows(day, SHANGHAI)
    t = hours[5].start_ms
    st = Station(
        tags={"device_id": "X"},
        raw={"pm25_ug_m3": [(t + i * M, 10.0) for i in range(60)], "pm10_ug_m3": [(t, 7.0)]},
        hourly={"pm25_ug_m3": [(t, 33.0)]},  # HJ 212 CN 2061 value at the hour's start
    )
    values = hourly_values(st, hours, ["pm25_ug_m3", "pm10_ug_m3"], 45)
    assert values[5]["pm25_ug_m3"] == HourValue(33.0, 1, True, station=True)
    assert values[5]["pm10_ug_m3"] == HourValue(7.0, 1, False, covered_ms=M)  # 1 min of 60
    assert all(not v for i, v in enumerate(values) if i != 5)


def test_samples_fall_into_half_open_hours() -> None:
    hours = hour_windows(date(2026, 3, 1), SHANGHAI)
    edge = hours[1].start_ms  # 01:00 belongs to hour 1, not hour 0
    st = Station(tags={}, raw={"temp_c": [(edge - 1, 1.0), (edge, 5.0)]})
    values = hourly_values(st, hours, ["temp_c"], 1)
    assert values[0]["temp_c"].value == 1.0 and values[1]["temp_c"].value == 5.0


def test_wind_direction_is_averaged_as_an_angle() -> None:
    assert circular_mean_deg([350.0, 10.0]) == pytest.approx(0.0, abs=1e-9)
    assert circular_mean_deg([90.0, 180.0]) == pytest.approx(135.0)
    t = ms("2026-03-01T10:00:00+08:00")
    hv = hour_value("wind_dir_deg", [(t, 350.0), (t + M, 20.0)], 1)
    assert hv is not None and hv.value == pytest.approx(5.0)  # not 185


# ------------------------------------------------------------------------------- daily means


def hv(value: float, valid: bool = True) -> HourValue:
    return HourValue(value, 60, valid)


def test_daily_mean_of_valid_hours_and_the_20_hour_rule() -> None:
    hours: list[HourValue | None] = [hv(float(h)) for h in range(20)] + [None] * 4
    # 20 valid hours 0..19: mean 9.5, valid (GB 3095: ≥ 20 hourly values).
    assert daily_mean("no2_ug_m3", hours, 20) == Aggregate(9.5, 20, True)
    hours[0] = hv(1000.0, valid=False)  # an invalid hour is left out, not averaged
    # 19 valid hours 1..19: mean 10, not valid.
    assert daily_mean("no2_ug_m3", hours, 20) == Aggregate(10.0, 19, False)
    assert daily_mean("no2_ug_m3", [None, hv(1.0, valid=False)], 20) is None


# ---------------------------------------------------------------------------------- O3 8 hour


def test_8h_moving_mean_is_hours_h_minus_7_to_h() -> None:
    windows = moving_8h([float(h) for h in range(24)], 6)
    assert windows[:7] == [None] * 7  # the first 8 h window ends with hour 7
    assert windows[7] == Aggregate(3.5, 8, True)  # mean of 0..7
    assert windows[23] == Aggregate(19.5, 8, True)  # mean of 16..23
    assert len(windows) == 24


def test_8h_mean_needs_6_hours() -> None:
    o3: list[float | None] = [float(h) for h in range(24)]
    o3[10] = o3[11] = None
    # Window 15 = hours 8..15 without 10, 11: 8+9+12+13+14+15 = 71 over 6 values, valid.
    assert moving_8h(o3, 6)[15] == Aggregate(71 / 6, 6, True)
    o3[12] = None
    # Now 8, 9, 13, 14, 15: 59 / 5, too few hours.
    assert moving_8h(o3, 6)[15] == Aggregate(59 / 5, 5, False)


def test_daily_max_8h_over_valid_windows_inside_the_day() -> None:
    o3: list[float | None] = [800.0, *([0.0] * 23)]
    # Hour 0 is in the day's first window only (hours 0..7): 800 / 8 = 100. 17 windows (7..23).
    assert daily_max_8h(o3, 6, 14) == Aggregate(100.0, 17, True)

    gap: list[float | None] = [10.0] * 24
    gap[17] = 500.0
    gap[18:] = [None] * 6
    # Window 17 (hours 10..17): (7 × 10 + 500) / 8 = 71.25, valid. Window 19 (12..19) holds
    # 12..17 (6 values): (5 × 10 + 500) / 6 = 91.67, valid, the max. Window 20 (13..20): 5 values,
    # mean 108, not valid so not the max. Valid windows: 7..19 = 13, fewer than 14.
    got = daily_max_8h(gap, 6, 14)
    assert got is not None
    assert got.value == pytest.approx(550 / 6) and (got.n, got.valid) == (13, False)
    assert daily_max_8h([None] * 24, 6, 14) is None


# -------------------------------------------------------------------------------- air rollups


def air_station(device: str, day: date, values: dict[str, float], assessment: str) -> Station:
    """Every minute of the day with constant values."""
    start = day_window(day, SHANGHAI).start_ms
    raw = {k: [(start + i * M, v) for i in range(1440)] for k, v in values.items()}
    return Station(
        tags={"device_id": device, "assessment": assessment}, raw=raw, assessment=assessment
    )


AIR_VALUES = {
    "pm25_ug_m3": 70.0,
    "pm10_ug_m3": 80.0,
    "so2_ug_m3": 10.0,
    "no2_ug_m3": 30.0,
    "co_mg_m3": 0.8,
    "o3_ug_m3": 100.0,
}


def by(points: list[Point], measurement: str) -> list[Point]:
    return [p for p in points if p.measurement == measurement]


def test_air_day_edition_follows_the_local_date() -> None:
    opts = Options(tz=SHANGHAI)
    for day, edition, aqi, good in (
        # 2012: PM2.5 70 in 35..75 → 50 + 50/40 × 35 = 93.75 → 94.
        (date(2026, 2, 28), "2012", 94, True),
        # 2026: PM2.5 70 in 60..115 → 100 + 50/55 × 10 = 109.09 → 110.
        (date(2026, 3, 1), "2026", 110, False),
    ):
        points = air_rollup([air_station("A", day, AIR_VALUES, "national")], day, opts)
        (daily,) = by(points, AIR_DAILY)
        assert daily.tags["aqi_edition"] == edition
        assert daily.ts_ms == day_window(day, SHANGHAI).start_ms
        f = daily.fields
        assert (f["aqi"], f["good_day"], f["valid"]) == (aqi, good, True)
        assert f["primary_pollutant"] == "pm25_ug_m3" and f["pm25_ug_m3_n"] == 24
        # O3 constant 100: every 8 h mean is 100 → IAQI 50; 17 windows; 1 h max 100.
        assert (f["o3_8h_ug_m3"], f["o3_8h_ug_m3_n"], f["o3_1h_max_ug_m3"]) == (100.0, 17, 100.0)
        assert "o3_ug_m3" not in f  # no 24 h O3 statistic
        hourly = by(points, AIR_HOURLY)
        assert len(hourly) == 24 and {p.tags["aqi_edition"] for p in hourly} == {edition}


def test_forced_edition_wins_over_the_date() -> None:
    day = date(2026, 2, 28)
    opts = Options(tz=SHANGHAI, forced_edition="2026")
    points = air_rollup([air_station("A", day, AIR_VALUES, "national")], day, opts)
    (daily,) = by(points, AIR_DAILY)
    assert daily.tags["aqi_edition"] == "2026" and daily.fields["aqi"] == 110


def test_hourly_real_time_aqi_and_validity() -> None:
    day = date(2026, 3, 1)
    st = air_station("A", day, AIR_VALUES, "national")
    st.raw["so2_ug_m3"] = [s for s in st.raw["so2_ug_m3"] if s[0] % H >= 20 * M]  # 40 min/h
    points = air_rollup([st], day, Options(tz=SHANGHAI), hours={3}, daily=False)
    (p,) = points  # one hour asked for, no daily
    assert p.measurement == AIR_HOURLY and p.ts_ms == hour_windows(day, SHANGHAI)[3].start_ms
    # 1 h tables: SO2 10 → 10 × 50/150 = 3.3 → 4; NO2 30 → 15; CO 0.8 → 8; O3 100 → 31.25 → 32;
    # PM on its 24 h table (2026): PM10 80 → 50 + 50/70 × 30 = 71.4 → 72; PM2.5 70 → 110.
    assert (p.fields["aqi"], p.fields["aqi_category"]) == (110, 3)
    assert p.fields["so2_ug_m3_n"] == 40 and p.fields["valid"] is False  # SO2 short of 45 min
    assert p.fields["source"] == "computed" and "good_day" not in p.fields


def test_day_is_invalid_below_20_hours_and_without_a_pollutant() -> None:
    day = date(2026, 3, 1)
    st = air_station("A", day, AIR_VALUES, "national")
    start = day_window(day, SHANGHAI).start_ms
    st.raw["pm25_ug_m3"] = [s for s in st.raw["pm25_ug_m3"] if s[0] >= start + 5 * H]  # 19 h
    (daily,) = by(air_rollup([st], day, Options(tz=SHANGHAI)), AIR_DAILY)
    assert (daily.fields["pm25_ug_m3_n"], daily.fields["valid"]) == (19, False)

    del st.raw["pm25_ug_m3"]
    (daily,) = by(air_rollup([st], day, Options(tz=SHANGHAI)), AIR_DAILY)
    # Without PM2.5: the AQI is worked from what there is (PM10 72 in 2026), not valid.
    assert (daily.fields["aqi"], daily.fields["valid"]) == (72, False)


def test_primary_pollutant_is_written_empty_when_aqi_is_50_or_less() -> None:
    day = date(2026, 3, 1)
    clean = {k: 1.0 for k in POLL}
    (daily,) = by(air_rollup([air_station("A", day, clean, "national")], day, Options()), AIR_DAILY)
    aqi = daily.fields["aqi"]
    assert daily.fields["primary_pollutant"] == "" and isinstance(aqi, int) and aqi <= 50


def test_city_daily_from_national_stations_only() -> None:
    day = date(2026, 2, 28)
    a = air_station("A", day, {**AIR_VALUES, "pm25_ug_m3": 60.0}, "national")
    b = air_station("B", day, {**AIR_VALUES, "pm25_ug_m3": 40.0}, "national")
    c = air_station("C", day, {**AIR_VALUES, "pm25_ug_m3": 400.0}, "provincial")
    (city,) = by(air_rollup([a, b, c], day, Options(tz=SHANGHAI)), CITY_AIR_DAILY)
    # City hour = mean of A and B = 50 every hour; C (provincial) is not in it.
    # 2012: PM2.5 50 → 50 + 50/40 × 15 = 68.75 → 69.
    assert city.fields["pm25_ug_m3"] == 50.0 and city.fields["pm25_ug_m3_n"] == 24
    assert (city.fields["aqi"], city.fields["stations"], city.fields["valid"]) == (69, 2, True)
    assert city.tags == {"assessment": "national", "aqi_edition": "2012"}


# ------------------------------------------------------------------------------ water rollups


def water_station(device: str, section: str, assessment: str, tp: float) -> Station:
    start = day_window(date(2026, 2, 28), SHANGHAI).start_ms
    items = {"ph": 7.5, "do_mg_l": 8.0, "codmn_mg_l": 1.5, "nh3n_mg_l": 0.1, "tp_mg_l": tp}
    raw = {k: [(start + i * 4 * H, v) for i in range(6)] for k, v in items.items()}  # every 4 h
    tags = {"device_id": device, "site": f"site-{device}", "section_type": section}
    return Station(tags=tags, raw=raw, assessment=assessment)


def test_same_tp_on_a_lake_and_a_river() -> None:
    day = date(2026, 2, 28)
    stations = [
        water_station("L", "lake", "national", 0.08),
        water_station("R", "river", "provincial", 0.08),
        water_station("U", "river", "", 0.08),  # not an assessed section
    ]
    points = water_rollup(stations, day, Options(tz=SHANGHAI))
    # Every other item is Class I. TP 0.08: river row 0.02 < 0.08 ≤ 0.1 → II;
    # lake row 0.05 < 0.08 ≤ 0.1 → IV.
    want = {"L": (4, False), "R": (2, True), "U": (2, True)}
    for measurement in (WATER_HOURLY, WATER_DAILY):
        for p in by(points, measurement):
            cls, meets = want[p.tags["device_id"]]
            assert (p.fields["water_class"], p.fields["meets_iii"]) == (cls, meets)
            assert p.fields["limiting_items"] == "tp_mg_l"
    assert len(by(points, WATER_HOURLY)) == 18  # 6 sampled hours × 3 stations
    daily = {p.tags["device_id"]: p.fields for p in by(points, WATER_DAILY)}
    assert daily["L"]["tp_mg_l_n"] == 6 and daily["L"]["valid"] is True
    assert math.isclose(float(daily["L"]["tp_mg_l"]), 0.08)
    sections = {p.tags["site"]: p for p in by(points, WATER_SECTION_DAILY)}
    assert set(sections) == {"site-L", "site-R"}
    assert sections["site-L"].tags == {
        "site": "site-L",
        "section_type": "lake",
        "assessment": "national",
    }
    assert (sections["site-L"].fields["water_class"], sections["site-L"].fields["meets_iii"]) == (
        4,
        False,
    )
    assert sections["site-R"].fields["meets_iii"] is True


def test_water_class_i_writes_empty_limiting_items() -> None:
    st = water_station("R", "river", "city", 0.01)
    (daily,) = by(water_rollup([st], date(2026, 2, 28), Options(tz=SHANGHAI)), WATER_DAILY)
    assert (daily.fields["water_class"], daily.fields["limiting_items"]) == (1, "")


def test_point_line_protocol() -> None:
    p = Point(
        "air_quality_daily",
        {"site": "清江浦 1", "aqi_edition": "2026"},
        {"aqi": 3, "valid": True, "x": 1.5, "primary_pollutant": ""},
        1000,
    )
    assert p.line() == (
        "air_quality_daily,aqi_edition=2026,site=清江浦\\ 1 aqi=3i,valid=true,x=1.5,"
        'primary_pollutant="" 1000'
    )


def test_validity_defaults_are_the_standards() -> None:
    v = Validity()
    assert (v.hour_min_minutes, v.day_min_hours, v.o3_8h_min_hours, v.o3_8h_min_windows) == (
        45,
        20,
        6,
        14,
    )
