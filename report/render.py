"""The plan progress report as a terminal table, JSON, CSV or one self-contained HTML file.

Every format shows the same figures from one :class:`report.figures.PlanReport`, and a period
report (:class:`report.period.PeriodReport`) adds its statistics sections, each rendered the same
generic way from its ``key``, ``to_json()``, ``tables()`` and ``notes()``. The HTML file
needs nothing else: styles inline, charts drawn here as inline SVG, no scripts, no network; it
prints on A4 (one section per page where it fits).
"""

from __future__ import annotations

import csv
import dataclasses
import html
import io
import json
import math
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from rich.console import Console
from rich.table import Table

from report import plan as P
from report.figures import PlanReport
from report.period import PeriodReport
from report.sections import Cell, Section

FORMATS = ("table", "json", "csv", "html")
TEMPLATE = Path(__file__).resolve().parent / "template.html"

ITEM_NAMES: dict[str, str] = {
    "ph": "pH",
    "do_mg_l": "溶解氧 DO",
    "codmn_mg_l": "高锰酸盐指数 CODMn",
    "cod_mg_l": "化学需氧量 COD",
    "bod5_mg_l": "五日生化需氧量 BOD5",
    "nh3n_mg_l": "氨氮 NH3-N",
    "tp_mg_l": "总磷 TP",
}
POLLUTANT_NAMES: dict[str, str] = {
    "pm25_ug_m3": "PM2.5",
    "pm10_ug_m3": "PM10",
    "so2_ug_m3": "SO2",
    "no2_ug_m3": "NO2",
    "co_mg_m3": "CO",
    "o3_ug_m3": "O3 (1 h)",
    "o3_8h_ug_m3": "O3 (8 h)",
}
STATUS_NAMES: dict[str, str] = {
    "ok": "正常 ok",
    "insufficient": "数据不足 too little data",
    "no_data": "无数据 no data",
}
ROMAN = ("I", "II", "III", "IV", "V", "劣V")
# GB 3838 bulletin colours (as the dashboards): I–II blue, III green, IV yellow, V orange, 劣V red.
WATER_COLOURS = ("#1f60c4", "#5794f2", "#37872d", "#e0b400", "#ff780a", "#c4162a")
# HJ 633-2012 Table 4 category colours.
AQI_COLOURS = ("#00e400", "#ffff00", "#ff7e00", "#ff0000", "#99004c", "#7e0023")
GREY, LIGHT, GREEN, RED, BLUE = "#9e9e9e", "#e6e6e6", "#2e7d32", "#c62828", "#1f60c4"


# --------------------------------------------------------------------------- formatting


def fmt_value(value: float | None, unit: str) -> str:
    """A figure's value with its unit: ``83.33 %``, ``180,755.0 kWh``, ``5 counties``."""
    if value is None:
        return "—"
    if unit == "%":
        return f"{value:.2f} %"
    if unit in ("counties", "sessions"):
        return f"{value:,.0f} {unit}"
    if unit == "t":
        return f"{value:,.2f} t"
    return f"{value:,.1f} {unit}"


def fmt_target(f: P.Figure) -> str:
    """``≥ 81.8 %`` or an em dash when the plan sets no target for the figure."""
    if f.threshold is None or f.direction is None:
        return "—"
    sign = "≥" if f.direction == ">=" else "≤"
    return f"{sign} {fmt_value(f.threshold, f.spec.unit)}"


def fmt_met(f: P.Figure) -> str:
    """达标 met / 未达标 not met / — (no target, or no value)."""
    if f.met is None:
        return "—" if f.threshold is None else "无数据 no data"
    return "达标 met" if f.met else "未达标 not met"


def fmt_coverage(c: P.Coverage) -> str:
    """``28/30 sections; no data: A; too little data: B``."""
    parts = [f"{c.covered}/{c.expected} {c.unit}"]
    if c.missing:
        parts.append("no data: " + ", ".join(_clip(c.missing)))
    if c.insufficient:
        parts.append("too little data: " + ", ".join(_clip(c.insufficient)))
    return "; ".join(parts)


