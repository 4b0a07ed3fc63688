"""Shared pieces of the envgrid dashboards: context, variables, colours, mappings, panel makers.

Panels are grafana-foundation-sdk builders; the makers below set what every envgrid panel
shares (datasource, units, legend, thresholds) so each dashboard module only says what it shows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from grafana_foundation_sdk.builders import bargauge, stat, statetimeline, table, text, timeseries
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DashboardLinkType,
    DataSourceRef,
    DataTransformerConfig,
    DynamicConfigValue,
    FieldColorModeId,
    RegexMap,
    Threshold,
    ThresholdsMode,
    ValueMap,
    ValueMapping,
    ValueMappingResult,
    VariableOption,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.dashboard import (
    DashboardRegexMapOptions as RegexOptions,
)
from grafana_foundation_sdk.models.text import TextMode

from dashboards import DATASOURCE_UID, schema
from dashboards.influxql import COL, InfluxQL, matches, where
from devices.registry import Registry

DATASOURCE_TYPE = "influxdb"
# The city's time zone: "today" (PV energy, shore power per day) is its calendar day.
CITY_TZ = "Asia/Shanghai"
TAG = "envgrid"

# Every device panel is filtered by the county, site and device variables.
SCOPE = where(matches("county", "county"), matches("site", "site"), matches("device_id", "device"))

# --------------------------------------------------------------------------- colours
GREEN, YELLOW, ORANGE, RED, BLUE, GREY = "green", "yellow", "orange", "red", "blue", "#8e8e8e"
PURPLE, DARK_RED, LIGHT_BLUE = "purple", "dark-red", "light-blue"

# GB 3838-2002 classes as bulletins colour them: I–II blue, III green, IV yellow, V orange, 劣V red.
WATER_CLASSES: dict[str, tuple[str, str]] = {
    "1": ("I", "#1f60c4"),
    "2": ("II", "#5794f2"),
    "3": ("III", "#37872d"),
    "4": ("IV", "#fade2a"),
    "5": ("V", "#ff780a"),
    "6": ("劣V", "#c4162a"),
}
# HJ 633-2012 Table 4: AQI categories and their prescribed colours (RGB from the standard).
AQI_CATEGORIES: dict[str, tuple[str, str]] = {
    "1": ("优", "#00e400"),
    "2": ("良", "#ffff00"),
    "3": ("轻度污染", "#ff7e00"),
    "4": ("中度污染", "#ff0000"),
    "5": ("重度污染", "#99004c"),
    "6": ("严重污染", "#7e0023"),
}
AQI_BANDS: tuple[tuple[float | None, str], ...] = (
    (None, "#00e400"),
    (51, "#ffff00"),
    (101, "#ff7e00"),
    (151, "#ff0000"),
    (201, "#99004c"),
    (301, "#7e0023"),
)
PV_STATUS: dict[str, tuple[str, str]] = {
    "MPPT": ("producing", GREEN),
    "THROTTLED": ("throttled", YELLOW),
    "STARTING": ("starting", LIGHT_BLUE),
    "SLEEPING": ("sleeping", GREY),
    "STANDBY": ("standby", GREY),
    "OFF": ("off", GREY),
    "SHUTTING_DOWN": ("shutting down", ORANGE),
    "FAULT": ("FAULT", RED),
}
EV_STATUS: dict[str, tuple[str, str]] = {
    "Available": ("Available", GREEN),
    "Preparing": ("Preparing", LIGHT_BLUE),
    "Charging": ("Charging", BLUE),
    "SuspendedEVSE": ("Suspended (EVSE)", YELLOW),
    "SuspendedEV": ("Suspended (EV)", YELLOW),
    "Finishing": ("Finishing", PURPLE),
    "Reserved": ("Reserved", "#8ab8ff"),
    "Unavailable": ("Unavailable", GREY),
    "Faulted": ("Faulted", RED),
}
CONNECTED: dict[str, tuple[str, str]] = {"true": ("connected", BLUE), "false": ("free", GREY)}
POLLUTANTS: dict[str, tuple[str, str]] = {
    "pm25_ug_m3": ("PM2.5", "#8f3bb8"),
    "pm10_ug_m3": ("PM10", "#b877d9"),
    "so2_ug_m3": ("SO2", "#fade2a"),
    "no2_ug_m3": ("NO2", "#ff9830"),
    "o3_ug_m3": ("O3", "#5794f2"),
    "o3_8h_ug_m3": ("O3 (8 h)", "#1f60c4"),
    "co_mg_m3": ("CO", "#808080"),
}
ALERT_STATE: dict[str, tuple[str, str]] = {
    "firing": ("firing", RED),
    "resolved": ("resolved", GREEN),
}
SEVERITY: dict[str, tuple[str, str]] = {
    "critical": ("critical", DARK_RED),
    "major": ("major", RED),
    "minor": ("minor", ORANGE),
    "warning": ("warning", YELLOW),
    "info": ("info", BLUE),
}
UP_DOWN: dict[str, tuple[str, str]] = {"true": ("up", GREEN), "false": ("DOWN", RED)}
PAUSED: dict[str, tuple[str, str]] = {"true": ("paused", ORANGE), "false": ("consuming", GREEN)}
YES_NO: dict[str, tuple[str, str]] = {"true": ("yes", GREEN), "false": ("no", RED)}


@dataclass(frozen=True)
class Ctx:
    """What a dashboard is built from: the device registry and where Grafana finds InfluxDB."""

    registry: Registry
    datasource_uid: str = DATASOURCE_UID
    timezone: str = CITY_TZ

    @property
    def ds(self) -> DataSourceRef:
        """The InfluxDB datasource reference every query, variable and annotation carries."""
        return DataSourceRef(type_val=DATASOURCE_TYPE, uid=self.datasource_uid)

    def q(
        self, query: str, ref: str = "A", *, alias: str | None = None, table: bool = False
    ) -> InfluxQL:
        """A target on the envgrid datasource.

        A time-series target without ``alias`` gets ``$col``, so its fields are named by their
        column, as the panel's overrides and field filters name them. A table's fields are
        always named by column: Grafana ignores a table target's alias.
        """
        b = InfluxQL(query).ref_id(ref).datasource(self.ds)
        if table:
            if alias is not None:
                raise ValueError(f"a table target's columns keep their names: alias {alias!r}")
            return b.table()
        return b.alias(COL if alias is None else alias)


# --------------------------------------------------------------------------- dashboards


def new_dashboard(
    ctx: Ctx,
    uid: str,
    title: str,
    description: str,
    measurements: Sequence[str],
    *,
    time_from: str = "now-24h",
    refresh: str = "1m",
    device_variables: bool = True,
) -> db.Dashboard:
    """A dashboard with the envgrid defaults: tags, time zone, links, county/site/device."""
    d = (
        db.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags([TAG])
        .timezone(ctx.timezone)
        .time(time_from, "now")
        .refresh(refresh)
        # Crosshair shared across panels: a time on one graph is marked on all.
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .link(
            db.DashboardLink("envgrid")
            .type(DashboardLinkType.DASHBOARDS)
            .tags([TAG])
            .as_dropdown(True)
            .keep_time(True)
            .include_vars(True)
        )
    )
    if device_variables:
        for v in device_variable_builders(ctx, measurements):
            d.with_variable(v)
    return d


def device_variable_builders(ctx: Ctx, measurements: Sequence[str]) -> list[db.QueryVariable]:
    """``county`` → ``site`` → ``device`` variables, each narrowed by the one before."""
    frm = ", ".join(f'"{m}"' for m in measurements)
    specs = (
        ("county", "County", "county", ""),
        ("site", "Site", "site", f" WHERE {matches('county', 'county')}"),
        (
            "device",
            "Device",
            "device_id",
            f" WHERE {matches('county', 'county')} AND {matches('site', 'site')}",
        ),
    )
    return [
        tag_variable(ctx, name, label, f'SHOW TAG VALUES FROM {frm} WITH KEY = "{key}"{cond}')
        for name, label, key, cond in specs
    ]


def tag_variable(ctx: Ctx, name: str, label: str, query: str) -> db.QueryVariable:
    """A multi-value variable over tag values; All matches everything (``.*``)."""
    return (
        db.QueryVariable(name)
        .id(name)
        .label(label)
        .query(query)
        .datasource(ctx.ds)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(VariableOption(selected=True, text=["All"], value=["$__all"]))
        .refresh(VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(VariableSort.ALPHABETICAL_ASC)
    )


# --------------------------------------------------------------------------- field config


def steps(*pairs: tuple[float | None, str]) -> db.ThresholdsConfig:
    """Absolute thresholds: the first pair's value is None (the base colour)."""
    return (
        db.ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=v, color=c) for v, c in pairs])
    )


