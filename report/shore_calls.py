"""Shore-power calls as 港口和船舶岸电管理办法 counts them (section ``shore_power_calls``).

The Measures (交通运输部令 2019年第45号, amended 2021-09-13 and 2025-05-13) oblige a ship to use
shore power only on some calls; this section says, per berthing record (``shore_calls``, imported by
``envgrid shore calls import``), whether the call was **obliged** and whether it connected:

- Art. 11: a ship **equipped** to take shore power (具备受电设施), **not a liquid-cargo ship**
  (液货船除外), berthing at a berth able to supply it for **more than 3 h at a coastal port or
  2 h at an inland port**, without an effective alternative measure, must use it; a fault of
  the ship's or the berth's equipment, bad weather or an emergency excuses the call.
  The vessel facts come from ``shore_vessels`` (the register row in force at the arrival),
  the excuse of a call from its record.
- Connection hours and kWh of a call: the berth's shore-power meters (``shore_power``
  ``connected`` and the cumulative ``energy_kwh``, devices/shore_power.py, read as the last
  value of each ``step`` bucket) during [arrival, departure). A value holds until the next
  bucket when it comes within ``max_gap``, else for its own bucket only (the plan report's
  rule, report/plan.py), so a gap in the data never counts as connected.
- Usage rate = obliged calls that connected ÷ obliged calls, per berth, port, county and city.

A call belongs to the period of its arrival. The thresholds are configurable (``ShoreCallsSpec``,
passed as ``ctx.extra["shore_power_calls"]``): the article's 2 h and 3 h are the defaults.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, model_validator

from devices import shore_power
from devices.config import Duration
from devices.lineproto import FieldValue, encode_line
from devices.registry import Device
from ingest.influxql import Row, finite, quote_ident, quote_string, time_literal
from report.sections import SectionContext, Table
from report.shore_csv import CALLS, VESSELS
from rollups.windows import day_window

KEY = "shore_power_calls"
HOUR_MS = 3_600_000
_CHUNK_MS = 31 * 86_400_000

Status = Literal[
    "obliged", "liquid_cargo", "vessel_exempt", "not_equipped", "exempt", "short", "unregistered"
]
# Why a call was not obliged, as the tables show it.
REASONS: dict[str, str] = {
    "liquid_cargo": "液货船 liquid-cargo ship (Art. 11)",
    "vessel_exempt": "船舶豁免 vessel exemption",
    "not_equipped": "未配备受电设施 not equipped (Art. 11)",
    "short": "靠泊未超过规定时间 berthing not over the threshold (Art. 11)",
    "unregistered": "不在船舶登记 vessel not in the register",
    "fault": "设施故障 equipment fault (Art. 11)",
    "bad_weather": "恶劣气候 bad weather (Art. 11)",
    "emergency": "紧急情况 emergency (Art. 11)",
    "alternative": "有效替代措施 effective alternative (Art. 11)",
}


class ShoreCallsSpec(BaseModel):
    """The section's settings: Art. 11's thresholds and how the meter series is read."""

    model_config = ConfigDict(extra="forbid")

    # 港口和船舶岸电管理办法 Art. 11: "沿海港口 … 靠泊超过3小时，在内河港口 … 靠泊超过2小时".
    inland_min_hours: float = Field(default=2.0, ge=0)
    coastal_min_hours: float = Field(default=3.0, ge=0)
    # For berths whose meter has no ``waters`` fact in the registry (the city's canal ports).
    default_waters: Literal["inland", "coastal"] = "inland"
    step: Duration = timedelta(minutes=5)
    max_gap: Duration = timedelta(minutes=15)

    @model_validator(mode="after")
    def _gap(self) -> ShoreCallsSpec:
        if self.step <= timedelta(0):
            raise ValueError("step must be positive, e.g. '5m'")
        if self.max_gap < self.step:
            raise ValueError("max_gap must be at least step")
        return self

    def threshold_hours(self, waters: str | None) -> float:
        """Art. 11's berthing time for a berth in ``waters`` (None: the default)."""
        w = waters or self.default_waters
        return self.coastal_min_hours if w == "coastal" else self.inland_min_hours