def _clip(names: Sequence[str], n: int = 12) -> list[str]:
    return [*names[:n], f"… +{len(names) - n}"] if len(names) > n else list(names)


def _num(v: float | None, digits: int = 1) -> str:
    return "—" if v is None else f"{v:,.{digits}f}"


def items_text(items: Sequence[str]) -> str:
    """Limiting items by name."""
    return ", ".join(ITEM_NAMES.get(i, i) for i in items) or "—"


# ---------------------------------------------------------------------------------- JSON


def to_dict(report: PlanReport) -> dict[str, Any]:
    """The report as plain JSON-able data (dates as ISO strings)."""
    data: dict[str, Any] = _plain(dataclasses.asdict(report))
    for fig, obj in zip(report.figures, data["figures"], strict=True):
        obj.update(
            label_zh=fig.spec.label_zh,
            label_en=fig.spec.label_en,
            unit=fig.spec.unit,
            area=fig.spec.area,
        )
        obj["coverage"]["share"] = fig.coverage.share
    for c, obj in zip(report.connectors, data["connectors"], strict=True):
        obj.update(availability_pct=c.availability_pct, utilisation_pct=c.utilisation_pct)
    data["air"]["categories"] = {str(k): v for k, v in report.air.categories.items()}
    return data


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


Report = PlanReport | PeriodReport


def _parts(report: Report) -> tuple[PlanReport, list[Section]]:
    if isinstance(report, PeriodReport):
        return report.plan, list(report.sections)
    return report, []


def to_json_dict(report: Report) -> dict[str, Any]:
    """The report as JSON data: the plan figures, then (a period report) ``period`` and one
    top-level key per statistics section."""
    plan, sections = _parts(report)
    data = to_dict(plan)
    if isinstance(report, PeriodReport):
        p = report.period
        data["period"] = {
            "first": p.first.isoformat(),
            "last": p.last.isoformat(),
            "label": p.label,
            "kind": report.kind,
        }
    for s in sections:
        if s.key in data:
            raise ValueError(f"section key {s.key!r} is already a key of the report")
        data[s.key] = _plain(s.to_json())
    return data


def render_json(report: Report) -> str:
    """The report as indented UTF-8 JSON."""
    return json.dumps(to_json_dict(report), ensure_ascii=False, indent=2) + "\n"


def cell_text(v: Cell) -> str:
    """A section table's cell as text: ``—`` for no value."""
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:g}" if math.isfinite(v) else "—"
    return str(v)


# ----------------------------------------------------------------------------------- CSV

CSV_COLUMNS = (
    "formula",
    "label_zh",
    "label_en",
    "value",
    "unit",
    "target_id",
    "direction",
    "threshold",
    "met",
    "period",
    "covered",
    "expected",
    "coverage_unit",
    "no_data",
    "too_little_data",
    "note",
)


def render_csv(report: Report) -> str:
    """One row per figure: value, target, met, coverage (named units joined by ``;``); a period
    report then has each section table after a blank line: a header ``section, table,
    <columns>`` and rows prefixed by the section's key and the table's title."""
    plan, sections = _parts(report)
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    _figure_rows(plan, w)
    for sec in sections:
        for t in sec.tables():
            w.writerow([])
            w.writerow(["section", "table", *t.columns])
            for r in t.rows:
                w.writerow([sec.key, t.title, *("" if v is None else v for v in r)])
        for n in sec.notes():
            w.writerow([])
            w.writerow(["section", "note"])
            w.writerow([sec.key, n])
    return out.getvalue()


