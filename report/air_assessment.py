"""The air assessment of a period (HJ 663, limits of GB 3095 by date): per station, per county
and for the city, with the county ranking the province publishes.

Input: ``air_quality_daily`` (each station's 24 h means with their ``_n``, the daily maximum 8 h
O3, ``aqi``, ``aqi_category``, ``valid``; tags ``device_id``, ``site``, ``county``,
``assessment``, ``aqi_edition``) for the period and for the same period a year earlier. The
statistics are ``devices.hj663.assess``; this module reads, groups and ranks.

- A station's days are its daily points (the edition in force on the day wins where a day was
  recomputed under another edition).
- A county's and the city's days are the mean of their stations' days (``hj663.combine``); the
  city uses the national-assessment stations (registry or tag ``assessment = national``).
- Exceptional-event days (review marks with the reason ``exceptional_event``) leave the station's
  assessment; an area drops a marked station-day from its daily mean, and leaves a day out
  entirely when all its stations with data that day are marked.
- Counties are ranked by composite index (ascending) and by good-day ratio (descending), with the
  change against the same period a year earlier.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from devices import air
from devices import hj663 as H
from devices.aqi import edition_for
from devices.lineproto import FieldValue, encode_line
from ingest.influxql import Row, quote_ident, time_literal
from report.sections import Period, SectionContext, Table
from rollups.review import EXCEPTIONAL_EVENT, Mark, ReviewStore
from rollups.windows import AIR_DAILY, day_window, local_date

KEY = "air_assessment"
MEASUREMENT = "air_assessment"
NATIONAL = "national"
POLLUTANT_FIELDS: tuple[str, ...] = (
    "so2_ug_m3",
    "no2_ug_m3",
    "pm10_ug_m3",
    "pm25_ug_m3",
    "co_mg_m3",
    "o3_8h_ug_m3",
)
# The published statistic of each pollutant, in the order bulletins print them.
STATS: tuple[tuple[str, str], ...] = (
    ("so2", "so2"),
    ("no2", "no2"),
    ("pm10", "pm10"),
    ("pm25", "pm25"),
    ("co", "co_p95"),
    ("o3_8h", "o3_8h_p90"),
)
DISPLAY = {
    "so2": "SO2",
    "no2": "NO2",
    "pm10": "PM10",
    "pm25": "PM2.5",
    "co": "CO",
    "o3_8h": "O3-8h",
}
CATEGORY_NAMES = ("优", "良", "轻度污染", "中度污染", "重度污染", "严重污染")

# What ``AirAssessment.points`` writes (dashboards/schema.py reads these): tags, and fields with
# their schema units (a field is left out of a point when it has no value).
POINT_TAGS: tuple[str, ...] = ("level", "county", "device_id", "period", "label")
POINT_FIELDS: dict[str, str] = {
    "so2": "µg/m³",
    "no2": "µg/m³",
    "pm10": "µg/m³",
    "pm25": "µg/m³",
    "co_p95": "mg/m³",
    "o3_8h_p90": "µg/m³",
    "composite_index": "",
    "good_day_ratio": "%",
    "valid_days": "count",
    "good_days": "count",
    "excluded_days": "count",
    **{f"category_{i}_days": "count" for i in range(1, 7)},
    "composite_index_last_year": "",
    "good_day_ratio_last_year": "%",
    "composite_index_change": "",
    "composite_index_change_pct": "%",
    "good_day_ratio_change": "",  # percentage points
    "rank": "",
    "rank_good_day_ratio": "",
}


@dataclass(slots=True)
class Station:
    """One station's days in one period (and what a review mark left out)."""

    device_id: str
    site: str
    county: str
    national: bool
    days: dict[date, H.DayValues] = field(default_factory=dict)
    excluded: set[date] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class Result:
    """One assessed unit (station, county or the city), this period and a year earlier."""

    level: str  # city | county | station
    name: str
    county: str
    device_id: str
    now: H.Assessment
    before: H.Assessment | None
    rank: int | None = None
    rank_good_day_ratio: int | None = None
    stations: int = 1
    three_year: H.ThreeYearAverage | None = None  # year periods: this and the two years before

    def changes(self) -> dict[str, float | None]:
        """Change against the same period a year earlier, as the rankings publish it."""
        b = self.before
        ci_now, ci_before = self.now.composite_index, b.composite_index if b else None
        gd_now, gd_before = self.now.good_day_ratio, b.good_day_ratio if b else None
        return {
            "composite_index_last_year": ci_before,
            "good_day_ratio_last_year": gd_before,
            "composite_index_change": _diff(ci_now, ci_before),
            "composite_index_change_pct": H.change_rate(ci_now, ci_before),
            "good_day_ratio_change": _diff(gd_now, gd_before),  # percentage points
        }

    def to_json(self) -> dict[str, Any]:
        a = self.now
        out: dict[str, Any] = {"level": self.level, "name": self.name, "county": self.county}
        if self.level == "station":
            out["device_id"] = self.device_id
        else:
            out["stations"] = self.stations
        out |= {
            "so2": a.so2,
            "no2": a.no2,
            "pm10": a.pm10,
            "pm25": a.pm25,
            "co_p95": a.co_p95,
            "o3_8h_p90": a.o3_8h_p90,
            "composite_index": a.composite_index,
            "good_day_ratio": a.good_day_ratio,
            "valid_days": a.valid_days,
            "good_days": a.good_days,
        }
        if self.level == "county":
            out["rank"] = self.rank
            out["rank_good_day_ratio"] = self.rank_good_day_ratio
        out |= {
            "shares": dict(a.shares),
            "category_days": list(a.category_days),
            "over_limit_days": dict(a.over_limit_days),
            "compliance": dict(a.compliance),
            "enough_data": dict(a.enough_data),
            "excluded_days": a.excluded_days,
            "editions": list(a.editions),
            **self.changes(),
        }
        t = self.three_year
        out["three_year_average"] = (
            None
            if t is None
            else {
                "first_year": t.first_year,
                "last_year": t.last_year,
                **{name: t.values.get(p) for p, name in STATS},
                "composite_index": t.composite_index,
                "compliance": dict(t.compliance),
                "edition": t.edition,
            }
        )
        return out


