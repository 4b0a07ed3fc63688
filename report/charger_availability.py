"""Charger availability that counts silence (section ``charger_availability``).

Each connector's time in the period is split three ways from its OCPP 1.6 ``status``
(``ev_charger``, devices/ev_charger.py, read as the last status of each ``step`` bucket):

- **available**: a status in which the connector is in service — Available, Preparing, Charging,
  SuspendedEVSE, SuspendedEV, Finishing, Reserved (OCPP 1.6 §4.9 ChargePointStatus: each of
  these is an operative connector; SuspendedEVSE/EV only pause the energy transfer, Reserved
  holds it for one user);
- **unavailable**: Unavailable (taken out of service, ChangeAvailability Inoperative) and
  Faulted;
- **offline / unknown**: no status. A status holds for at most ``silence`` after its bucket's
  start; from then until the next status (or the period's end) the connector is counted
  offline, not in its last state. Before the first status of the period (and none within
  ``silence`` before it) it is offline too. A registered charger that sent nothing is one
  connector offline all period.

``availability`` = available ÷ the whole period (offline time counts against it);
``unknown share`` = offline ÷ the whole period; ``known availability`` = available ÷ (available
+ unavailable), the availability of the time the charger spoke for. The period ends now when it
is still running. Connector 0 (the whole charge point, OCPP 1.6) is not a connector of its own:
while it is Unavailable or Faulted, the charge point's connectors count as unavailable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from devices import ev_charger
from devices.config import Duration
from devices.lineproto import FieldValue, encode_line
from ingest.influxql import quote_ident, quote_string, time_literal
from report.sections import SectionContext, Table
from rollups.windows import day_window

KEY = "charger_availability"
HOUR_MS = 3_600_000
_CHUNK_MS = 31 * 86_400_000

# OCPP 1.6 ChargePointStatus, by whether the connector is in service.
AVAILABLE = frozenset(
    {"Available", "Preparing", "Charging", "SuspendedEVSE", "SuspendedEV", "Finishing", "Reserved"}
)
UNAVAILABLE = frozenset({"Unavailable", "Faulted"})


class AvailabilitySpec(BaseModel):
    """How long a status holds without a new one (``silence``) and the bucket (``step``).

    Neither is a national number: ``silence`` should exceed the chargers' reporting interval
    (three 5-minute readings by default)."""

    model_config = ConfigDict(extra="forbid")

    silence: Duration = timedelta(minutes=15)
    step: Duration = timedelta(minutes=5)

    @model_validator(mode="after")
    def _check(self) -> AvailabilitySpec:
        if self.step <= timedelta(0):
            raise ValueError("step must be positive, e.g. '5m'")
        if self.silence < self.step:
            raise ValueError("silence must be at least step")
        return self


def spec_of(extra: Mapping[str, Any]) -> AvailabilitySpec:
    """The spec in ``ctx.extra[KEY]`` (a spec or its mapping), else the defaults."""
    given = extra.get(KEY)
    if isinstance(given, AvailabilitySpec):
        return given
    return AvailabilitySpec.model_validate(given or {})


# ------------------------------------------------------------------------------ pure part

Interval = tuple[int, int, str]  # [start, end) ms and "available" | "unavailable" | "offline"


def timeline(
    samples: Sequence[tuple[int, str]], start_ms: int, end_ms: int, silence_ms: int
) -> list[Interval]:
    """[start_ms, end_ms) cut into available, unavailable and offline stretches.

    ``samples``: (bucket start ms, OCPP status), in time order, possibly from before start_ms.
    A status holds until the next one, but no longer than ``silence_ms``; a status that is not
    OCPP 1.6's counts as offline (nothing known)."""
    out: list[Interval] = []

    def put(a: int, b: int, what: str) -> None:
        a, b = max(a, start_ms), min(b, end_ms)
        if b > a:
            if out and out[-1][2] == what and out[-1][1] == a:
                out[-1] = (out[-1][0], b, what)
            else:
                out.append((a, b, what))

    cursor = start_ms
    for i, (ts, status) in enumerate(samples):
        nxt = samples[i + 1][0] if i + 1 < len(samples) else end_ms
        if ts > cursor:
            put(cursor, ts, "offline")
        held = min(nxt, ts + silence_ms)
        what = (
            "available"
            if status in AVAILABLE
            else "unavailable"
            if status in UNAVAILABLE
            else "offline"
        )
        put(ts, held, what)
        put(held, nxt, "offline")
        cursor = max(cursor, nxt)
    if cursor < end_ms:
        put(cursor, end_ms, "offline")
    return out


def overlay_unavailable(line: Sequence[Interval], down: Sequence[Interval]) -> list[Interval]:
    """``line`` with its available time inside ``down``'s unavailable stretches turned
    unavailable (connector 0 Faulted or Unavailable takes the whole charge point down)."""
    cuts = sorted((a, b) for a, b, w in down if w == "unavailable")
    out: list[Interval] = []
    for a, b, what in line:
        if what != "available":
            out.append((a, b, what))
            continue
        cur = a
        for ca, cb in cuts:
            if cb <= cur or ca >= b:
                continue
            if ca > cur:
                out.append((cur, ca, "available"))
            out.append((max(ca, cur), min(cb, b), "unavailable"))
            cur = min(cb, b)
        if cur < b:
            out.append((cur, b, "available"))
    return out


