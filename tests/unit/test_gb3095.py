"""GB 3095 limits by date: 2012 Table 1, the 2026 transition phase, the 2026 final phase.

The tables are typed again here from docs/standards.md ("Air quality assessment"), not
imported from the code under test.
"""

from __future__ import annotations

from datetime import date, datetime

import pytest

from devices.gb3095 import Limits, edition_on, limits_on

# (annual so2, no2, pm10, pm25), (24 h so2, no2, pm10, pm25, co mg/m³), O3 daily max 8 h
GRADE2 = {
    "GB 3095-2012": ((60, 40, 70, 35), (150, 80, 150, 75, 4), 160),
    "GB 3095-2026 transition": ((60, 40, 60, 30), (150, 80, 120, 60, 4), 160),
    "GB 3095-2026": ((20, 30, 50, 25), (50, 50, 100, 50, 4), 160),
}
GRADE1_2012 = ((20, 40, 40, 15), (50, 80, 50, 35, 4), 100)


def _as_tuple(limits: Limits) -> tuple[tuple[float, ...], tuple[float, ...], float]:
    annual = tuple(limits.annual[k] for k in ("so2", "no2", "pm10", "pm25"))
    daily = tuple(limits.daily[k] for k in ("so2", "no2", "pm10", "pm25", "co"))
    return annual, daily, limits.o3_8h


@pytest.mark.parametrize(
    ("day", "edition"),
    [
        (date(2013, 1, 1), "GB 3095-2012"),
        (date(2026, 2, 28), "GB 3095-2012"),
        (date(2026, 3, 1), "GB 3095-2026 transition"),
        (date(2028, 2, 29), "GB 3095-2026 transition"),
        (date(2030, 12, 31), "GB 3095-2026 transition"),
        (date(2031, 1, 1), "GB 3095-2026"),
        (date(2040, 6, 1), "GB 3095-2026"),
    ],
)
def test_the_edition_follows_the_local_date(day: date, edition: str) -> None:
    limits = limits_on(day)
    assert limits.edition == edition == edition_on(day)
    assert _as_tuple(limits) == GRADE2[edition]


def test_a_datetime_is_reduced_to_its_date() -> None:
    assert edition_on(datetime(2026, 2, 28, 23, 59)) == "GB 3095-2012"
    assert edition_on(datetime(2026, 3, 1, 0, 0)) == "GB 3095-2026 transition"


def test_only_pm_changes_in_the_transition_phase() -> None:
    before, during = limits_on(date(2026, 2, 28)), limits_on(date(2026, 3, 1))
    changed = {k for k in before.daily if before.daily[k] != during.daily[k]}
    changed |= {k for k in before.annual if before.annual[k] != during.annual[k]}
    assert changed == {"pm10", "pm25"}
    assert before.o3_8h == during.o3_8h == 160


def test_grade_one() -> None:
    assert _as_tuple(limits_on(date(2020, 1, 1), grade=1)) == GRADE1_2012
    with pytest.raises(ValueError, match="not confirmed"):
        limits_on(date(2026, 3, 1), grade=1)
    with pytest.raises(ValueError, match="grade"):
        limits_on(date(2020, 1, 1), grade=3)


def test_unconfirmed_numbers_can_be_replaced() -> None:
    mine = Limits(
        edition="GB 3095-2026",
        annual={"so2": 40, "no2": 30, "pm10": 50, "pm25": 25},
        daily={"so2": 100, "no2": 60, "pm10": 100, "pm25": 50, "co": 4},
        o3_8h=160,
    )
    assert limits_on(date(2031, 5, 1), replace={"GB 3095-2026": mine}) is mine
    # A replacement for one edition leaves the others alone.
    assert limits_on(date(2027, 5, 1), replace={"GB 3095-2026": mine}).annual["pm25"] == 30
    with pytest.raises(ValueError, match="labelled"):
        limits_on(date(2027, 5, 1), replace={"GB 3095-2026 transition": mine})


def test_limits_are_checked_and_frozen() -> None:
    with pytest.raises(ValueError, match="annual"):
        Limits("x", {"so2": 1}, {"so2": 1, "no2": 1, "pm10": 1, "pm25": 1, "co": 1}, 1)
    with pytest.raises(ValueError, match="> 0"):
        Limits(
            "x",
            {"so2": 1, "no2": 1, "pm10": 1, "pm25": 0},
            {"so2": 1, "no2": 1, "pm10": 1, "pm25": 1, "co": 1},
            1,
        )
    limits = limits_on(date(2026, 3, 1))
    with pytest.raises(TypeError):
        limits.annual["pm25"] = 99  # type: ignore[index]