def value_mappings(options: Mapping[str, tuple[str, str]]) -> list[ValueMapping]:
    """Exact-value mappings: value → (text, colour)."""
    return [
        ValueMap(
            options={
                k: ValueMappingResult(text=t, color=c, index=i)
                for i, (k, (t, c)) in enumerate(options.items())
            }
        )
    ]


def pollutant_mappings() -> list[ValueMapping]:
    """Primary pollutant names; several primaries (comma-joined) read as 'several'."""
    return [
        *value_mappings(POLLUTANTS),
        RegexMap(
            options=RegexOptions(
                pattern=".*,.*", result=ValueMappingResult(text="several", color=RED)
            )
        ),
    ]


def prop(id_: str, value: object) -> DynamicConfigValue:
    """One field-config property of an override."""
    return DynamicConfigValue(id_val=id_, value=value)


Colours = Mapping[str, tuple[str, str]] | list[ValueMapping]


def thresholds_prop(*pairs: tuple[float | None, str]) -> DynamicConfigValue:
    """An override's absolute thresholds: the first pair's value is None (the base colour)."""
    return prop(
        "thresholds",
        {"mode": "absolute", "steps": [{"value": v, "color": c} for v, c in pairs]},
    )


def mapped(options: Colours) -> list[DynamicConfigValue]:
    """Override properties: value mappings (value → text, colour) that also colour the cell."""
    mappings = options if isinstance(options, list) else value_mappings(options)
    return [
        prop("mappings", mappings),
        prop("color", {"mode": "thresholds"}),
        prop("custom.cellOptions", {"type": "color-background"}),
    ]