def _figure_rows(report: PlanReport, w: Any) -> None:
    for f in report.figures:
        w.writerow(
            [
                f.formula,
                f.spec.label_zh,
                f.spec.label_en,
                "" if f.value is None else repr(f.value),
                f.spec.unit,
                f.target_id or "",
                f.direction or "",
                "" if f.threshold is None else f.threshold,
                "" if f.met is None else str(f.met).lower(),
                f.period or "",
                f.coverage.covered,
                f.coverage.expected,
                f.coverage.unit,
                ";".join(f.coverage.missing),
                ";".join(f.coverage.insufficient),
                f.note,
            ]
        )


# --------------------------------------------------------------------------------- table


_TEXT_COLUMNS = frozenset({"港口 Port", "泊位 Berth", "Meter", "Site", "Charger", "Status"})


def _title(report: PlanReport) -> str:
    scope = f" · {report.county}" if report.county else ""
    return f"{report.plan_zh} / {report.plan_en}{scope}\n{report.start} – {report.end}"


def render_table(report: Report, console: Console) -> None:
    """The report as terminal tables: figures first, then the evidence behind each, then the
    statistics sections of a period report."""
    plan, sections = _parts(report)
    _plan_table(plan, console)
    if isinstance(report, PeriodReport):
        console.print(
            f"[bold]统计期 Period {report.period.label}[/bold] ({report.kind}: "
            f"{report.period.first} – {report.period.last})"
        )
    for sec in sections:
        console.print(f"[bold]{section_title(sec)}[/bold]")
        for t in sec.tables():
            rt = Table(title=t.title)
            for col in t.columns:
                rt.add_column(col, overflow="fold")
            for r in t.rows:
                rt.add_row(*(cell_text(v) for v in r))
            console.print(rt)
        for n in sec.notes():
            console.print(f"note: {n}")


def section_title(sec: Section) -> str:
    """A section's heading: its ``title`` attribute when it has one (not part of the
    interface: a section without it is headed by its key)."""
    title = getattr(sec, "title", None)
    return title if isinstance(title, str) and title else sec.key


