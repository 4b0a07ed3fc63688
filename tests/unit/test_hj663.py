"""HJ 663 period assessment, checked against an independent calculation written here.

The reference below works in `fractions.Fraction` with its own percentile (zero-based position
p·(n−1)/100) and its own GB/T 8170 rounding (integer arithmetic on the scaled value); the
limits are typed again from docs/standards.md.
"""

from __future__ import annotations

import math
from datetime import date, timedelta
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.hj663 import (
    POLLUTANTS,
    Assessment,
    DayValues,
    assess,
    change_rate,
    combine,
    percentile,
    rank,
    round_half_even,
    three_year_average,
)

# --- the independent reference ------------------------------------------------------------

# S_i of the composite index: annual (SO2, NO2, PM10, PM2.5), 24 h (CO), 8 h (O3), grade II.
S_2012 = {"so2": 60, "no2": 40, "pm10": 70, "pm25": 35, "co": 4, "o3_8h": 160}
S_TRANSITION = {"so2": 60, "no2": 40, "pm10": 60, "pm25": 30, "co": 4, "o3_8h": 160}
# 24 h limits (O3: 8 h) a day is judged by.
DAY_2012 = {"so2": 150, "no2": 80, "pm10": 150, "pm25": 75, "co": 4, "o3_8h": 160}
DAY_TRANSITION = {"so2": 150, "no2": 80, "pm10": 120, "pm25": 60, "co": 4, "o3_8h": 160}
DIGITS = {"so2": 0, "no2": 0, "pm10": 0, "pm25": 0, "co": 1, "o3_8h": 0}


def ref_round(x: Fraction, digits: int) -> Fraction:
    """四舍六入五成双 on an exact value: integer part and remainder of the scaled value."""
    scale = 10**digits
    scaled = x * scale
    whole = scaled.numerator // scaled.denominator
    rest = scaled - whole
    if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and whole % 2 == 1):
        whole += 1
    return Fraction(whole, scale)


def ref_percentile(values: list[Fraction], p: int) -> Fraction:
    xs = sorted(values)
    pos = Fraction(p, 100) * (len(xs) - 1)  # zero-based position
    lo = math.floor(pos)
    if lo + 1 >= len(xs):
        return xs[-1]
    return xs[lo] + (xs[lo + 1] - xs[lo]) * (pos - lo)


def fr(x: float) -> Fraction:
    return Fraction(str(x))


def ref_stats(rows: list[DayValues]) -> dict[str, Fraction]:
    out: dict[str, Fraction] = {}
    for p in POLLUTANTS:
        values = [fr(v) for r in rows if (v := getattr(r, p)) is not None]
        if p == "co":
            stat = ref_percentile(values, 95)
        elif p == "o3_8h":
            stat = ref_percentile(values, 90)
        else:
            stat = sum(values, Fraction(0)) / len(values)
        out[p] = ref_round(stat, DIGITS[p])
    return out


def ref_composite(stats: dict[str, Fraction], s: dict[str, int]) -> Fraction:
    return ref_round(sum((stats[p] / s[p] for p in POLLUTANTS), Fraction(0)), 2)


# --- helpers -------------------------------------------------------------------------------


def dv(
    day: date,
    so2: float | None = 8,
    no2: float | None = 30,
    pm10: float | None = 55,
    pm25: float | None = 28,
    co: float | None = 0.7,
    o3_8h: float | None = 110,
    aqi: int | None = 60,
    category: int | None = None,
) -> DayValues:
    if category is None and aqi is not None:
        category = 1 if aqi <= 50 else 2 if aqi <= 100 else 3 if aqi <= 150 else 4
    return DayValues(day, so2, no2, pm10, pm25, co, o3_8h, aqi, category)


def month(year: int, m: int) -> list[date]:
    first = date(year, m, 1)
    nxt = date(year + (m == 12), m % 12 + 1, 1)
    return [first + timedelta(days=i) for i in range((nxt - first).days)]


# A hand-typed November 2026 (transition limits), 30 days.
NOV = month(2026, 11)
PM25_NOV = [22, 35, 41, 58, 61, 75, 18, 26, 33, 47, 52, 29, 31, 44, 39,
            27, 64, 80, 36, 24, 21, 19, 45, 50, 62, 38, 30, 28, 33, 41]  # fmt: skip