def spec_of(extra: Mapping[str, Any]) -> ShoreCallsSpec:
    """The spec in ``ctx.extra[KEY]`` (a spec or its mapping), else the defaults."""
    given = extra.get(KEY)
    if isinstance(given, ShoreCallsSpec):
        return given
    return ShoreCallsSpec.model_validate(given or {})


# ------------------------------------------------------------------------------ pure part


@dataclass(frozen=True, slots=True)
class VesselFacts:
    """A register row in force at a call's arrival."""

    name: str
    equipped: bool
    liquid_cargo: bool
    exemption: str


@dataclass(frozen=True, slots=True)
class MeterSample:
    """One bucket of a meter: its start (ms), last ``connected`` and last ``energy_kwh``."""

    ts: int
    connected: bool | None
    energy: float | None


def judge(
    vessel: VesselFacts | None, berthing_h: float, threshold_h: float, exemption: str
) -> tuple[Status, str]:
    """Whether a call was obliged by Art. 11, and if not, the reason's key."""
    if vessel is None:
        return "unregistered", "unregistered"
    if vessel.liquid_cargo:
        return "liquid_cargo", "liquid_cargo"
    if vessel.exemption:
        return "vessel_exempt", "vessel_exempt"
    if not vessel.equipped:
        return "not_equipped", "not_equipped"
    if exemption:
        return "exempt", exemption
    if berthing_h <= threshold_h:  # "超过" N hours: exactly N is not over
        return "short", "short"
    return "obliged", ""


def connected_intervals(
    samples: Sequence[MeterSample], step_ms: int, max_gap_ms: int
) -> list[tuple[int, int]]:
    """[start, end) of each connected bucket's hold: to the next bucket within the gap,
    else its own bucket only (report/plan.py hold_durations)."""
    out = []
    for i, s in enumerate(samples):
        if s.connected is not True:
            continue
        nxt = samples[i + 1].ts if i + 1 < len(samples) else None
        held = nxt - s.ts if nxt is not None and nxt - s.ts <= max_gap_ms else step_ms
        out.append((s.ts, s.ts + held))
    return out


def union_ms(intervals: Iterable[tuple[int, int]], a: int, b: int) -> int:
    """Length of the union of ``intervals`` clipped to [a, b)."""
    clipped = sorted((max(s, a), min(e, b)) for s, e in intervals if e > a and s < b)
    total = 0
    cur_s = cur_e = None
    for s, e in clipped:
        if cur_e is None or s > cur_e:
            if cur_e is not None and cur_s is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None and cur_s is not None:
        total += cur_e - cur_s
    return total


def energy_in(samples: Sequence[MeterSample], a: int, b: int, step_ms: int) -> float:
    """kWh of the register's increases whose bucket overlaps [a, b): the increase from one
    bucket's last value to the next is the energy of the later bucket. A drop (meter reset or
    replaced) counts as nothing."""
    total = 0.0
    prev: float | None = None
    for s in samples:
        if s.energy is None:
            continue
        if prev is not None and s.energy >= prev and s.ts + step_ms > a and s.ts < b:
            total += s.energy - prev
        prev = s.energy
    return total


@dataclass(slots=True)
class CallResult:
    """One berthing record, judged."""

    vessel: str
    vessel_name: str
    berth: str
    port: str
    county: str
    arrival: str  # local ISO time
    departure: str
    berthing_hours: float
    threshold_hours: float
    status: Status
    reason: str  # REASONS key, "" for an obliged call
    detail: str  # the register's own words for a vessel exemption, else ""
    connected: bool
    connection_hours: float
    kwh: float
    meters: int  # shore-power meters at the berth

    @property
    def reason_text(self) -> str:
        """Why the call was not obliged, in both languages ("" when it was)."""
        text = REASONS.get(self.reason, self.reason)
        return f"{text}: {self.detail}" if self.detail else text

    @property
    def obliged(self) -> bool:
        """Obliged by Art. 11 to use shore power."""
        return self.status == "obliged"