def _diff(now: float | None, before: float | None) -> float | None:
    # Both are published (rounded) figures: their difference is exact in decimal.
    if now is None or before is None:
        return None
    return float(Decimal(repr(now)) - Decimal(repr(before)))


@dataclass(slots=True)
class AirAssessment:
    """The ``air_assessment`` section: city, ranked counties, stations."""

    period: Period
    kind: str
    start_ms: int
    city: Result | None
    counties: list[Result]
    stations: list[Result]
    note_lines: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return KEY

    @property
    def title(self) -> str:
        """The heading the table and HTML formats show."""
        return "环境空气质量评价 Air quality assessment (HJ 663, GB 3095)"

    def to_json(self) -> dict[str, Any]:
        return {
            "period": {
                "first": self.period.first.isoformat(),
                "last": self.period.last.isoformat(),
                "label": self.period.label,
                "kind": self.kind,
            },
            "city": self.city.to_json() if self.city else None,
            "counties": [c.to_json() for c in self.counties],
            "stations": [s.to_json() for s in self.stations],
            "notes": list(self.note_lines),
        }

    def tables(self) -> list[Table]:
        head = ["SO2", "NO2", "PM10", "PM2.5", "CO p95", "O3-8h p90", "综合指数 CI", "优良率 %"]
        ranking = Table(
            "县区排名 County ranking",
            [
                "排名 Rank",
                "县区 County",
                "综合指数 CI",
                "同比 ΔCI",
                "同比 ΔCI %",
                "优良率 %",
                "优良率排名 Rank",
                "同比 Δ pts",
                "有效天数 Days",
            ],
            [
                [
                    c.rank,
                    c.name,
                    c.now.composite_index,
                    ch["composite_index_change"],
                    ch["composite_index_change_pct"],
                    c.now.good_day_ratio,
                    c.rank_good_day_ratio,
                    ch["good_day_ratio_change"],
                    c.now.valid_days,
                ]
                for c, ch in ((c, c.changes()) for c in self.counties)
            ],
        )
        units = [*([self.city] if self.city else []), *self.counties, *self.stations]
        stats = Table(
            "浓度与综合指数 Statistics (µg/m³; CO mg/m³)",
            ["级别 Level", "名称 Name", *head, "有效天数 Days", "版本 Editions"],
            [
                [
                    u.level,
                    u.name,
                    u.now.so2,
                    u.now.no2,
                    u.now.pm10,
                    u.now.pm25,
                    u.now.co_p95,
                    u.now.o3_8h_p90,
                    u.now.composite_index,
                    u.now.good_day_ratio,
                    u.now.valid_days,
                    ", ".join(u.now.editions),
                ]
                for u in units
            ],
        )
        days = Table(
            "类别天数与超标天数 Days per category and over the 24 h limits",
            [
                "级别 Level",
                "名称 Name",
                *CATEGORY_NAMES,
                *(f"超标 {DISPLAY[p]}" for p, _ in STATS),
                "例外事件 Excluded",
            ],
            [
                [
                    u.level,
                    u.name,
                    *u.now.category_days,
                    *(u.now.over_limit_days.get(p, 0) for p, _ in STATS),
                    u.now.excluded_days,
                ]
                for u in units
            ],
        )
        out = [ranking, stats, days]
        averaged = [(u, u.three_year) for u in units if u.three_year is not None]
        if averaged:
            out.append(
                Table(
                    "三年滑动平均 Three-year moving average (HJ 663-2026)",
                    ["级别 Level", "名称 Name", "年份 Years", *head[:7], "标准 Limits"],
                    [
                        [
                            u.level,
                            u.name,
                            f"{t.first_year}–{t.last_year}",
                            *(t.values.get(p) for p, _ in STATS),
                            t.composite_index,
                            t.edition,
                        ]
                        for u, t in averaged
                    ],
                )
            )
        return out

    def points(self) -> list[str]:
        out = []
        for u in [*([self.city] if self.city else []), *self.counties, *self.stations]:
            tags = {"level": u.level, "period": self.kind, "label": self.period.label}
            if u.county:
                tags["county"] = u.county
            if u.level == "station":
                tags["device_id"] = u.device_id
            a = u.now
            fields: dict[str, FieldValue] = {
                name: float(v) for p, name in STATS if (v := a.statistic(p)) is not None
            }
            if a.composite_index is not None:
                fields["composite_index"] = float(a.composite_index)
            if a.good_day_ratio is not None:
                fields["good_day_ratio"] = float(a.good_day_ratio)
            fields["valid_days"] = a.valid_days
            fields["good_days"] = a.good_days
            fields["excluded_days"] = a.excluded_days
            for i, n in enumerate(a.category_days, start=1):
                fields[f"category_{i}_days"] = n
            for k, v in u.changes().items():
                if v is not None:
                    fields[k] = float(v)
            if u.rank is not None:
                fields["rank"] = u.rank
            if u.rank_good_day_ratio is not None:
                fields["rank_good_day_ratio"] = u.rank_good_day_ratio
            line = encode_line(MEASUREMENT, sorted(tags.items()), fields.items(), self.start_ms)
            if line is not None:
                out.append(line)
        return out

    def notes(self) -> list[str]:
        return list(self.note_lines)


