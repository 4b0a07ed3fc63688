"""Water-section statistics of a period (环办监测函〔2020〕82号) with automatic and lab data.

The report's ``water_assessment`` section (:func:`build`): per assessed section the class of
every month of the period and of the period, from the 21 assessed items of GB 3838-2002
Table 1 (``ASSESSED_ITEMS_2020``); the 优Ⅲ比例 of the period per county and for the city.

- **Which data.** 环办监测函〔2020〕82号 takes pH, DO, CODMn, NH3-N, TP and TN from the automatic
  stations when there is automatic data (:attr:`WaterRules.auto_items`): their monthly value is
  the mean of the month's valid daily values (``water_quality_daily``), needing
  :attr:`WaterRules.auto_min_day_share` of the month's closed days (envgrid's number, not
  confirmed from the text: configurable). Too few days and a lab result for the item: the lab
  value is used; too few days and no lab result: the automatic mean is used and the month is
  ``insufficient``. The other items come from the lab (``water_lab``, ``envgrid lab import``),
  the month's value being the mean of its results; with no lab result an automatic station's
  value is used when it measures the item.
- **Below the detection limit** a lab result counts as half the limit (82号, 第七条).
- **The period's value** of an item is the mean of its monthly values (``period_value =
  "months"``) or of every daily and lab value of the period (``"samples"``); the text was not
  available to confirm which, so it is configurable.
- **Rounding** before classing is not applied unless :attr:`WaterRules.decimals` names an
  item's decimals (GB/T 8170 round-half-even); the rounding rule of 82号 was not confirmed.
- **Class** of a month or period: single-factor, the worst class of the items with a value
  (GB 3838-2002; a lake section uses the lake TP row). 优Ⅲ比例 = sections of class I–III with
  enough data ÷ assessed sections (sections without data count in the denominator).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Literal

from devices import water
from devices.gb3838 import ASSESSED_ITEMS_2020, SectionType, section_class
from devices.lineproto import FieldValue, encode_line
from ingest.influxql import Row, finite, quote_ident, quote_string, time_literal
from report.lab import LAB_MEASUREMENT
from report.sections import Cell, Period, SectionContext, Table
from rollups.windows import WATER_DAILY, day_window, local_date

KEY = "water_assessment"
_CHUNK = 10_000
MEASUREMENT = "water_assessment"
_ROMAN = {1: "I", 2: "II", 3: "III", 4: "IV", 5: "V", 6: "劣V"}
# Automatic stations measure these of the assessed items (devices/water.py WaterReading).
_AUTO_MEASURED = tuple(i for i in ASSESSED_ITEMS_2020 if i in water.WaterReading.MEASURED)


@dataclass(frozen=True, slots=True)
class WaterRules:
    """How the statistics are made; ``SectionContext.extra["water_rules"]`` may override them."""

    assessments: tuple[str, ...] = ("national", "provincial")
    # 环办监测函〔2020〕82号: pH, DO, CODMn, NH3-N, TP, TN from automatic data when there is any.
    auto_items: tuple[str, ...] = (
        "ph",
        "do_mg_l",
        "codmn_mg_l",
        "nh3n_mg_l",
        "tp_mg_l",
        "tn_mg_l",
    )
    # Share of a month's closed days with a valid automatic daily value for the automatic
    # monthly mean to stand: envgrid's choice (plan.toml's water_min_day_share), not 82号's.
    auto_min_day_share: float = 0.75
    period_value: Literal["months", "samples"] = "months"
    # 82号 第七条: a result below the detection limit counts as half the limit.
    below_dl_factor: float = 0.5
    decimals: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, value: object) -> WaterRules:
        """The rules from ``ctx.extra`` (a WaterRules, a mapping of its fields, or None)."""
        if isinstance(value, WaterRules):
            return value
        if isinstance(value, Mapping):
            return cls(**value)
        return cls()


@dataclass(frozen=True, slots=True)
class ItemValue:
    """An item's value for a month or period: from ``auto`` or ``lab`` data, ``n`` values."""

    value: float
    source: str
    n: int
    below_dl: int = 0  # lab results below the detection limit among the n