@dataclass(slots=True)
class Group:
    """Calls of a berth, port, county or the city added up."""

    level: str  # berth | port | county | city
    name: str
    county: str
    calls: int = 0
    obliged: int = 0
    obliged_connected: int = 0
    connected: int = 0
    not_obliged: dict[str, int] = field(default_factory=dict)  # reason → calls
    berthing_hours: float = 0.0
    connection_hours: float = 0.0
    kwh: float = 0.0

    @property
    def usage_rate_pct(self) -> float | None:
        """Obliged calls that connected ÷ obliged calls × 100 (None without obliged calls)."""
        return self.obliged_connected / self.obliged * 100 if self.obliged else None

    def add(self, c: CallResult) -> None:
        """Count one call."""
        self.calls += 1
        self.berthing_hours += c.berthing_hours
        self.connection_hours += c.connection_hours
        self.kwh += c.kwh
        self.connected += c.connected
        if c.obliged:
            self.obliged += 1
            self.obliged_connected += c.connected
        else:
            self.not_obliged[c.reason] = self.not_obliged.get(c.reason, 0) + 1

    def to_json(self) -> dict[str, Any]:
        """Plain JSON."""
        return {
            "level": self.level,
            "name": self.name,
            "county": self.county,
            "calls": self.calls,
            "obliged": self.obliged,
            "obliged_connected": self.obliged_connected,
            "connected": self.connected,
            "usage_rate_pct": _r(self.usage_rate_pct),
            "not_obliged": dict(sorted(self.not_obliged.items())),
            "berthing_hours": _r(self.berthing_hours),
            "connection_hours": _r(self.connection_hours),
            "kwh": _r(self.kwh),
        }


def _r(v: float | None, nd: int = 3) -> float | None:
    return None if v is None else round(v, nd)


def groups(calls: Sequence[CallResult]) -> list[Group]:
    """Per berth, port, county and the city, in that order."""
    out: dict[tuple[str, str], Group] = {}
    city = Group("city", "city", "")
    for c in calls:
        for level, name, county in (
            ("berth", c.berth, c.county),
            ("port", c.port, c.county),
            ("county", c.county, c.county),
        ):
            out.setdefault((level, name), Group(level, name, county)).add(c)
        city.add(c)
    order = {"berth": 0, "port": 1, "county": 2}
    return [*sorted(out.values(), key=lambda g: (order[g.level], g.county, g.name)), city]


@dataclass(slots=True)
class ShoreCallsSection:
    """The section as every format shows it."""

    period: str
    first_ms: int
    spec: ShoreCallsSpec
    calls: list[CallResult]
    summary: list[Group]
    notes_: list[str]
    key: str = KEY

    def to_json(self) -> dict[str, Any]:
        """Plain JSON: settings, calls, groups (berth, port, county, city), notes."""
        return {
            "period": self.period,
            "inland_min_hours": self.spec.inland_min_hours,
            "coastal_min_hours": self.spec.coastal_min_hours,
            "city": self.summary[-1].to_json(),
            "groups": [g.to_json() for g in self.summary],
            "calls": [
                {
                    "vessel": c.vessel,
                    "vessel_name": c.vessel_name,
                    "berth": c.berth,
                    "port": c.port,
                    "county": c.county,
                    "arrival": c.arrival,
                    "departure": c.departure,
                    "berthing_hours": _r(c.berthing_hours),
                    "threshold_hours": c.threshold_hours,
                    "obliged": c.obliged,
                    "status": c.status,
                    "reason": c.reason_text,
                    "connected": c.connected,
                    "connection_hours": _r(c.connection_hours),
                    "kwh": _r(c.kwh),
                }
                for c in self.calls
            ],
            "notes": list(self.notes_),
        }

    def tables(self) -> list[Table]:
        """Usage per berth/port/county/city, the calls, the calls not obliged with reasons."""
        usage = Table(
            "岸电使用率（按规定应使用） Shore-power use of obliged calls",
            [
                "level",
                "name",
                "county",
                "calls",
                "obliged",
                "obliged connected",
                "usage rate %",
                "not obliged",
                "connection h",
                "kWh",
            ],
            [
                [
                    g.level,
                    g.name,
                    g.county,
                    g.calls,
                    g.obliged,
                    g.obliged_connected,
                    _r(g.usage_rate_pct, 1),
                    g.calls - g.obliged,
                    _r(g.connection_hours, 2),
                    _r(g.kwh, 1),
                ]
                for g in self.summary
            ],
        )
        calls = Table(
            "靠泊记录 Calls",
            [
                "vessel",
                "berth",
                "arrival",
                "departure",
                "berthing h",
                "obliged",
                "connected",
                "connection h",
                "kWh",
            ],
            [
                [
                    c.vessel,
                    c.berth,
                    c.arrival,
                    c.departure,
                    _r(c.berthing_hours, 2),
                    "yes" if c.obliged else "no",
                    "yes" if c.connected else "no",
                    _r(c.connection_hours, 2),
                    _r(c.kwh, 1),
                ]
                for c in self.calls
            ],
        )
        exempt = Table(
            "不计入应使用的靠泊及原因 Calls not obliged, with reasons",
            ["vessel", "berth", "arrival", "berthing h", "reason", "connected"],
            [
                [
                    c.vessel,
                    c.berth,
                    c.arrival,
                    _r(c.berthing_hours, 2),
                    c.reason_text,
                    "yes" if c.connected else "no",
                ]
                for c in self.calls
                if not c.obliged
            ],
        )
        return [usage, calls, exempt]

    def points(self) -> list[str]:
        """``shore_power_calls``: one point per port and one for the city (tag ``port`` =
        ``city``), stamped at the period's first local midnight, tag ``period``."""
        lines = []
        for g in self.summary:
            if g.level not in ("port", "city"):
                continue
            tags = [
                ("port", g.name),
                ("county", g.county),
                ("period", self.period),
                ("level", g.level),
            ]
            fields: list[tuple[str, FieldValue]] = [
                ("calls", g.calls),
                ("obliged", g.obliged),
                ("obliged_connected", g.obliged_connected),
                ("not_obliged", g.calls - g.obliged),
                ("connection_hours", float(g.connection_hours)),
                ("kwh", float(g.kwh)),
            ]
            if g.usage_rate_pct is not None:
                fields.append(("usage_rate_pct", float(g.usage_rate_pct)))
            line = encode_line(KEY, tags, fields, self.first_ms)
            if line is not None:
                lines.append(line)
        return lines

    def notes(self) -> list[str]:
        """What the section could not count and why."""
        return list(self.notes_)