@dataclass(slots=True)
class Split:
    """Hours available, unavailable and offline of a connector or a group of them."""

    level: str  # connector | station | county | city
    name: str
    site: str
    county: str
    connectors: int = 0
    available_h: float = 0.0
    unavailable_h: float = 0.0
    offline_h: float = 0.0
    period_h: float = 0.0

    @property
    def availability_pct(self) -> float | None:
        """Available ÷ the whole period × 100."""
        return self.available_h / self.period_h * 100 if self.period_h else None

    @property
    def unknown_pct(self) -> float | None:
        """Offline (no status) ÷ the whole period × 100."""
        return self.offline_h / self.period_h * 100 if self.period_h else None

    @property
    def known_availability_pct(self) -> float | None:
        """Available ÷ (available + unavailable) × 100: over the time with a status."""
        known = self.available_h + self.unavailable_h
        return self.available_h / known * 100 if known else None

    def add(self, other: Split) -> None:
        """Add a connector's hours."""
        self.connectors += other.connectors
        self.available_h += other.available_h
        self.unavailable_h += other.unavailable_h
        self.offline_h += other.offline_h
        self.period_h += other.period_h

    def to_json(self) -> dict[str, Any]:
        """Plain JSON."""
        return {
            "level": self.level,
            "name": self.name,
            "site": self.site,
            "county": self.county,
            "connectors": self.connectors,
            "available_hours": round(self.available_h, 3),
            "unavailable_hours": round(self.unavailable_h, 3),
            "offline_hours": round(self.offline_h, 3),
            "period_hours": round(self.period_h, 3),
            "availability_pct": _r(self.availability_pct),
            "unknown_pct": _r(self.unknown_pct),
            "known_availability_pct": _r(self.known_availability_pct),
        }


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


def split_of(
    level: str, name: str, site: str, county: str, line: Sequence[Interval], period_ms: int
) -> Split:
    """A connector's hours from its timeline."""
    s = Split(level, name, site, county, connectors=1, period_h=period_ms / HOUR_MS)
    for a, b, what in line:
        h = (b - a) / HOUR_MS
        if what == "available":
            s.available_h += h
        elif what == "unavailable":
            s.unavailable_h += h
        else:
            s.offline_h += h
    return s


def rollup(connectors: Sequence[Split]) -> list[Split]:
    """Connectors, then per station (site), per county, and the city."""
    stations: dict[str, Split] = {}
    counties: dict[str, Split] = {}
    city = Split("city", "city", "", "")
    for c in connectors:
        stations.setdefault(c.site, Split("station", c.site, c.site, c.county)).add(c)
        counties.setdefault(c.county, Split("county", c.county, "", c.county)).add(c)
        city.add(c)
    return [
        *sorted(connectors, key=lambda s: (s.county, s.site, s.name)),
        *sorted(stations.values(), key=lambda s: (s.county, s.name)),
        *sorted(counties.values(), key=lambda s: s.name),
        city,
    ]


@dataclass(slots=True)
class ChargerAvailabilitySection:
    """The section as every format shows it."""

    period: str
    first_ms: int
    spec: AvailabilitySpec
    splits: list[Split]
    notes_: list[str] = field(default_factory=list)
    key: str = KEY

    def to_json(self) -> dict[str, Any]:
        """Plain JSON: connectors, stations, counties, city."""
        by: dict[str, list[dict[str, Any]]] = {}
        for s in self.splits:
            by.setdefault(s.level, []).append(s.to_json())
        return {
            "period": self.period,
            "silence_minutes": self.spec.silence.total_seconds() / 60,
            "city": by.get("city", [{}])[0],
            "counties": by.get("county", []),
            "stations": by.get("station", []),
            "connectors": by.get("connector", []),
            "notes": list(self.notes_),
        }

    def tables(self) -> list[Table]:
        """City, counties and stations; then the connectors."""
        cols = [
            "level",
            "name",
            "county",
            "connectors",
            "available h",
            "unavailable h",
            "offline h",
            "availability %",
            "unknown %",
            "known availability %",
        ]

        def row(s: Split) -> list[str | float | int | None]:
            return [
                s.level,
                s.name,
                s.county,
                s.connectors,
                round(s.available_h, 2),
                round(s.unavailable_h, 2),
                round(s.offline_h, 2),
                _one(s.availability_pct),
                _one(s.unknown_pct),
                _one(s.known_availability_pct),
            ]

        groups = [s for s in self.splits if s.level != "connector"]
        return [
            Table(
                "充电桩可用率（离线单列） Charger availability, offline shown apart",
                cols,
                [row(s) for s in reversed(groups)],
            ),
            Table(
                "充电接口 Connectors",
                cols,
                [row(s) for s in self.splits if s.level == "connector"],
            ),
        ]

    def points(self) -> list[str]:
        """``charger_availability``: one point per connector, station, county and the city,
        stamped at the period's first local midnight; tags ``level``, ``name``, ``county``,
        ``period``."""
        lines = []
        for s in self.splits:
            tags = [
                ("level", s.level),
                ("name", s.name),
                ("site", s.site),
                ("county", s.county),
                ("period", self.period),
            ]
            fields: list[tuple[str, FieldValue]] = [
                ("connectors", s.connectors),
                ("available_h", float(s.available_h)),
                ("unavailable_h", float(s.unavailable_h)),
                ("offline_h", float(s.offline_h)),
                ("period_h", float(s.period_h)),
            ]
            for name, v in (
                ("availability_pct", s.availability_pct),
                ("unknown_pct", s.unknown_pct),
                ("known_availability_pct", s.known_availability_pct),
            ):
                if v is not None:
                    fields.append((name, float(v)))
            line = encode_line(KEY, tags, fields, self.first_ms)
            if line is not None:
                lines.append(line)
        return lines

    def notes(self) -> list[str]:
        """What the section could not count and why."""
        return list(self.notes_)


