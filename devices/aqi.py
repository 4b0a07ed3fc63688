"""HJ 633 ambient air quality index (AQI), editions 2012 and 2026 (pure functions, no I/O).

Pollutant keys are envgrid payload field names; concentrations are µg/m³, CO mg/m³.
Sub-indices are worked in exact rational arithmetic so a value on a breakpoint never picks
up a float error that `math.ceil` would turn into +1.

Special cases (HJ 633 Table 1 notes) and the extra concentrations they need:

- SO2 1 h > 800 µg/m³. 2012: the SO2 sub-index is the 24 h SO2 one; pass the 24 h mean as
  `iaqi(..., substitute=)` / `aqi_realtime(..., so2_24h=)`. If it is missing the sub-index is
  200 (the top of the 1 h table). 2026: always 200; a 24 h mean passed in is ignored.
- O3 8 h > 800 µg/m³. 2012: the O3 sub-index is the 1 h O3 one; pass the 1 h value as
  `iaqi(..., substitute=)` / `aqi_daily(..., o3_1h_max=)`. If it is missing the sub-index is
  300 (the top of the 8 h table). 2026: always 300; a 1 h value passed in is ignored.

Real-time AQI (`aqi_realtime`), by default: the six 1 h values, PM10/PM2.5 judged on their
24 h table (there is no 1 h PM table). Opt-in extras from the HJ 633 real-time report:
`pm_24h` replaces a PM 1 h value by its 24 h moving mean, `o3_8h` adds an O3 8 h sub-index
under the key `O3_8H`. Daily AQI (`aqi_daily`): 24 h means of SO2, NO2, CO, PM10, PM2.5 and the
day's maximum 8 h moving mean of O3, reported under `O3_8H`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from fractions import Fraction
from typing import Literal

Edition = Literal["2012", "2026"]
Averaging = Literal["1h", "8h", "24h"]

EDITIONS: tuple[Edition, ...] = ("2012", "2026")

# HJ 633-2026 (issued with GB 3095-2026) applies to data from this day on; earlier data keeps
# the HJ 633-2012 table so history is not re-graded.
EDITION_2026_FROM = date(2026, 3, 1)

SO2 = "so2_ug_m3"
NO2 = "no2_ug_m3"
CO = "co_mg_m3"
O3 = "o3_ug_m3"
PM10 = "pm10_ug_m3"
PM25 = "pm25_ug_m3"
# Result key for the O3 sub-index worked from an 8 h moving mean, kept apart from the 1 h O3
# sub-index because both can appear in one result and bulletins name them apart (O3_8h).
O3_8H = "o3_8h_ug_m3"

# Payload pollutants in the order HJ 633 lists them; also the order of `AqiResult.primary`.
POLLUTANTS: tuple[str, ...] = (SO2, NO2, CO, O3, PM10, PM25)
_RESULT_ORDER: tuple[str, ...] = (SO2, NO2, CO, O3, O3_8H, PM10, PM25)

# HJ 633-2012 Table 1 / HJ 633-2026: IAQI value at each breakpoint column.
IAQI_STEPS: tuple[int, ...] = (0, 50, 100, 150, 200, 300, 400, 500)

# HJ 633-2012 Table 1, concentration breakpoints (µg/m³; CO mg/m³) matching IAQI_STEPS.
# SO2 1 h stops at 800 (IAQI 200) and O3 8 h at 800 (IAQI 300): above them the standard's
# special cases apply instead of the table (see `iaqi`).
_BREAKPOINTS_2012: dict[tuple[str, Averaging], tuple[int, ...]] = {
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

# HJ 633-2026: only the PM breakpoints at IAQI 100 changed (PM10 150 -> 120, PM2.5 75 -> 60),
# following the tighter 24 h limits of GB 3095-2026; every other row is the 2012 row.
_BREAKPOINTS_2026: dict[tuple[str, Averaging], tuple[int, ...]] = {
    **_BREAKPOINTS_2012,
    (PM10, "24h"): (0, 50, 120, 250, 350, 420, 500, 600),
    (PM25, "24h"): (0, 35, 60, 115, 150, 250, 350, 500),
}

BREAKPOINTS: dict[Edition, dict[tuple[str, Averaging], tuple[int, ...]]] = {
    "2012": _BREAKPOINTS_2012,
    "2026": _BREAKPOINTS_2026,
}

# HJ 633 Table 1 notes: SO2 1 h above 800 µg/m³ and O3 8 h above 800 µg/m³ are not interpolated.
SO2_1H_CEILING = 800
O3_8H_CEILING = 800
# The IAQI at those ceilings: the 2026 edition reports these values outright, and we use them
# for 2012 as well when the substitute concentration the 2012 rule needs was not supplied.
SO2_1H_CEILING_IAQI = 200
O3_8H_CEILING_IAQI = 300

# HJ 633 Table 2: upper AQI bound of categories 1..5; above 300 is category 6.
_CATEGORY_TOPS: tuple[int, ...] = (50, 100, 150, 200, 300)
_CATEGORY_ZH = ("优", "良", "轻度污染", "中度污染", "重度污染", "严重污染")
_CATEGORY_EN = (
    "excellent",
    "good",
    "lightly polluted",
    "moderately polluted",
    "heavily polluted",
    "severely polluted",
)
_LEVEL_ZH = ("一级", "二级", "三级", "四级", "五级", "六级")


def edition_for(day: date, forced: Edition | None = None) -> Edition:
    """Return the HJ 633 edition for a (local, Beijing-time) date, or `forced` when given.

    A datetime is reduced to its date, so pass it in local time, not UTC.
    """
    if forced is not None:
        _check_edition(forced)
        return forced
    # datetime is a date subclass but refuses to compare with a plain date.
    if isinstance(day, datetime):
        day = day.date()
    return "2026" if day >= EDITION_2026_FROM else "2012"


def _check_edition(edition: str) -> None:
    if edition not in EDITIONS:
        raise ValueError(f"edition must be one of {EDITIONS}, not {edition!r}")


def _exact(value: float) -> Fraction:
    """Return `value` as the exact decimal it was written as, e.g. 0.1 -> 1/10."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"concentration must be a number, not {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"concentration must be finite, not {value!r}")
    if value < 0:
        raise ValueError(f"concentration must be >= 0, not {value!r}")
    # repr() is the shortest string that round-trips, i.e. the decimal the sensor reported;
    # Fraction(float) would keep the binary error (0.1 -> 0.1000000000000000055...).
    return Fraction(repr(value)) if isinstance(value, float) else Fraction(value)