# ------------------------------------------------------------------------------ reading


def _setting(ctx: SectionContext, name: str, default: int) -> int:
    rollup = getattr(ctx.settings, "rollup", None)
    value = getattr(rollup, name, default)
    return int(value) if isinstance(value, int) else default


def _store(ctx: SectionContext) -> tuple[ReviewStore | None, bool]:
    """The review store (from ``ctx.extra["review_store"]``, else the settings' path) and
    whether this module opened it."""
    given = ctx.extra.get("review_store")
    if isinstance(given, ReviewStore):
        return given, False
    rollup = getattr(ctx.settings, "rollup", None)
    path = getattr(rollup, "review_store", None)
    if isinstance(path, Path):
        return ReviewStore(path), True
    return None, False


async def _read(ctx: SectionContext, period: Period) -> dict[str, Station]:
    tz = ctx.tz
    start_ms = day_window(period.first, tz).start_ms
    end_ms = day_window(period.last, tz).end_ms
    names = [*POLLUTANT_FIELDS, *(f"{f}_n" for f in POLLUTANT_FIELDS)]
    cols = ", ".join(quote_ident(n) for n in [*names, "aqi", "aqi_category", "valid"])
    q = (
        f"SELECT {cols} FROM {quote_ident(AIR_DAILY)} WHERE time >= {time_literal(start_ms)} "
        f'AND time < {time_literal(end_ms)} GROUP BY "device_id", "site", "county", '
        '"assessment", "aqi_edition"'
    )
    # InfluxDB 1.x streams a long period in chunks (as report.figures reads it).
    chunk = 10_000 if ctx.settings.influx.api == "v1" else None
    rows: list[Row] = await ctx.client.query(q, chunk_size=chunk)
    forced = ctx.settings.standards.aqi_edition
    day_min = _setting(ctx, "day_min_hours", 20)
    o3_min = _setting(ctx, "o3_8h_min_windows", 14)
    picked: dict[tuple[str, date], Row] = {}
    for r in rows:
        device = str(r.get("device_id") or "")
        if not device:
            continue
        day = local_date(int(r["time"] or 0), tz)
        if not period.first <= day <= period.last:
            continue
        key = (device, day)
        # A day recomputed under another edition leaves two points: the edition in force wins.
        if key not in picked or r.get("aqi_edition") == edition_for(day, forced):
            picked[key] = r
    stations: dict[str, Station] = {}
    for (device, day), r in sorted(picked.items()):
        st = stations.get(device)
        if st is None:
            dev = ctx.registry.get(device)
            county = dev.county if dev is not None and dev.known else str(r.get("county") or "")
            site = dev.site if dev is not None and dev.known else str(r.get("site") or device)
            level = air.facts(dev).assessment if dev is not None and dev.known else None
            national = (level or r.get("assessment")) == NATIONAL
            st = stations[device] = Station(device, site, county, national)
        st.days[day] = H.DayValues.from_fields(
            day, r, day_min_hours=day_min, o3_8h_min_windows=o3_min
        )
    return stations