@dataclass(slots=True)
class Span:
    """A month (or the whole period) of one section: values, class, status."""

    label: str
    first: date
    last: date
    expected_days: int
    values: dict[str, ItemValue] = field(default_factory=dict)
    water_class: int | None = None
    limiting: list[str] = field(default_factory=list)
    status: str = "no_data"  # ok | insufficient | no_data
    short: list[str] = field(default_factory=list)  # automatic items with too few days

    @property
    def meets_iii(self) -> bool:
        """Class I–III with enough data."""
        return self.status == "ok" and self.water_class is not None and self.water_class <= 3

    def to_json(self) -> dict[str, Any]:
        """Plain JSON."""
        return {
            "label": self.label,
            "class": self.water_class,
            "roman": _ROMAN.get(self.water_class or 0, ""),
            "meets_iii": self.meets_iii,
            "limiting_items": self.limiting,
            "status": self.status,
            "values": {
                k: {
                    "value": round(v.value, 6),
                    "source": v.source,
                    "n": v.n,
                    "below_dl": v.below_dl,
                }
                for k, v in self.values.items()
            },
        }


@dataclass(slots=True)
class SectionData:
    """One assessed section's inputs: daily automatic means and lab results by item."""

    site: str
    county: str
    section_type: SectionType
    assessment: str
    auto: dict[date, dict[str, float]] = field(default_factory=dict)
    lab: dict[str, list[tuple[date, float, bool]]] = field(default_factory=dict)


@dataclass(slots=True)
class SectionStats:
    """A section's months and period."""

    site: str
    county: str
    section_type: str
    assessment: str
    months: list[Span]
    period: Span


@dataclass(frozen=True, slots=True)
class Share:
    """优Ⅲ比例 of a group of sections."""

    name: str
    sections: int
    good: int
    counted: int  # sections with enough data

    @property
    def share_pct(self) -> float | None:
        """Sections of class I–III ÷ assessed sections, in percent."""
        return self.good / self.sections * 100.0 if self.sections else None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON."""
        pct = self.share_pct
        return {
            "name": self.name,
            "sections": self.sections,
            "sections_iii": self.good,
            "sections_with_data": self.counted,
            "share_iii": None if pct is None else round(pct, 2),
        }


# ------------------------------------------------------------------------------ pure part


def months_of(period: Period) -> list[tuple[str, date, date]]:
    """The calendar months of the period, clipped to it: (``YYYY-MM``, first, last)."""
    out = []
    d = period.first
    while d <= period.last:
        nxt = date(d.year + (d.month == 12), d.month % 12 + 1, 1)
        out.append((f"{d.year}-{d.month:02d}", d, min(period.last, nxt - timedelta(days=1))))
        d = nxt
    return out


def _round(item: str, value: float, rules: WaterRules) -> float:
    places = rules.decimals.get(item)
    if places is None:
        return value
    q = Decimal(1).scaleb(-places)
    return float(Decimal(repr(value)).quantize(q, rounding=ROUND_HALF_EVEN))


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


def _choose(
    item: str,
    auto: Sequence[float],
    lab: Sequence[tuple[float, bool]],
    min_days: int,
    rules: WaterRules,
) -> tuple[ItemValue | None, bool]:
    """The item's value from automatic or lab data, and whether it stands on too few days."""
    auto_value = ItemValue(_mean(auto), "auto", len(auto)) if auto else None
    lab_value = (
        ItemValue(_mean([v for v, _ in lab]), "lab", len(lab), sum(1 for _, b in lab if b))
        if lab
        else None
    )
    if item in rules.auto_items:
        if auto_value is not None and (len(auto) >= min_days or lab_value is None):
            return auto_value, len(auto) < min_days
        return lab_value, False
    if lab_value is not None:
        return lab_value, False
    return auto_value, False


def _classify(span: Span, s: SectionData, rules: WaterRules) -> None:
    rounded = {k: _round(k, v.value, rules) for k, v in span.values.items()}
    result = section_class(rounded, s.section_type, ASSESSED_ITEMS_2020)
    if result is not None:
        span.water_class = result.water_class
        span.limiting = list(result.limiting_items)


