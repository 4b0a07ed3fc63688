"""The city's plan targets and the figures that measure them (pure: no I/O).

``report/figures.py`` queries InfluxDB (the rollups and the raw energy series) and hands the rows
to the functions here; everything the report says is decided in this module:

- **Plan file** (``report/plan.toml``): targets (id, bilingual description, formula, period,
  threshold, direction), the grid emission factor and the data-coverage rules, validated by
  :func:`parse_plan` with ``file:line`` errors.
- **Water** (优Ⅲ比例): a section's period class is the GB 3838-2002 class of the item-wise
  period means of its daily values; sections with too little data are named and not counted
  as Class III or better.
- **Air** (优良天数比率): good days ÷ valid days of the city's daily AQI (``city_air_daily``);
  days without a valid value are named and never counted as good.
- **PV**: generation from the lifetime energy register, equivalent utilisation hours
  (kWh ÷ kWp), capacity factor (kWh ÷ (kWp × hours)), CO2 avoided.
- **Shore power** and **EV charging**: time in each state by sample-and-hold over a bounded gap
  (:func:`hold_durations`); time without data is counted as neither available nor in use.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from devices.config import Duration
from devices.errors import error_lines, toml_line
from devices.gb3838 import ASSESSED_ITEMS, SectionType, section_class

HOUR_MS = 3_600_000
DAY_MS = 86_400_000

Direction = Literal[">=", "<="]
Area = Literal["water", "air", "pv", "shore", "ev"]


class PlanError(ValueError):
    """A plan file that cannot be used; the message names the file, the line and the fix."""


# ------------------------------------------------------------------------------- formulas


@dataclass(frozen=True, slots=True)
class Formula:
    """A figure the report can compute: its unit, area and names."""

    name: str
    area: Area
    unit: str
    label_zh: str
    label_en: str


_FORMULAS = (
    Formula("sections_iii_ratio", "water", "%", "优Ⅲ比例", "Sections at Class III or better"),
    Formula("good_days_ratio", "air", "%", "优良天数比率", "Good air-quality days"),
    Formula("pv_pilot_counties", "pv", "counties", "整县试点发电县数", "Pilot counties generating"),
    Formula("pv_kwh", "pv", "kWh", "光伏发电量", "PV generation"),
    Formula("pv_pilot_kwh", "pv", "kWh", "试点县光伏发电量", "PV generation in pilot counties"),
    Formula("pv_equivalent_hours", "pv", "h", "等效利用小时数", "Equivalent utilisation hours"),
    Formula("pv_capacity_factor", "pv", "%", "容量系数", "Capacity factor"),
    Formula("pv_co2_avoided_t", "pv", "t", "减排二氧化碳", "CO2 avoided"),
    Formula("calls_ratio", "shore", "%", "岸电使用率（艘次）", "Shore-power use (calls)"),
    Formula("hours_ratio", "shore", "%", "岸电使用率（时长）", "Shore-power use (hours)"),
    Formula("shore_sessions", "shore", "sessions", "岸电供电次数", "Shore-power sessions"),
    Formula("shore_hours", "shore", "h", "岸电连接时长", "Shore-power connection hours"),
    Formula("shore_kwh", "shore", "kWh", "岸电供电量", "Shore power supplied"),
    Formula("ev_kwh", "ev", "kWh", "充电量", "EV energy delivered"),
    Formula("ev_sessions", "ev", "sessions", "充电次数", "EV charging sessions"),
    Formula("ev_availability", "ev", "%", "充电桩可用率", "Charger availability"),
    Formula("ev_utilisation", "ev", "%", "充电桩利用率", "Charger utilisation"),
)
FORMULAS: dict[str, Formula] = {f.name: f for f in _FORMULAS}


# ------------------------------------------------------------------------------ plan file

Share = Annotated[float, Field(ge=0.0, le=1.0)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PlanInfo(_Section):
    """The plan's name and the report's default period (both dates inclusive)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name_zh: str = Field(min_length=1)
    name_en: str = Field(min_length=1)
    city: str = ""
    start: date = Field(alias="from")
    end: date = Field(alias="to")

    @model_validator(mode="after")
    def _order(self) -> PlanInfo:
        if self.end < self.start:
            raise ValueError("'to' is before 'from': give the period's first date in 'from'")
        return self


