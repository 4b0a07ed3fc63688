"""HJ 663 ambient air quality assessment for a period (pure functions, no I/O).

Input is one station's (or one area's) days as `air_quality_daily` holds them; output is the
period assessment the bureau publishes: period means of SO2, NO2, PM10 and PM2.5, the CO 24 h
95th and O3 daily-maximum-8 h 90th percentiles, the composite index (环境空气质量综合指数) and
each pollutant's share of it, good days and days per AQI category, days over the 24 h limits,
compliance, and whether the period had enough data. Every number and where it comes from is in
docs/standards.md, "Air quality assessment — GB 3095-2026, HJ 663-2026".

Arithmetic is exact (`decimal`) from the decimal each value was written as, so a statistic on
a rounding boundary (x.5) is rounded by the rule, not by a binary float error.

Edition changes inside a period (e.g. a month spanning 2026-03-01):
- a day over its 24 h limit is judged by the limits in force on that day;
- the period's compliance and composite index use the limits in force on the period's last day
  (the last of `Assessment.editions`): a period is published under the rules in force when it
  closes. This is envgrid's choice; HJ 663-2026 was not read on this point.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from types import MappingProxyType

from devices import aqi as hj633
from devices.gb3095 import Limits, limits_on

POLLUTANTS: tuple[str, ...] = ("so2", "no2", "pm10", "pm25", "co", "o3_8h")
# Pollutants assessed by their period mean; CO and O3 are assessed by a percentile.
MEAN_POLLUTANTS: tuple[str, ...] = ("so2", "no2", "pm10", "pm25")

# HJ 663-2013 §4 (评价项目) / 城市环境空气质量排名技术规定: CO by the 95th percentile of its 24 h
# means, O3 by the 90th percentile of its daily maximum 8 h means.
CO_PERCENTILE = 95
O3_PERCENTILE = 90

# HJ 663-2013 §4 (评价项目), annual assessment (年评价): besides the annual mean, the 24 h means of
# SO2 and NO2 are judged by their 98th percentile and those of PM10 and PM2.5 by their 95th,
# against the 24 h limits; a calendar year complies only when both do.
DAILY_PERCENTILES: Mapping[str, int] = MappingProxyType(
    {"so2": 98, "no2": 98, "pm10": 95, "pm25": 95}
)

# HJ 633 Table 2: category 1 (优, AQI 0-50) and 2 (良, 51-100) are good days (优良天).
GOOD_AQI_MAX = 100

# The AQI key of each assessed pollutant in devices/aqi.py.
_AQI_KEYS: dict[str, str] = {
    "so2": hj633.SO2,
    "no2": hj633.NO2,
    "pm10": hj633.PM10,
    "pm25": hj633.PM25,
    "co": hj633.CO,
}


# The daily rollup's field of each assessed statistic (docs/standards.md, "Rollups").
_FIELDS: dict[str, str] = {**_AQI_KEYS, "o3_8h": hj633.O3_8H}


@dataclass(frozen=True, slots=True)
class DayValues:
    """One station's (or area's) day: valid 24 h statistics only, None where not valid."""

    day: date
    so2: float | None
    no2: float | None
    pm10: float | None
    pm25: float | None
    co: float | None
    o3_8h: float | None
    aqi: int | None  # None: the day has no valid AQI (not a valid day)
    category: int | None  # HJ 633 category 1..6; None with `aqi` None

    def __post_init__(self) -> None:
        for name in POLLUTANTS:
            value = getattr(self, name)
            if value is not None and not (value >= 0 and value != float("inf")):
                raise ValueError(f"{self.day}: {name} must be a finite value >= 0, not {value!r}")
        if self.aqi is not None and self.aqi < 0:
            raise ValueError(f"{self.day}: AQI must be >= 0, not {self.aqi!r}")
        if self.category is not None and self.category not in range(1, 7):
            raise ValueError(f"{self.day}: category must be 1..6, not {self.category!r}")

    @classmethod
    def from_fields(
        cls,
        day: date,
        fields: Mapping[str, object],
        *,
        day_min_hours: int = 20,
        o3_8h_min_windows: int = 14,
    ) -> DayValues:
        """Build a day from an `air_quality_daily` / `city_air_daily` point's fields.

        The rollup stores a 24 h mean even when too few hours were behind it; a statistic is
        taken only when its `<field>_n` meets the validity rule (GB 3095-2012 Table 4: 20
        hourly values; daily maximum 8 h O3: `o3_8h_min_windows` valid windows, the rollup's
        `rollup.o3_8h_min_windows`). The AQI counts only on a `valid` day.
        """
        values: dict[str, float | None] = {}
        for p, name in _FIELDS.items():
            raw = fields.get(name)
            n = fields.get(f"{name}_n")
            needed = o3_8h_min_windows if p == "o3_8h" else day_min_hours
            ok = isinstance(raw, int | float) and not isinstance(raw, bool)
            ok = ok and isinstance(n, int | float) and n >= needed
            values[p] = float(raw) if ok and isinstance(raw, int | float) else None
        aqi_raw, category_raw = fields.get("aqi"), fields.get("aqi_category")
        valid = fields.get("valid") is True and isinstance(aqi_raw, int | float)
        aqi_value = int(aqi_raw) if valid and isinstance(aqi_raw, int | float) else None
        category: int | None = None
        if aqi_value is not None:
            category = (
                int(category_raw)
                if isinstance(category_raw, int | float) and not isinstance(category_raw, bool)
                else hj633.category_of(aqi_value)
            )
        return cls(day=day, aqi=aqi_value, category=category, **values)

    def value(self, pollutant: str) -> float | None:
        """Return the day's statistic for one of `POLLUTANTS`."""
        result: float | None = getattr(self, pollutant)
        return result