def _interpolate(c: Fraction, breakpoints: tuple[int, ...]) -> int:
    # HJ 633 eq. (1): IAQI = (IAQI_hi - IAQI_lo) / (BP_hi - BP_lo) * (C - BP_lo) + IAQI_lo,
    # rounded up. Segments are searched from the bottom so a breakpoint value uses the segment
    # it tops, giving exactly that step's IAQI.
    if c > breakpoints[-1]:
        # Caller handles the special cases; a plain table tops out at IAQI 500.
        return IAQI_STEPS[-1]
    for k in range(1, len(breakpoints)):
        bp_lo, bp_hi = breakpoints[k - 1], breakpoints[k]
        if c <= bp_hi:
            i_lo, i_hi = IAQI_STEPS[k - 1], IAQI_STEPS[k]
            return math.ceil(Fraction(i_hi - i_lo, bp_hi - bp_lo) * (c - bp_lo) + i_lo)
    raise AssertionError("unreachable: c <= top breakpoint")  # pragma: no cover


def _interpolate_fast(c: float, breakpoints: tuple[int, ...]) -> int | None:
    """Float interpolation, or None where float error could change the result.

    Exact Fractions are too slow for every pollutant of every reading on the ingest hot path
    (docs/performance.md, "Why the code is shaped this way"); the float result is only
    unsafe near a breakpoint or when it lands within rounding error of an integer (where ceil
    could go either way), and those cases fall back to the exact path.
    """
    for k in range(1, len(breakpoints)):
        bp_lo, bp_hi = breakpoints[k - 1], breakpoints[k]
        if c <= bp_hi:
            if bp_hi - c < 1e-6 or c - bp_lo < 1e-6:
                return None
            i_lo, i_hi = IAQI_STEPS[k - 1], IAQI_STEPS[k]
            v = (i_hi - i_lo) / (bp_hi - bp_lo) * (c - bp_lo) + i_lo
            if abs(v - round(v)) < 1e-6:
                return None
            return math.ceil(v)
    return None


def iaqi(
    pollutant: str,
    concentration: float,
    averaging: Averaging,
    edition: Edition,
    *,
    substitute: float | None = None,
) -> int:
    """Return the HJ 633 sub-index (IAQI) of one concentration, rounded up to an integer.

    `substitute` is the extra value the 2012 SO2 1 h / O3 8 h > 800 cases need (module notes).
    """
    _check_edition(edition)
    table = BREAKPOINTS[edition].get((pollutant, averaging))
    if table is None:
        raise ValueError(f"HJ 633 has no {averaging} table for {pollutant!r}")
    if (
        type(concentration) is float
        and 0.0 <= concentration <= table[-1]
        and (fast := _interpolate_fast(concentration, table)) is not None
    ):
        return fast
    c = _exact(concentration)
    if pollutant == SO2 and averaging == "1h" and c > SO2_1H_CEILING:
        # HJ 633-2012: SO2 1 h > 800 is not interpolated; report the 24 h SO2 sub-index
        # (`substitute` = the 24 h mean). HJ 633-2026: report IAQI 200. Without a 24 h mean
        # the 2012 case falls back to 200 too, the highest value the 1 h table can give.
        if edition == "2012" and substitute is not None:
            return iaqi(SO2, substitute, "24h", edition)
        return SO2_1H_CEILING_IAQI
    if pollutant == O3 and averaging == "8h" and c > O3_8H_CEILING:
        # HJ 633-2012: O3 8 h > 800 is not interpolated; report the 1 h O3 sub-index
        # (`substitute` = the 1 h value). HJ 633-2026: report IAQI 300. Without a 1 h value
        # the 2012 case falls back to 300 too, the top of the 8 h table.
        if edition == "2012" and substitute is not None:
            return iaqi(O3, substitute, "1h", edition)
        return O3_8H_CEILING_IAQI
    return _interpolate(c, table)