# ---------------------------------------------------------------------------------- I/O


def _iso(ms: int, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone(tz).isoformat(timespec="minutes")


async def build(ctx: SectionContext) -> ShoreCallsSection:
    """The period's calls (by arrival), judged by Art. 11, with their meters' hours and kWh."""
    spec = spec_of(ctx.extra)
    start_ms = day_window(ctx.period.first, ctx.tz).start_ms
    end_ms = day_window(ctx.period.last, ctx.tz).end_ms
    step = int(spec.step.total_seconds() * 1000)
    gap = int(spec.max_gap.total_seconds() * 1000)
    meters: dict[str, list[Device]] = {}
    for d in ctx.registry.of_kind(shore_power.KIND.name):
        meters.setdefault(d.site, []).append(d)

    q = (
        f'SELECT "departure_ms", "exemption" FROM {quote_ident(CALLS)} '
        f"WHERE time >= {time_literal(start_ms)} AND time < {time_literal(end_ms)} "
        'GROUP BY "site", "vessel"'
    )
    raw = await ctx.client.query(q)
    q = (
        f"SELECT * FROM {quote_ident(VESSELS)} WHERE time < {time_literal(end_ms)} "
        'GROUP BY "vessel"'
    )
    register: dict[str, list[tuple[int, VesselFacts]]] = {}
    for r in await ctx.client.query(q):
        register.setdefault(str(r.get("vessel") or ""), []).append(
            (
                int(r["time"] or 0),
                VesselFacts(
                    str(r.get("name") or ""),
                    r.get("equipped") is True,
                    r.get("liquid_cargo") is True,
                    str(r.get("exemption") or ""),
                ),
            )
        )
    for entries in register.values():
        entries.sort(key=lambda x: x[0])

    notes: list[str] = []
    now_ms = int(ctx.now.timestamp() * 1000)
    by_berth: dict[str, list[Row]] = {}
    for r in raw:
        site = str(r.get("site") or "")
        devs = meters.get(site, [])
        county = devs[0].county if devs else ""
        if ctx.county is not None and county != ctx.county:
            continue
        by_berth.setdefault(site, []).append(r)

    results: list[CallResult] = []
    for site, rows in sorted(by_berth.items()):
        devs = meters.get(site, [])
        facts = shore_power.facts(devs[0]) if devs else None
        port = (facts.port if facts else None) or site
        county = devs[0].county if devs else ""
        threshold = spec.threshold_hours(facts.waters if facts else None)
        spans = [(int(r["time"] or 0), int(finite(r.get("departure_ms")) or 0)) for r in rows]
        lo = min(a for a, _ in spans) - gap - step
        hi = min(max(e for _, e in spans), max(now_ms, lo + 1))
        samples = await _meter_samples(ctx, site, lo, hi, step) if devs else {}
        if not devs:
            notes.append(
                f"Berth {site}: no shore-power meter in the registry; its calls have "
                "no connection data and count as not connected."
            )
        for r, (a, dep) in zip(rows, spans, strict=True):
            vessel = str(r.get("vessel") or "")
            facts_v = next((f for t, f in reversed(register.get(vessel, [])) if t <= a), None)
            berthing_h = (dep - a) / HOUR_MS
            status, reason = judge(facts_v, berthing_h, threshold, str(r.get("exemption") or ""))
            conn_ms = union_ms(
                (iv for s in samples.values() for iv in connected_intervals(s, step, gap)),
                a,
                dep,
            )
            kwh = math.fsum(energy_in(s, a, dep, step) for s in samples.values())
            results.append(
                CallResult(
                    vessel=vessel,
                    vessel_name=facts_v.name if facts_v else "",
                    berth=site,
                    port=port,
                    county=county,
                    arrival=_iso(a, ctx.tz),
                    departure=_iso(dep, ctx.tz),
                    berthing_hours=berthing_h,
                    threshold_hours=threshold,
                    status=status,
                    reason=reason,
                    detail=facts_v.exemption if facts_v and reason == "vessel_exempt" else "",
                    connected=conn_ms > 0,
                    connection_hours=conn_ms / HOUR_MS,
                    kwh=kwh,
                    meters=len(devs),
                )
            )
            if dep > now_ms:
                notes.append(f"Call of {vessel} at {site} departs after now: counted to now.")
    results.sort(key=lambda c: (c.arrival, c.berth, c.vessel))
    unregistered = sorted({c.vessel for c in results if c.status == "unregistered"})
    if unregistered:
        notes.append(
            f"{len(unregistered)} vessels have calls but no register row in force at their "
            f"arrival ({', '.join(unregistered[:10])}{' …' if len(unregistered) > 10 else ''}): "
            "their calls are not in the denominator until `envgrid shore vessels import` "
            "lists them."
        )
    if not results:
        notes.append(
            "No berthing record in the period: import them with `envgrid shore calls import`."
        )
    return ShoreCallsSection(
        period=ctx.period.label,
        first_ms=start_ms,
        spec=spec,
        calls=results,
        summary=groups(results),
        notes_=notes,
    )


async def _meter_samples(
    ctx: SectionContext, site: str, lo: int, hi: int, step: int
) -> dict[str, list[MeterSample]]:
    """Per meter at the berth, its buckets in [lo, hi), read in month chunks."""
    out: dict[str, dict[int, MeterSample]] = {}
    a = lo - lo % step
    while a < hi:
        b = min(a + _CHUNK_MS, hi)
        q = (
            'SELECT last("connected") AS "connected", last("energy_kwh") AS "energy_kwh" '
            f"FROM {quote_ident(shore_power.KIND.measurement)} "
            f"WHERE time >= {time_literal(a)} AND time < {time_literal(b)} "
            f"AND {quote_ident('site')} = {quote_string(site)} "
            f'GROUP BY time({step // 1000}s), "device_id" fill(none)'
        )
        for r in await ctx.client.query(q):
            c = r.get("connected")
            ts = int(r["time"] or 0)
            out.setdefault(str(r.get("device_id") or ""), {})[ts] = MeterSample(
                ts, c if isinstance(c, bool) else None, finite(r.get("energy_kwh"))
            )
        a = b
    return {dev: [rows[t] for t in sorted(rows)] for dev, rows in out.items()}


__all__ = [
    "KEY",
    "REASONS",
    "CallResult",
    "Group",
    "ShoreCallsSection",
    "ShoreCallsSpec",
    "build",
    "connected_intervals",
    "energy_in",
    "groups",
    "judge",
    "spec_of",
    "union_ms",
]