@dataclass(frozen=True, slots=True)
class Validity:
    """How many valid days a period needs (GB 3095-2012 Table 4, used by HJ 663-2013 §6).

    A month needs `month_min_days` valid daily values (February `february_min_days`); a
    calendar year also needs `year_min_days`. A month only partly inside the period may miss
    as many days as a whole month may. Exceptional-event days do not count as missing.
    """

    month_min_days: int = 27
    february_min_days: int = 25
    year_min_days: int = 324


@dataclass(frozen=True, slots=True)
class Rounding:
    """Decimal places of the published figures; rounding is `round_half_even` (GB/T 8170).

    Concentration digits follow 城市环境空气质量排名技术规定 (integers in µg/m³, CO one decimal
    in mg/m³); the composite index has two decimals. Shares and the good-day ratio (%) with one
    decimal are envgrid's choice, as bulletins print them.
    """

    concentration: Mapping[str, int] = field(
        default_factory=lambda: MappingProxyType(
            {"so2": 0, "no2": 0, "pm10": 0, "pm25": 0, "co": 1, "o3_8h": 0}
        )
    )
    composite_index: int = 2
    share: int = 1
    good_day_ratio: int = 1


DEFAULT_VALIDITY = Validity()
DEFAULT_ROUNDING = Rounding()

# Weight of each sub-index in the composite index: 1 each (城市环境空气质量排名技术规定,
# 环办监测〔2018〕19号). A weighted variant (PM2.5 3, NO2 2, O3 2) is used by some rankings
# but was not confirmed from a public text; pass `weights=` to apply one.
EQUAL_WEIGHTS: Mapping[str, float] = MappingProxyType(dict.fromkeys(POLLUTANTS, 1.0))


def _exact(value: float) -> Decimal:
    # repr() is the shortest decimal that round-trips: the figure as it was written.
    return Decimal(repr(float(value))) if not isinstance(value, int) else Decimal(value)


