"""Hourly validity by covered time (issue 16): each sample counts for the device's reporting
interval (registry ``interval``, else learned from its spacing, at most
``Validity.max_sample_interval_ms``), capped at the gap to the next sample and the hour's end.
GB 3095-2012 Table 4: an air 1 h mean needs ≥ 45 minutes of sampling."""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

import pytest

from rollups.windows import (
    AIR_DAILY,
    AIR_HOURLY,
    CITY_AIR_DAILY,
    MINUTE_MS,
    Interval,
    Options,
    Point,
    Station,
    Validity,
    air_rollup,
    covered_ms,
    day_window,
    sample_interval,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
M = MINUTE_MS
H = 60 * M
DAY = date(2026, 3, 2)
VALUES = {
    "pm25_ug_m3": 30.0,
    "pm10_ug_m3": 50.0,
    "so2_ug_m3": 8.0,
    "no2_ug_m3": 20.0,
    "co_mg_m3": 0.6,
    "o3_ug_m3": 60.0,
}


def station(step_ms: int, offset_ms: int = 0, interval_ms: int | None = None) -> Station:
    """A day of constant values every ``step_ms``, starting ``offset_ms`` after midnight."""
    start = day_window(DAY, SHANGHAI).start_ms + offset_ms
    n = (24 * 60 * M - offset_ms + step_ms - 1) // step_ms
    raw = {k: [(start + i * step_ms, v) for i in range(n)] for k, v in VALUES.items()}
    return Station(tags={"device_id": "A"}, raw=raw, interval_ms=interval_ms)


def by(points: list[Point], measurement: str) -> list[Point]:
    return [p for p in points if p.measurement == measurement]


@pytest.mark.parametrize(
    ("step_ms", "offset_ms"),
    [
        (5 * M, 0),  # every 5 minutes on the clock
        (5 * M, 5 * M - 2_000),  # every 5 minutes, stamped at the end of each 5 minutes
        (M, 17_000),  # every minute, 17 s past
        (30_000, 0),  # every 30 s
    ],
)
def test_regular_stations_get_24_valid_hours_and_a_valid_day_by_default(
    step_ms: int, offset_ms: int
) -> None:
    points = air_rollup([station(step_ms, offset_ms)], DAY, Options(tz=SHANGHAI))
    hourly = by(points, AIR_HOURLY)
    assert len(hourly) == 24 and all(p.fields["valid"] is True for p in hourly)
    assert {p.fields["interval_s"] for p in hourly} == {step_ms / 1000}
    (daily,) = by(points, AIR_DAILY)
    assert daily.fields["valid"] is True and daily.fields["invalid_reason"] == ""
    assert daily.fields["pm25_ug_m3_n"] == 24 and isinstance(daily.fields["aqi"], int)


def test_one_spot_value_per_hour_is_not_a_valid_hour_and_the_day_says_why() -> None:
    points = air_rollup([station(60 * M, 20 * M)], DAY, Options(tz=SHANGHAI))
    hourly = by(points, AIR_HOURLY)
    assert len(hourly) == 24 and not any(p.fields["valid"] for p in hourly)
    # The learned spacing is 60 min, but one sample counts for at most 15 minutes.
    assert {p.fields["pm25_ug_m3_covered_min"] for p in hourly} == {15.0}
    (daily,) = by(points, AIR_DAILY)
    assert daily.fields["valid"] is False
    reason = str(daily.fields["invalid_reason"])
    assert "pm25_ug_m3: 0 valid hours of 20 needed" in reason
    assert "cover at most 15 of 45 min" in reason and "counted as 15 min" in reason


def test_a_learned_interval_does_not_cover_a_gap() -> None:
    # 5-minute data with a 30-minute hole in every hour: 6 samples × 5 min = 30 min → invalid.
    st = station(5 * M)
    st.raw = {k: [s for s in v if s[0] % (60 * M) < 30 * M] for k, v in st.raw.items()}
    assert sample_interval(st, 15 * M) == Interval(5 * M, "learned")
    hourly = by(air_rollup([st], DAY, Options(tz=SHANGHAI), daily=False), AIR_HOURLY)
    assert {p.fields["so2_ug_m3_covered_min"] for p in hourly} == {30.0}
    assert not any(p.fields["valid"] for p in hourly)


def test_the_registry_interval_wins_over_the_spacing() -> None:
    # A 10-minute station that lost every other reading: spacing says 20 min (capped at 15), the
    # registry says 10 min; 3 samples × 10 min = 30 min → invalid, as it should be.
    st = station(20 * M, interval_ms=10 * M)
    assert sample_interval(st, 15 * M) == Interval(10 * M, "registry")
    hourly = by(air_rollup([st], DAY, Options(tz=SHANGHAI), daily=False), AIR_HOURLY)
    assert {p.fields["pm25_ug_m3_covered_min"] for p in hourly} == {30.0}
    assert not any(p.fields["valid"] for p in hourly)


def test_the_cap_and_the_minimum_are_settings() -> None:
    opts = Options(tz=SHANGHAI, validity=Validity(hour_min_minutes=45, max_sample_interval_ms=H))
    points = air_rollup([station(60 * M, 20 * M)], DAY, opts, daily=False)
    # A 60-minute cap lets the spot value count to the hour's end (40 min from :20): still short.
    assert {p.fields["pm25_ug_m3_covered_min"] for p in by(points, AIR_HOURLY)} == {40.0}
    opts = Options(tz=SHANGHAI, validity=Validity(hour_min_minutes=40, max_sample_interval_ms=H))
    points = air_rollup([station(60 * M, 20 * M)], DAY, opts, daily=False)
    assert all(p.fields["valid"] for p in by(points, AIR_HOURLY))


def test_covered_time_caps_each_sample_at_the_next_one_and_the_window_end() -> None:
    assert covered_ms([0, 60_000, 60_000, 90_000], 5 * M, 100_000) == 60_000 + 30_000 + 10_000
    assert covered_ms([0], 5 * M) == 5 * M
    assert covered_ms([], 5 * M, 100) == 0
    # Too few sample times to learn from: one minute each (the old per-minute count).
    assert sample_interval(Station(tags={}, raw={"x": [(0, 1.0)]}), 15 * M).ms == M


def test_the_city_day_names_the_stations_behind_an_invalid_day() -> None:
    spot = station(60 * M, 20 * M)
    spot.tags, spot.assessment = {"device_id": "SPOT"}, "national"
    points = air_rollup([spot], DAY, Options(tz=SHANGHAI))
    (city,) = by(points, CITY_AIR_DAILY)
    reason = str(city.fields["invalid_reason"])
    city_part, station_part = reason.split(" | ")
    assert city_part.startswith("city: so2_ug_m3: 0 valid hours of 20 needed; no2_ug_m3: 0 ")
    assert station_part.startswith("SPOT: so2_ug_m3: 0 valid hours of 20 needed (24 h with data")
    assert "cover at most 15 of 45 min" in station_part
    assert city.fields["valid"] is False and "aqi" not in city.fields
