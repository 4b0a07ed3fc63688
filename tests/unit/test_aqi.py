"""HJ 633 AQI, editions 2012 and 2026: breakpoints, hand-worked sub-indices, AQI, special cases.

The tables below are transcribed again from /work/shared/standards.md (not imported from the
code under test), and every expected value is worked from them by hand.
"""

from __future__ import annotations

import math
from datetime import date, datetime
from decimal import Decimal

import pytest

from devices.aqi import (
    EDITION_2026_FROM,
    O3_8H,
    AqiResult,
    Averaging,
    Edition,
    aqi_daily,
    aqi_realtime,
    category_of,
    edition_for,
    iaqi,
)

SO2, NO2, CO, O3 = "so2_ug_m3", "no2_ug_m3", "co_mg_m3", "o3_ug_m3"
PM10, PM25 = "pm10_ug_m3", "pm25_ug_m3"

STEPS = (0, 50, 100, 150, 200, 300, 400, 500)

# HJ 633-2012 Table 1 (µg/m³, CO mg/m³), one column per IAQI step.
TABLE_2012: dict[tuple[str, Averaging], tuple[int, ...]] = {
    (SO2, "24h"): (0, 50, 150, 475, 800, 1600, 2100, 2620),
    (SO2, "1h"): (0, 150, 500, 650, 800),
    (NO2, "24h"): (0, 40, 80, 180, 280, 565, 750, 940),
    (NO2, "1h"): (0, 100, 200, 700, 1200, 2340, 3090, 3840),
    (CO, "24h"): (0, 2, 4, 14, 24, 36, 48, 60),
    (CO, "1h"): (0, 5, 10, 35, 60, 90, 120, 150),
    (O3, "1h"): (0, 160, 200, 300, 400, 800, 1000, 1200),
    (O3, "8h"): (0, 100, 160, 215, 265, 800),
    (PM10, "24h"): (0, 50, 150, 250, 350, 420, 500, 600),
    (PM25, "24h"): (0, 35, 75, 115, 150, 250, 350, 500),
}
# HJ 633-2026: only the PM columns at IAQI 100 differ (PM10 120, PM2.5 60).
TABLE_2026: dict[tuple[str, Averaging], tuple[int, ...]] = {
    **TABLE_2012,
    (PM10, "24h"): (0, 50, 120, 250, 350, 420, 500, 600),
    (PM25, "24h"): (0, 35, 60, 115, 150, 250, 350, 500),
}
TABLES: dict[Edition, dict[tuple[str, Averaging], tuple[int, ...]]] = {
    "2012": TABLE_2012,
    "2026": TABLE_2026,
}
# Tables that stop below IAQI 500; above their top the special cases apply (tested apart).
SPECIAL_TOPS = {(SO2, "1h"), (O3, "8h")}

DELTA = Decimal("0.001")


def _breakpoint_cases() -> list[tuple[Edition, str, Averaging, float, int]]:
    """At, 0.001 below and 0.001 above every breakpoint of every table in both editions.

    By hand: at breakpoint k the formula gives exactly STEPS[k]. The steepest segment in any
    table is CO 24 h 0-2 mg/m³ -> 0-50, 25 IAQI per unit, so 0.001 moves IAQI by at most 0.025:
    0.001 below gives STEPS[k] - (<1) -> rounds up to STEPS[k]; 0.001 above gives
    STEPS[k] + (0..0.025] -> rounds up to STEPS[k] + 1. Above a top breakpoint of 500 -> 500.
    """
    cases: list[tuple[Edition, str, Averaging, float, int]] = []
    for edition, table in TABLES.items():
        for (pollutant, averaging), bps in table.items():
            top = len(bps) - 1
            for k, bp in enumerate(bps):
                at = Decimal(bp)
                cases.append((edition, pollutant, averaging, float(at), STEPS[k]))
                if k > 0:
                    cases.append((edition, pollutant, averaging, float(at - DELTA), STEPS[k]))
                if k < top:
                    cases.append((edition, pollutant, averaging, float(at + DELTA), STEPS[k] + 1))
                elif (pollutant, averaging) not in SPECIAL_TOPS:
                    cases.append((edition, pollutant, averaging, float(at + DELTA), 500))
    return cases