_JS_SPECIALS = re.compile(r"([\\^$.*+?()[\]{}|/])")


def shown(*names: str) -> str:
    """``reduceOptions.fields`` picking the fields displayed as ``names``.

    Grafana applies the overrides first (packages/grafana-data/src/field/fieldDisplay.ts), so a
    field an override renames with ``displayName`` is picked by its new name, not its column.
    """
    return "/^(" + "|".join(_JS_SPECIALS.sub(r"\\\1", n) for n in names) + ")$/"


def unit_overrides(measurement: str, fields: Iterable[str]) -> list[tuple[str, str]]:
    """(column, Grafana unit) for schema fields shown as table columns."""
    return [(f, schema.unit(measurement, f)) for f in fields]


def filter_transform(field: str, value: str) -> DataTransformerConfig:
    """Keep only rows whose ``field`` equals ``value`` (Grafana's filter-by-value transform)."""
    return DataTransformerConfig(
        id_val="filterByValue",
        options={
            "type": "include",
            "match": "any",
            "filters": [
                {"fieldName": field, "config": {"id": "equal", "options": {"value": value}}}
            ],
        },
    )


def organize(
    order: Sequence[str], rename: Mapping[str, str] | None = None, hide: Sequence[str] = ()
) -> DataTransformerConfig:
    """Column order and hidden columns of a table; ``rename`` only for columns without overrides."""
    return DataTransformerConfig(
        id_val="organize",
        options={
            "indexByName": {name: i for i, name in enumerate(order)},
            "renameByName": dict(rename or {}),
            "excludeByName": {name: True for name in hide},
        },
    )


# --------------------------------------------------------------------------- panel makers


def legend(placement: str = "bottom", mode: str = "list") -> cb.VizLegendOptions:
    """A legend at the bottom (list) or right (table with last/max)."""
    b = (
        cb.VizLegendOptions()
        .show_legend(True)
        .placement(cm.LegendPlacement(placement))
        .display_mode(cm.LegendDisplayMode(mode))
    )
    if mode == "table":
        b.calcs(["lastNotNull", "max"])
    return b


def timeseries_panel(
    title: str,
    description: str,
    unit: str,
    *,
    w: int = 12,
    h: int = 8,
    thresholds: db.ThresholdsConfig | None = None,
    threshold_style: str = "dashed",
    stacked: bool = False,
    bars: bool = False,
    decimals: float | None = None,
    interval: str | None = None,
) -> timeseries.Panel:
    """A time series panel; ``thresholds`` are drawn as lines (limits) or areas (bands)."""
    p = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .span(w)
        .height(h)
        .line_width(1)
        .fill_opacity(10 if not bars else 80)
        .span_nulls(True)
        .legend(legend())
        # All series at the hovered time, highest first: comparing stations is the point.
        .tooltip(
            cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.DESCENDING)
        )
        .color_scheme(db.FieldColor().mode(FieldColorModeId.PALETTE_CLASSIC))
    )
    if bars:
        p.draw_style(cm.GraphDrawStyle.BARS)
    if stacked:
        p.stacking(cb.StackingConfig().mode(cm.StackingMode.NORMAL))
    if thresholds is not None:
        p.thresholds(thresholds).thresholds_style(
            cb.GraphThresholdsStyleConfig().mode(cm.GraphTresholdsStyleMode(threshold_style))
        )
    if decimals is not None:
        p.decimals(decimals)
    if interval is not None:
        p.interval(interval)
    return p