def _percentile_exact(values: Sequence[float], p: float) -> Decimal:
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be within 0..100, not {p!r}")
    ordered = sorted(_exact(v) for v in values)
    n = len(ordered)
    # HJ 663-2013 Annex A (数据统计方法): k = 1 + (n - 1) * p%, s = integer part of k,
    # m_p = X(s) + (X(s+1) - X(s)) * (k - s) over the values in ascending order X(1)..X(n).
    k = 1 + (n - 1) * _exact(p) / 100
    s = int(k)
    if s >= n:
        return ordered[-1]
    return ordered[s - 1] + (ordered[s] - ordered[s - 1]) * (k - s)


def percentile(values: Sequence[float], p: float) -> float:
    """Return the p-th percentile by HJ 663 Annex A (interpolated between order statistics)."""
    return float(_percentile_exact(values, p))


def _round_exact(value: Decimal, digits: int) -> Decimal:
    # GB/T 8170-2008 §3.3 (进舍规则, 四舍六入五成双): below 5 drop, above 5 (or 5 followed by
    # non-zero digits) carry, exactly 5 carry only to an even last digit — ROUND_HALF_EVEN
    # applied to the exact decimal.
    return value.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_EVEN)


def round_half_even(value: float, digits: int) -> float:
    """Round as GB/T 8170 says (四舍六入五成双) to `digits` decimals, on the written decimal."""
    return float(_round_exact(_exact(value), digits))


def _mean_exact(values: Sequence[float]) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 40
        return sum((_exact(v) for v in values), Decimal(0)) / len(values)


@dataclass(frozen=True, slots=True)
class Assessment:
    """A period's assessment; figures are rounded as `Rounding` says, None without data."""

    first: date
    last: date
    so2: float | None
    no2: float | None
    pm10: float | None
    pm25: float | None
    co_p95: float | None
    o3_8h_p90: float | None
    composite_index: float | None
    shares: Mapping[str, float]  # pollutant -> % of the composite index
    good_day_ratio: float | None  # % of valid days with AQI <= 100
    valid_days: int
    good_days: int
    category_days: tuple[int, int, int, int, int, int]
    over_limit_days: Mapping[str, int]
    compliance: Mapping[str, bool | None]
    enough_data: Mapping[str, bool]
    excluded_days: int
    editions: tuple[str, ...]
    # The 24 h percentiles of `DAILY_PERCENTILES` (rounded like the means); they enter
    # `compliance` when the period is a calendar year.
    daily_percentiles: Mapping[str, float | None] = field(
        default_factory=lambda: MappingProxyType({})
    )

    def statistic(self, pollutant: str) -> float | None:
        """Return the statistic that represents one of `POLLUTANTS` for the period."""
        if pollutant == "co":
            return self.co_p95
        if pollutant == "o3_8h":
            return self.o3_8h_p90
        result: float | None = getattr(self, pollutant)
        return result


LimitsFor = Callable[[date], Limits]


def _standard(limits: Limits, pollutant: str) -> float:
    # 城市环境空气质量排名技术规定: S_i is the grade II annual limit for SO2, NO2, PM10 and
    # PM2.5, the 24 h limit for CO and the 8 h limit for O3 — the limits the statistics are
    # compared with for compliance too.
    if pollutant in MEAN_POLLUTANTS:
        return float(limits.annual[pollutant])
    if pollutant == "co":
        return float(limits.daily["co"])
    return float(limits.o3_8h)


def _day_limit(limits: Limits, pollutant: str) -> float:
    return float(limits.o3_8h if pollutant == "o3_8h" else limits.daily[pollutant])


