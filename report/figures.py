"""The plan progress report: query the rollups and energy series, hand them to ``report.plan``.

Where each figure's data comes from (InfluxQL, every version answers it):

- 优Ⅲ比例: ``water_section_daily`` (which sections are assessed, days at Class III or better)
  and ``water_quality_daily`` (each station's daily item means, for the period means).
- 优良天数比率: ``city_air_daily`` (the city's daily AQI by the national method, ``valid``,
  ``good_day``, the HJ 633 edition as a tag).
- PV: ``pv_inverter.energy_total_kwh`` first and last value per local day, and the last value
  before the period; capacity (``capacity_kw``) and ``pilot`` from the device registry.
- PV performance (IEC 61724-1): ``pv_daily`` (rollups/pv_job.py): fleet PR, specific yield per
  pilot county, energy lost to faults and curtailment (:func:`pv_performance`).
- Shore power: ``shore_power`` ``connected``, ``vessel_id``, ``energy_kwh`` in ``step`` buckets.
- EV: ``ev_charger`` ``status`` and ``energy_kwh`` in ``step`` buckets, per connector.

The computations are ``report.plan``; this module only queries, groups rows and assembles the
:class:`PlanReport`. ``store`` writes the headline figures to the ``plan_progress`` measurement
that the Plan targets dashboard panels read (``panel_queries``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from devices import ev_charger, pv, shore_power, water
from devices.aqi import edition_for
from devices.base import DeviceKind
from devices.gb3838 import ASSESSED_ITEMS
from devices.lineproto import FieldValue, encode_line
from devices.registry import Device, Registry
from ingest.config import StorageConfig
from ingest.influxql import InfluxQLClient, Row, finite, quote_ident, quote_string, time_literal
from ingest.writer import InfluxWriter, Outcome
from report import plan as P
from rollups.pv import PV_DAILY
from rollups.windows import (
    CITY_AIR_DAILY,
    WATER_DAILY,
    WATER_SECTION_DAILY,
    day_window,
    local_date,
)

DEFAULT_PLAN = Path(__file__).resolve().parent / "plan.toml"
PROGRESS = "plan_progress"
_CHUNK = 10_000
# Months per query of the state series: small enough for a progress bar to move.
_CHUNK_DAYS = 31

Progress = Callable[[str], None]
R = TypeVar("R")


class ReportError(RuntimeError):
    """The report cannot be made (bad period, InfluxDB refusing a write); one clear line."""


def load_plan(path: Path | None = None) -> P.Plan:
    """The plan file (the shipped ``report/plan.toml`` by default); PlanError names file:line."""
    path = path or DEFAULT_PLAN
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise P.PlanError(f"{path}: cannot read the plan file ({e.strerror})") from None
    return P.parse_plan(text, str(path))


@dataclass(slots=True)
class PlanReport:
    """Everything the report shows, in every format."""

    plan_zh: str
    plan_en: str
    city: str
    start: date
    end: date  # inclusive
    covered_to: date | None  # last closed day in the period (None: none closed yet)
    county: str | None
    timezone: str
    generated_at: str
    emission_factor: float
    emission_source: str
    shore_obliged_hours: float
    figures: list[P.Figure]
    sections: list[P.SectionResult]
    air_days: list[P.AirDay]
    air: P.AirSummary
    inverters: list[P.InverterResult]
    counties: list[P.CountyPv]
    lowest: list[P.InverterResult]
    berths: list[P.BerthResult]
    ports: list[P.PortResult]
    connectors: list[P.ConnectorResult]
    notes: list[str] = field(default_factory=list)
    pv_performance: PvPerformance | None = None  # from pv_daily (issue 18)
    # Per air station and day, the hours a review mark or QC left out and why (issue 16):
    # (device id, local date, the daily point's left_out).
    air_left_out: list[tuple[str, str, str]] = field(default_factory=list)

    def figure(self, formula: str) -> P.Figure:
        """The figure computed by ``formula``."""
        return next(f for f in self.figures if f.formula == formula)

    @property
    def period(self) -> str:
        """``first/last`` dates, the form of a target's period."""
        return f"{self.start.isoformat()}/{self.end.isoformat()}"


