"""GB 3095 ambient air quality standard: the concentration limits in force on a date (pure).

Three sets of limits follow one another (docs/standards.md, "Air quality assessment"):

- ``GB 3095-2012`` — Table 1, until 2026-02-28.
- ``GB 3095-2026 transition`` — GB 3095-2026 phase one, 2026-03-01 .. 2030-12-31: PM2.5 and
  PM10 get transition limits; SO2, NO2, CO and O3 keep the 2012 values (the revised SO2 and
  NO2 limits apply nationwide only from 2031-01-01).
- ``GB 3095-2026`` — phase two, from 2031-01-01.

Keys: ``so2``, ``no2``, ``pm10``, ``pm25`` in µg/m³ and ``co`` in mg/m³. Where a number could not
be confirmed from a public source it is marked so below and can be replaced with
``limits_on(..., replace={edition: Limits(...)})`` (configuration passes it in).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from types import MappingProxyType

EDITION_2012 = "GB 3095-2012"
EDITION_2026_TRANSITION = "GB 3095-2026 transition"
EDITION_2026 = "GB 3095-2026"
EDITIONS: tuple[str, ...] = (EDITION_2012, EDITION_2026_TRANSITION, EDITION_2026)

# GB 3095-2026 is in force from 2026-03-01; its phase one (过渡阶段) runs to 2030-12-31 and
# phase two (the revised PM2.5, PM10, SO2 and NO2 limits nationwide) starts 2031-01-01
# (MEE release of 2026-02-24, reported by Xinhua 2026-02-25).
TRANSITION_FROM = date(2026, 3, 1)
FINAL_FROM = date(2031, 1, 1)

ANNUAL_KEYS: tuple[str, ...] = ("so2", "no2", "pm10", "pm25")
DAILY_KEYS: tuple[str, ...] = ("so2", "no2", "pm10", "pm25", "co")


@dataclass(frozen=True, slots=True)
class Limits:
    """One edition's limits for one grade: annual and 24 h means, daily maximum 8 h O3."""

    edition: str
    annual: Mapping[str, float]
    daily: Mapping[str, float]
    o3_8h: float

    def __post_init__(self) -> None:
        if set(self.annual) != set(ANNUAL_KEYS):
            raise ValueError(f"{self.edition}: annual limits need keys {ANNUAL_KEYS}")
        if set(self.daily) != set(DAILY_KEYS):
            raise ValueError(f"{self.edition}: 24 h limits need keys {DAILY_KEYS}")
        values = [*self.annual.values(), *self.daily.values(), self.o3_8h]
        if any(not v > 0 for v in values):
            raise ValueError(f"{self.edition}: every limit must be > 0")
        # Frozen dataclass: the mappings must not be changeable behind its back either.
        object.__setattr__(self, "annual", MappingProxyType(dict(self.annual)))
        object.__setattr__(self, "daily", MappingProxyType(dict(self.daily)))


def _limits(
    edition: str, annual: dict[str, float], daily: dict[str, float], o3_8h: float
) -> Limits:
    return Limits(edition=edition, annual=annual, daily=daily, o3_8h=o3_8h)


# GB 3095-2012 Table 1 (环境空气污染物基本项目浓度限值), grade II (二级) column.
_GRADE2_2012 = _limits(
    EDITION_2012,
    annual={"so2": 60, "no2": 40, "pm10": 70, "pm25": 35},
    daily={"so2": 150, "no2": 80, "pm10": 150, "pm25": 75, "co": 4},
    o3_8h=160,
)
# GB 3095-2012 Table 1, grade I (一级) column (class-one zones: nature reserves, scenic areas).
_GRADE1_2012 = _limits(
    EDITION_2012,
    annual={"so2": 20, "no2": 40, "pm10": 40, "pm25": 15},
    daily={"so2": 50, "no2": 80, "pm10": 50, "pm25": 35, "co": 4},
    o3_8h=100,
)

# GB 3095-2026 phase one (2026-03-01 .. 2030-12-31), grade II. PM2.5 30 / 60 µg/m³: MEE release
# (Xinhua 2026-02-25). PM10 60 / 120 µg/m³: MEE release as reported by China Daily (2026-02-24;
# the same figures were in the 2025-12 draft) — and HJ 633-2026 moved its PM10 IAQI-100
# breakpoint to exactly 120. SO2, NO2: the revised limits apply from 2031-01-01 (Xinhua), so the
# 2012 values stay. CO, O3: not revised by GB 3095-2026 (only PM2.5, PM10, SO2, NO2 were).
_GRADE2_2026_TRANSITION = _limits(
    EDITION_2026_TRANSITION,
    annual={"so2": 60, "no2": 40, "pm10": 60, "pm25": 30},
    daily={"so2": 150, "no2": 80, "pm10": 120, "pm25": 60, "co": 4},
    o3_8h=160,
)

# GB 3095-2026 phase two (from 2031-01-01), grade II. PM2.5 25 / 50 (Xinhua), PM10 50 / 100
# (China Daily). SO2 20 / 50 and NO2 30 / 50 are NOT CONFIRMED: one public implementation gives
# them (and matches every confirmed figure and WHO 2021 interim target 2), another gives
# different ones; replace them through configuration once the text is read.
_GRADE2_2026 = _limits(
    EDITION_2026,
    annual={"so2": 20, "no2": 30, "pm10": 50, "pm25": 25},
    daily={"so2": 50, "no2": 50, "pm10": 100, "pm25": 50, "co": 4},
    o3_8h=160,
)

# Grade I under GB 3095-2026: only PM2.5 (annual 10, 24 h 25) is confirmed, so no grade I table
# is encoded for 2026; `limits_on(day, grade=1)` from 2026-03-01 needs `replace`.
_TABLES: dict[tuple[str, int], Limits] = {
    (EDITION_2012, 2): _GRADE2_2012,
    (EDITION_2012, 1): _GRADE1_2012,
    (EDITION_2026_TRANSITION, 2): _GRADE2_2026_TRANSITION,
    (EDITION_2026, 2): _GRADE2_2026,
}


def edition_on(day: date) -> str:
    """Return the GB 3095 edition (phase) in force on a local date."""
    if isinstance(day, datetime):
        day = day.date()
    if day < TRANSITION_FROM:
        return EDITION_2012
    if day < FINAL_FROM:
        return EDITION_2026_TRANSITION
    return EDITION_2026


def limits_on(day: date, grade: int = 2, *, replace: Mapping[str, Limits] | None = None) -> Limits:
    """Return the limits in force on a local date for grade 1 or 2.

    `replace` maps an edition name to limits used instead of the built-in table (for the
    numbers docs/standards.md lists as not confirmed).
    """
    if grade not in (1, 2) or isinstance(grade, bool):
        raise ValueError(f"grade must be 1 or 2, not {grade!r}")
    edition = edition_on(day)
    if replace is not None and edition in replace:
        limits = replace[edition]
        if limits.edition != edition:
            raise ValueError(f"replacement for {edition!r} is labelled {limits.edition!r}")
        return limits
    table = _TABLES.get((edition, grade))
    if table is None:
        raise ValueError(
            f"{edition} grade {grade} limits are not confirmed from a public source; "
            "pass them with replace="
        )
    return table
