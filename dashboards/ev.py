"""EV charging: connector status over time, energy delivered, utilisation and faults (OCPP 1.6).

For the power company's charging-network operators: which connectors are busy, broken or idle,
how much energy the network delivered, and which faults need a technician.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db

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
    BLUE,
    EV_STATUS,
    GREEN,
    RED,
    SCOPE,
    Ctx,
    bargauge_panel,
    new_dashboard,
    organize,
    row,
    shown,
    stat_panel,
    steps,
    table_panel,
    timeline_panel,
    timeseries_panel,
    unit_overrides,
    value_mappings,
)
from dashboards.schema import unit

UID = "envgrid-ev"
M = "ev_charger"
CONNECTOR = ("device_id", "connector")
FAULTY = f"{ident('error_code')} != {literal('NoError')}"


def delivered(by: tuple[str, ...] = ()) -> str:
    """kWh delivered in the range: Σ over connectors of the meter register's spread."""
    return (
        f'SELECT sum("d") AS {ident("energy_kwh")} FROM (SELECT spread({ident("energy_kwh")}) '
        f'AS "d" FROM {ident(M)} WHERE {where(TIME_FILTER, SCOPE)} '
        f"{group_by(*CONNECTOR, *by)}) {group_by(*by)}"
    )


def utilisation(by: tuple[str, ...] = ()) -> str:
    """Share of connector readings in the range whose status is Charging, in percent.

    Readings come at a steady rate, so it is the share of connector time spent charging.
    Counts are summed as floats (InfluxDB 1.x sums merged integer columns to null); the
    zero-valued ``c`` keeps the result 0, not empty, when nothing charged.
    """
    g, st = group_by(*CONNECTOR, *by), ident("status")
    scope = where(TIME_FILTER, SCOPE)
    return (
        f'SELECT 100 * sum("c") / sum("n") AS {ident("utilisation_pct")} '
        f'FROM (SELECT count({st}) * 1.0 AS "n" FROM {ident(M)} WHERE {scope} {g}), '
        f'(SELECT count({st}) * 1.0 AS "c" FROM {ident(M)} '
        f"WHERE {where(scope, f'{st} = ' + literal('Charging'))} {g}), "
        f'(SELECT count({st}) * 0.0 AS "c" FROM {ident(M)} WHERE {scope} {g}) {group_by(*by)}'
    )


def now_count(status: str, hits: str) -> str:
    """Connectors whose latest status (last 10 minutes) is ``status``, and all connectors."""
    return count_latest(
        M,
        value="status",
        condition="= " + literal(status),
        scope=where(RECENT, SCOPE),
        series=CONNECTOR,
        hits=hits,
        total="connectors",
    )


def build(ctx: Ctx) -> db.Dashboard:
    """The EV charging dashboard."""
    d = new_dashboard(
        ctx,
        UID,
        "EV charging",
        "Charge points (OCPP 1.6): connector status over time, energy delivered, utilisation "
        "and faults.",
        [M],
    )
    d.with_row(row("Now"))
    d.with_panel(
        stat_panel(
            "Connectors charging",
            "Connectors whose latest status (last 10 minutes) is Charging, of all connectors "
            "reporting.",
            "short",
            w=5,
            fields=shown("charging", "connectors"),
            names=True,
            decimals=0,
        ).with_target(ctx.q(now_count("Charging", "charging")))
    )
    d.with_panel(
        stat_panel(
            "Connectors faulted",
            "Connectors whose latest status (last 10 minutes) is Faulted.",
            "short",
            w=4,
            fields=shown("faulted"),
            decimals=0,
            thresholds=steps((None, GREEN), (1, RED)),
        ).with_target(ctx.q(now_count("Faulted", "faulted")))
    )
    d.with_panel(
        stat_panel(
            "Charging power now",
            "Σ of each connector's latest power in the last 10 minutes.",
            unit(M, "power_kw"),
            w=5,
        ).with_target(
            ctx.q(
                f'SELECT sum("p") AS {ident("power_kw")} FROM (SELECT last({ident("power_kw")}) '
                f'AS "p" FROM {ident(M)} WHERE {where(RECENT, SCOPE)} {group_by(*CONNECTOR)})'
            )
        )
    )
    d.with_panel(
        stat_panel(
            "Energy delivered",
            "kWh delivered in the dashboard range (meter register increase per connector).",
            unit(M, "energy_kwh"),
            w=5,
        ).with_target(ctx.q(delivered()))
    )
    d.with_panel(
        stat_panel(
            "Utilisation",
            "Share of connector time in the range spent Charging.",
            "percent",
            w=5,
            decimals=1,
            thresholds=steps((None, BLUE)),
        ).with_target(ctx.q(utilisation()))
    )
    d.with_row(row("Connectors"))
    d.with_panel(
        timeline_panel(
            "Connector status",
            "OCPP 1.6 status of every connector (charge point #connector).",
            value_mappings(EV_STATUS),
            h=12,
        ).with_target(
            ctx.q(
                f"SELECT last({ident('status')}) AS {ident('status')} FROM {ident(M)} "
                f"WHERE {where(TIME_FILTER, SCOPE)} {group_by(*CONNECTOR, interval=INTERVAL)} "
                "fill(none)",
                alias="$tag_device_id #$tag_connector",
            )
        )
    )
    d.with_panel(
        timeseries_panel(
            "Charging power by site",
            "Σ of the connectors' mean power per bucket, stacked by site.",
            unit(M, "power_kw"),
            w=12,
            stacked=True,
            interval="1m",
        ).with_target(
            ctx.q(
                f'SELECT sum("p") AS {ident("power_kw")} FROM (SELECT mean({ident("power_kw")}) '
                f'AS "p" FROM {ident(M)} WHERE {where(TIME_FILTER, SCOPE)} '
                f"{group_by(*CONNECTOR, 'site', interval=INTERVAL)}) WHERE {TIME_FILTER} "
                f"{group_by('site', interval=INTERVAL)} fill(none)",
                alias="$tag_site",
            )
        )
    )
    d.with_panel(
        bargauge_panel(
            "Energy delivered by site", "kWh in the dashboard range.", unit(M, "energy_kwh"), w=6
        ).with_target(ctx.q(delivered(("site",)), alias="$tag_site"))
    )
    d.with_panel(
        bargauge_panel(
            "Utilisation by site",
            "Share of connector time spent Charging.",
            "percent",
            w=6,
            decimals=1,
        ).with_target(ctx.q(utilisation(("site",)), alias="$tag_site"))
    )
    d.with_row(row("Faults"))
    cols = ("status", "error_code")
    d.with_panel(
        table_panel(
            "Fault reports",
            "Every reading with an OCPP error code other than NoError, newest first (at most 200).",
            h=8,
            units=unit_overrides(M, cols),
            coloured={"status": EV_STATUS},
            transformations=[organize(["Time", "device_id", "connector", "site", "county", *cols])],
            no_value="No fault in this period",
        ).with_target(
            ctx.q(
                f"SELECT {ident('status')}, {ident('error_code')}, {ident('device_id')}, "
                f"{ident('connector')}, {ident('site')}, {ident('county')} FROM {ident(M)} "
                f"WHERE {where(TIME_FILTER, SCOPE, FAULTY)} "
                "ORDER BY time DESC LIMIT 200",
                table=True,
            )
        )
    )
    return d