def _one(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


# ---------------------------------------------------------------------------------- I/O


async def build(ctx: SectionContext) -> ChargerAvailabilitySection:
    """Every connector's available, unavailable and offline hours in the period."""
    spec = spec_of(ctx.extra)
    start_ms = day_window(ctx.period.first, ctx.tz).start_ms
    period_end = day_window(ctx.period.last, ctx.tz).end_ms
    now_ms = int(ctx.now.timestamp() * 1000)
    end_ms = max(start_ms, min(period_end, now_ms))
    step = int(spec.step.total_seconds() * 1000)
    silence = int(spec.silence.total_seconds() * 1000)
    scope = f" AND {quote_ident('county')} = {quote_string(ctx.county)}" if ctx.county else ""
    series: dict[tuple[str, str], dict[int, str]] = {}
    tags: dict[str, tuple[str, str]] = {}
    lo = start_ms - silence
    a = lo - lo % step
    while a < end_ms:
        b = min(a + _CHUNK_MS, end_ms)
        q = (
            f'SELECT last("status") AS "status" FROM {quote_ident(ev_charger.KIND.measurement)} '
            f"WHERE time >= {time_literal(a)} AND time < {time_literal(b)}{scope} "
            f'GROUP BY time({step // 1000}s), "device_id", "connector", "site", "county" '
            "fill(none)"
        )
        for r in await ctx.client.query(q):
            status = r.get("status")
            if not isinstance(status, str):
                continue
            dev = str(r.get("device_id") or "")
            series.setdefault((dev, str(r.get("connector") or "")), {})[int(r["time"] or 0)] = (
                status
            )
            tags.setdefault(dev, (str(r.get("site") or ""), str(r.get("county") or "")))
        a = b

    registered = {
        d.id: d
        for d in ctx.registry.of_kind(ev_charger.KIND.name)
        if ctx.county is None or d.county == ctx.county
    }
    lines = {k: timeline(sorted(v.items()), start_ms, end_ms, silence) for k, v in series.items()}
    notes: list[str] = []
    period_ms = end_ms - start_ms
    connectors: list[Split] = []
    for (dev, conn), line in sorted(lines.items()):
        if conn == "0":
            continue
        whole = lines.get((dev, "0"))
        if whole is not None:
            line = overlay_unavailable(line, whole)
        d = registered.get(dev) or ctx.registry.get(dev)
        site, county = (d.site, d.county) if d else tags.get(dev, ("", ""))
        name = f"{dev}#{conn}" if conn else dev
        connectors.append(split_of("connector", name, site, county, line, period_ms))
    seen = {dev for dev, conn in lines if conn != "0"}
    silent = []
    for dev, d in sorted(registered.items()):
        if dev not in seen:
            silent.append(dev)
            offline = [(start_ms, end_ms, "offline")] if period_ms > 0 else []
            connectors.append(split_of("connector", dev, d.site, d.county, offline, period_ms))
    if silent:
        notes.append(
            f"{len(silent)} registered chargers sent no status in the period "
            f"({', '.join(silent[:10])}{' …' if len(silent) > 10 else ''}): each counts as one "
            "connector offline all period."
        )
    if end_ms < period_end:
        notes.append("The period is still running: its hours end now.")
    return ChargerAvailabilitySection(
        period=ctx.period.label,
        first_ms=start_ms,
        spec=spec,
        splits=rollup(connectors),
        notes_=notes,
    )


__all__ = [
    "AVAILABLE",
    "KEY",
    "UNAVAILABLE",
    "AvailabilitySpec",
    "ChargerAvailabilitySection",
    "Split",
    "build",
    "overlay_unavailable",
    "rollup",
    "spec_of",
    "split_of",
    "timeline",
]
