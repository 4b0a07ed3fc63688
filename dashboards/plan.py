"""Plan targets: the plan's figures against their targets, stored and live.

For the bureau's planning office. One stat panel per target of the shipped plan
(``report/plan.toml``), from ``report.figures.panel_queries``: the figure ``envgrid report --store``
wrote to ``plan_progress`` for the city, against its threshold, with the met / not-met state as
text; then figures computed live from the daily rollups (good-days ratio from ``city_air_daily``,
section-days at Class III or better from ``water_section_daily``), and every stored figure in a
table. The default time range is the plan's period, since stored figures are stamped at their
period's first local midnight.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import stat, table

from dashboards.influxql import COL, TIME_FILTER, group_by, ident, where
from dashboards.panels import (
    BLUE,
    GREEN,
    RED,
    Ctx,
    mapped,
    new_dashboard,
    organize,
    prop,
    row,
    shown,
    stat_panel,
    steps,
    table_panel,
    text_panel,
    thresholds_prop,
)
from dashboards.schema import GRAFANA_UNITS, PLAN_PROGRESS, unit
from report import plan as P
from report.figures import PROGRESS, PanelSpec, load_plan, panel_queries
from rollups.windows import CITY_AIR_DAILY, WATER_SECTION_DAILY, day_window

UID = "envgrid-plan"

# As the report prints it (report/render.py): 达标 met / 未达标 not met.
MET: dict[str, tuple[str, str]] = {"true": ("达标 met", GREEN), "false": ("未达标 not met", RED)}
NO_FIGURE = "no stored figure in this range: run envgrid report --store"
NO_DAY = "no valid day in this range"
# Names the live panels display their columns under (reduceOptions.fields picks them by these).
GOOD_DAYS, VALID_DAYS = "good days", "valid days"
III_DAYS, SECTION_DAYS = "section-days at I–III", "section-days"
# The head of report.figures.PANEL_QUERY; the stat panels add the stored "met" after it.
_VALUE_HEAD = 'SELECT last("value") AS "value" '

_TEXT = """\
**Where these figures come from.** The target panels show what `envgrid report --store` last
wrote for the city to the `plan_progress` measurement for a period starting in the time range
(run it after a period closes, or monthly; `--county` runs are in the table below): the same
figures as the printed report (formulas and standards: `docs/report.md`), green when the target
is met, red when not. The **live** panels are recomputed from the daily rollups on every load
and need no report run. Default range: the plan's period; pick another to see other stored
periods.
"""


def build(ctx: Ctx) -> db.Dashboard:
    """The Plan targets dashboard, from the shipped plan (``report/plan.toml``)."""
    if PROGRESS != PLAN_PROGRESS:
        raise RuntimeError(f"dashboards.schema names {PLAN_PROGRESS}, the report writes {PROGRESS}")
    plan = load_plan()
    specs = panel_queries(plan)
    targets, live = specs[: len(plan.targets)], specs[len(plan.targets) :]
    d = new_dashboard(
        ctx,
        UID,
        "Plan targets",
        f"{plan.plan.name_zh} ({plan.plan.name_en}): each target's figure as stored by "
        "`envgrid report --store`, against its threshold; good days and Class III "
        "section-days live from the rollups; every stored figure.",
        [],
        device_variables=False,
        refresh="",
    ).time(*plan_range(plan, ctx.timezone))
    d.with_row(row("Targets: the figures stored by envgrid report --store (city)"))
    for target, spec in zip(plan.targets, targets, strict=True):
        d.with_panel(target_panel(ctx, target, spec))
    d.with_panel(text_panel("Where these figures come from", _TEXT, w=12, h=6))
    d.with_row(row("Live from the daily rollups (the dashboard's time range)"))
    for spec in live:
        d.with_panel(good_days_panel(ctx, spec))
    d.with_panel(section_days_panel(ctx, plan))
    d.with_row(row("Every stored figure"))
    d.with_panel(stored_table(ctx))
    return d


def plan_range(plan: P.Plan, timezone: str) -> tuple[str, str]:
    """The plan's period in local days as Grafana's absolute ``from`` / ``to`` (UTC ISO 8601).

    ``to`` is the last millisecond of the last day: Grafana's ``$timeFilter`` includes its end,
    and the next day's rollup point is stamped at the following midnight.
    """
    tz = ZoneInfo(timezone)
    start = day_window(plan.plan.start, tz).start_ms
    end = day_window(plan.plan.end, tz).end_ms - 1
    return _iso(start), _iso(end)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def target_steps(threshold: float | None, direction: str | None) -> db.ThresholdsConfig:
    """Red below / green from the threshold (``>=``); green up to / red above it (``<=``)."""
    if threshold is None or direction is None:
        return steps((None, BLUE))
    if direction == ">=":
        return steps((None, RED), (threshold, GREEN))
    # Grafana colours a value by the highest step it reaches (value ≥ step): a value equal to a
    # "≤" threshold meets it, so red starts just above.
    return steps((None, GREEN), (math.nextafter(threshold, math.inf), RED))


def _decimals(figure_unit: str) -> float | None:
    return {"%": 1, "counties": 0, "sessions": 0}.get(figure_unit)


def _figure_stat(
    title: str,
    description: str,
    spec: PanelSpec,
    fields: str,
    *,
    names: bool = False,
    no_value: str = NO_DAY,
) -> stat.Panel:
    return stat_panel(
        title,
        description,
        GRAFANA_UNITS[spec.unit],
        w=12,
        h=6,
        thresholds=target_steps(spec.threshold, spec.direction),
        fields=fields,
        decimals=_decimals(spec.unit),
        no_value=no_value,
        names=names,
    )


def target_panel(ctx: Ctx, target: P.TargetSpec, spec: PanelSpec) -> stat.Panel:
    """One target: the stored city figure against its threshold, and 达标 / 未达标 as text."""
    if not spec.query.startswith(_VALUE_HEAD):
        raise RuntimeError(f"report.figures.PANEL_QUERY changed shape: {spec.query}")
    query = f"{_VALUE_HEAD.rstrip()}, {ident('met')} {spec.query[len(_VALUE_HEAD) :]}"
    symbol = "≥" if target.direction == ">=" else "≤"
    description = (
        f"Target `{target.id}`: {symbol} {target.threshold:g} {spec.unit} over {target.period} "
        f"(formula `{target.formula}`, docs/report.md). Shows the latest figure "
        "`envgrid report --store` wrote for the city whose period starts in the time range: "
        "green when the target is met, red when not."
    )
    return (
        _figure_stat(spec.title, description, spec, shown("value", "met"), no_value=NO_FIGURE)
        .with_target(ctx.q(query, alias=COL))
        .override_by_name("met", [prop("unit", "none"), *mapped(MET)[:2]])
    )


def good_days_panel(ctx: Ctx, spec: PanelSpec) -> stat.Panel:
    """优良天数比率 live from ``city_air_daily``, with the valid days behind it."""
    valid_days = (
        f"SELECT count({ident('aqi_category')}) AS {ident('valid_days')} "
        f"FROM {ident(CITY_AIR_DAILY)} WHERE {where(ident('valid') + ' = true', TIME_FILTER)}"
    )
    return (
        _figure_stat(
            spec.title,
            "Good days (daily AQI ≤ 100, HJ 633) ÷ valid days of the city's daily AQI by the "
            "national method (city_air_daily: national stations, GB 3095 validity), over the "
            "time range; days without a valid value count in neither (the report names them). "
            "Coloured against the air target.",
            spec,
            shown(GOOD_DAYS, VALID_DAYS),
            names=True,
        )
        .with_target(ctx.q(spec.query, alias=COL))
        .with_target(ctx.q(valid_days, "B", alias=COL))
        .override_by_name("good_days_pct", [prop("displayName", GOOD_DAYS)])
        .override_by_name(
            "valid_days",
            [
                prop("displayName", VALID_DAYS),
                prop("unit", "none"),
                prop("decimals", 0),
                thresholds_prop((None, BLUE)),
            ],
        )
    )


def section_days_panel(ctx: Ctx, plan: P.Plan) -> stat.Panel:
    """Share of assessed section-days at Class III or better, live from ``water_section_daily``.

    ``meets_iii`` is ``water_class`` ≤ 3, and InfluxQL cannot average a boolean, so the query
    averages floor(6 / (class + 3)): 1 for classes 1–3, 0 for 4–6.
    """
    assessed = "|".join(sorted(plan.water.assessments))
    inner = (
        f"SELECT floor(6 / ({ident('water_class')} + 3)) AS {ident('iii')} "
        f"FROM {ident(WATER_SECTION_DAILY)} WHERE "
        + where(
            f"{ident('assessment')} =~ /^({assessed})$/", ident("valid") + " = true", TIME_FILTER
        )
    )
    query = (
        f"SELECT mean({ident('iii')}) * 100 AS {ident('iii_pct')}, "
        f"count({ident('iii')}) AS {ident('section_days')} FROM ({inner})"
    )
    water = plan.target_for("sections_iii_ratio")
    spec = PanelSpec(
        "优Ⅲ断面天数占比（实时） / Section-days at Class III or better, live from the rollups",
        query,
        "%",
        water.threshold if water else None,
        water.direction if water else None,
    )
    return (
        _figure_stat(
            spec.title,
            "Assessed sections' valid days at GB 3838 Class I–III ÷ their valid days "
            f"(water_section_daily, assessments: {', '.join(plan.water.assessments)}), over the "
            "time range. Indicative: the plan's 优Ⅲ比例 classes each section on its period means "
            "(the stored figure above); this counts daily classes. Coloured against the water "
            "target.",
            spec,
            shown(III_DAYS, SECTION_DAYS),
            names=True,
        )
        .with_target(ctx.q(query, alias=COL))
        .override_by_name("iii_pct", [prop("displayName", III_DAYS)])
        .override_by_name(
            "section_days",
            [
                prop("displayName", SECTION_DAYS),
                prop("unit", "none"),
                prop("decimals", 0),
                thresholds_prop((None, BLUE)),
            ],
        )
    )


def stored_table(ctx: Ctx) -> table.Panel:
    """Every figure stored in the range, per scope (city or county), period and formula."""
    cols = ("value", "unit", "threshold", "met", "covered", "expected")
    keys = ("scope", "period", "formula", "target")
    query = (
        f"SELECT last({ident('value')}) AS {ident('value')}, "
        + ", ".join(ident(c) for c in cols[1:])
        + f" FROM {ident(PLAN_PROGRESS)} WHERE {TIME_FILTER} {group_by(*keys)}"
    )
    count_unit = unit(PLAN_PROGRESS, "covered")
    panel = table_panel(
        "Stored figures",
        "The latest point of every figure `envgrid report --store` wrote with a period starting "
        "in the time range: the city's and any county's (scope). Value and threshold are in the "
        "unit column's unit; covered / expected are the sections, days or devices with enough "
        "data / all of them.",
        h=10,
        units=[("covered", count_unit), ("expected", count_unit)],
        coloured={"met": MET},
        transformations=[organize([*keys, *cols, "Time"], hide=["Time"])],
    )
    for figure in ("value", "threshold"):
        panel.override_by_name(figure, [prop("decimals", 2)])
    return panel.with_target(ctx.q(query, table=True))