PM10_NOV = [40, 55, 66, 90, 101, 125, 30, 45, 50, 70, 85, 48, 52, 68, 60,
            44, 110, 130, 57, 38, 35, 33, 72, 80, 99, 61, 49, 46, 54, 67]  # fmt: skip
CO_NOV = [0.6, 0.8, 0.9, 1.2, 1.3, 1.6, 0.5, 0.7, 0.8, 1.0, 1.1, 0.7, 0.7, 1.0, 0.9,
          0.6, 1.4, 1.7, 0.8, 0.6, 0.5, 0.5, 1.0, 1.1, 1.3, 0.9, 0.7, 0.7, 0.8, 0.9]  # fmt: skip
O3_NOV = [88, 95, 102, 110, 120, 99, 85, 90, 96, 118, 125, 101, 97, 93, 105,
          87, 115, 108, 92, 84, 80, 79, 100, 112, 119, 94, 91, 89, 86, 98]  # fmt: skip
NO2_NOV = [25, 31, 36, 48, 52, 60, 20, 27, 30, 41, 45, 29, 30, 38, 35,
           26, 55, 62, 33, 24, 22, 21, 40, 44, 53, 34, 29, 28, 30, 37]  # fmt: skip
SO2_NOV = [6, 7, 8, 10, 11, 13, 5, 6, 7, 9, 9, 6, 7, 8, 8,
           6, 12, 14, 7, 5, 5, 5, 9, 9, 11, 8, 6, 6, 7, 8]  # fmt: skip
AQI_NOV = [50, 72, 85, 112, 122, 134, 40, 55, 68, 95, 108, 60, 62, 90, 80,
           58, 128, 144, 75, 48, 45, 42, 99, 104, 125, 79, 63, 57, 66, 85]  # fmt: skip


def november() -> list[DayValues]:
    return [
        dv(d, SO2_NOV[i], NO2_NOV[i], PM10_NOV[i], PM25_NOV[i], CO_NOV[i], O3_NOV[i], AQI_NOV[i])
        for i, d in enumerate(NOV)
    ]


# --- percentile and rounding ---------------------------------------------------------------


def test_percentile_hand_worked() -> None:
    # k = 1 + 9 * 0.95 = 9.55: X(9) + 0.55 * (X(10) - X(9)) = 9.55
    assert percentile([10, 9, 8, 7, 6, 5, 4, 3, 2, 1], 95) == pytest.approx(9.55)
    # Ties: k = 1 + 3 * 0.9 = 3.7 between X(3) = 2 and X(4) = 3.
    assert percentile([2, 3, 2, 2], 90) == pytest.approx(2.7)
    assert percentile([4, 4, 4, 4, 4], 95) == 4
    assert percentile([7.5], 90) == 7.5
    assert percentile([1, 2], 100) == 2
    assert percentile([1, 2], 0) == 1
    with pytest.raises(ValueError):
        percentile([], 90)
    with pytest.raises(ValueError):
        percentile([1], 101)


@pytest.mark.parametrize(
    ("value", "digits", "expected"),
    [
        (2.5, 0, 2.0),
        (3.5, 0, 4.0),
        (32.5, 0, 32.0),
        (33.5, 0, 34.0),
        (0.25, 1, 0.2),
        (0.35, 1, 0.4),
        (1.45, 1, 1.4),  # the binary float is below 1.45; the written decimal is on the 5
        (1.050001, 1, 1.1),  # 5 followed by a non-zero digit carries
        (2.449, 1, 2.4),
        (2.46, 1, 2.5),
        (4.335, 2, 4.34),
        (4.345, 2, 4.34),
    ],
)
def test_round_half_even_at_the_boundaries(value: float, digits: int, expected: float) -> None:
    assert round_half_even(value, digits) == expected


@given(
    st.decimals(min_value=0, max_value=10_000, places=4, allow_nan=False, allow_infinity=False),
    st.integers(min_value=0, max_value=3),
)
def test_round_half_even_matches_the_reference(value: object, digits: int) -> None:
    x = float(str(value))
    assert Fraction(str(round_half_even(x, digits))) == ref_round(fr(x), digits)