def _dates(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _enough(
    valid: set[date], first: date, last: date, excluded: set[date], validity: Validity
) -> bool:
    months: dict[tuple[int, int], list[date]] = {}
    for d in _dates(first, last):
        months.setdefault((d.year, d.month), []).append(d)
    for (year, month), in_period in months.items():
        size = calendar.monthrange(year, month)[1]
        minimum = validity.february_min_days if month == 2 else validity.month_min_days
        allowed_missing = max(size - minimum, 0)
        expected = [d for d in in_period if d not in excluded]
        have = sum(1 for d in expected if d in valid)
        if len(expected) - have > allowed_missing:
            return False
    for year in range(first.year, last.year + 1):
        if first <= date(year, 1, 1) and date(year, 12, 31) <= last:
            year_days = [
                d for d in _dates(date(year, 1, 1), date(year, 12, 31)) if d not in excluded
            ]
            needed = validity.year_min_days - (365 + calendar.isleap(year) - len(year_days))
            if sum(1 for d in year_days if d in valid) < needed:
                return False
    return True


def _check_days(days: Sequence[DayValues]) -> None:
    seen: set[date] = set()
    for d in days:
        if d.day in seen:
            raise ValueError(f"{d.day}: more than one value for the same day")
        seen.add(d.day)


def assess(
    days: Sequence[DayValues],
    first: date,
    last: date,
    excluded: Collection[date] = (),
    *,
    limits_for: LimitsFor = limits_on,
    validity: Validity = DEFAULT_VALIDITY,
    rounding: Rounding = DEFAULT_ROUNDING,
    weights: Mapping[str, float] = EQUAL_WEIGHTS,
    excluded_in_day_counts: bool = False,
) -> Assessment:
    """Assess the days of `first`..`last` (local dates, inclusive); days outside are ignored.

    `excluded` are exceptional-event days (HJ 663-2026 例外事件): they leave every
    concentration statistic and count neither as valid nor as missing. They leave the good-day
    and category counts too, unless `excluded_in_day_counts` (the national practice for sand
    and dust days: 优良天数比例 keeps them, concentrations and the composite index do not).
    """
    if last < first:
        raise ValueError(f"period ends ({last}) before it starts ({first})")
    _check_days(days)
    excluded_in = {d for d in excluded if first <= d <= last}
    kept = sorted(
        (d for d in days if first <= d.day <= last and d.day not in excluded_in),
        key=lambda d: d.day,
    )
    closing = limits_for(last)
    editions = tuple(dict.fromkeys(limits_for(d).edition for d in _dates(first, last)))

    exact: dict[str, Decimal | None] = {}
    enough: dict[str, bool] = {}
    over: dict[str, int] = {}
    for p in POLLUTANTS:
        pairs = [(d.day, v) for d in kept if (v := d.value(p)) is not None]
        values = [v for _, v in pairs]
        digits = rounding.concentration[p]
        if not values:
            exact[p] = None
        elif p in MEAN_POLLUTANTS:
            exact[p] = _round_exact(_mean_exact(values), digits)
        else:
            pct = CO_PERCENTILE if p == "co" else O3_PERCENTILE
            exact[p] = _round_exact(_percentile_exact(values, pct), digits)
        enough[p] = bool(values) and _enough(
            {day for day, _ in pairs}, first, last, excluded_in, validity
        )
        # A day is over its limit when its value, rounded as published, exceeds the limit in
        # force that day (GB/T 8170 §4.3 修约值比较法, as HJ 663 compares rounded values).
        over[p] = sum(
            1
            for day, v in pairs
            if _round_exact(_exact(v), digits) > _exact(_day_limit(limits_for(day), p))
        )

    daily_pct: dict[str, Decimal | None] = {}
    for p, pct in DAILY_PERCENTILES.items():
        values = [v for d in kept if (v := d.value(p)) is not None]
        daily_pct[p] = (
            _round_exact(_percentile_exact(values, pct), rounding.concentration[p])
            if values
            else None
        )
    calendar_year = (first.month, first.day, last.month, last.day) == (1, 1, 12, 31) and (
        first.year == last.year
    )

    compliance: dict[str, bool | None] = {}
    for p in POLLUTANTS:
        stat = exact[p]
        if stat is None or not enough[p]:
            compliance[p] = None
            continue
        ok = stat <= _exact(_standard(closing, p))
        if calendar_year and (pct_value := daily_pct.get(p)) is not None:
            ok = ok and pct_value <= _exact(float(closing.daily[p]))
        compliance[p] = ok

    composite: float | None = None
    shares: dict[str, float] = {}
    if all(exact[p] is not None for p in POLLUTANTS):
        with localcontext() as ctx:
            ctx.prec = 40
            sub = {
                p: stat * _exact(weights[p]) / _exact(_standard(closing, p))
                for p in POLLUTANTS
                if (stat := exact[p]) is not None
            }
            total = sum(sub.values(), Decimal(0))
            composite = float(_round_exact(total, rounding.composite_index))
            if total > 0:
                shares = {
                    p: float(_round_exact(sub[p] * 100 / total, rounding.share)) for p in POLLUTANTS
                }

    counted = kept
    if excluded_in_day_counts:
        counted = sorted((d for d in days if first <= d.day <= last), key=lambda d: d.day)
    categories = [0, 0, 0, 0, 0, 0]
    valid_days = good_days = 0
    for d in counted:
        if d.aqi is None:
            continue
        valid_days += 1
        good_days += d.aqi <= GOOD_AQI_MAX
        category = d.category if d.category is not None else hj633.category_of(d.aqi)
        categories[category - 1] += 1
    ratio = (
        float(_round_exact(Decimal(good_days * 100) / valid_days, rounding.good_day_ratio))
        if valid_days
        else None
    )

    def out(p: str) -> float | None:
        value = exact[p]
        return None if value is None else float(value)

    return Assessment(
        first=first,
        last=last,
        so2=out("so2"),
        no2=out("no2"),
        pm10=out("pm10"),
        pm25=out("pm25"),
        co_p95=out("co"),
        o3_8h_p90=out("o3_8h"),
        composite_index=composite,
        shares=MappingProxyType(shares),
        good_day_ratio=ratio,
        valid_days=valid_days,
        good_days=good_days,
        category_days=(
            categories[0],
            categories[1],
            categories[2],
            categories[3],
            categories[4],
            categories[5],
        ),
        over_limit_days=MappingProxyType(over),
        compliance=MappingProxyType(compliance),
        enough_data=MappingProxyType(enough),
        excluded_days=len(excluded_in),
        editions=editions,
        daily_percentiles=MappingProxyType(
            {p: None if v is None else float(v) for p, v in daily_pct.items()}
        ),
    )


def combine(
    stations: Sequence[Sequence[DayValues]], *, edition: hj633.Edition | None = None
) -> list[DayValues]:
    """Return an area's (county's, city's) days from its stations' days.

    Each statistic is the arithmetic mean of the stations' valid values that day (HJ 663-2013,
    city scale: the mean over the area's assessment stations). The AQI is
    recomputed from those means by the day's HJ 633 edition (or `edition`), and only when all
    six statistics exist, as a station's day is valid only with all six.
    """
    by_day: dict[date, list[DayValues]] = {}
    for station in stations:
        _check_days(station)
        for d in station:
            by_day.setdefault(d.day, []).append(d)
    result: list[DayValues] = []
    for day in sorted(by_day):
        means: dict[str, float | None] = {}
        for p in POLLUTANTS:
            values = [v for d in by_day[day] if (v := d.value(p)) is not None]
            means[p] = float(_mean_exact(values)) if values else None
        aqi_value: int | None = None
        category: int | None = None
        if all(means[p] is not None for p in POLLUTANTS):
            daily = {_AQI_KEYS[p]: means[p] for p in _AQI_KEYS}
            found = hj633.aqi_daily(
                daily, hj633.edition_for(day, edition), o3_8h_max=means["o3_8h"]
            )
            if found is not None:
                aqi_value, category = found.aqi, found.category
        result.append(
            DayValues(
                day=day,
                so2=means["so2"],
                no2=means["no2"],
                pm10=means["pm10"],
                pm25=means["pm25"],
                co=means["co"],
                o3_8h=means["o3_8h"],
                aqi=aqi_value,
                category=category,
            )
        )
    return result


@dataclass(frozen=True, slots=True)
class ThreeYearAverage:
    """Three consecutive calendar years' statistics averaged (HJ 663-2026 moving average).

    `values` has the keys of `POLLUTANTS` (CO and O3 are the averages of the annual
    percentiles). A value is None unless all three years had enough data for it.
    """

    first_year: int
    last_year: int
    values: Mapping[str, float | None]
    composite_index: float | None
    compliance: Mapping[str, bool | None]
    edition: str  # the limits the average is judged by: those in force at the end


def three_year_average(
    assessments: Sequence[Assessment],
    *,
    limits_for: LimitsFor = limits_on,
    rounding: Rounding = DEFAULT_ROUNDING,
    weights: Mapping[str, float] = EQUAL_WEIGHTS,
) -> ThreeYearAverage:
    """Average three consecutive calendar-year assessments, statistic by statistic.

    The shape is envgrid's reading of HJ 663-2026's three-year moving average (not confirmed
    from the text): the mean of the three published annual statistics, rounded like them,
    judged by the limits in force on the last day of the third year.
    """
    if len(assessments) != 3:
        raise ValueError(f"a three-year average needs 3 annual assessments, not {len(assessments)}")
    ordered = sorted(assessments, key=lambda a: a.first)
    for a in ordered:
        if (a.first.month, a.first.day, a.last.month, a.last.day) != (1, 1, 12, 31) or (
            a.first.year != a.last.year
        ):
            raise ValueError(f"{a.first}..{a.last} is not a calendar year")
    years = [a.first.year for a in ordered]
    if years != list(range(years[0], years[0] + 3)):
        raise ValueError(f"years {years} are not three consecutive years")
    closing = limits_for(date(years[2], 12, 31))
    values: dict[str, Decimal | None] = {}
    for p in POLLUTANTS:
        stats = [a.statistic(p) for a in ordered]
        if any(s is None for s in stats) or not all(a.enough_data.get(p) for a in ordered):
            values[p] = None
            continue
        present = [s for s in stats if s is not None]
        values[p] = _round_exact(_mean_exact(present), rounding.concentration[p])
    compliance: dict[str, bool | None] = {
        p: (v <= _exact(_standard(closing, p))) if (v := values[p]) is not None else None
        for p in POLLUTANTS
    }
    composite: float | None = None
    if all(values[p] is not None for p in POLLUTANTS):
        with localcontext() as ctx:
            ctx.prec = 40
            total = sum(
                (
                    v * _exact(weights[p]) / _exact(_standard(closing, p))
                    for p in POLLUTANTS
                    if (v := values[p]) is not None
                ),
                Decimal(0),
            )
            composite = float(_round_exact(total, rounding.composite_index))
    return ThreeYearAverage(
        first_year=years[0],
        last_year=years[2],
        values=MappingProxyType({p: None if v is None else float(v) for p, v in values.items()}),
        composite_index=composite,
        compliance=MappingProxyType(compliance),
        edition=closing.edition,
    )


def rank(values: Mapping[str, float | None], *, lower_is_better: bool = True) -> dict[str, int]:
    """Rank areas by one figure as the provincial rankings publish it.

    Composite index ascending, good-day ratio descending (`lower_is_better=False`); equal
    values share a rank and the next rank skips (1, 2, 2, 4: "数值相同的城市以并列计", notes of
    Anhui's published rankings). Areas without the figure are left out.
    """
    present = {k: v for k, v in values.items() if v is not None}
    ordered = sorted(present.values(), reverse=not lower_is_better)
    return {k: ordered.index(v) + 1 for k, v in present.items()}


def change_rate(now: float | None, before: float | None, digits: int = 1) -> float | None:
    """Return the change against the same period last year, in % (同比变化率).

    (now - before) / before x 100, rounded by GB/T 8170; > 0 is worse for the composite index
    (城市环境空气质量变化程度排名方案, 2017). None without both figures or when `before` is 0.
    """
    if now is None or before is None or before == 0:
        return None
    with localcontext() as ctx:
        ctx.prec = 40
        rate = (_exact(now) - _exact(before)) * 100 / _exact(before)
    return float(_round_exact(rate, digits))