def category_of(aqi: int) -> int:
    """Return the HJ 633 category 1..6 (优 .. 严重污染) of an AQI value."""
    if aqi < 0:
        raise ValueError(f"AQI must be >= 0, not {aqi!r}")
    for category, top in enumerate(_CATEGORY_TOPS, start=1):
        if aqi <= top:
            return category
    return 6


@dataclass(frozen=True)
class AqiResult:
    """AQI with its sub-indices, category, primary pollutant(s) and the edition used."""

    aqi: int
    iaqi: dict[str, int]
    category: int
    primary: tuple[str, ...]
    edition: Edition

    @property
    def category_zh(self) -> str:
        """Category name: 优, 良, 轻度污染, 中度污染, 重度污染 or 严重污染."""
        return _CATEGORY_ZH[self.category - 1]

    @property
    def category_en(self) -> str:
        """Category name in English (excellent .. severely polluted)."""
        return _CATEGORY_EN[self.category - 1]

    @property
    def level_zh(self) -> str:
        """Level name: 一级 .. 六级."""
        return _LEVEL_ZH[self.category - 1]

    @property
    def good(self) -> bool:
        """True for 优 and 良 (AQI <= 100), the days counted as 优良天."""
        return self.aqi <= 100


def _result(sub: dict[str, int], edition: Edition) -> AqiResult | None:
    if not sub:
        return None
    ordered = {key: sub[key] for key in _RESULT_ORDER if key in sub}
    aqi = max(ordered.values())
    # HJ 633: a primary pollutant is named only when AQI > 50; ties name every pollutant.
    primary = tuple(k for k, v in ordered.items() if v == aqi) if aqi > 50 else ()
    return AqiResult(
        aqi=aqi, iaqi=ordered, category=category_of(aqi), primary=primary, edition=edition
    )


def aqi_realtime(
    hourly: Mapping[str, float | None],
    edition: Edition,
    *,
    o3_8h: float | None = None,
    so2_24h: float | None = None,
    pm_24h: Mapping[str, float] | None = None,
) -> AqiResult | None:
    """Return the real-time (hourly) AQI from 1 h values, PM judged on its 24 h table.

    None when no pollutant is present; keyword extras as in the module notes.
    """
    _check_edition(edition)
    # None values and keys that are not HJ 633 pollutants (temperature, humidity...) are
    # skipped so a whole payload can be passed in.
    sub: dict[str, int] = {}
    for pollutant in (SO2, NO2, CO, O3):
        value = hourly.get(pollutant)
        if value is None:
            continue
        extra = so2_24h if pollutant == SO2 else None
        sub[pollutant] = iaqi(pollutant, value, "1h", edition, substitute=extra)
    for pollutant in (PM10, PM25):
        # No 1 h PM table exists: HJ 633 judges PM against the 24 h breakpoints.
        pm_value = pm_24h.get(pollutant) if pm_24h is not None else None
        value = pm_value if pm_value is not None else hourly.get(pollutant)
        if value is None:
            continue
        sub[pollutant] = iaqi(pollutant, value, "24h", edition)
    if o3_8h is not None:
        # The 2012 O3 8 h > 800 case needs the 1 h O3 value, which is in `hourly`.
        sub[O3_8H] = iaqi(O3, o3_8h, "8h", edition, substitute=hourly.get(O3))
    return _result(sub, edition)


def aqi_daily(
    daily: Mapping[str, float | None],
    edition: Edition,
    *,
    o3_8h_max: float | None = None,
    o3_1h_max: float | None = None,
) -> AqiResult | None:
    """Return the daily AQI from 24 h means (SO2, NO2, CO, PM10, PM2.5) and the max 8 h O3.

    None when no pollutant is present; O3 in `daily` is ignored (a 24 h O3 mean has no table).
    """
    _check_edition(edition)
    sub: dict[str, int] = {}
    for pollutant in (SO2, NO2, CO, PM10, PM25):
        value = daily.get(pollutant)
        if value is None:
            continue
        sub[pollutant] = iaqi(pollutant, value, "24h", edition)
    if o3_8h_max is not None:
        sub[O3_8H] = iaqi(O3, o3_8h_max, "8h", edition, substitute=o3_1h_max)
    return _result(sub, edition)