@given(
    st.lists(st.integers(min_value=0, max_value=5000), min_size=1, max_size=60),
    st.integers(min_value=0, max_value=100),
)
def test_percentile_matches_the_reference(values: list[int], p: int) -> None:
    got = percentile([v / 10 for v in values], p)
    want = ref_percentile([Fraction(v, 10) for v in values], p)
    assert got == pytest.approx(float(want), abs=1e-9)
    assert min(values) / 10 - 1e-9 <= got <= max(values) / 10 + 1e-9


# --- a seeded month ------------------------------------------------------------------------


def test_a_month_matches_the_independent_calculation() -> None:
    days = november()
    a = assess(days, NOV[0], NOV[-1])
    want = ref_stats(days)
    got = {
        "so2": a.so2,
        "no2": a.no2,
        "pm10": a.pm10,
        "pm25": a.pm25,
        "co": a.co_p95,
        "o3_8h": a.o3_8h_p90,
    }
    for p in POLLUTANTS:
        assert got[p] is not None
        assert fr(got[p]) == want[p], p
    assert a.composite_index is not None
    assert fr(a.composite_index) == ref_composite(want, S_TRANSITION)
    total = sum((want[p] / S_TRANSITION[p] for p in POLLUTANTS), Fraction(0))
    for p in POLLUTANTS:
        assert fr(a.shares[p]) == ref_round(want[p] / S_TRANSITION[p] * 100 / total, 1)
    assert a.valid_days == 30
    assert a.good_days == sum(1 for x in AQI_NOV if x <= 100)
    assert a.category_days == (
        sum(1 for x in AQI_NOV if x <= 50),
        sum(1 for x in AQI_NOV if 50 < x <= 100),
        sum(1 for x in AQI_NOV if 100 < x <= 150),
        0,
        0,
        0,
    )
    assert a.good_day_ratio is not None
    assert fr(a.good_day_ratio) == ref_round(Fraction(a.good_days * 100, 30), 1)
    assert a.over_limit_days["pm25"] == sum(1 for x in PM25_NOV if x > 60)
    assert a.over_limit_days["pm10"] == sum(1 for x in PM10_NOV if x > 120)
    assert a.over_limit_days["o3_8h"] == 0
    assert a.enough_data == dict.fromkeys(POLLUTANTS, True)
    assert a.compliance["pm25"] is (want["pm25"] <= 30)
    assert a.compliance["so2"] is True
    assert a.editions == ("GB 3095-2026 transition",)
    assert a.excluded_days == 0


def test_hand_worked_month_figures() -> None:
    """A few of the reference figures worked by hand, so the reference is checked too."""
    a = assess(november(), NOV[0], NOV[-1])
    # PM2.5: sum 1209 / 30 = 40.3 -> 40; SO2: 238 / 30 = 7.93 -> 8.
    assert (a.pm25, a.so2) == (40, 8)
    # CO sorted: X(28) = 1.4, X(29) = 1.6; k = 1 + 29 * 0.95 = 28.55 -> 1.4 + 0.55 * 0.2 = 1.51.
    assert a.co_p95 == 1.5


def test_a_mean_on_half_rounds_to_even() -> None:
    days = [dv(date(2026, 11, 1), pm25=32), dv(date(2026, 11, 2), pm25=33)]
    assert assess(days, date(2026, 11, 1), date(2026, 11, 2)).pm25 == 32  # 32.5 -> 32
    days = [dv(date(2026, 11, 1), pm25=33), dv(date(2026, 11, 2), pm25=34)]
    assert assess(days, date(2026, 11, 1), date(2026, 11, 2)).pm25 == 34  # 33.5 -> 34


# --- validity --------------------------------------------------------------------------------


def _month_with_valid(dates: list[date], valid: int) -> list[DayValues]:
    return [dv(d) if i < valid else dv(d, pm25=None, aqi=None) for i, d in enumerate(dates)]


@pytest.mark.parametrize(
    ("year", "m", "valid", "enough"),
    [(2026, 11, 27, True), (2026, 11, 26, False), (2026, 2, 25, True), (2026, 2, 24, False)],
)
def test_too_few_valid_days(year: int, m: int, valid: int, enough: bool) -> None:
    dates = month(year, m)
    a = assess(_month_with_valid(dates, valid), dates[0], dates[-1])
    assert a.enough_data["pm25"] is enough
    assert a.enough_data["so2"] is True
    assert (a.compliance["pm25"] is None) is (not enough)
    assert a.valid_days == valid
    # The statistic is still reported; whether it counts is `enough_data`.
    assert a.pm25 == 28