@dataclass(slots=True)
class Buckets:
    """One device's bucketed rows by bucket start, with its site and county tags."""

    site: str
    county: str
    rows: dict[int, Row] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PilotYield:
    """A pilot county's specific yield over the period (kWh per installed kWp)."""

    county: str
    kwp: float
    kwh: float
    kwh_per_kwp: float | None


@dataclass(frozen=True, slots=True)
class PvPerformance:
    """The PV section's IEC 61724-1 figures from ``pv_daily`` (docs/pv.md): fleet PR from
    summed quantities, specific yield per pilot county, energy lost to faults and curtailment."""

    fleet_pr: float | None  # Σ E ÷ Σ (P0 · Yr) over the inverter-days with irradiance
    inverter_days: int  # inverter-days with a PR behind fleet_pr
    pilots: list[PilotYield]
    fault_kwh: float  # estimated energy lost while in FAULT (inverter-days with irradiance)
    curtailed_kwh: float  # estimated energy held back while THROTTLED
    fault_h: float
    curtailed_h: float


def pv_performance(rows: Sequence[Row], registry: Registry) -> PvPerformance:
    """The figures of ``pv_daily`` rows (one per inverter and day, tags merged in)."""
    e_ref = [
        (float(r["energy_kwh"]), float(r["p0_kwp"]) * float(r["yr_h"]))  # type: ignore[arg-type]
        for r in rows
        if all(isinstance(r.get(k), int | float) for k in ("energy_kwh", "p0_kwp", "yr_h"))
    ]
    ref = math.fsum(x for _, x in e_ref)
    kwh: dict[str, float] = {}
    kwp: dict[str, dict[str, float]] = {}
    pilots = {d.county for d in registry.of_kind(pv.KIND.name) if pv.facts(d).pilot}
    for r in rows:
        county = str(r.get("county") or "")
        if county not in pilots or not isinstance(r.get("energy_kwh"), int | float):
            continue
        kwh[county] = kwh.get(county, 0.0) + float(r["energy_kwh"])  # type: ignore[arg-type]
        if isinstance(p0 := r.get("p0_kwp"), int | float):
            kwp.setdefault(county, {})[str(r.get("device_id"))] = float(p0)

    def total(name: str) -> float:
        return math.fsum(float(v) for r in rows if isinstance(v := r.get(name), int | float))

    return PvPerformance(
        fleet_pr=math.fsum(e for e, _ in e_ref) / ref if ref > 0 else None,
        inverter_days=len(e_ref),
        pilots=[
            PilotYield(
                c,
                cap := math.fsum(kwp.get(c, {}).values()),
                kwh[c],
                kwh[c] / cap if cap > 0 else None,
            )
            for c in sorted(kwh)
        ],
        fault_kwh=total("fault_kwh"),
        curtailed_kwh=total("curtailed_kwh"),
        fault_h=total("fault_h"),
        curtailed_h=total("curtailed_h"),
    )


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def _align(ms: int, step_ms: int) -> int:
    return ms - ms % step_ms