def stat_panel(
    title: str,
    description: str,
    unit: str,
    *,
    w: int = 6,
    h: int = 4,
    thresholds: db.ThresholdsConfig | None = None,
    fields: str = "",
    calc: str = "lastNotNull",
    decimals: float | None = None,
    no_value: str | None = None,
    names: bool = False,
) -> stat.Panel:
    """A big-number panel coloured by ``thresholds`` (blue when none are given).

    ``fields`` (a regex, see :func:`shown`) picks the fields shown by their displayed names;
    ``names`` prints each value's name under it.
    """
    p = (
        stat.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .span(w)
        .height(h)
        .graph_mode(cm.BigValueGraphMode.NONE)
        .color_mode(cm.BigValueColorMode.VALUE)
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME if names else cm.BigValueTextMode.VALUE)
        .reduce_options(cb.ReduceDataOptions().calcs([calc]).values(False).fields(fields))
        .thresholds(thresholds or steps((None, BLUE)))
    )
    if decimals is not None:
        p.decimals(decimals)
    if no_value is not None:
        p.no_value(no_value)
    return p


def bargauge_panel(
    title: str,
    description: str,
    unit: str,
    *,
    w: int = 8,
    h: int = 8,
    thresholds: db.ThresholdsConfig | None = None,
    decimals: float | None = None,
) -> bargauge.Panel:
    """Horizontal bars, one per series (county, site, berth …)."""
    p = (
        bargauge.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .span(w)
        .height(h)
        .orientation(cm.VizOrientation.HORIZONTAL)
        .display_mode(cm.BarGaugeDisplayMode.GRADIENT)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .min(0)
        .thresholds(thresholds or steps((None, BLUE)))
        .color_scheme(db.FieldColor().mode(FieldColorModeId.CONTINUOUS_BL_PU))
    )
    if decimals is not None:
        p.decimals(decimals)
    return p


def timeline_panel(
    title: str,
    description: str,
    mappings: list[ValueMapping],
    *,
    w: int = 24,
    h: int = 8,
    unit: str = "none",
) -> statetimeline.Panel:
    """States over time, one row per series, coloured by ``mappings``."""
    return (
        statetimeline.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .span(w)
        .height(h)
        .mappings(mappings)
        .color_scheme(db.FieldColor().mode(FieldColorModeId.THRESHOLDS))
        .thresholds(steps((None, GREY)))
        .show_value(cm.VisibilityMode.AUTO)
        .merge_values(True)
        .row_height(0.8)
        .fill_opacity(80)
        .line_width(0)
        .legend(legend())
    )


def table_panel(
    title: str,
    description: str,
    *,
    w: int = 24,
    h: int = 8,
    units: Iterable[tuple[str, str]] = (),
    coloured: Mapping[str, Colours] | None = None,
    titles: Mapping[str, str] | None = None,
    transformations: Sequence[DataTransformerConfig] = (),
    no_value: str | None = None,
    sort: str | None = None,
) -> table.Panel:
    """A table: per-column units, value-mapped coloured columns and column titles.

    Titles are display names set by overrides, not renames in a transformation: overrides
    match a column by its displayed name, so a renamed column would lose its unit and colours.
    """
    p = (
        table.Panel()
        .title(title)
        .description(description)
        .unit("none")
        .span(w)
        .height(h)
        .thresholds(steps((None, GREY)))
        .cell_height(cm.TableCellHeight.SM)
    )
    props: dict[str, list[DynamicConfigValue]] = {}
    for name, u in units:
        props.setdefault(name, []).append(prop("unit", u))
    for name, options in (coloured or {}).items():
        props.setdefault(name, []).extend(mapped(options))
    for name, shown in (titles or {}).items():
        props.setdefault(name, []).append(prop("displayName", shown))
    for name, values in props.items():
        p.override_by_name(name, values)
    for t in transformations:
        p.with_transformation(t)
    if no_value is not None:
        p.no_value(no_value)
    if sort is not None:
        p.sort_by([cb.TableSortByFieldState().display_name(sort).desc(True)])
    return p


def text_panel(title: str, content: str, *, w: int = 24, h: int = 4) -> text.Panel:
    """Markdown text."""
    return text.Panel().title(title).mode(TextMode.MARKDOWN).content(content).span(w).height(h)


def row(title: str) -> db.Row:
    """A section header."""
    return db.Row(title)
