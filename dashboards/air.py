"""Air quality: real-time AQI (HJ 633) with its category colours, each pollutant, primary pollutant.

For the environment bureau's air division and the public-information desk: how each station
stands now, which pollutant drives it, and how the day developed.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db

from dashboards.influxql import INTERVAL, TIME_FILTER, group_by, ident, matches, where
from dashboards.panels import (
    AQI_BANDS,
    AQI_CATEGORIES,
    SCOPE,
    Ctx,
    new_dashboard,
    organize,
    pollutant_mappings,
    row,
    steps,
    table_panel,
    timeline_panel,
    timeseries_panel,
    unit_overrides,
    value_mappings,
)
from dashboards.schema import AIR_ASSESSMENT, unit

UID = "envgrid-air"
M = "air_quality"
POLLUTANTS: tuple[tuple[str, str], ...] = (
    ("pm25_ug_m3", "PM2.5"),
    ("pm10_ug_m3", "PM10"),
    ("o3_ug_m3", "O3 (1 h)"),
    ("no2_ug_m3", "NO2"),
    ("so2_ug_m3", "SO2"),
    ("co_mg_m3", "CO"),
)


def per_site(field: str, fn: str = "mean") -> str:
    """``fn`` of one field per bucket and station."""
    return (
        f"SELECT {fn}({ident(field)}) AS {ident(field)} FROM {ident(M)} "
        f"WHERE {where(TIME_FILTER, SCOPE)} {group_by('site', interval=INTERVAL)} fill(none)"
    )


RANKING_COLUMNS: tuple[str, ...] = (
    "rank",
    "composite_index",
    "composite_index_change",
    "good_day_ratio",
    "rank_good_day_ratio",
    "good_day_ratio_change",
    "valid_days",
)
# The latest monthly county assessment stored by `envgrid report --period month --store`: the
# selector last() returns the other fields of the same point, so a row is one month's figures.
COUNTY_MONTHS = ("\"level\" = 'county'", "\"period\" = 'month'", matches("county", "county"))
# No time filter: the latest month stored, whatever the dashboard's range (a month's point is
# stamped at its first local midnight, outside the usual "last 24 hours").
RANKING_QUERY = (
    f"SELECT last({ident('rank')}) AS {ident('rank')}, "
    + ", ".join(ident(c) for c in RANKING_COLUMNS[1:])
    + f", {ident('label')} FROM {ident(AIR_ASSESSMENT)} "
    f"WHERE {where(*COUNTY_MONTHS)} {group_by('county')}"
)


def build(ctx: Ctx) -> db.Dashboard:
    """The Air quality dashboard."""
    d = new_dashboard(
        ctx,
        UID,
        "Air quality",
        "Ambient air stations: real-time AQI per HJ 633 (the edition in force on the reading's "
        "date), its category, the primary pollutant and the six criteria pollutants.",
        [M],
    )
    d.with_row(row("AQI"))
    d.with_panel(
        timeseries_panel(
            "AQI by station",
            "Real-time AQI (HJ 633: 1 h tables, PM on its 24 h table), highest per bucket. "
            "Bands: 优 0–50, 良 51–100, 轻度 101–150, 中度 151–200, 重度 201–300, 严重 >300.",
            unit(M, "aqi"),
            w=16,
            h=9,
            thresholds=steps(*AQI_BANDS),
            threshold_style="area",
            decimals=0,
            interval="1m",
        ).with_target(ctx.q(per_site("aqi", "max"), alias="$tag_site"))
    )
    cols = ("aqi", "aqi_category", "primary_pollutant", "pm25_ug_m3", "pm10_ug_m3", "o3_ug_m3")
    d.with_panel(
        table_panel(
            "Stations now",
            "The latest reading of each station in the range, with the HJ 633 edition used.",
            w=8,
            h=9,
            units=unit_overrides(M, cols),
            coloured={
                "aqi_category": AQI_CATEGORIES,
                "primary_pollutant": pollutant_mappings(),
            },
            titles={"aqi_category": "category", "primary_pollutant": "primary"},
            transformations=[
                organize(
                    ["site", *cols, "aqi_edition", "assessment", "device_id", "Time"],
                    hide=["device_id", "Time"],
                )
            ],
            sort="aqi",
        ).with_target(
            ctx.q(
                f"SELECT last({ident('aqi')}) AS {ident('aqi')}, "
                + ", ".join(ident(c) for c in cols[1:])
                + f", {ident('aqi_edition')}, {ident('assessment')} FROM {ident(M)} "
                f"WHERE {where(TIME_FILTER, SCOPE)} {group_by('site', 'device_id')}",
                table=True,
            )
        )
    )
    d.with_panel(
        timeline_panel(
            "AQI category",
            "Worst HJ 633 category of each station per bucket, in the standard's colours.",
            value_mappings(AQI_CATEGORIES),
            w=12,
            h=8,
        ).with_target(ctx.q(per_site("aqi_category", "max"), alias="$tag_site"))
    )
    d.with_panel(
        timeline_panel(
            "Primary pollutant",
            "The pollutant(s) whose IAQI equals the AQI, shown when AQI > 50 (HJ 633).",
            pollutant_mappings(),
            w=12,
            h=8,
        ).with_target(ctx.q(per_site("primary_pollutant", "last"), alias="$tag_site"))
    )
    d.with_panel(
        table_panel(
            "County ranking (latest month)",
            "HJ 663 assessment of the latest month stored by `envgrid report --period month "
            "--store` (docs/report.md): counties ranked by composite index (综合指数, lower is "
            "cleaner) and by good-day ratio (优良天数比率), with the change against the same "
            "month last year (Δ index; Δ ratio in percentage points), whatever the time range.",
            w=24,
            h=8,
            units=unit_overrides(AIR_ASSESSMENT, RANKING_COLUMNS),
            titles={
                "composite_index": "composite index",
                "composite_index_change": "Δ index",
                "good_day_ratio": "good days",
                "rank_good_day_ratio": "rank (good days)",
                "good_day_ratio_change": "Δ good days (pts)",
                "valid_days": "valid days",
                "label": "month",
            },
            transformations=[
                organize(["county", *RANKING_COLUMNS, "label", "Time"], hide=["Time"])
            ],
            sort="rank",
            no_value="no stored assessment: run envgrid report --period month --store",
        ).with_target(ctx.q(RANKING_QUERY, table=True))
    )
    d.with_row(row("Pollutants (mean per bucket, one line per station)"))
    for field, title in POLLUTANTS:
        d.with_panel(
            timeseries_panel(
                title, f"{title} concentration.", unit(M, field), w=8, interval="1m"
            ).with_target(ctx.q(per_site(field), alias="$tag_site"))
        )
    return d