def _plan_table(report: PlanReport, console: Console) -> None:
    console.print(f"[bold]{_title(report)}[/bold]")
    console.print(f"generated {report.generated_at} ({report.timezone})")
    t = Table(title="指标 Figures", show_lines=False)
    for col in ("指标 Figure", "值 Value", "目标 Target", "达标 Met", "数据覆盖 Coverage"):
        t.add_column(col, overflow="fold")
    for f in report.figures:
        label = f"{f.spec.label_zh} {f.spec.label_en}"
        value = fmt_value(f.value, f.spec.unit) + (f" ({f.note})" if f.note else "")
        t.add_row(label, value, fmt_target(f), fmt_met(f), fmt_coverage(f.coverage))
    console.print(t)

    t = Table(title="断面 Sections (优Ⅲ比例)")
    for col in ("断面 Section", "县区 County", "类型", "考核", "类别 Class", "定类因子 Limiting"):
        t.add_column(col, overflow="fold")
    t.add_column("天数 Days", justify="right")
    t.add_column("状态 Status")
    for s in report.sections:
        t.add_row(
            s.site,
            s.county,
            s.section_type,
            s.assessment,
            s.roman or "—",
            items_text(s.limiting_items),
            f"{s.days_with_data}/{s.days_expected}",
            STATUS_NAMES[s.status],
        )
    console.print(t)

    a = report.air
    t = Table(title="空气质量 Air quality days (优良天数比率)")
    t.add_column("类别 Category")
    t.add_column("天数 Days", justify="right")
    for c in range(1, 7):
        t.add_row(f"{P.CATEGORY_ZH[c - 1]} {P.CATEGORY_EN[c - 1]}", str(a.categories.get(c, 0)))
    missing = [d for d in report.air_days if d.status == "missing"]
    invalid = [d for d in report.air_days if d.status == "invalid"]
    t.add_row("无数据 no data", str(len(missing)))
    t.add_row("无效 invalid (too few hours)", str(len(invalid)))
    console.print(t)
    primary = ", ".join(f"{POLLUTANT_NAMES.get(p, p)} {n}" for p, n in a.primary.items())
    console.print(
        f"首要污染物（非优良天） Primary pollutants of the non-good days: {primary or '—'}"
    )
    editions = ", ".join(f"HJ 633-{e}: {n}" for e, n in sorted(a.editions.items()))
    console.print(f"AQI edition by day: {editions or '—'}")
    if missing or invalid:
        console.print("无数据 no data: " + ", ".join(d.day.isoformat() for d in missing))
        console.print("无效 invalid: " + ", ".join(d.day.isoformat() for d in invalid))
        for d in invalid:
            if d.reason:
                console.print(f"  {d.day.isoformat()}: {d.reason}")
    if report.air_left_out:
        console.print("审核/质控剔除 Hours left out by review or QC:")
        for device, day, text in report.air_left_out:
            console.print(f"  {device} {day}: {text}")

    t = Table(title="屋顶光伏 Rooftop PV by county")
    for col in (
        "县区 County",
        "试点 Pilot",
        "逆变器 Inverters",
        "kWp",
        "kWh",
        "等效小时 h",
        "CF %",
    ):
        t.add_column(col, justify="right" if col not in ("县区 County", "试点 Pilot") else "left")
    for cp in report.counties:
        t.add_row(
            cp.county,
            "yes" if cp.pilot else "no",
            f"{cp.counted}/{cp.inverters}",
            _num(cp.kwp),
            _num(cp.kwh),
            _num(cp.equivalent_hours),
            _num(cp.capacity_factor_pct, 2),
        )
    console.print(t)
    t = Table(title="发电量最低的逆变器 Lowest-yield inverters (maintenance candidates)")
    for col in ("Inverter", "Site", "County", "kWp", "kWh", "h", "CF %"):
        t.add_column(col, justify="right" if col in ("kWp", "kWh", "h", "CF %") else "left")
    for r in report.lowest:
        t.add_row(
            r.device_id,
            r.site,
            r.county,
            _num(r.capacity_kw),
            _num(r.kwh),
            _num(r.equivalent_hours),
            _num(r.capacity_factor_pct, 2),
        )
    console.print(t)
    _pv_performance_table(report, console)

    t = Table(title="岸电 Shore power by berth")
    for col in (
        "港口 Port",
        "泊位 Berth",
        "Meter",
        "Sessions",
        "Conn. h",
        "kWh",
        "Calls",
        "Obliged",
        "Used",
        "Berthing h",
        "Status",
    ):
        t.add_column(col, justify="left" if col in _TEXT_COLUMNS else "right")
    for b in report.berths:
        t.add_row(
            b.port,
            b.berth,
            b.device_id,
            str(b.sessions),
            _num(b.connection_hours),
            _num(b.kwh),
            str(b.calls),
            str(b.obliged_calls),
            str(b.obliged_using),
            _num(b.berthing_hours),
            STATUS_NAMES[b.status],
        )
    console.print(t)

    t = Table(title="充电设施 EV chargers by connector")
    for col in ("Site", "Charger", "kWh", "Sessions", "Avail. %", "Util. %", "Data h", "Status"):
        t.add_column(col, justify="left" if col in _TEXT_COLUMNS else "right")
    for cr in report.connectors:
        t.add_row(
            cr.site,
            f"{cr.device_id}#{cr.connector}" if cr.connector else cr.device_id,
            _num(cr.kwh),
            str(cr.sessions),
            _num(cr.availability_pct, 2),
            _num(cr.utilisation_pct, 2),
            _num(cr.observed_hours),
            STATUS_NAMES[cr.status],
        )
    console.print(t)
    for n in report.notes:
        console.print(f"note: {n}")


# ---------------------------------------------------------------------------------- SVG