def exceptional_days(marks: Sequence[Mark], period: Period, ctx: SectionContext) -> set[date]:
    """Days of the period an ``exceptional_event`` mark leaves out of one station's assessment:
    the newest such mark overlapping the day is an ``invalidate`` (a later ``restore`` with the
    same reason brings the day back)."""
    out = set()
    ordered = sorted((m for m in marks if m.reason == EXCEPTIONAL_EVENT), key=lambda m: m.id)
    for d in period.dates():
        w = day_window(d, ctx.tz)
        state = False
        for m in ordered:
            if m.from_ms < w.end_ms and m.to_ms > w.start_ms:
                state = m.action == "invalidate"
        if state:
            out.add(d)
    return out


def _mark(
    stations: Mapping[str, Station], store: ReviewStore | None, period: Period, ctx: SectionContext
) -> None:
    if store is None or not stations:
        return
    w0, w1 = day_window(period.first, ctx.tz), day_window(period.last, ctx.tz)
    marks = store.marks(from_ms=w0.start_ms, to_ms=w1.end_ms, device_ids=list(stations))
    by: dict[str, list[Mark]] = {}
    for m in marks:
        by.setdefault(m.device_id, []).append(m)
    for device, ms in by.items():
        stations[device].excluded = exceptional_days(ms, period, ctx)


def _area_days(members: Sequence[Station]) -> tuple[list[H.DayValues], set[date]]:
    """An area's days from its stations (marked station-days dropped) and the days every
    station with data had marked."""
    kept = [[d for day, d in st.days.items() if day not in st.excluded] for st in members]
    with_data: dict[date, list[Station]] = {}
    for st in members:
        for day in st.days:
            with_data.setdefault(day, []).append(st)
    excluded = {day for day, sts in with_data.items() if all(day in s.excluded for s in sts)}
    return H.combine(kept), excluded


@dataclass(frozen=True, slots=True)
class Assessed:
    """Every unit of one period assessed: stations as read, the city, counties (with their
    number of stations) and stations."""

    period: Period
    stations: Mapping[str, Station]
    city: H.Assessment | None
    counties: Mapping[str, tuple[H.Assessment, int]]
    per_station: Mapping[str, H.Assessment]

    def unit(self, level: str, name: str) -> H.Assessment | None:
        """One unit's assessment (county by name, station by device id, city)."""
        if level == "city":
            return self.city
        if level == "county":
            found = self.counties.get(name)
            return found[0] if found else None
        return self.per_station.get(name)


def assess_period(stations: Mapping[str, Station], period: Period, county: str | None) -> Assessed:
    """Assess every station, every county (of ``county`` only, when given) and the city."""
    first, last = period.first, period.last
    scoped = [st for st in stations.values() if county is None or st.county == county]
    per_station = {
        st.device_id: H.assess(list(st.days.values()), first, last, st.excluded) for st in scoped
    }
    by_county: dict[str, list[Station]] = {}
    for st in scoped:
        by_county.setdefault(st.county, []).append(st)
    counties = {}
    for c, members in by_county.items():
        days, excluded = _area_days(members)
        counties[c] = (H.assess(days, first, last, excluded), len(members))
    national = [st for st in stations.values() if st.national]
    city = None
    if national:
        days, excluded = _area_days(national)
        city = H.assess(days, first, last, excluded)
    return Assessed(period, stations, city, counties, per_station)


async def _assessed(ctx: SectionContext, period: Period, store: ReviewStore | None) -> Assessed:
    stations = await _read(ctx, period)
    _mark(stations, store, period, ctx)
    return assess_period(stations, period, ctx.county)