class Reporter:
    """Computes a :class:`PlanReport` for a period from one InfluxDB and the device registry."""

    def __init__(
        self,
        settings: StorageConfig,
        registry: Registry,
        plan: P.Plan,
        *,
        now: datetime | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.plan = plan
        self.tz = ZoneInfo(settings.standards.timezone)
        self.now = now or datetime.now(UTC)
        self.client = InfluxQLClient(settings.influx)
        self._chunk = _CHUNK if settings.influx.api == "v1" else None

    async def __aenter__(self) -> Reporter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session."""
        await self.client.close()

    # ------------------------------------------------------------------------- the period

    def window(self, start: date, end: date) -> tuple[int, int, list[date]]:
        """[start_ms, end_ms) of the closed part of the period, and its closed local days."""
        if end < start:
            raise ReportError(f"--to {end} is before --from {start}: give the earlier date first")
        start_ms = day_window(start, self.tz).start_ms
        end_ms = min(day_window(end, self.tz).end_ms, _ms(self.now))
        days = []
        d = start
        while d <= end and day_window(d, self.tz).end_ms <= end_ms:
            days.append(d)
            d += timedelta(days=1)
        return start_ms, max(start_ms, end_ms), days

    def chunks(self, start_ms: int, end_ms: int, step_ms: int) -> list[tuple[int, int]]:
        """Query windows of about a month, on bucket boundaries, covering [start_ms, end_ms)."""
        size = _align(_CHUNK_DAYS * P.DAY_MS, step_ms) or step_ms
        out = []
        a = _align(start_ms, step_ms)
        while a < end_ms:
            out.append((max(a, start_ms), min(a + size, end_ms)))
            a += size
        return out

    def steps(self, start: date, end: date) -> int:
        """How many progress steps :meth:`run` reports (one per query)."""
        start_ms, end_ms, _ = self.window(start, end)
        shore = len(self.chunks(start_ms, end_ms, self._step_ms(self.plan.shore_power)))
        ev = len(self.chunks(start_ms, end_ms, self._step_ms(self.plan.ev)))
        return 2 + 1 + 2 + shore + ev

    @staticmethod
    def _step_ms(spec: P.SeriesSpec) -> int:
        return int(spec.step.total_seconds() * 1000)

    # ------------------------------------------------------------------------------ running

    async def run(
        self,
        start: date,
        end: date,
        county: str | None = None,
        progress: Progress | None = None,
    ) -> PlanReport:
        """Compute every figure of the plan for local dates ``start``..``end`` (inclusive)."""
        tick = progress or (lambda _label: None)
        start_ms, end_ms, days = self.window(start, end)
        sections = await self.water(start_ms, end_ms, days, county, tick)
        air_days = await self.air(start_ms, end_ms, days, tick)
        hours = (end_ms - start_ms) / P.HOUR_MS
        inverters = await self.pv(start_ms, end_ms, days, county, tick)
        berths = await self.shore(start_ms, end_ms, county, tick)
        connectors = await self.ev(start_ms, end_ms, county, tick)
        plan = self.plan
        figures = [
            P.water_figure(sections, plan),
            P.air_figure(air_days, plan),
            *P.pv_figures(inverters, hours, plan),
            *P.shore_figures(berths, plan),
            *P.ev_figures(connectors, plan),
        ]
        notes = self._notes(start, end, days, county)
        return PlanReport(
            plan_zh=plan.plan.name_zh,
            plan_en=plan.plan.name_en,
            city=plan.plan.city,
            start=start,
            end=end,
            covered_to=days[-1] if days else None,
            county=county,
            timezone=self.settings.standards.timezone,
            generated_at=self.now.astimezone(self.tz).isoformat(timespec="seconds"),
            emission_factor=plan.grid.emission_factor_kg_per_kwh,
            emission_source=plan.grid.source,
            shore_obliged_hours=plan.shore_power.obliged_min_hours,
            figures=figures,
            sections=sections,
            air_days=air_days,
            air=P.air_summary(air_days),
            inverters=inverters,
            counties=P.pv_counties(inverters, hours),
            lowest=P.lowest_yield(inverters, plan.pv.lowest),
            berths=berths,
            ports=P.shore_ports(berths),
            connectors=connectors,
            notes=notes,
            pv_performance=await self.pv_daily(start_ms, end_ms, county),
            air_left_out=await self.air_left_out(start_ms, end_ms, county),
        )

    async def air_left_out(
        self, start_ms: int, end_ms: int, county: str | None
    ) -> list[tuple[str, str, str]]:
        """Per air station and day, the hours left out and why (``left_out`` of its daily
        points; docs/review.md), by station then date."""
        q = (
            f'SELECT "left_out" FROM "air_quality_daily" WHERE time >= {time_literal(start_ms)} '
            f'AND time < {time_literal(end_ms)}{self._scope(county)} GROUP BY "device_id"'
        )
        out = {
            (str(r.get("device_id")), local_date(int(r["time"] or 0), self.tz).isoformat(), text)
            for r in await self._rows(q)
            if isinstance(text := r.get("left_out"), str) and text
        }
        return sorted(out)

    def _notes(
        self,
        start: date,
        end: date,
        days: Sequence[date],
        county: str | None,
    ) -> list[str]:
        notes = []
        if not days:
            notes.append("No day of the period has closed yet: every figure is empty.")
        elif days[-1] < end:
            notes.append(
                f"The period runs to {end}; figures cover the closed days to {days[-1]} only."
            )
        if county:
            notes.append(
                f"County {county}: water sections, PV, shore power and chargers of {county}; "
                "the good-days ratio is the city's (the national method has no county figure)."
            )
        other: dict[tuple[date, date], list[str]] = {}
        for t in self.plan.targets:
            if t.bounds != (start, end):
                other.setdefault(t.bounds, []).append(t.id)
        for (first, last), ids in sorted(other.items()):
            notes.append(
                f"Targets {', '.join(ids)} apply to {first}..{last}; "
                f"this report covers {start}..{end}."
            )
        return notes

    def _scope(self, county: str | None) -> str:
        return f" AND {quote_ident('county')} = {quote_string(county)}" if county else ""

    async def _rows(self, q: str) -> list[Row]:
        return await self.client.query(q, chunk_size=self._chunk)

    # -------------------------------------------------------------------------------- water

    async def water(
        self, start_ms: int, end_ms: int, days: Sequence[date], county: str | None, tick: Progress
    ) -> list[P.SectionResult]:
        """Every assessed section's period class (registry sections without data included)."""
        wanted = set(self.plan.water.assessments)
        span = f"time >= {time_literal(start_ms)} AND time < {time_literal(end_ms)}"
        closed = set(days)
        sections: dict[str, P.SectionInput] = {}
        for d in self.registry.of_kind(water.KIND.name):
            assessment: str = water.facts(d).assessment or ""
            if assessment in wanted and (county is None or d.county == county):
                sections.setdefault(d.site, _section_input(d.site, d.county, d, assessment))
        q = (
            f'SELECT "water_class", "meets_iii", "valid" FROM {quote_ident(WATER_SECTION_DAILY)} '
            f"WHERE {span}{self._scope(county)} "
            'GROUP BY "site", "county", "section_type", "assessment"'
        )
        for r in await self._rows(q):
            site, assessment = str(r.get("site") or ""), str(r.get("assessment") or "")
            if not site or assessment not in wanted:
                continue
            s = sections.setdefault(
                site,
                P.SectionInput(
                    site,
                    str(r.get("county") or ""),
                    "lake" if r.get("section_type") == "lake" else "river",
                    assessment,
                ),
            )
            day = local_date(int(r["time"] or 0), self.tz)
            if day in closed and r.get("valid") is True and r.get("meets_iii") is True:
                s.days_meeting_iii += 1
        tick("water: sections")
        items = ", ".join(quote_ident(i) for i in ASSESSED_ITEMS)
        q = (
            f'SELECT {items}, "valid" FROM {quote_ident(WATER_DAILY)} '
            f'WHERE {span}{self._scope(county)} GROUP BY "site", "device_id"'
        )
        per_day: dict[tuple[str, date], list[dict[str, float]]] = {}
        for r in await self._rows(q):
            site = str(r.get("site") or "")
            if site not in sections or r.get("valid") is not True:
                continue
            day = local_date(int(r["time"] or 0), self.tz)
            if day not in closed:
                continue
            values = {i: v for i in ASSESSED_ITEMS if (v := finite(r.get(i))) is not None}
            if values:
                per_day.setdefault((site, day), []).append(values)
        for (site, day), stations in per_day.items():
            # A section of several stations: the mean of its stations' daily means per item.
            sections[site].days[day] = {
                i: math.fsum(vals) / len(vals)
                for i in ASSESSED_ITEMS
                if (vals := [st[i] for st in stations if i in st])
            }
        tick("water: daily means")
        share = self.plan.coverage.water_min_day_share
        return [
            P.section_period(s, len(days), share)
            for s in sorted(sections.values(), key=lambda s: (s.county, s.site))
        ]

    # ---------------------------------------------------------------------------------- air

    async def air(
        self, start_ms: int, end_ms: int, days: Sequence[date], tick: Progress
    ) -> list[P.AirDay]:
        """Each closed day of the city: good, not good, invalid or missing."""
        q = (
            'SELECT "aqi", "aqi_category", "primary_pollutant", "good_day", "valid", '
            '"invalid_reason" '
            f"FROM {quote_ident(CITY_AIR_DAILY)} WHERE time >= {time_literal(start_ms)} "
            f'AND time < {time_literal(end_ms)} GROUP BY "aqi_edition"'
        )
        by_day: dict[date, list[Row]] = {}
        for r in await self._rows(q):
            by_day.setdefault(local_date(int(r["time"] or 0), self.tz), []).append(r)
        tick("air: city daily AQI")
        forced = self.settings.standards.aqi_edition
        out = []
        for d in days:
            rows = by_day.get(d, [])
            # A day recomputed under another edition leaves two points: the edition in force
            # for the day (or the forced one) is the one that counts.
            want = edition_for(d, forced)
            row = next((r for r in rows if r.get("aqi_edition") == want), rows[0] if rows else None)
            out.append(P.air_day(d, row))
        return out

    # ----------------------------------------------------------------------------------- PV

    async def pv(
        self,
        start_ms: int,
        end_ms: int,
        days: Sequence[date],
        county: str | None,
        tick: Progress,
    ) -> list[P.InverterResult]:
        """Each inverter's generation, equivalent hours and capacity factor."""
        scope = self._scope(county)
        lookback = int(self.plan.pv.baseline_lookback.total_seconds() * 1000)
        q = (
            'SELECT last("energy_total_kwh") AS "last" FROM "pv_inverter" '
            f"WHERE time >= {time_literal(start_ms - lookback)} "
            f'AND time < {time_literal(start_ms)}{scope} GROUP BY "device_id"'
        )
        baseline = {str(r.get("device_id")): finite(r.get("last")) for r in await self._rows(q)}
        tick("pv: registers before the period")
        q = (
            'SELECT first("energy_total_kwh") AS "first", last("energy_total_kwh") AS "last" '
            f'FROM "pv_inverter" WHERE time >= {time_literal(start_ms)} '
            f"AND time < {time_literal(end_ms)}{scope} "
            'GROUP BY time(1d), "device_id", "site", "county", "pilot" fill(none) '
            f"tz({quote_string(self.settings.standards.timezone)})"
        )
        series: dict[str, dict[date, tuple[float | None, float | None]]] = {}
        tags: dict[str, Row] = {}
        closed = set(days)
        for r in await self._rows(q):
            dev = str(r.get("device_id") or "")
            day = local_date(int(r["time"] or 0), self.tz)
            if not dev or day not in closed:
                continue
            tags.setdefault(dev, r)
            first, last = finite(r.get("first")), finite(r.get("last"))
            known = series.setdefault(dev, {})
            if day in known:
                # One inverter in several series (its pilot or site tag changed that day): a
                # register only grows, so the day spans the smallest first and largest last.
                f0, l0 = known[day]
                first = _pick(min, first, f0)
                last = _pick(max, last, l0)
            known[day] = (first, last)
        tick("pv: daily registers")
        devices = {
            d.id: d
            for d in self.registry.of_kind(pv.KIND.name)
            if county is None or d.county == county
        }
        hours = (end_ms - start_ms) / P.HOUR_MS
        out = []
        for dev in sorted(set(devices) | set(series)):
            d = devices.get(dev) or self.registry.get(dev)
            t = tags.get(dev, {})
            capacity = _float(pv.facts(d).capacity_kw) if d else None
            pilot = pv.facts(d).pilot if d else str(t.get("pilot")) == "true"
            daily = series.get(dev, {})
            out.append(
                P.inverter_result(
                    dev,
                    d.site if d else str(t.get("site") or ""),
                    d.county if d else str(t.get("county") or ""),
                    pilot,
                    capacity,
                    [daily[k] for k in sorted(daily)],
                    baseline.get(dev),
                    len(days),
                    hours,
                    self.plan.coverage.pv_min_day_share,
                )
            )
        return out

    async def pv_daily(self, start_ms: int, end_ms: int, county: str | None) -> PvPerformance:
        """The PV section's IEC 61724-1 figures, from the PV daily job's points."""
        q = (
            f"SELECT * FROM {quote_ident(PV_DAILY)} WHERE time >= {time_literal(start_ms)} "
            f"AND time < {time_literal(end_ms)}{self._scope(county)} GROUP BY *"
        )
        return pv_performance(await self._rows(q), self.registry)

    # ---------------------------------------------------------------------- state series

    async def _buckets(
        self,
        measurement: str,
        fields: Sequence[str],
        key: tuple[str, str],
        start_ms: int,
        end_ms: int,
        spec: P.SeriesSpec,
        county: str | None,
        tick: Progress,
        label: str,
    ) -> dict[tuple[str, str], Buckets]:
        """``last(field)`` per ``step`` bucket for each ``key`` (device and berth or connector),
        read in month chunks, with the device's site and county tags."""
        step = self._step_ms(spec)
        select = ", ".join(f"last({quote_ident(f)}) AS {quote_ident(f)}" for f in fields)
        by = ", ".join(quote_ident(g) for g in (*key, "site", "county"))
        out: dict[tuple[str, str], Buckets] = {}
        chunks = self.chunks(start_ms, end_ms, step)
        for i, (a, b) in enumerate(chunks, 1):
            q = (
                f"SELECT {select} FROM {quote_ident(measurement)} "
                f"WHERE time >= {time_literal(a)} AND time < {time_literal(b)}"
                f"{self._scope(county)} "
                f"GROUP BY time({step // 1000}s), {by} fill(none)"
            )
            for r in await self._rows(q):
                k = (str(r.get(key[0]) or ""), str(r.get(key[1]) or ""))
                # One device in several series (a site tag changed in the period): one series.
                entry = out.setdefault(
                    k, Buckets(str(r.get("site") or ""), str(r.get("county") or ""))
                )
                ts = int(r["time"] or 0)
                if ts in entry.rows:  # the same bucket twice: values present win
                    entry.rows[ts] = {
                        **entry.rows[ts],
                        **{f: v for f, v in r.items() if v is not None},
                    }
                else:
                    entry.rows[ts] = r
            tick(f"{label} {i}/{len(chunks)}")
        return out

    async def _state_results(
        self,
        kind: DeviceKind,
        fields: Sequence[str],
        series_tag: str,
        spec: P.SeriesSpec,
        sample: Callable[[int, Row], P.Sample],
        result: Callable[[str, str, Device | None, str, str, list[P.Sample]], R],
        start_ms: int,
        end_ms: int,
        county: str | None,
        tick: Progress,
        label: str,
    ) -> list[R]:
        """One result per series of a kind's state series (a meter's berth, a charger's
        connector), and one without samples per registered device that sent nothing.

        ``result(device_id, series, registered device or None, site, county, samples)``: site
        and county are the series' tags, or the registry's for a device without data."""
        data = await self._buckets(
            kind.measurement,
            fields,
            ("device_id", series_tag),
            start_ms,
            end_ms,
            spec,
            county,
            tick,
            label,
        )
        registered = {
            d.id: d
            for d in self.registry.of_kind(kind.name)
            if county is None or d.county == county
        }
        out = []
        for (dev, series), entry in sorted(data.items()):
            d = registered.get(dev) or self.registry.get(dev)
            samples = [sample(ts, r) for ts, r in sorted(entry.rows.items())]
            out.append(result(dev, series, d, entry.site, entry.county, samples))
        seen = {dev for dev, _ in data}
        for dev, d in sorted(registered.items()):
            if dev not in seen:
                out.append(result(dev, "", d, d.site, d.county, []))
        return out

    async def shore(
        self, start_ms: int, end_ms: int, county: str | None, tick: Progress
    ) -> list[P.BerthResult]:
        """Each berth meter's sessions, connection hours, kWh and calls."""
        spec = self.plan.shore_power
        share = self.plan.coverage.device_min_time_share

        def sample(ts: int, r: Row) -> P.Sample:
            return P.Sample(
                ts,
                connected=_bool(r.get("connected")),
                vessel=str(r["vessel_id"]) if r.get("vessel_id") else None,
                energy=finite(r.get("energy_kwh")),
            )

        def result(
            dev: str, berth: str, d: Device | None, site: str, cty: str, samples: list[P.Sample]
        ) -> P.BerthResult:
            facts = shore_power.facts(d) if d else None
            return P.berth_result(
                dev,
                (facts.port or d.site) if facts and d else site,
                berth or (facts.berth or "" if facts else ""),
                d.county if d else cty,
                samples,
                start_ms,
                end_ms,
                spec,
                share,
            )

        out = await self._state_results(
            shore_power.KIND,
            ("connected", "vessel_id", "energy_kwh"),
            "berth",
            spec,
            sample,
            result,
            start_ms,
            end_ms,
            county,
            tick,
            "shore power",
        )
        return sorted(out, key=lambda r: (r.port, r.berth, r.device_id))

    async def ev(
        self, start_ms: int, end_ms: int, county: str | None, tick: Progress
    ) -> list[P.ConnectorResult]:
        """Each connector's energy, sessions and hours available / occupied."""
        spec = self.plan.ev
        share = self.plan.coverage.device_min_time_share

        def sample(ts: int, r: Row) -> P.Sample:
            return P.Sample(
                ts,
                state=str(r["status"]) if r.get("status") else None,
                energy=finite(r.get("energy_kwh")),
            )

        def result(
            dev: str, connector: str, d: Device | None, site: str, cty: str, samples: list[P.Sample]
        ) -> P.ConnectorResult:
            return P.connector_result(
                dev,
                connector,
                d.site if d else site,
                d.county if d else cty,
                _float(ev_charger.facts(d).rated_kw) if d else None,
                samples,
                start_ms,
                end_ms,
                spec,
                share,
            )

        out = await self._state_results(
            ev_charger.KIND,
            ("status", "energy_kwh"),
            "connector",
            spec,
            sample,
            result,
            start_ms,
            end_ms,
            county,
            tick,
            "ev",
        )
        return sorted(out, key=lambda r: (r.site, r.device_id, r.connector))


def _section_input(site: str, county: str, d: Device, assessment: str) -> P.SectionInput:
    return P.SectionInput(site, county, water.facts(d).section, assessment)


def _pick(fn: Callable[[float, float], float], a: float | None, b: float | None) -> float | None:
    """``fn(a, b)`` of the values present (None when neither is)."""
    if a is None or b is None:
        return a if b is None else b
    return fn(a, b)


def _bool(v: Any) -> bool | None:
    return v if isinstance(v, bool) else None


def _float(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v) if math.isfinite(v) else None


# ------------------------------------------------------------------------ plan_progress


def progress_points(report: PlanReport) -> list[str]:
    """The report's figures as ``plan_progress`` line protocol, one point per figure.

    Tags: ``formula``, ``target`` (the plan's target id, or the formula when it has none),
    ``scope`` (``city`` or the county), ``period``. Stamped at the period's first local
    midnight, so re-running a report for the same period overwrites its points.
    """
    tz = ZoneInfo(report.timezone)
    ts = day_window(report.start, tz).start_ms
    lines = []
    for f in report.figures:
        if f.value is None:
            continue
        tags = {
            "formula": f.formula,
            "target": f.target_id or f.formula,
            "scope": report.county or "city",
            "period": report.period,
        }
        fields: dict[str, FieldValue] = {
            "value": float(f.value),
            "covered": f.coverage.covered,
            "expected": f.coverage.expected,
            "unit": f.spec.unit,
        }
        if f.threshold is not None:
            fields["threshold"] = float(f.threshold)
        if f.met is not None:
            fields["met"] = f.met
        line = encode_line(PROGRESS, sorted(tags.items()), fields.items(), ts)
        if line is not None:
            lines.append(line)
    return lines


async def store(settings: StorageConfig, report: PlanReport) -> int:
    """Write the report's figures to ``plan_progress``; the number of points written."""
    lines = progress_points(report)
    async with InfluxWriter(settings.influx) as w:
        d = await w.deliver(lines)
    if d.outcome is not Outcome.OK:
        raise ReportError(f"InfluxDB did not take the plan_progress points: {d.message}")
    if d.rejected:
        raise ReportError(f"InfluxDB refused a plan_progress point: {d.rejected[0][1]}")
    return len(lines)


# ----------------------------------------------------------------- Plan targets dashboard

# The Plan targets dashboard's stat panels (dashboards/plan.py), one per target: the latest
# stored report figure for the city in the dashboard's time range.
PANEL_QUERY = (
    'SELECT last("value") AS "value" FROM "plan_progress" '
    "WHERE \"target\" = '{target}' AND \"scope\" = 'city' AND $timeFilter"
)
# Live, straight from the rollups: 优良天数比率 over the dashboard range (valid days only;
# floor(3 / (category + 1)) is 1 for categories 1–2, 0 for 3–6).
GOOD_DAYS_LIVE_QUERY = (
    'SELECT mean("good") * 100 AS "good_days_pct" FROM '
    '(SELECT floor(3 / ("aqi_category" + 1)) AS "good" FROM "city_air_daily" '
    'WHERE "valid" = true AND $timeFilter)'
)


@dataclass(frozen=True, slots=True)
class PanelSpec:
    """A stat panel of the Plan targets dashboard: title, query, unit, threshold."""

    title: str
    query: str
    unit: str
    threshold: float | None
    direction: str | None


def panel_queries(plan: P.Plan) -> list[PanelSpec]:
    """One stat panel per target (stored figures) and the live good-days ratio."""
    out = []
    for t in plan.targets:
        spec = P.FORMULAS[t.formula]
        out.append(
            PanelSpec(
                f"{t.description_zh} / {t.description_en}",
                PANEL_QUERY.replace("{target}", t.id),
                spec.unit,
                t.threshold,
                t.direction,
            )
        )
    air = plan.target_for("good_days_ratio")
    out.append(
        PanelSpec(
            "优良天数比率（实时） / Good days, live from the rollups",
            GOOD_DAYS_LIVE_QUERY,
            "%",
            air.threshold if air else None,
            air.direction if air else None,
        )
    )
    return out


def interpolate_time(query: str, start_ms: int, end_ms: int) -> str:
    """A panel query with Grafana's ``$timeFilter`` filled in for [start_ms, end_ms)."""
    return query.replace("$timeFilter", f"time >= {start_ms}ms AND time < {end_ms}ms")


def known_counties(registry: Registry) -> list[str]:
    """Counties of the registered devices, sorted."""
    return sorted({d.county for d in registry if d.known})


__all__ = [
    "DEFAULT_PLAN",
    "GOOD_DAYS_LIVE_QUERY",
    "PANEL_QUERY",
    "PROGRESS",
    "PanelSpec",
    "PlanReport",
    "ReportError",
    "Reporter",
    "interpolate_time",
    "known_counties",
    "load_plan",
    "panel_queries",
    "progress_points",
    "store",
]