def _pv_performance_table(report: PlanReport, console: Console) -> None:
    """IEC 61724-1 figures of the PV section (docs/pv.md), from pv_daily."""
    p = report.pv_performance
    if p is None:
        return
    pr = f"{p.fleet_pr * 100:.1f} %" if p.fleet_pr is not None else "—"
    console.print(
        f"IEC 61724-1 fleet PR 系统效率: {pr} ({p.inverter_days} inverter-days); energy lost "
        f"损失电量: faults {_num(p.fault_kwh)} kWh ({_num(p.fault_h)} h), curtailment "
        f"{_num(p.curtailed_kwh)} kWh ({_num(p.curtailed_h)} h)"
    )
    t = Table(title="试点县等效利用小时 Specific yield per pilot county")
    for col in ("县区 County", "kWp", "kWh", "kWh/kWp"):
        t.add_column(col, justify="left" if col == "县区 County" else "right")
    for c in p.pilots:
        t.add_row(c.county, _num(c.kwp), _num(c.kwh), _num(c.kwh_per_kwp, 2))
    console.print(t)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def svg_targets(figures: Sequence[P.Figure]) -> str:
    """Each targeted figure as a bar against its threshold (green met, red not met)."""
    rows = [f for f in figures if f.threshold is not None]
    width, label_w, bar_w, row_h = 820, 280, 320, 34
    height = 20 + row_h * max(1, len(rows))
    out = [_svg_open(width, height, "目标总览 Targets at a glance")]
    for i, f in enumerate(rows):
        y = 10 + i * row_h
        top = 100.0 if f.spec.unit == "%" else max(f.threshold or 0.0, f.value or 0.0) * 1.25 or 1
        scale = bar_w / top
        colour = GREY if f.met is None else GREEN if f.met else RED
        value = min(f.value or 0.0, top)
        mark = label_w + (f.threshold or 0.0) * scale
        out += [
            f'<text x="0" y="{y + 17}" font-size="12">{_e(f.spec.label_zh)} '
            f"{_e(f.spec.label_en)}</text>",
            f'<rect x="{label_w}" y="{y + 4}" width="{bar_w}" height="18" fill="{LIGHT}"/>',
            f'<rect x="{label_w}" y="{y + 4}" width="{value * scale:.1f}" height="18" '
            f'fill="{colour}"><title>{_e(fmt_value(f.value, f.spec.unit))}</title></rect>',
            f'<line x1="{mark:.1f}" x2="{mark:.1f}" y1="{y}" y2="{y + 26}" stroke="#000" '
            'stroke-width="2"/>',
            f'<text x="{label_w + bar_w + 8}" y="{y + 17}" font-size="12">'
            f"{_e(fmt_value(f.value, f.spec.unit))} ({_e(fmt_target(f))})</text>",
        ]
    out.append("</svg>")
    return "".join(out)