def _midpoint_cases() -> list[tuple[Edition, str, Averaging, float, int]]:
    """Midpoint of every segment -> the midpoint of its IAQI steps, exactly (all are integers).

    E.g. SO2 24 h (150 + 475) / 2 = 312.5 -> (100 + 150) / 2 = 125, not 126.
    """
    cases: list[tuple[Edition, str, Averaging, float, int]] = []
    for edition, table in TABLES.items():
        for (pollutant, averaging), bps in table.items():
            for k in range(1, len(bps)):
                mid = (Decimal(bps[k - 1]) + Decimal(bps[k])) / 2
                cases.append(
                    (edition, pollutant, averaging, float(mid), (STEPS[k - 1] + STEPS[k]) // 2)
                )
    return cases


def _case_id(case: tuple[Edition, str, Averaging, float, int]) -> str:
    edition, pollutant, averaging, value, expected = case
    return f"{edition}-{pollutant}-{averaging}-{value}->{expected}"


BREAKPOINT_CASES = _breakpoint_cases()
MIDPOINT_CASES = _midpoint_cases()


@pytest.mark.parametrize("case", BREAKPOINT_CASES, ids=[_case_id(c) for c in BREAKPOINT_CASES])
def test_every_breakpoint_at_below_above(case: tuple[Edition, str, Averaging, float, int]) -> None:
    edition, pollutant, averaging, value, expected = case
    assert iaqi(pollutant, value, averaging, edition) == expected


@pytest.mark.parametrize("case", MIDPOINT_CASES, ids=[_case_id(c) for c in MIDPOINT_CASES])
def test_every_segment_midpoint_is_exact(case: tuple[Edition, str, Averaging, float, int]) -> None:
    edition, pollutant, averaging, value, expected = case
    assert iaqi(pollutant, value, averaging, edition) == expected


def test_breakpoint_case_count() -> None:
    # 10 tables with 8+5+8+8+8+8+8+6+8+8 = 75 breakpoints per edition: 75 "at" + 65 "below"
    # + 65 "above" + 8 "above the top" (the two special-top tables excluded) = 213.
    assert len(BREAKPOINT_CASES) == 2 * 213


@pytest.mark.parametrize(
    ("pollutant", "value", "averaging", "edition", "expected"),
    [
        # (150-100)/(115-75)*(80-75)+100 = 106.25 -> 107
        (PM25, 80, "24h", "2012", 107),
        # (150-100)/(115-60)*(80-60)+100 = 118.18 -> 119
        (PM25, 80, "24h", "2026", 119),
        # (100-50)/(75-35)*(60-35)+50 = 81.25 -> 82; 2026: 60 is the IAQI 100 breakpoint
        (PM25, 60, "24h", "2012", 82),
        (PM25, 60, "24h", "2026", 100),
        # (100-50)/(150-50)*(130-50)+50 = 90 exactly -> 90
        (PM10, 130, "24h", "2012", 90),
        # (150-100)/(250-120)*(130-120)+100 = 103.85 -> 104
        (PM10, 130, "24h", "2026", 104),
        # (100-50)/(150-50)*(120-50)+50 = 85; 2026: 120 is the IAQI 100 breakpoint
        (PM10, 120, "24h", "2012", 85),
        (PM10, 120, "24h", "2026", 100),
        # (100-50)/(500-150)*(300-150)+50 = 71.43 -> 72
        (SO2, 300, "1h", "2012", 72),
        (SO2, 300, "1h", "2026", 72),
        # (150-100)/(180-80)*(100-80)+100 = 110 exactly
        (NO2, 100, "24h", "2012", 110),
        # (150-100)/(700-200)*(250-200)+100 = 105 exactly
        (NO2, 250, "1h", "2026", 105),
        # (100-50)/(4-2)*(3.3-2)+50 = 82.5 -> 83
        (CO, 3.3, "24h", "2012", 83),
        # 50/5*0.1 = 1 exactly -> 1 (the binary float 0.1 is a hair above 0.1: not 2)
        (CO, 0.1, "1h", "2012", 1),
        # (100-50)/(4-2)*(2.04-2)+50 = 51 exactly -> 51 (binary 2.04 is a hair above: not 52)
        (CO, 2.04, "24h", "2026", 51),
        # (150-100)/(300-200)*(250-200)+100 = 125 exactly
        (O3, 250, "1h", "2012", 125),
        # 8 h table: 160 is the IAQI 100 column, 215 the 150 one
        # (150-100)/(215-160)*(170-160)+100 = 109.09 -> 110
        (O3, 170, "8h", "2012", 110),
        # (300-200)/(800-265)*(500-265)+200 = 243.93 -> 244
        (O3, 500, "8h", "2026", 244),
        # 35.0 is the IAQI 50 breakpoint: exactly 50, not 51
        (PM25, 35.0, "24h", "2012", 50),
        # integer input works like float input
        (PM25, 35, "24h", "2026", 50),
        # above the top breakpoint -> 500
        (SO2, 2700, "24h", "2012", 500),
        (PM25, 600, "24h", "2026", 500),
        (CO, 151, "1h", "2026", 500),
        # zero -> 0
        (NO2, 0, "1h", "2012", 0),
    ],
)
def test_hand_worked_iaqi(
    pollutant: str, value: float, averaging: Averaging, edition: Edition, expected: int
) -> None:
    assert iaqi(pollutant, value, averaging, edition) == expected


# --- special cases -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edition", "value", "substitute", "expected"),
    [
        # at 800 the 1 h table still applies: 200
        ("2012", 800, None, 200),
        ("2026", 800, None, 200),
        # 2012, > 800: the 24 h SO2 sub-index: (150-100)/(475-150)*(300-150)+100 = 123.08 -> 124
        ("2012", 900, 300, 124),
        ("2012", 800.001, 300, 124),
        # 2012, > 800 with a low 24 h mean: 50/50*40 = 40 (the rule can lower the sub-index)
        ("2012", 900, 40, 40),
        # 2012, > 800 without a 24 h mean: falls back to 200
        ("2012", 900, None, 200),
        # 2026, > 800: always 200, the 24 h mean is ignored
        ("2026", 900, 300, 200),
        ("2026", 900, None, 200),
        ("2026", 5000, 2000, 200),
    ],
)
def test_so2_1h_above_800(
    edition: Edition, value: float, substitute: float | None, expected: int
) -> None:
    assert iaqi(SO2, value, "1h", edition, substitute=substitute) == expected