class GridSpec(_Section):
    """The grid emission factor used for CO2 avoided, with its source."""

    emission_factor_kg_per_kwh: float = Field(gt=0, lt=2)
    source: str = Field(min_length=1)


class CoverageSpec(_Section):
    """How much data a section, inverter, berth or charger needs to be counted."""

    water_min_day_share: Share = 0.75
    pv_min_day_share: Share = 0.8
    device_min_time_share: Share = 0.8


class WaterSpec(_Section):
    """Which sections are assessed (registry ``assessment``)."""

    assessments: list[Literal["national", "provincial", "city"]] = ["national", "provincial"]


class PvSpec(_Section):
    """PV: how many lowest-yield inverters to list, how far back to look for a register."""

    lowest: int = Field(default=5, ge=0, le=100)
    baseline_lookback: Duration = timedelta(days=7)


class SeriesSpec(_Section):
    """A state series read in ``step`` buckets; a value holds until the next, ≤ ``max_gap``."""

    step: Duration = timedelta(minutes=5)
    max_gap: Duration = timedelta(minutes=15)

    @model_validator(mode="after")
    def _gap(self) -> SeriesSpec:
        if self.step <= timedelta(0):
            raise ValueError("step must be positive, e.g. '5m'")
        if self.max_gap < self.step:
            raise ValueError("max_gap must be at least step")
        return self


class ShoreSpec(SeriesSpec):
    """Shore power: the berthing time above which a ship must use shore power."""

    obliged_min_hours: float = Field(default=2.0, ge=0)


class TargetSpec(_Section):
    """One target: a formula's value compared with a threshold over a period."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    description_zh: str = Field(min_length=1)
    description_en: str = Field(min_length=1)
    formula: str
    period: str
    threshold: float
    direction: Direction

    @field_validator("formula")
    @classmethod
    def _formula(cls, v: str) -> str:
        if v not in FORMULAS:
            raise ValueError(f"unknown formula {v!r}; use one of {', '.join(FORMULAS)}")
        return v

    @field_validator("period")
    @classmethod
    def _period(cls, v: str) -> str:
        parse_period(v)
        return v

    @property
    def bounds(self) -> tuple[date, date]:
        """The period's first and last date."""
        return parse_period(self.period)

    def met(self, value: float | None) -> bool | None:
        """Whether ``value`` meets the target (None when there is no value)."""
        if value is None:
            return None
        return value >= self.threshold if self.direction == ">=" else value <= self.threshold