def test_no_data_at_all() -> None:
    a = assess([], date(2026, 11, 1), date(2026, 11, 30))
    assert a.pm25 is None and a.co_p95 is None and a.composite_index is None
    assert a.good_day_ratio is None and a.valid_days == 0 and a.shares == {}
    assert a.enough_data == dict.fromkeys(POLLUTANTS, False)
    assert a.compliance == dict.fromkeys(POLLUTANTS, None)


def test_a_year_needs_324_days() -> None:
    year = [date(2027, 1, 1) + timedelta(days=i) for i in range(365)]
    # 27 valid days in every month but February (25) = 11 * 27 + 25 = 322 < 324.
    rows: list[DayValues] = []
    for m in range(1, 13):
        dates = [d for d in year if d.month == m]
        rows += _month_with_valid(dates, 25 if m == 2 else 27)
    a = assess(rows, year[0], year[-1])
    assert a.valid_days == 322
    assert a.enough_data["pm25"] is False
    assert a.enough_data["so2"] is True


# --- editions --------------------------------------------------------------------------------


def test_a_month_spanning_2026_03_01() -> None:
    first, last = date(2026, 2, 15), date(2026, 3, 14)
    rows = [dv(first + timedelta(days=i)) for i in range(28)]
    # 70 on 2026-02-20 is within the 2012 limit (75); 70 on 2026-03-05 is over the 2026 one (60).
    rows[5] = dv(date(2026, 2, 20), pm25=70, pm10=140)
    rows[18] = dv(date(2026, 3, 5), pm25=70, pm10=140)
    a = assess(rows, first, last)
    assert a.editions == ("GB 3095-2012", "GB 3095-2026 transition")
    assert a.over_limit_days["pm25"] == 1
    assert a.over_limit_days["pm10"] == 1  # 140 <= 150 (2012), > 120 (2026)
    # The period is judged by the limits in force on its last day.
    stats = ref_stats(rows)
    assert a.composite_index is not None
    assert fr(a.composite_index) == ref_composite(stats, S_TRANSITION)
    assert fr(a.composite_index) != ref_composite(stats, S_2012)


def test_a_2012_month_uses_the_2012_limits() -> None:
    dates = month(2025, 11)
    rows = [dv(d, pm25=40) for d in dates]
    a = assess(rows, dates[0], dates[-1])
    assert a.editions == ("GB 3095-2012",)
    assert a.compliance["pm25"] is False  # 40 > 35
    assert a.composite_index is not None
    assert fr(a.composite_index) == ref_composite(ref_stats(rows), S_2012)


# --- exceptional events ----------------------------------------------------------------------


def test_exceptional_event_days_leave_the_assessment() -> None:
    days = november()
    worst = NOV[PM25_NOV.index(80)]
    marked = assess(days, NOV[0], NOV[-1], excluded={worst})
    unmarked = assess(days, NOV[0], NOV[-1])
    kept = [d for d in days if d.day != worst]
    assert marked.excluded_days == 1 and unmarked.excluded_days == 0
    assert marked.valid_days == 29 and unmarked.valid_days == 30
    assert marked.pm25 is not None
    assert fr(marked.pm25) == ref_stats(kept)["pm25"]
    assert marked.over_limit_days["pm25"] == unmarked.over_limit_days["pm25"] - 1
    # An excluded date outside the period changes nothing.
    assert assess(days, NOV[0], NOV[-1], excluded={date(2026, 12, 1)}) == unmarked


def test_an_excluded_day_is_not_a_missing_day() -> None:
    # 3 days missing (the most November may miss) plus 1 exceptional day: still enough.
    rows = _month_with_valid(NOV, 27)
    a = assess(rows, NOV[0], NOV[-1], excluded={NOV[0]})
    assert a.valid_days == 26
    assert a.enough_data["pm25"] is True


def test_duplicate_days_are_refused() -> None:
    with pytest.raises(ValueError, match="same day"):
        assess([dv(NOV[0]), dv(NOV[0])], NOV[0], NOV[-1])
    with pytest.raises(ValueError, match="before"):
        assess([], NOV[-1], NOV[0])


# --- areas -----------------------------------------------------------------------------------