@pytest.mark.parametrize(
    ("edition", "value", "substitute", "expected"),
    [
        ("2012", 800, None, 300),
        ("2026", 800, None, 300),
        # 2012, > 800: the 1 h O3 sub-index: (400-300)/(1000-800)*(850-800)+300 = 325
        ("2012", 900, 850, 325),
        ("2012", 800.001, 850, 325),
        # 2012, > 800 without a 1 h value: falls back to 300
        ("2012", 900, None, 300),
        # 2026, > 800: always 300
        ("2026", 900, 850, 300),
        ("2026", 900, None, 300),
    ],
)
def test_o3_8h_above_800(
    edition: Edition, value: float, substitute: float | None, expected: int
) -> None:
    assert iaqi(O3, value, "8h", edition, substitute=substitute) == expected


def test_substitute_ignored_below_ceiling() -> None:
    # SO2 1 h 300 -> 72 (see hand-worked cases), whatever the 24 h mean
    assert iaqi(SO2, 300, "1h", "2012", substitute=2000) == 72


def test_realtime_so2_above_800_uses_24h_in_2012() -> None:
    result = aqi_realtime({SO2: 900, NO2: 50}, "2012", so2_24h=300)
    assert result is not None
    # SO2 -> 24 h 300 -> 124 (above); NO2 1 h 50/100*50 = 25
    assert result.iaqi == {SO2: 124, NO2: 25}
    assert result.aqi == 124
    assert result.primary == (SO2,)