def month_span(
    s: SectionData, label: str, days: Sequence[date], rules: WaterRules, first: date, last: date
) -> Span:
    """One month of a section: each item's value, the class, and whether there was enough data.

    ``days`` are the month's closed days in the period (the expected automatic days)."""
    span = Span(label, first, last, len(days))
    day_set = set(days)
    min_days = max(1, math.ceil(rules.auto_min_day_share * len(days)))
    for item in ASSESSED_ITEMS_2020:
        auto = [s.auto[d][item] for d in days if item in s.auto.get(d, {})]
        lab = [(_stat(v, b, rules), b) for d, v, b in s.lab.get(item, []) if d in day_set]
        value, short = _choose(item, auto, lab, min_days, rules)
        if value is not None:
            span.values[item] = value
        if short:
            span.short.append(item)
    _classify(span, s, rules)
    span.status = "no_data" if not span.values else ("insufficient" if span.short else "ok")
    return span


def _stat(value: float, below_dl: bool, rules: WaterRules) -> float:
    # Stored lab points hold the detection limit as the value of a below-DL result (see _lab).
    return value * rules.below_dl_factor if below_dl else value


def period_span(
    s: SectionData, period: Period, months: Sequence[Span], days: Sequence[date], rules: WaterRules
) -> Span:
    """The period of a section: its items' values per ``rules.period_value``, the class."""
    if len(months) == 1:
        m = months[0]
        return Span(
            period.label, period.first, period.last, m.expected_days, dict(m.values),
            m.water_class, list(m.limiting), m.status, list(m.short),
        )  # fmt: skip
    if rules.period_value == "samples":
        span = month_span(s, period.label, days, rules, period.first, period.last)
        if any(m.status != "ok" for m in months) and span.status == "ok":
            span.status = "insufficient"
        return span
    span = Span(period.label, period.first, period.last, len(days))
    for item in ASSESSED_ITEMS_2020:
        vals = [m.values[item] for m in months if item in m.values]
        if vals:
            sources = sorted({v.source for v in vals})
            span.values[item] = ItemValue(
                _mean([v.value for v in vals]),
                "+".join(sources),
                len(vals),
                sum(v.below_dl for v in vals),
            )
    _classify(span, s, rules)
    if not span.values:
        span.status = "no_data"
    else:
        # A month without enough data leaves the period short: the months' mean would hide it.
        span.status = "ok" if all(m.status == "ok" for m in months) else "insufficient"
    return span


def section_stats(
    s: SectionData, period: Period, closed: Sequence[date], rules: WaterRules
) -> SectionStats:
    """A section's months (those with closed days) and its period."""
    months = []
    for label, first, last in months_of(period):
        days = [d for d in closed if first <= d <= last]
        if days:
            months.append(month_span(s, label, days, rules, first, last))
    if not months:
        empty = Span(period.label, period.first, period.last, 0)
        return SectionStats(s.site, s.county, s.section_type, s.assessment, [], empty)
    whole = period_span(s, period, months, closed, rules)
    return SectionStats(s.site, s.county, s.section_type, s.assessment, months, whole)


def shares(stats: Sequence[SectionStats], city: str = "city") -> tuple[Share, list[Share]]:
    """优Ⅲ比例 of the city and of each county (counties in name order)."""

    def share(name: str, group: Sequence[SectionStats]) -> Share:
        return Share(
            name,
            len(group),
            sum(1 for g in group if g.period.meets_iii),
            sum(1 for g in group if g.period.status == "ok"),
        )

    counties: dict[str, list[SectionStats]] = {}
    for st in stats:
        counties.setdefault(st.county, []).append(st)
    return share(city, stats), [share(c, g) for c, g in sorted(counties.items())]


# ---------------------------------------------------------------------------- the section