class Plan(_Section):
    """A plan file: the plan, its targets, the emission factor and the coverage rules."""

    plan: PlanInfo
    grid: GridSpec
    coverage: CoverageSpec = CoverageSpec()
    water: WaterSpec = WaterSpec()
    pv: PvSpec = PvSpec()
    shore_power: ShoreSpec = ShoreSpec()
    ev: SeriesSpec = SeriesSpec()
    targets: list[TargetSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> Plan:
        seen: set[str] = set()
        for t in self.targets:
            if t.id in seen:
                raise ValueError(f"target id {t.id!r} is used twice: give each target its own id")
            seen.add(t.id)
        return self

    def target_for(self, formula: str) -> TargetSpec | None:
        """The first target measured by ``formula``, if any."""
        return next((t for t in self.targets if t.formula == formula), None)


def parse_period(text: str) -> tuple[date, date]:
    """``"2025"`` or ``"2025-01-01/2025-12-31"`` → (first date, last date)."""
    text = text.strip()
    try:
        if re.fullmatch(r"\d{4}", text):
            return date(int(text), 1, 1), date(int(text), 12, 31)
        first, last = (date.fromisoformat(p.strip()) for p in text.split("/"))
    except ValueError:
        raise ValueError(
            f"period {text!r}: write a year ('2025') or 'YYYY-MM-DD/YYYY-MM-DD'"
        ) from None
    if last < first:
        raise ValueError(f"period {text!r} ends before it starts")
    return first, last


def parse_plan(text: str, source: str) -> Plan:
    """Validate plan TOML; PlanError names ``source``, the line and what to fix."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise PlanError(f"{source}: not valid TOML: {e}") from None
    try:
        return Plan.model_validate(data)
    except ValidationError as e:
        lines = error_lines(
            e,
            where=lambda loc: f"{source}:{line}" if (line := toml_line(text, loc)) else source,
            root="plan",
            messages={
                "extra_forbidden": "unknown key: check its spelling against the shipped "
                "report/plan.toml",
                "missing": "missing: add it",
            },
        )
        raise PlanError("\n".join(lines)) from None


# ---------------------------------------------------------------------------- the report


@dataclass(slots=True)
class Coverage:
    """The data behind a figure: how many units (days, sections, devices) had enough of it.

    ``missing`` names the units without any data, ``insufficient`` those with too little.
    """

    unit: str
    covered: int
    expected: int
    missing: list[str] = field(default_factory=list)
    insufficient: list[str] = field(default_factory=list)

    @property
    def share(self) -> float | None:
        """covered ÷ expected (None when nothing was expected)."""
        return self.covered / self.expected if self.expected else None


@dataclass(slots=True)
class Figure:
    """One figure: value, its target (if the plan has one) and the data coverage behind it."""

    formula: str
    value: float | None
    coverage: Coverage
    target_id: str | None = None
    threshold: float | None = None
    direction: str | None = None
    period: str | None = None
    met: bool | None = None
    note: str = ""

    @property
    def spec(self) -> Formula:
        """The formula's unit and names."""
        return FORMULAS[self.formula]


def figure(formula: str, value: float | None, coverage: Coverage, plan: Plan) -> Figure:
    """A figure compared with the plan's target for ``formula`` (if there is one)."""
    f = Figure(formula, value, coverage)
    target = plan.target_for(formula)
    if target is not None:
        f.target_id, f.threshold, f.direction = target.id, target.threshold, target.direction
        f.period, f.met = target.period, target.met(value)
    return f


def ratio_pct(num: float, den: float) -> float | None:
    """num ÷ den in percent, None when den is 0."""
    return num / den * 100.0 if den else None


# ----------------------------------------------------------------------------------- water


@dataclass(slots=True)
class SectionInput:
    """One assessed section's daily values: per local date, item → daily mean."""

    site: str
    county: str
    section_type: SectionType
    assessment: str
    days: dict[date, dict[str, float]] = field(default_factory=dict)
    days_meeting_iii: int = 0  # days whose daily class is I–III (water_section_daily)


@dataclass(slots=True)
class SectionResult:
    """A section's period class and why; ``status`` ok | insufficient | no_data."""

    site: str
    county: str
    section_type: str
    assessment: str
    status: str
    days_with_data: int
    days_expected: int
    days_meeting_iii: int
    water_class: int | None
    roman: str
    limiting_items: list[str]
    means: dict[str, float]
    counted_good: bool


def section_period(s: SectionInput, days_expected: int, min_share: float) -> SectionResult:
    """The section's class from the item-wise period means of its daily values (GB 3838-2002,
    single-factor method); counted as Class III or better only with enough days of data."""
    means: dict[str, float] = {}
    for item in ASSESSED_ITEMS:
        values = [d[item] for d in s.days.values() if item in d]
        if values:
            means[item] = math.fsum(values) / len(values)
    result = section_class(means, s.section_type) if means else None
    n = len(s.days)
    if n == 0:
        status = "no_data"
    elif days_expected and n / days_expected < min_share:
        status = "insufficient"
    else:
        status = "ok"
    return SectionResult(
        site=s.site,
        county=s.county,
        section_type=s.section_type,
        assessment=s.assessment,
        status=status,
        days_with_data=n,
        days_expected=days_expected,
        days_meeting_iii=s.days_meeting_iii,
        water_class=result.water_class if result else None,
        roman=result.roman if result else "",
        limiting_items=list(result.limiting_items) if result else [],
        means={k: round(v, 6) for k, v in means.items()},
        counted_good=status == "ok" and result is not None and result.meets_iii,
    )


def water_figure(sections: Sequence[SectionResult], plan: Plan) -> Figure:
    """优Ⅲ比例 = sections at Class I–III with enough data ÷ assessed sections."""
    good = sum(1 for s in sections if s.counted_good)
    cov = Coverage(
        "sections",
        covered=sum(1 for s in sections if s.status == "ok"),
        expected=len(sections),
        missing=[s.site for s in sections if s.status == "no_data"],
        insufficient=[s.site for s in sections if s.status == "insufficient"],
    )
    f = figure("sections_iii_ratio", ratio_pct(good, len(sections)), cov, plan)
    f.note = f"{good} / {len(sections)}"
    return f


# ------------------------------------------------------------------------------------- air

CATEGORY_ZH = ("优", "良", "轻度污染", "中度污染", "重度污染", "严重污染")
CATEGORY_EN = ("excellent", "good", "light", "moderate", "heavy", "severe")


@dataclass(slots=True)
class AirDay:
    """One local day of the city: status good | not_good | invalid | missing."""

    day: date
    status: str
    aqi: int | None = None
    category: int | None = None
    primary: list[str] = field(default_factory=list)
    edition: str = ""
    reason: str = ""  # why an invalid day did not count (the rollup's invalid_reason)


@dataclass(slots=True)
class AirSummary:
    """Days per category (valid days), primary pollutants of the non-good days, editions."""

    categories: dict[int, int]
    primary: dict[str, int]
    editions: dict[str, int]
    good: int
    valid: int


def air_day(day: date, row: Mapping[str, Any] | None) -> AirDay:
    """A day from its ``city_air_daily`` row (None: no row): valid and good only when stored so."""
    if row is None:
        return AirDay(day, "missing")
    aqi = row.get("aqi")
    category = row.get("aqi_category")
    primary = [p for p in str(row.get("primary_pollutant") or "").split(",") if p]
    edition = str(row.get("aqi_edition") or "")
    valid = row.get("valid") is True and isinstance(aqi, int | float)
    good = row.get("good_day") is True
    status = ("good" if good else "not_good") if valid else "invalid"
    return AirDay(
        day,
        status,
        int(aqi) if isinstance(aqi, int | float) else None,
        int(category) if isinstance(category, int | float) else None,
        primary,
        edition,
        "" if valid else str(row.get("invalid_reason") or ""),
    )


def air_summary(days: Sequence[AirDay]) -> AirSummary:
    """Category counts over valid days; primary pollutants counted over valid non-good days."""
    categories = {c: 0 for c in range(1, 7)}
    primary: dict[str, int] = {}
    editions: dict[str, int] = {}
    for d in days:
        if d.edition:
            editions[d.edition] = editions.get(d.edition, 0) + 1
        if d.status not in ("good", "not_good"):
            continue
        if d.category is not None:
            categories[d.category] = categories.get(d.category, 0) + 1
        if d.status == "not_good":
            for p in d.primary:
                primary[p] = primary.get(p, 0) + 1
    good = sum(1 for d in days if d.status == "good")
    valid = sum(1 for d in days if d.status in ("good", "not_good"))
    return AirSummary(categories, dict(sorted(primary.items())), editions, good, valid)


def air_figure(days: Sequence[AirDay], plan: Plan) -> Figure:
    """优良天数比率 = good days ÷ valid days (HJ 633; GB 3095 validity)."""
    s = air_summary(days)
    cov = Coverage(
        "days",
        covered=s.valid,
        expected=len(days),
        missing=[d.day.isoformat() for d in days if d.status == "missing"],
        insufficient=[d.day.isoformat() for d in days if d.status == "invalid"],
    )
    f = figure("good_days_ratio", ratio_pct(s.good, s.valid), cov, plan)
    f.note = f"{s.good} / {s.valid}"
    return f


# -------------------------------------------------------------------------------- energy


@dataclass(slots=True)
class RegisterDelta:
    """Energy from a cumulative register: the sum of its increases, and how often it fell."""

    kwh: float
    resets: int


def register_delta(
    readings: Iterable[float | None], baseline: float | None = None
) -> RegisterDelta:
    """Σ of the increases of a cumulative register in time order, from ``baseline`` if given.

    A register that goes down was reset or replaced: the drop is not counted as generation,
    counting restarts from the new value.
    """
    total, resets = 0.0, 0
    prev = baseline
    for v in readings:
        if v is None or not math.isfinite(v):
            continue
        if prev is not None:
            if v >= prev:
                total += v - prev
            else:
                resets += 1
        prev = v
    return RegisterDelta(total, resets)


@dataclass(slots=True)
class InverterResult:
    """One inverter over the period; ``status`` ok | insufficient | no_data."""

    device_id: str
    site: str
    county: str
    pilot: bool
    capacity_kw: float | None
    kwh: float | None
    equivalent_hours: float | None
    capacity_factor_pct: float | None
    days_with_data: int
    days_expected: int
    resets: int
    status: str


def inverter_result(
    device_id: str,
    site: str,
    county: str,
    pilot: bool,
    capacity_kw: float | None,
    days: Sequence[tuple[float | None, float | None]],
    baseline: float | None,
    days_expected: int,
    hours: float,
    min_share: float,
) -> InverterResult:
    """Generation (register increases from the baseline through each day's first and last
    value), equivalent hours = kWh ÷ kWp and capacity factor = kWh ÷ (kWp × hours)."""
    flat = [v for first, last in days for v in (first, last)]
    delta = register_delta(flat, baseline)
    n = sum(1 for first, last in days if first is not None or last is not None)
    if n == 0:
        status = "no_data"
    elif days_expected and n / days_expected < min_share:
        status = "insufficient"
    else:
        status = "ok"
    kwh = delta.kwh if n else None
    kwp = capacity_kw if capacity_kw and capacity_kw > 0 else None
    return InverterResult(
        device_id=device_id,
        site=site,
        county=county,
        pilot=pilot,
        capacity_kw=capacity_kw,
        kwh=kwh,
        equivalent_hours=kwh / kwp if kwh is not None and kwp else None,
        capacity_factor_pct=(
            kwh / (kwp * hours) * 100 if kwh is not None and kwp and hours else None
        ),
        days_with_data=n,
        days_expected=days_expected,
        resets=delta.resets,
        status=status,
    )


@dataclass(slots=True)
class CountyPv:
    """A county's PV: kWh of every inverter with data; hours and capacity factor over the
    inverters with enough data (their kWh ÷ their kWp)."""

    county: str
    pilot: bool
    inverters: int
    counted: int
    kwp: float
    kwh: float
    equivalent_hours: float | None
    capacity_factor_pct: float | None


def _hours_cf(rows: Sequence[InverterResult], hours: float) -> tuple[float | None, float | None]:
    ok = [r for r in rows if r.status == "ok" and r.kwh is not None and r.capacity_kw]
    kwh = math.fsum(r.kwh or 0.0 for r in ok)
    kwp = math.fsum(r.capacity_kw or 0.0 for r in ok)
    if not kwp:
        return None, None
    return kwh / kwp, (kwh / (kwp * hours) * 100 if hours else None)


def pv_counties(rows: Sequence[InverterResult], hours: float) -> list[CountyPv]:
    """Per county: inverters, kWp, kWh, equivalent hours, capacity factor."""
    by: dict[str, list[InverterResult]] = {}
    for r in rows:
        by.setdefault(r.county, []).append(r)
    out = []
    for county, members in sorted(by.items()):
        h, cf = _hours_cf(members, hours)
        out.append(
            CountyPv(
                county=county,
                pilot=any(m.pilot for m in members),
                inverters=len(members),
                counted=sum(1 for m in members if m.status == "ok"),
                kwp=math.fsum(m.capacity_kw or 0.0 for m in members),
                kwh=math.fsum(m.kwh or 0.0 for m in members),
                equivalent_hours=h,
                capacity_factor_pct=cf,
            )
        )
    return out


def lowest_yield(rows: Sequence[InverterResult], n: int) -> list[InverterResult]:
    """The ``n`` inverters with enough data and the fewest equivalent hours (maintenance)."""
    ranked = [r for r in rows if r.status == "ok" and r.equivalent_hours is not None]
    return sorted(ranked, key=lambda r: (r.equivalent_hours or 0.0, r.device_id))[:n]


def pv_figures(rows: Sequence[InverterResult], hours: float, plan: Plan) -> list[Figure]:
    """Pilot counties generating, kWh (all and pilots), hours, capacity factor, CO2 avoided."""
    cov = Coverage(
        "inverters",
        covered=sum(1 for r in rows if r.status == "ok"),
        expected=len(rows),
        missing=[r.device_id for r in rows if r.status == "no_data"],
        insufficient=[r.device_id for r in rows if r.status == "insufficient"],
    )
    with_data = [r for r in rows if r.kwh is not None]
    kwh = math.fsum(r.kwh or 0.0 for r in with_data) if with_data else None
    pilot = [r for r in with_data if r.pilot]
    pilot_kwh = math.fsum(r.kwh or 0.0 for r in pilot) if pilot else None
    h, cf = _hours_cf(rows, hours)
    generating = sorted(
        {r.county for r in rows if r.pilot and r.status == "ok" and (r.kwh or 0.0) > 0}
    )
    pilot_all = sorted({r.county for r in rows if r.pilot})
    counties_cov = Coverage(
        "counties",
        covered=len(generating),
        expected=len(pilot_all),
        insufficient=[c for c in pilot_all if c not in generating],
    )
    factor = plan.grid.emission_factor_kg_per_kwh
    figs = [
        figure("pv_pilot_counties", float(len(generating)), counties_cov, plan),
        figure("pv_kwh", kwh, cov, plan),
        figure("pv_pilot_kwh", pilot_kwh, cov, plan),
        figure("pv_equivalent_hours", h, cov, plan),
        figure("pv_capacity_factor", cf, cov, plan),
        figure("pv_co2_avoided_t", kwh * factor / 1000 if kwh is not None else None, cov, plan),
    ]
    figs[0].note = ", ".join(generating)
    figs[5].note = f"{factor} kgCO2/kWh"
    return figs


# ------------------------------------------------------------------------- state series


@dataclass(frozen=True, slots=True)
class Sample:
    """One bucket of a device's state series: its start (ms) and the last values in it."""

    ts: int
    state: str | None = None  # EV status
    connected: bool | None = None  # shore power
    vessel: str | None = None
    energy: float | None = None


def hold_durations(
    ts: Sequence[int], start_ms: int, end_ms: int, step_ms: int, max_gap_ms: int
) -> list[int]:
    """How long each sample's value holds (ms): until the next sample when it comes within
    ``max_gap_ms``, else for its own bucket (``step_ms``); never past ``end_ms``."""
    out = []
    for i, t in enumerate(ts):
        nxt = ts[i + 1] if i + 1 < len(ts) else None
        held = nxt - t if nxt is not None and nxt - t <= max_gap_ms else step_ms
        out.append(max(0, min(t + held, end_ms) - max(t, start_ms)))
    return out


def _joined(ts: Sequence[int], i: int, max_gap_ms: int) -> bool:
    """Sample i follows sample i-1 within the gap (so a state run continues)."""
    return i > 0 and ts[i] - ts[i - 1] <= max_gap_ms


def _energy_steps(samples: Sequence[Sample]) -> list[float]:
    """Energy register increase from each sample to the next (0 for a drop or no value)."""
    out = []
    for i, s in enumerate(samples):
        nxt = samples[i + 1].energy if i + 1 < len(samples) else None
        if s.energy is not None and nxt is not None and nxt >= s.energy:
            out.append(nxt - s.energy)
        else:
            out.append(0.0)
    return out


# --------------------------------------------------------------------------- shore power


@dataclass(slots=True)
class BerthResult:
    """One berth meter; ``status`` ok | insufficient | no_data."""

    device_id: str
    port: str
    berth: str
    county: str
    sessions: int
    connection_hours: float
    kwh: float
    calls: int
    obliged_calls: int
    obliged_using: int
    berthing_hours: float
    call_connection_hours: float
    observed_hours: float
    expected_hours: float
    status: str


def berth_result(
    device_id: str,
    port: str,
    berth: str,
    county: str,
    samples: Sequence[Sample],
    start_ms: int,
    end_ms: int,
    spec: ShoreSpec,
    min_share: float,
) -> BerthResult:
    """Sessions (runs of connected samples), connection hours, kWh (register increases) and
    calls (runs of one vessel at the berth, connected or not) of one berth meter.

    A call is obliged to use shore power when it berths longer than ``obliged_min_hours``
    (港口和船舶岸电管理办法: 2 h at inland ports); a connected run without a vessel id is a call
    of an unknown ship.
    """
    step, gap = int(spec.step.total_seconds() * 1000), int(spec.max_gap.total_seconds() * 1000)
    ts = [s.ts for s in samples]
    held = hold_durations(ts, start_ms, end_ms, step, gap)
    energy = _energy_steps(samples)
    sessions = 0
    conn_ms = 0
    kwh = 0.0
    calls: list[list[int]] = []  # [berthing ms, connected ms]
    prev_call_key: str | None = None
    for i, s in enumerate(samples):
        joined = _joined(ts, i, gap)
        connected = s.connected is True
        kwh += energy[i]
        if connected:
            conn_ms += held[i]
            if not (joined and samples[i - 1].connected is True):
                sessions += 1
        key = s.vessel or ("?" if connected else None)
        if key is not None:
            if not (joined and prev_call_key == key):
                calls.append([0, 0])
            calls[-1][0] += held[i]
            if connected:
                calls[-1][1] += held[i]
        prev_call_key = key
    min_ms = spec.obliged_min_hours * HOUR_MS
    obliged = [c for c in calls if c[0] > min_ms]
    observed = sum(held)
    expected = end_ms - start_ms
    status = _status(observed, expected, min_share)
    return BerthResult(
        device_id=device_id,
        port=port,
        berth=berth,
        county=county,
        sessions=sessions,
        connection_hours=conn_ms / HOUR_MS,
        kwh=kwh,
        calls=len(calls),
        obliged_calls=len(obliged),
        obliged_using=sum(1 for c in obliged if c[1] > 0),
        berthing_hours=sum(c[0] for c in calls) / HOUR_MS,
        call_connection_hours=sum(c[1] for c in calls) / HOUR_MS,
        observed_hours=observed / HOUR_MS,
        expected_hours=expected / HOUR_MS,
        status=status,
    )


def _status(observed: float, expected: float, min_share: float) -> str:
    if observed <= 0:
        return "no_data"
    return "insufficient" if expected and observed / expected < min_share else "ok"


@dataclass(slots=True)
class PortResult:
    """A port's berths added up."""

    port: str
    berths: int
    sessions: int
    connection_hours: float
    kwh: float
    obliged_calls: int
    obliged_using: int
    berthing_hours: float


def shore_ports(rows: Sequence[BerthResult]) -> list[PortResult]:
    """Per port: berths, sessions, connection hours, kWh, obliged calls and those using."""
    by: dict[str, list[BerthResult]] = {}
    for r in rows:
        by.setdefault(r.port, []).append(r)
    return [
        PortResult(
            port=port,
            berths=len(m),
            sessions=sum(r.sessions for r in m),
            connection_hours=math.fsum(r.connection_hours for r in m),
            kwh=math.fsum(r.kwh for r in m),
            obliged_calls=sum(r.obliged_calls for r in m),
            obliged_using=sum(r.obliged_using for r in m),
            berthing_hours=math.fsum(r.berthing_hours for r in m),
        )
        for port, m in sorted(by.items())
    ]


def _device_coverage(unit: str, rows: Sequence[Any]) -> Coverage:
    return Coverage(
        unit,
        covered=sum(1 for r in rows if r.status == "ok"),
        expected=len(rows),
        missing=[_name(r) for r in rows if r.status == "no_data"],
        insufficient=[_name(r) for r in rows if r.status == "insufficient"],
    )


def _name(r: Any) -> str:
    connector = getattr(r, "connector", "")
    return f"{r.device_id}#{connector}" if connector else str(r.device_id)


def shore_figures(rows: Sequence[BerthResult], plan: Plan) -> list[Figure]:
    """Usage rate both ways (calls, hours), sessions, connection hours and kWh."""
    cov = _device_coverage("berths", rows)
    obliged = sum(r.obliged_calls for r in rows)
    using = sum(r.obliged_using for r in rows)
    berthing = math.fsum(r.berthing_hours for r in rows)
    call_conn = math.fsum(r.call_connection_hours for r in rows)
    figs = [
        figure("calls_ratio", ratio_pct(using, obliged), cov, plan),
        figure("hours_ratio", ratio_pct(call_conn, berthing), cov, plan),
        figure("shore_sessions", float(sum(r.sessions for r in rows)), cov, plan),
        figure("shore_hours", math.fsum(r.connection_hours for r in rows), cov, plan),
        figure("shore_kwh", math.fsum(r.kwh for r in rows), cov, plan),
    ]
    figs[0].note = f"{using} / {obliged} calls > {plan.shore_power.obliged_min_hours:g} h"
    figs[1].note = f"{call_conn:.1f} h / {berthing:.1f} h"
    return figs


# ------------------------------------------------------------------------------------ EV

# OCPP 1.6 ChargePointStatus: not available when Faulted or Unavailable; occupied by a vehicle
# in the five states OCPP 2.0.1 folds into "Occupied".
UNAVAILABLE = frozenset({"Faulted", "Unavailable"})
OCCUPIED = frozenset({"Preparing", "Charging", "SuspendedEVSE", "SuspendedEV", "Finishing"})


@dataclass(slots=True)
class ConnectorResult:
    """One connector; hours by state; ``status`` ok | insufficient | no_data."""

    device_id: str
    connector: str
    site: str
    county: str
    rated_kw: float | None
    kwh: float
    sessions: int
    observed_hours: float
    available_hours: float
    occupied_hours: float
    unavailable_hours: float
    expected_hours: float
    status: str

    @property
    def availability_pct(self) -> float | None:
        """Available time ÷ the whole period (time without data is not available)."""
        return ratio_pct(self.available_hours, self.expected_hours)

    @property
    def utilisation_pct(self) -> float | None:
        """Occupied time ÷ the whole period."""
        return ratio_pct(self.occupied_hours, self.expected_hours)


def connector_result(
    device_id: str,
    connector: str,
    site: str,
    county: str,
    rated_kw: float | None,
    samples: Sequence[Sample],
    start_ms: int,
    end_ms: int,
    spec: SeriesSpec,
    min_share: float,
) -> ConnectorResult:
    """Time available (status known and not Faulted/Unavailable), occupied, unavailable;
    sessions (runs of occupied samples); kWh (register increases)."""
    step, gap = int(spec.step.total_seconds() * 1000), int(spec.max_gap.total_seconds() * 1000)
    ts = [s.ts for s in samples]
    held = hold_durations(ts, start_ms, end_ms, step, gap)
    kwh = math.fsum(_energy_steps(samples))
    avail = occ = unavail = observed = 0
    sessions = 0
    for i, s in enumerate(samples):
        if s.state is None:
            continue
        observed += held[i]
        if s.state in UNAVAILABLE:
            unavail += held[i]
        else:
            avail += held[i]
        if s.state in OCCUPIED:
            occ += held[i]
            prev = samples[i - 1].state if i > 0 else None
            if not (_joined(ts, i, gap) and prev in OCCUPIED):
                sessions += 1
    expected = end_ms - start_ms
    return ConnectorResult(
        device_id=device_id,
        connector=connector,
        site=site,
        county=county,
        rated_kw=rated_kw,
        kwh=kwh,
        sessions=sessions,
        observed_hours=observed / HOUR_MS,
        available_hours=avail / HOUR_MS,
        occupied_hours=occ / HOUR_MS,
        unavailable_hours=unavail / HOUR_MS,
        expected_hours=expected / HOUR_MS,
        status=_status(observed, expected, min_share),
    )


def ev_figures(rows: Sequence[ConnectorResult], plan: Plan) -> list[Figure]:
    """Energy, sessions, availability and utilisation over every connector's whole period."""
    cov = _device_coverage("connectors", rows)
    expected = math.fsum(r.expected_hours for r in rows)
    return [
        figure("ev_kwh", math.fsum(r.kwh for r in rows), cov, plan),
        figure("ev_sessions", float(sum(r.sessions for r in rows)), cov, plan),
        figure(
            "ev_availability",
            ratio_pct(math.fsum(r.available_hours for r in rows), expected),
            cov,
            plan,
        ),
        figure(
            "ev_utilisation",
            ratio_pct(math.fsum(r.occupied_hours for r in rows), expected),
            cov,
            plan,
        ),
    ]