def test_realtime_so2_above_800_without_24h_is_200() -> None:
    result = aqi_realtime({SO2: 900}, "2012")
    assert result is not None
    assert result.aqi == 200


def test_realtime_so2_above_800_is_200_in_2026() -> None:
    result = aqi_realtime({SO2: 900}, "2026", so2_24h=300)
    assert result is not None
    assert result.aqi == 200
    assert result.category == 4


def test_daily_o3_8h_above_800_2012_uses_1h() -> None:
    result = aqi_daily({PM25: 10}, "2012", o3_8h_max=900, o3_1h_max=850)
    assert result is not None
    # O3 -> 1 h 850 -> 325; PM2.5 50/35*10 = 14.29 -> 15
    assert result.iaqi == {O3_8H: 325, PM25: 15}
    assert result.aqi == 325
    assert result.category == 6
    assert result.category_zh == "严重污染"
    assert result.level_zh == "六级"
    assert result.primary == (O3_8H,)


def test_daily_o3_8h_above_800_2012_without_1h_is_300() -> None:
    result = aqi_daily({}, "2012", o3_8h_max=900)
    assert result is not None
    assert result.aqi == 300


def test_daily_o3_8h_above_800_is_300_in_2026() -> None:
    result = aqi_daily({PM25: 10}, "2026", o3_8h_max=900, o3_1h_max=850)
    assert result is not None
    assert result.aqi == 300
    assert result.category == 5
    assert result.category_zh == "重度污染"


def test_realtime_o3_8h_above_800_2012_uses_hourly_o3() -> None:
    # O3 1 h 850 -> 325; O3 8 h 900 -> the 1 h sub-index, 325: a tie, both named
    result = aqi_realtime({O3: 850}, "2012", o3_8h=900)
    assert result is not None
    assert result.iaqi == {O3: 325, O3_8H: 325}
    assert result.primary == (O3, O3_8H)


# --- real-time and daily AQI ---------------------------------------------------------------


def test_realtime_2012() -> None:
    hourly = {SO2: 10, NO2: 50, CO: 0.5, O3: 100, PM10: 60, PM25: 80}
    result = aqi_realtime(hourly, "2012")
    # SO2 50/150*10 = 3.33 -> 4; NO2 50/100*50 = 25; CO 50/5*0.5 = 5; O3 50/160*100 = 31.25
    # -> 32; PM10 on the 24 h table (100-50)/(150-50)*(60-50)+50 = 55; PM2.5 -> 107
    assert result == AqiResult(
        aqi=107,
        iaqi={SO2: 4, NO2: 25, CO: 5, O3: 32, PM10: 55, PM25: 107},
        category=3,
        primary=(PM25,),
        edition="2012",
    )
    assert result.category_zh == "轻度污染"
    assert result.category_en == "lightly polluted"
    assert result.level_zh == "三级"
    assert not result.good


def test_realtime_2026_same_hour() -> None:
    hourly = {SO2: 10, NO2: 50, CO: 0.5, O3: 100, PM10: 60, PM25: 80}
    result = aqi_realtime(hourly, "2026")
    assert result is not None
    # PM10 (100-50)/(120-50)*(60-50)+50 = 57.14 -> 58; PM2.5 -> 119; the rest as in 2012
    assert result.iaqi == {SO2: 4, NO2: 25, CO: 5, O3: 32, PM10: 58, PM25: 119}
    assert result.aqi == 119
    assert result.primary == (PM25,)
    assert result.edition == "2026"


def test_realtime_ignores_none_and_unknown_keys() -> None:
    result = aqi_realtime({"temp_c": 31.0, PM25: None, NO2: 30, "humidity_pct": 80}, "2012")
    assert result is not None
    # NO2 1 h 50/100*30 = 15
    assert result.iaqi == {NO2: 15}
    assert result.aqi == 15