def test_combine_means_the_stations_and_recomputes_the_aqi_by_edition() -> None:
    low = {"so2": 5, "no2": 20, "pm10": 40, "co": 0.5, "o3_8h": 80}
    before, after = date(2026, 2, 28), date(2026, 3, 1)
    a = [dv(before, pm25=60, **low), dv(after, pm25=60, **low)]
    b = [dv(before, pm25=62, **low), dv(after, pm25=62, **low), dv(date(2026, 3, 2), pm25=None)]
    area = combine([a, b])
    assert [d.day for d in area] == [before, after, date(2026, 3, 2)]
    assert area[0].pm25 == 61
    # HJ 633-2012: 61 in 35..75 -> 50 + 50 * (61 - 35) / 40 = 82.5 -> 83.
    assert (area[0].aqi, area[0].category) == (83, 2)
    # HJ 633-2026: 61 in 60..115 -> 100 + 50 * (61 - 60) / 55 = 100.9 -> 101.
    assert (area[1].aqi, area[1].category) == (101, 3)
    # One station alone that day, without PM2.5: no valid AQI for the area.
    assert area[2].pm25 is None and area[2].so2 == 8 and area[2].aqi is None


# --- three-year average ----------------------------------------------------------------------


def _year(y: int, pm25: float) -> Assessment:
    first, last = date(y, 1, 1), date(y, 12, 31)
    rows = [dv(first + timedelta(days=i), pm25=pm25) for i in range((last - first).days + 1)]
    return assess(rows, first, last)


def test_three_year_average() -> None:
    years = [_year(2027, 33), _year(2028, 30), _year(2029, 28)]
    avg = three_year_average(list(reversed(years)))
    assert (avg.first_year, avg.last_year) == (2027, 2029)
    assert avg.values["pm25"] == 30  # (33 + 30 + 28) / 3 = 30.33 -> 30
    assert avg.compliance["pm25"] is True  # 30 <= 30 (transition limit at the end of 2029)
    assert avg.edition == "GB 3095-2026 transition"
    stats = {p: fr(v) for p, v in avg.values.items() if v is not None}
    assert avg.composite_index is not None
    assert fr(avg.composite_index) == ref_composite(stats, S_TRANSITION)


def test_three_year_average_refuses_what_is_not_three_years() -> None:
    with pytest.raises(ValueError, match="consecutive"):
        three_year_average([_year(2027, 30), _year(2028, 30), _year(2030, 30)])
    with pytest.raises(ValueError, match="3 annual"):
        three_year_average([_year(2027, 30)])
    with pytest.raises(ValueError, match="calendar year"):
        three_year_average([assess([], NOV[0], NOV[-1])] * 3)


# --- more boundaries -------------------------------------------------------------------------


@pytest.mark.parametrize(("pm25", "over"), [(60, 0), (60.4, 0), (60.5, 0), (61.5, 1), (60.51, 1)])
def test_a_day_on_the_limit_is_not_over_it(pm25: float, over: int) -> None:
    # Rounded as published first (60.5 -> 60, 61.5 -> 62, 60.51 -> 61), then compared with 60.
    a = assess([dv(NOV[0], pm25=pm25)], NOV[0], NOV[0])
    assert a.over_limit_days["pm25"] == over


def test_a_calendar_year_also_needs_its_24h_percentile() -> None:
    first = date(2027, 1, 1)
    rows = [dv(first + timedelta(days=i), pm25=20) for i in range(365)]
    # 30 days at 70 (> 60): the mean (20 * 335 + 70 * 30) / 365 = 24.1 stays under 30, but the
    # 95th percentile (k = 1 + 364 * 0.95 = 346.8, inside the 30 highest) is 70.
    rows[:30] = [dv(first + timedelta(days=i), pm25=70) for i in range(30)]
    a = assess(rows, first, date(2027, 12, 31))
    assert a.pm25 == 24
    assert a.daily_percentiles["pm25"] == 70
    assert a.compliance["pm25"] is False
    # The same days judged as a month only compare the mean with the annual limit.
    jan = assess(rows, first, date(2027, 1, 31))
    assert jan.daily_percentiles["pm25"] == 70 and jan.compliance["pm25"] is False  # mean 70
    dec = assess(rows, date(2027, 12, 1), date(2027, 12, 31))
    assert dec.compliance["pm25"] is True