@dataclass(slots=True)
class WaterAssessment:
    """The ``water_assessment`` section of the period report."""

    period: Period
    rules: WaterRules
    sections: list[SectionStats]
    city: Share
    counties: list[Share]
    start_ms: int
    month_starts: dict[str, int]
    _notes: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        """Its key in the JSON report."""
        return KEY

    def to_json(self) -> dict[str, Any]:
        """Plain JSON: city, counties, sections (each with its months), the rules used."""
        return {
            "period": self.period.label,
            "city": self.city.to_json(),
            "counties": [c.to_json() for c in self.counties],
            "sections": [
                {
                    "site": s.site,
                    "county": s.county,
                    "section_type": s.section_type,
                    "assessment": s.assessment,
                    **s.period.to_json(),
                    "months": [m.to_json() for m in s.months],
                }
                for s in self.sections
            ],
            "rules": {
                "auto_items": list(self.rules.auto_items),
                "auto_min_day_share": self.rules.auto_min_day_share,
                "period_value": self.rules.period_value,
                "below_dl_factor": self.rules.below_dl_factor,
                "assessments": list(self.rules.assessments),
            },
        }

    def tables(self) -> Sequence[Table]:
        """Per-section classes by month and for the period; 优Ⅲ比例 of the city and counties."""
        labels = [label for label, _, _ in months_of(self.period)]
        multi = len(labels) > 1
        columns = ["断面 Section", "县区 County", "类型 Type"]
        if multi:
            columns += labels
        columns += ["类别 Class", "定类项目 Limiting items", "数据 Data"]
        rows: list[list[Cell]] = []
        for s in self.sections:
            row: list[Cell] = [s.site, s.county, s.section_type]
            if multi:
                by = {m.label: m for m in s.months}
                row += [_roman(by[label]) if label in by else "" for label in labels]
            sources = sorted({v.source for v in s.period.values.values()})
            row += [_roman(s.period), ",".join(s.period.limiting), _data(s.period, sources)]
            rows.append(row)
        summary: list[list[Cell]] = [
            ["全市 City", self.city.name, self.city.sections, self.city.good, _pct(self.city)]
        ]
        summary += [["县区 County", c.name, c.sections, c.good, _pct(c)] for c in self.counties]
        return [
            Table(f"断面水质类别 Section classes ({self.period.label})", columns, rows),
            Table(
                "优Ⅲ比例 Sections at Class III or better",
                ["级别 Level", "名称 Name", "断面 Sections", "Ⅰ–Ⅲ类 Class I–III", "优Ⅲ比例 %"],
                summary,
            ),
        ]

    def points(self) -> Sequence[str]:
        """Line protocol for ``water_assessment``: sections (period and, for periods longer than
        a month, each month), counties and the city, stamped with the period (month) start."""
        out: list[str] = []
        label = self.period.label
        for s in self.sections:
            spans = [(label, s.period, self.start_ms)]
            if len(s.months) > 1:
                spans += [(m.label, m, self.month_starts[m.label]) for m in s.months]
            for lab, span, ts in spans:
                tags = {
                    "level": "section",
                    "site": s.site,
                    "county": s.county,
                    "period": lab,
                    "section_type": s.section_type,
                }
                fields: dict[str, FieldValue] = {
                    "meets_iii": span.meets_iii,
                    "status": span.status,
                    "limiting_items": ",".join(span.limiting),
                }
                if span.water_class is not None:
                    fields["class"] = span.water_class
                fields.update({k: v.value for k, v in span.values.items()})
                out.append(_line(tags, fields, ts))
        for level, group in [("city", [self.city]), ("county", self.counties)]:
            for g in group:
                tags = {"level": level, "period": label}
                if level == "county":
                    tags["county"] = g.name
                fields = {"sections": g.sections, "sections_iii": g.good, "with_data": g.counted}
                if (pct := g.share_pct) is not None:
                    fields["share_iii"] = pct
                out.append(_line(tags, fields, self.start_ms))
        return out

    def notes(self) -> Sequence[str]:
        """Sections and months with too little data, and why."""
        return list(self._notes)


def _line(tags: Mapping[str, str], fields: Mapping[str, FieldValue], ts: int) -> str:
    line = encode_line(MEASUREMENT, tags.items(), fields.items(), ts)
    assert line is not None  # meets_iii / sections are always storable
    return line


def _roman(span: Span) -> str:
    text = _ROMAN.get(span.water_class or 0, "—")
    return text if span.status == "ok" else f"{text}*" if span.water_class else "—"


def _data(span: Span, sources: Sequence[str]) -> str:
    names = {"ok": "", "insufficient": "数据不足 insufficient ", "no_data": "无数据 no data"}
    return (names[span.status] + "+".join(sources)).strip()


def _pct(share: Share) -> Cell:
    pct = share.share_pct
    return None if pct is None else round(pct, 1)


def section_notes(stats: Sequence[SectionStats]) -> list[str]:
    """One sentence per section or month that could not be counted fully."""
    out = []
    for s in stats:
        if s.period.status == "no_data":
            out.append(
                f"水质 {s.site}: no automatic or lab data in {s.period.label}; counted among "
                "the assessed sections, not as Class III or better"
            )
            continue
        for m in s.months:
            if m.status == "no_data":
                out.append(f"水质 {s.site} {m.label}: no data in the month")
            elif m.short:
                n = {i: m.values[i].n for i in m.short}
                items = ", ".join(f"{i} {k}/{m.expected_days} days" for i, k in n.items())
                out.append(
                    f"水质 {s.site} {m.label}: too few days of automatic data ({items}) and no "
                    "lab result for them: the month is marked insufficient"
                )
    return out