@pytest.mark.parametrize("hourly", [{}, {PM25: None, SO2: None}, {"temp_c": 20.0}])
def test_realtime_none_when_nothing_present(hourly: dict[str, float | None]) -> None:
    assert aqi_realtime(hourly, "2012") is None
    assert aqi_daily(hourly, "2026") is None


def test_realtime_pm_24h_replaces_hourly_pm() -> None:
    # hourly PM2.5 200 alone would be (300-200)/(250-150)*(200-150)+200 = 250
    assert aqi_realtime({PM25: 200}, "2012") == AqiResult(
        aqi=250, iaqi={PM25: 250}, category=5, primary=(PM25,), edition="2012"
    )
    # its 24 h moving mean 80 -> 107 replaces it; PM10 keeps its 1 h value 60 -> 55
    result = aqi_realtime({PM25: 200, PM10: 60}, "2012", pm_24h={PM25: 80})
    assert result is not None
    assert result.iaqi == {PM10: 55, PM25: 107}
    # and it is used even when the 1 h value is missing
    missing = aqi_realtime({}, "2026", pm_24h={PM10: 130})
    assert missing is not None
    assert missing.iaqi == {PM10: 104}


def test_realtime_o3_8h_adds_a_sub_index() -> None:
    # O3 1 h (100-50)/(200-160)*(180-160)+50 = 75
    # O3 8 h (200-150)/(265-215)*(230-215)+150 = 165
    result = aqi_realtime({O3: 180}, "2012", o3_8h=230)
    assert result is not None
    assert result.iaqi == {O3: 75, O3_8H: 165}
    assert result.aqi == 165
    assert result.primary == (O3_8H,)
    assert result.category_zh == "中度污染"


def test_daily_2012() -> None:
    daily = {SO2: 20, NO2: 40, CO: 1, PM10: 150, PM25: 75}
    result = aqi_daily(daily, "2012", o3_8h_max=160)
    # SO2 50/50*20 = 20; NO2 40 -> 50; CO 50/2*1 = 25; PM10 150 -> 100; PM2.5 75 -> 100;
    # O3 8 h 160 -> 100: a three-way tie, named in table order
    assert result == AqiResult(
        aqi=100,
        iaqi={SO2: 20, NO2: 50, CO: 25, O3_8H: 100, PM10: 100, PM25: 100},
        category=2,
        primary=(O3_8H, PM10, PM25),
        edition="2012",
    )
    assert result.good
    assert result.category_zh == "良"
    assert result.level_zh == "二级"


def test_daily_2026_same_day() -> None:
    daily = {SO2: 20, NO2: 40, CO: 1, PM10: 150, PM25: 75}
    result = aqi_daily(daily, "2026", o3_8h_max=160)
    assert result is not None
    # PM10 (150-100)/(250-120)*(150-120)+100 = 111.54 -> 112
    # PM2.5 (150-100)/(115-60)*(75-60)+100 = 113.64 -> 114
    assert result.iaqi == {SO2: 20, NO2: 50, CO: 25, O3_8H: 100, PM10: 112, PM25: 114}
    assert result.aqi == 114
    assert result.primary == (PM25,)
    assert not result.good


def test_daily_ignores_o3_24h_mean() -> None:
    result = aqi_daily({O3: 500, PM25: 10}, "2012")
    assert result is not None
    assert result.iaqi == {PM25: 15}


def test_primary_pollutant_tie_in_realtime() -> None:
    # NO2 1 h 200 -> 100; PM2.5 75 (2012) -> 100; SO2 1 h 150 -> 50
    result = aqi_realtime({PM25: 75, SO2: 150, NO2: 200}, "2012")
    assert result is not None
    assert result.aqi == 100
    assert result.primary == (NO2, PM25)


