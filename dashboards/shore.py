"""Shore power (岸电) at the canal ports: berths connected now, kWh per berth and day, sessions.

For the port authority and the power company's shore-power desk: the figures the 港口和船舶岸电
管理办法 asks suppliers to keep (per session: berth, ship, start, stop, kWh).
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models.dashboard import DataTransformerConfig

from dashboards.influxql import (
    INTERVAL,
    RECENT,
    TIME_FILTER,
    count_latest,
    group_by,
    ident,
    literal,
    where,
)
from dashboards.panels import (
    CONNECTED,
    SCOPE,
    Ctx,
    bargauge_panel,
    new_dashboard,
    organize,
    prop,
    row,
    shown,
    stat_panel,
    table_panel,
    timeline_panel,
    timeseries_panel,
    value_mappings,
)
from dashboards.schema import unit

UID = "envgrid-shore"
M = "shore_power"
BERTH = ("device_id", "site", "berth")
CONNECTED_BERTHS = "connected"  # displayed name of the connected_berths count


def spread_query(by: tuple[str, ...], interval: str | None = None, tz: str = "") -> str:
    """kWh per berth: the increase of each berth meter's cumulative register."""
    tz_clause = f" tz({literal(tz)})" if tz else ""
    return (
        f"SELECT spread({ident('energy_kwh')}) AS {ident('energy_kwh')} FROM {ident(M)} "
        f"WHERE {where(TIME_FILTER, SCOPE)} {group_by(*by, interval=interval)} "
        f"fill(none){tz_clause}"
    )


def sessions_query() -> str:
    """Connected readings per bucket and berth: vessel, lowest and highest register value."""
    return (
        f"SELECT last({ident('vessel_id')}) AS {ident('vessel_id')}, "
        f"min({ident('energy_kwh')}) AS {ident('energy_start_kwh')}, "
        f"max({ident('energy_kwh')}) AS {ident('energy_end_kwh')} FROM {ident(M)} "
        f"WHERE {where(TIME_FILTER, SCOPE, ident('connected') + ' = true')} "
        f"{group_by('site', 'berth', interval=INTERVAL)} fill(none)"
    )


def build(ctx: Ctx) -> db.Dashboard:
    """The Shore power dashboard."""
    d = new_dashboard(
        ctx,
        UID,
        "Shore power",
        "Shore-power berths at the canal ports: ships connected now, energy per berth and per "
        "day, and the list of connection sessions.",
        [M],
    )
    d.with_row(row("Now"))
    d.with_panel(
        stat_panel(
            "Berths connected now",
            "Berths whose latest reading (last 10 minutes) says a ship is connected, of all "
            "berths reporting.",
            "short",
            fields=shown(CONNECTED_BERTHS, "berths"),
            names=True,
            decimals=0,
        )
        .with_target(
            ctx.q(
                count_latest(
                    M,
                    value="connected",
                    condition="= true",
                    scope=where(RECENT, SCOPE),
                    series=("device_id", "berth"),
                    hits="connected_berths",
                    total="berths",
                )
            )
        )
        .override_by_name("connected_berths", [prop("displayName", CONNECTED_BERTHS)])
    )
    d.with_panel(
        stat_panel(
            "Shore power now",
            "Σ of each berth's latest power in the last 10 minutes.",
            unit(M, "power_kw"),
        ).with_target(
            ctx.q(
                f'SELECT sum("p") AS {ident("power_kw")} FROM (SELECT last({ident("power_kw")}) '
                f'AS "p" FROM {ident(M)} WHERE {where(RECENT, SCOPE)} {group_by(*BERTH)})'
            )
        )
    )
    d.with_panel(
        stat_panel(
            "Energy supplied",
            "kWh supplied in the dashboard range (Σ of the berth meters' increase).",
            unit(M, "energy_kwh"),
            w=12,
        ).with_target(
            ctx.q(
                f'SELECT sum("e") AS {ident("energy_kwh")} FROM (SELECT spread('
                f'{ident("energy_kwh")}) AS "e" FROM {ident(M)} WHERE {where(TIME_FILTER, SCOPE)} '
                f"{group_by(*BERTH)})"
            )
        )
    )
    d.with_row(row("Energy"))
    d.with_panel(
        bargauge_panel(
            "kWh per berth", "kWh supplied in the dashboard range.", unit(M, "energy_kwh"), w=8
        ).with_target(ctx.q(spread_query(BERTH), alias="$tag_site $tag_berth"))
    )
    d.with_panel(
        timeseries_panel(
            "kWh per day",
            "kWh supplied per calendar day of the city, stacked by berth (the increase of the "
            "meter within the day: energy between a day's last and the next day's first "
            "reading counts for neither).",
            unit(M, "energy_kwh"),
            w=16,
            bars=True,
            stacked=True,
            interval="1d",
        ).with_target(ctx.q(spread_query(BERTH, "1d", ctx.timezone), alias="$tag_site $tag_berth"))
    )
    d.with_panel(
        timeline_panel(
            "Berth connection",
            "Ship connected (blue) or berth free (grey).",
            value_mappings(CONNECTED),
        ).with_target(
            ctx.q(
                f"SELECT last({ident('connected')}) AS {ident('connected')} FROM {ident(M)} "
                f"WHERE {where(TIME_FILTER, SCOPE)} {group_by('site', 'berth', interval=INTERVAL)} "
                "fill(none)",
                alias="$tag_site $tag_berth",
            )
        )
    )
    d.with_row(row("Sessions"))
    d.with_panel(
        table_panel(
            "Shore-power sessions",
            "One row per ship and berth in the range: first and last connected reading and "
            "the kWh the meter advanced meanwhile (a ship calling twice at the same berth in "
            "the range shows once).",
            h=10,
            units=[("kWh", unit(M, "energy_kwh"))],
            titles={"vessel_id": "vessel"},
            transformations=_session_transforms(),
            no_value="No ship connected in this period",
            sort="start",
        )
        .interval("5m")
        .with_target(ctx.q(sessions_query(), table=True))
    )
    return d


def _session_transforms() -> list[DataTransformerConfig]:
    """Rows per bucket → one row per (site, berth, vessel) with start, end and kWh."""
    group = DataTransformerConfig(
        id_val="groupBy",
        options={
            "fields": {
                "site": {"operation": "groupby", "aggregations": []},
                "berth": {"operation": "groupby", "aggregations": []},
                "vessel_id": {"operation": "groupby", "aggregations": []},
                "Time": {"operation": "aggregate", "aggregations": ["firstNotNull", "lastNotNull"]},
                "energy_start_kwh": {"operation": "aggregate", "aggregations": ["min"]},
                "energy_end_kwh": {"operation": "aggregate", "aggregations": ["max"]},
            }
        },
    )
    kwh = DataTransformerConfig(
        id_val="calculateField",
        options={
            "mode": "binary",
            "binary": {
                "left": "energy_end_kwh (max)",
                "operator": "-",
                "right": "energy_start_kwh (min)",
            },
            "alias": "kWh",
            "replaceFields": False,
        },
    )
    tidy = organize(
        ["site", "berth", "vessel_id", "Time (firstNotNull)", "Time (lastNotNull)", "kWh"],
        {"Time (firstNotNull)": "start", "Time (lastNotNull)": "end"},
        hide=["energy_start_kwh (min)", "energy_end_kwh (max)"],
    )
    return [group, kwh, tidy]