def test_exceptional_days_can_stay_in_the_day_counts() -> None:
    days = november()
    worst = NOV[PM25_NOV.index(80)]
    kept = assess(days, NOV[0], NOV[-1], excluded={worst}, excluded_in_day_counts=True)
    left = assess(days, NOV[0], NOV[-1], excluded={worst})
    assert kept.valid_days == 30 and left.valid_days == 29
    assert kept.good_days == left.good_days  # the dust day (AQI 144) was not good
    assert kept.pm25 == left.pm25 and kept.composite_index == left.composite_index


@given(
    st.lists(
        st.tuples(
            st.integers(min_value=1, max_value=300),  # PM2.5
            st.integers(min_value=1, max_value=50),  # CO x 0.1
            st.integers(min_value=10, max_value=300),  # O3 8 h
        ),
        min_size=30,
        max_size=30,
    )
)
def test_any_month_matches_the_independent_calculation(rows: list[tuple[int, int, int]]) -> None:
    days = [
        dv(d, pm25=pm25, co=co / 10, o3_8h=o3, pm10=pm25 * 1.5)
        for d, (pm25, co, o3) in zip(NOV, rows, strict=True)
    ]
    a = assess(days, NOV[0], NOV[-1])
    want = ref_stats(days)
    assert (fr(a.pm25 or 0), fr(a.pm10 or 0)) == (want["pm25"], want["pm10"])
    assert (fr(a.co_p95 or 0), fr(a.o3_8h_p90 or 0)) == (want["co"], want["o3_8h"])
    assert a.composite_index is not None
    assert fr(a.composite_index) == ref_composite(want, S_TRANSITION)
    assert a.over_limit_days["pm25"] == sum(1 for pm25, _, _ in rows if pm25 > 60)


# --- from the rollup's fields ----------------------------------------------------------------


def test_day_values_from_a_daily_point() -> None:
    fields: dict[str, object] = {
        "so2_ug_m3": 9.0, "so2_ug_m3_n": 24,
        "no2_ug_m3": 31.5, "no2_ug_m3_n": 20,
        "pm10_ug_m3": 70.0, "pm10_ug_m3_n": 19,  # too few hours: not a valid 24 h mean
        "pm25_ug_m3": 41.0, "pm25_ug_m3_n": 23,
        "co_mg_m3": 0.9, "co_mg_m3_n": 24,
        "o3_8h_ug_m3": 130.0, "o3_8h_ug_m3_n": 13,  # 13 valid 8 h windows of 14
        "aqi": 87, "aqi_category": 2, "valid": False,
    }  # fmt: skip
    d = DayValues.from_fields(date(2026, 11, 3), fields)
    assert (d.so2, d.no2, d.pm10, d.pm25, d.co, d.o3_8h) == (9.0, 31.5, None, 41.0, 0.9, None)
    assert d.aqi is None and d.category is None  # the day is not valid
    fields |= {"pm10_ug_m3_n": 20, "o3_8h_ug_m3_n": 14, "valid": True}
    d = DayValues.from_fields(date(2026, 11, 3), fields)
    assert (d.pm10, d.o3_8h, d.aqi, d.category) == (70.0, 130.0, 87, 2)
    # Without a stored category it is worked from the AQI; looser rules are settings.
    del fields["aqi_category"]
    d = DayValues.from_fields(date(2026, 11, 3), fields, day_min_hours=18, o3_8h_min_windows=1)
    assert d.category == 2
    assert DayValues.from_fields(date(2026, 11, 3), {}).aqi is None


# --- ranking ---------------------------------------------------------------------------------


def test_rank_shares_places_on_ties_and_skips() -> None:
    index = {"A": 3.41, "B": 2.95, "C": 3.41, "D": 4.02, "E": None}
    assert rank(index) == {"B": 1, "A": 2, "C": 2, "D": 4}
    ratio = {"A": 90.0, "B": 93.3, "C": 90.0, "D": 80.0}
    assert rank(ratio, lower_is_better=False) == {"B": 1, "A": 2, "C": 2, "D": 4}


def test_change_rate() -> None:
    assert change_rate(3.30, 3.00) == 10.0
    assert change_rate(2.85, 3.00) == -5.0
    assert change_rate(1.0, 3.0) == -66.7
    assert change_rate(3.0, None) is None and change_rate(3.0, 0) is None