def _year(y: int) -> Period:
    return Period(date(y, 1, 1), date(y, 12, 31), f"{y}")


def _three_year(level: str, name: str, years: Sequence[Assessed]) -> H.ThreeYearAverage | None:
    found = [a.unit(level, name) for a in years]
    present = [a for a in found if a is not None]
    if len(present) != 3:
        return None
    return H.three_year_average(present)


async def build(ctx: SectionContext) -> AirAssessment:
    """The period's air assessment (a :data:`report.sections.Builder`)."""
    # report.period lists this builder in BUILDERS: imported here, not at the top, to avoid
    # the import cycle.
    from report.period import kind_of

    period = ctx.period
    kind = kind_of(period)
    store, opened = _store(ctx)
    try:
        now = await _assessed(ctx, period, store)
        before = await _assessed(ctx, period.year_earlier(), store)
        # HJ 663-2026 three-year moving average: for a calendar year, with the two before it.
        years = []
        if kind == "year":
            y = period.first.year
            years = [await _assessed(ctx, _year(y - 2), store), before, now]
    finally:
        if opened and store is not None:
            store.close()
    ci_rank = H.rank({c: a.composite_index for c, (a, _) in now.counties.items()})
    gd_rank = H.rank(
        {c: a.good_day_ratio for c, (a, _) in now.counties.items()}, lower_is_better=False
    )
    counties = [
        Result(
            level="county",
            name=c,
            county=c,
            device_id="",
            now=a,
            before=before.unit("county", c),
            rank=ci_rank.get(c),
            rank_good_day_ratio=gd_rank.get(c),
            stations=n,
            three_year=_three_year("county", c, years) if years else None,
        )
        for c, (a, n) in now.counties.items()
    ]
    counties.sort(key=lambda r: (r.rank is None, r.rank or 0, r.name))
    by_place = sorted(now.per_station.items(), key=lambda kv: (now.stations[kv[0]].county, kv[0]))
    stations = [
        Result(
            level="station",
            name=f"{now.stations[k].site} ({k})",
            county=now.stations[k].county,
            device_id=k,
            now=a,
            before=before.unit("station", k),
            three_year=_three_year("station", k, years) if years else None,
        )
        for k, a in by_place
    ]
    city = None
    if now.city is not None:
        city = Result(
            level="city",
            name="全市 city",
            county="",
            device_id="",
            now=now.city,
            before=before.city,
            stations=sum(st.national for st in now.stations.values()),
            three_year=_three_year("city", "", years) if years else None,
        )
    return AirAssessment(
        period=period,
        kind=kind,
        start_ms=day_window(period.first, ctx.tz).start_ms,
        city=city,
        counties=counties,
        stations=stations,
        note_lines=_notes(ctx, now, before, [city, *counties, *stations]),
    )


def _notes(
    ctx: SectionContext, now: Assessed, before: Assessed, units: Sequence[Result | None]
) -> list[str]:
    period = now.period
    notes = []
    if day_window(period.last, ctx.tz).end_ms > int(ctx.now.timestamp() * 1000):
        notes.append(f"{period.label} has not closed yet: the statistics cover the days so far.")
    if not now.stations:
        notes.append(f"No air_quality_daily point in {period.label}: nothing to assess.")
    elif now.city is None:
        notes.append("No national-assessment station (assessment = national): no city figure.")
    if not before.stations:
        notes.append(f"No air data for {before.period.label}: no change against last year.")
    silent = sorted(
        d.id
        for d in ctx.registry.of_kind(air.KIND.name)
        if d.id not in now.stations and (ctx.county is None or d.county == ctx.county)
    )
    if silent:
        notes.append("无数据 Registered stations without a daily point: " + ", ".join(silent))
    excluded = sorted({(k, d) for k, st in now.stations.items() for d in st.excluded})
    if excluded:
        notes.append(
            "例外事件 Exceptional-event days left out: "
            + ", ".join(f"{k} {d.isoformat()}" for k, d in excluded)
        )
    thin = [
        f"{u.name} ({', '.join(p for p, ok in u.now.enough_data.items() if not ok)})"
        for u in units
        if u is not None and not all(u.now.enough_data.values())
    ]
    if thin:
        notes.append(
            "数据不足 Too few valid days for a valid statistic (HJ 663; shown, not compliant): "
            + "; ".join(thin)
        )
    unranked = [u.name for u in units if u is not None and u.level == "county" and u.rank is None]
    if unranked:
        notes.append(
            "Counties without a composite index (a statistic missing): " + ", ".join(unranked)
        )
    return notes