def _svg_open(width: int, height: int, label: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{_e(label)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'font-family="sans-serif">'
    )


def svg_columns(items: Sequence[tuple[str, float, str]], label: str, unit: str = "") -> str:
    """Vertical bars: (label, value, colour) each, value printed on top."""
    width, height, base, gap = 760, 240, 200, 12
    n = max(1, len(items))
    bar = (width - gap * (n + 1)) / n
    top = max((v for _, v, _ in items), default=0.0) or 1.0
    out = [_svg_open(width, height, label)]
    out.append(f'<line x1="0" x2="{width}" y1="{base}" y2="{base}" stroke="#444"/>')
    for i, (name, value, colour) in enumerate(items):
        x = gap + i * (bar + gap)
        h = value / top * (base - 30)
        out += [
            f'<rect x="{x:.1f}" y="{base - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
            f'fill="{colour}" stroke="#333" stroke-width="0.5"><title>{_e(name)}: '
            f"{_e(_short(value))}{_e(unit)}</title></rect>",
            f'<text x="{x + bar / 2:.1f}" y="{base - h - 6:.1f}" font-size="12" '
            f'text-anchor="middle">{_e(_short(value))}</text>',
            f'<text x="{x + bar / 2:.1f}" y="{base + 18}" font-size="12" '
            f'text-anchor="middle">{_e(name)}</text>',
        ]
    out.append("</svg>")
    return "".join(out)


def _short(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 or float(v).is_integer() else f"{v:,.1f}"


def svg_bars(
    items: Sequence[tuple[str, float, str]], label: str, unit: str, top: float | None = None
) -> str:
    """Horizontal bars: (label, value, colour) each, value printed after the bar; the axis
    runs to ``top`` (default: the largest value)."""
    width, label_w, bar_w, row_h = 760, 260, 360, 24
    height = 10 + row_h * max(1, len(items))
    top = top or max((v for _, v, _ in items), default=0.0) or 1.0
    out = [_svg_open(width, height, label)]
    for i, (name, value, colour) in enumerate(items):
        y = 5 + i * row_h
        w = min(max(0.0, value), top) / top * bar_w
        out += [
            f'<text x="0" y="{y + 15}" font-size="12">{_e(name)}</text>',
            f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="16" fill="{colour}">'
            f"<title>{_e(name)}: {_e(_short(value))} {_e(unit)}</title></rect>",
            f'<text x="{label_w + w + 6:.1f}" y="{y + 15}" font-size="12">'
            f"{_e(_short(value))} {_e(unit)}</text>",
        ]
    out.append("</svg>")
    return "".join(out)


def svg_calendar(days: Sequence[P.AirDay]) -> str:
    """Every day of the period as a cell, a column per week, coloured by AQI category (grey: no
    data, hatched: invalid)."""
    if not days:
        return svg_columns([], "空气质量日历 Air-quality calendar")
    cell, left, top = 13, 30, 22
    first = days[0].day - timedelta(days=days[0].day.weekday())
    weeks = (days[-1].day - first).days // 7 + 1
    width = max(760, left + weeks * cell + 10)
    height = top + 7 * cell + 40
    out = [_svg_open(width, height, "空气质量日历 Air-quality calendar")]
    out.append(
        '<defs><pattern id="hatch" width="4" height="4" patternUnits="userSpaceOnUse">'
        f'<rect width="4" height="4" fill="{LIGHT}"/>'
        '<path d="M0,4 L4,0" stroke="#666" stroke-width="1"/></pattern></defs>'
    )
    for i, name in enumerate(("一", "三", "五", "日")):
        out.append(f'<text x="4" y="{top + (i * 2) * cell + 10}" font-size="10">{_e(name)}</text>')
    month = None
    for d in days:
        week = (d.day - first).days // 7
        x, y = left + week * cell, top + d.day.weekday() * cell
        if d.day.month != month:
            month = d.day.month
            out.append(f'<text x="{x}" y="{top - 6}" font-size="10">{month}月</text>')
        if d.status in ("good", "not_good") and d.category:
            fill = AQI_COLOURS[d.category - 1]
        elif d.status == "invalid":
            fill = "url(#hatch)"
        else:
            fill = GREY
        label = f"{d.day} AQI {d.aqi if d.aqi is not None else '—'} {d.status}"
        out.append(
            f'<rect x="{x}" y="{y}" width="{cell - 2}" height="{cell - 2}" fill="{fill}">'
            f"<title>{_e(label)}</title></rect>"
        )
    ly = top + 7 * cell + 18
    legend = [(P.CATEGORY_ZH[i], AQI_COLOURS[i]) for i in range(6)]
    legend += [("无数据 no data", GREY), ("无效 invalid", "url(#hatch)")]
    x = left
    for name, fill in legend:
        out.append(f'<rect x="{x}" y="{ly - 10}" width="11" height="11" fill="{fill}"/>')
        out.append(f'<text x="{x + 15}" y="{ly}" font-size="11">{_e(name)}</text>')
        x += 15 + 12 * len(name) + 12
    out.append("</svg>")
    return "".join(out)


# ---------------------------------------------------------------------------------- HTML


def charts(report: PlanReport) -> dict[str, Markup]:
    """The report's charts as inline SVG, by name."""
    classes = [0] * 6
    for s in report.sections:
        if s.status == "ok" and s.water_class:
            classes[s.water_class - 1] += 1
    water = [(ROMAN[i], float(classes[i]), WATER_COLOURS[i]) for i in range(6)]
    water += [
        ("数据不足", float(sum(s.status == "insufficient" for s in report.sections)), GREY),
        ("无数据", float(sum(s.status == "no_data" for s in report.sections)), LIGHT),
    ]
    a = report.air
    air = [
        (P.CATEGORY_ZH[c - 1], float(a.categories.get(c, 0)), AQI_COLOURS[c - 1])
        for c in range(1, 7)
    ]
    pv = [
        (f"{c.county}{' (试点)' if c.pilot else ''}", c.kwh, GREEN if c.pilot else BLUE)
        for c in report.counties
    ]
    shore = [(f"{b.port} {b.berth}", b.kwh, BLUE) for b in report.berths]
    ev = [
        (
            f"{c.device_id}#{c.connector}" if c.connector else c.device_id,
            c.availability_pct or 0.0,
            GREEN if c.status == "ok" else GREY,
        )
        for c in report.connectors
    ]
    return {
        "targets": Markup(svg_targets(report.figures)),
        "water": Markup(svg_columns(water, "断面水质类别 Sections by class", " sections")),
        "calendar": Markup(svg_calendar(report.air_days)),
        "air": Markup(svg_columns(air, "空气质量类别天数 Days by category", " days")),
        "pv": Markup(svg_bars(pv, "各县区光伏发电量 PV generation by county", "kWh")),
        "shore": Markup(svg_bars(shore, "各泊位岸电量 Shore power by berth", "kWh")),
        "ev": Markup(svg_bars(ev, "充电桩可用率 Charger availability", "%", top=100.0)),
    }


def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATE.parent)),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        value=lambda f: fmt_value(f.value, f.spec.unit),
        target=fmt_target,
        met=fmt_met,
        coverage=fmt_coverage,
        num=_num,
        cell=cell_text,
        items=items_text,
        status=lambda s: STATUS_NAMES.get(s, s),
        pollutant=lambda p: POLLUTANT_NAMES.get(p, p),
    )
    return env