# ----------------------------------------------------------------------------------- I/O


async def build(ctx: SectionContext) -> WaterAssessment:
    """The water assessment of ``ctx.period`` from InfluxDB and the device registry."""
    rules = WaterRules.of(ctx.extra.get("water_rules"))
    tz = ctx.tz
    period = ctx.period
    start_ms = day_window(period.first, tz).start_ms
    now_ms = int(ctx.now.timestamp() * 1000)
    end_ms = min(day_window(period.last, tz).end_ms, now_ms)
    closed = [d for d in period.dates() if day_window(d, tz).end_ms <= now_ms]
    sections: dict[str, SectionData] = {}
    for d in ctx.registry.of_kind(water.KIND.name):
        f = water.facts(d)
        if f.assessment in rules.assessments and (ctx.county is None or d.county == ctx.county):
            sections.setdefault(d.site, SectionData(d.site, d.county, f.section, f.assessment))
    if sections and end_ms > start_ms:
        span = f"time >= {time_literal(start_ms)} AND time < {time_literal(end_ms)}"
        if ctx.county:
            span += f" AND {quote_ident('county')} = {quote_string(ctx.county)}"
        await _auto(ctx, span, sections, set(closed))
        await _lab(ctx, span, sections)
    stats = [
        section_stats(s, period, closed, rules)
        for s in sorted(sections.values(), key=lambda s: (s.county, s.site))
    ]
    city, counties = shares(stats, ctx.county or "city")
    notes = section_notes(stats)
    if not closed:
        notes.insert(0, f"水质: no day of {period.label} has closed yet")
    month_starts = {label: day_window(first, tz).start_ms for label, first, _ in months_of(period)}
    return WaterAssessment(period, rules, stats, city, counties, start_ms, month_starts, notes)


async def _rows(ctx: SectionContext, q: str) -> list[Row]:
    # Streamed in chunks on 1.x: a year of daily values can pass InfluxDB's max-row-limit.
    chunk = _CHUNK if ctx.settings.influx.api == "v1" else None
    return await ctx.client.query(q, chunk_size=chunk)


async def _auto(
    ctx: SectionContext, span: str, sections: dict[str, SectionData], closed: set[date]
) -> None:
    items = ", ".join(quote_ident(i) for i in _AUTO_MEASURED)
    q = (
        f'SELECT {items}, "valid" FROM {quote_ident(WATER_DAILY)} WHERE {span} '
        'GROUP BY "site", "device_id"'
    )
    per_day: dict[tuple[str, date], list[dict[str, float]]] = {}
    for r in await _rows(ctx, q):
        site = str(r.get("site") or "")
        if site not in sections or r.get("valid") is not True:
            continue
        day = local_date(int(r["time"] or 0), ctx.tz)
        if day not in closed:
            continue
        values = {i: v for i in _AUTO_MEASURED if (v := finite(r.get(i))) is not None}
        if values:
            per_day.setdefault((site, day), []).append(values)
    for (site, day), stations in per_day.items():
        # A section of several stations: the mean of its stations' daily means per item.
        sections[site].auto[day] = {
            i: _mean(vals)
            for i in _AUTO_MEASURED
            if (vals := [st[i] for st in stations if i in st])
        }


async def _lab(ctx: SectionContext, span: str, sections: dict[str, SectionData]) -> None:
    q = (
        f'SELECT "value", "dl", "below_dl" FROM {quote_ident(LAB_MEASUREMENT)} '
        f'WHERE {span} GROUP BY "site", "item"'
    )
    for r in await _rows(ctx, q):
        site, item = str(r.get("site") or ""), str(r.get("item") or "")
        if site not in sections or item not in ASSESSED_ITEMS_2020:
            continue
        below = r.get("below_dl") is True
        value = finite(r.get("dl")) if below else finite(r.get("value"))
        if value is None:
            continue
        day = local_date(int(r["time"] or 0), ctx.tz)
        # Below the limit, the limit itself is kept: _stat applies the rules' factor.
        sections[site].lab.setdefault(item, []).append((day, value, below))