def test_no_primary_pollutant_at_or_below_50() -> None:
    # PM2.5 35 -> 50; SO2 1 h 50/150*50 = 16.67 -> 17
    result = aqi_realtime({PM25: 35, SO2: 50}, "2012")
    assert result is not None
    assert result.aqi == 50
    assert result.primary == ()
    assert result.category == 1
    assert result.category_zh == "优"
    assert result.category_en == "excellent"
    assert result.level_zh == "一级"
    assert result.good


def test_primary_pollutant_from_51() -> None:
    # PM2.5 35.001 -> 50 + 50/40*0.001 = 50.001 -> 51
    result = aqi_realtime({PM25: 35.001, SO2: 50}, "2012")
    assert result is not None
    assert result.aqi == 51
    assert result.primary == (PM25,)


# --- categories and editions ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("aqi", "category"),
    [
        (0, 1),
        (50, 1),
        (51, 2),
        (100, 2),
        (101, 3),
        (150, 3),
        (151, 4),
        (200, 4),
        (201, 5),
        (300, 5),
        (301, 6),
        (500, 6),
    ],
)
def test_category_of(aqi: int, category: int) -> None:
    assert category_of(aqi) == category


@pytest.mark.parametrize(
    ("category", "zh", "en", "level"),
    [
        (1, "优", "excellent", "一级"),
        (2, "良", "good", "二级"),
        (3, "轻度污染", "lightly polluted", "三级"),
        (4, "中度污染", "moderately polluted", "四级"),
        (5, "重度污染", "heavily polluted", "五级"),
        (6, "严重污染", "severely polluted", "六级"),
    ],
)
def test_category_names(category: int, zh: str, en: str, level: str) -> None:
    result = AqiResult(aqi=0, iaqi={}, category=category, primary=(), edition="2012")
    assert (result.category_zh, result.category_en, result.level_zh) == (zh, en, level)


def test_good_is_aqi_at_most_100() -> None:
    assert AqiResult(aqi=100, iaqi={}, category=2, primary=(), edition="2026").good
    assert not AqiResult(aqi=101, iaqi={}, category=3, primary=(), edition="2026").good


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (date(2025, 12, 31), "2012"),
        (date(2026, 2, 28), "2012"),
        (date(2026, 3, 1), "2026"),
        (date(2026, 3, 2), "2026"),
        (datetime(2026, 2, 28, 23, 59, 59), "2012"),
        (datetime(2026, 3, 1, 0, 0), "2026"),
    ],
)
def test_edition_switch(day: date, expected: Edition) -> None:
    assert edition_for(day) == expected


def test_edition_2026_start_date() -> None:
    assert date(2026, 3, 1) == EDITION_2026_FROM


def test_forced_edition_wins() -> None:
    assert edition_for(date(2026, 5, 1), forced="2012") == "2012"
    assert edition_for(date(2020, 1, 1), forced="2026") == "2026"
    with pytest.raises(ValueError):
        edition_for(date(2026, 5, 1), forced="2099")  # type: ignore[arg-type]


# --- rejected input ------------------------------------------------------------------------


@pytest.mark.parametrize("value", [-0.001, -1, math.nan, math.inf])
def test_invalid_concentration_raises(value: float) -> None:
    with pytest.raises(ValueError):
        iaqi(PM25, value, "24h", "2012")


def test_negative_in_realtime_raises() -> None:
    with pytest.raises(ValueError):
        aqi_realtime({NO2: -5}, "2026")


@pytest.mark.parametrize(
    ("pollutant", "averaging"),
    [(PM25, "1h"), (PM10, "8h"), (CO, "8h"), (O3, "24h"), ("nox_ug_m3", "1h")],
)
def test_no_such_table_raises(pollutant: str, averaging: Averaging) -> None:
    with pytest.raises(ValueError):
        iaqi(pollutant, 10, averaging, "2012")


def test_unknown_edition_raises() -> None:
    with pytest.raises(ValueError):
        iaqi(PM25, 10, "24h", "2020")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        aqi_daily({PM25: 10}, "2020")  # type: ignore[arg-type]


def test_category_of_rejects_negative() -> None:
    with pytest.raises(ValueError):
        category_of(-1)