def render_html(report: Report) -> str:
    """The report as one self-contained, printable HTML page (Chinese and English labels)."""
    plan, sections = _parts(report)
    period = report.period if isinstance(report, PeriodReport) else None
    kind = report.kind if isinstance(report, PeriodReport) else None
    report = plan
    template = _env().get_template(TEMPLATE.name)
    return template.render(
        r=report,
        period=period,
        period_kind=kind,
        statistics=[
            {
                "key": sec.key,
                "title": section_title(sec),
                "tables": [
                    {"title": t.title, "columns": t.columns, "rows": t.rows} for t in sec.tables()
                ],
                "notes": list(sec.notes()),
            }
            for sec in sections
        ],
        title=_title(report).replace("\n", " · "),
        charts=charts(report),
        categories=[(c, P.CATEGORY_ZH[c - 1], P.CATEGORY_EN[c - 1]) for c in range(1, 7)],
        missing_days=[d.day.isoformat() for d in report.air_days if d.status == "missing"],
        invalid_days=[d.day.isoformat() for d in report.air_days if d.status == "invalid"],
    )


def render(report: Report, fmt: str, *, width: int = 160) -> str:
    """The report in ``fmt`` (table, json, csv, html) as text."""
    if fmt == "json":
        return render_json(report)
    if fmt == "csv":
        return render_csv(report)
    if fmt == "html":
        return render_html(report)
    if fmt == "table":
        console = Console(file=io.StringIO(), width=width, force_terminal=False, no_color=True)
        render_table(report, console)
        out = console.file
        assert isinstance(out, io.StringIO)
        return out.getvalue()
    raise ValueError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
