"""Alerts and ingest health: alert notifications, and envgrid's own counters from envgrid_stats.

For the operators on duty (alerts) and whoever runs envgrid (is data flowing, is anything
rejected, is InfluxDB keeping up, is the spool filling). The service writes envgrid_stats every
10 s, so this needs no Prometheus.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models.dashboard import DataTransformerConfig

from dashboards import alerts_common as ac
from dashboards.influxql import INTERVAL, TIME_FILTER, group_by, ident, literal, matches, where
from dashboards.panels import (
    GREEN,
    ORANGE,
    PAUSED,
    RED,
    SCOPE,
    UP_DOWN,
    Ctx,
    mapped,
    new_dashboard,
    prop,
    row,
    shown,
    stat_panel,
    steps,
    tag_variable,
    thresholds_prop,
    timeline_panel,
    timeseries_panel,
)
from dashboards.schema import ALERTS, STATS, unit

UID = "envgrid-health"
STATS_PERIOD = "10s"  # the service writes envgrid_stats this often: smaller buckets are empty
HOST = matches("host", "host")
WORKER = ("host", "worker")
EPISODES = "episodes in 7 days"  # displayed name of the episodes count


def stats_query(select: str) -> str:
    """A query on envgrid_stats per bucket, host and worker."""
    return (
        f"SELECT {select} FROM {ident(STATS)} WHERE {where(TIME_FILTER, HOST)} "
        f"{group_by(*WORKER, interval=INTERVAL)} fill(none)"
    )


def rate(field: str) -> str:
    """Per-second increase of a counter as ``<field>_per_s`` (restarts, which reset it, skip)."""
    return f"non_negative_derivative(max({ident(field)}), 1s) AS {ident(field + '_per_s')}"


def build(ctx: Ctx) -> db.Dashboard:
    """The Alerts and ingest health dashboard."""
    d = new_dashboard(
        ctx,
        UID,
        "Alerts and ingest health",
        "Alert notifications from the alerts measurement, and envgrid's own counters "
        "(envgrid_stats, every 10 s): messages per second, rejects by reason, write latency, "
        "spool depth and connections.",
        [ALERTS],
        refresh="30s",
        time_from="now-1h",
    )
    d.with_variable(
        tag_variable(ctx, "host", "Host", f'SHOW TAG VALUES FROM "{STATS}" WITH KEY = "host"')
    )
    d.annotation(ac.annotation(ctx))
    d.with_row(row("Alerts"))
    d.with_panel(
        stat_panel(
            "Alerts firing",
            "Alert episodes whose latest notification in the last 7 days is 'firing'.",
            "short",
            w=4,
            h=8,
            fields=shown("firing", EPISODES),
            names=True,
            decimals=0,
        )
        .with_target(ctx.q(ac.firing_count_query()))
        .override_by_name("firing", [thresholds_prop((None, GREEN), (1, RED))])
        .override_by_name("episodes", [prop("displayName", EPISODES)])
    )
    d.with_panel(ac.active_table(ctx, w=20, h=8))
    d.with_panel(
        timeseries_panel(
            "Alerts fired by severity",
            "Firing notifications per bucket, stacked by severity.",
            "short",
            w=8,
            h=10,
            bars=True,
            stacked=True,
            interval="10m",
        ).with_target(
            ctx.q(
                f"SELECT count({ident('alert_id')}) AS {ident('fired')} FROM {ident(ALERTS)} "
                f"WHERE {where(TIME_FILTER, SCOPE, ident('state') + ' = ' + literal('firing'))} "
                f"{group_by('severity', interval=INTERVAL)} fill(none)",
                alias="$tag_severity",
            )
        )
    )
    d.with_panel(ac.history_table(ctx, w=16, h=10))
    d.with_row(row("Ingest (envgrid_stats)"))
    d.with_panel(
        timeseries_panel(
            "Messages per second",
            "MQTT messages received and points written to InfluxDB per second, per worker.",
            "cps",
            w=12,
            interval=STATS_PERIOD,
        ).with_target(
            ctx.q(
                stats_query(f"{rate('received')}, {rate('points_written')}"),
                alias="$tag_host/$tag_worker $col",
            )
        )
    )
    d.with_panel(
        timeseries_panel(
            "Rejects by reason",
            "Messages dead-lettered per second, by rejection category.",
            "cps",
            w=12,
            stacked=True,
            interval=STATS_PERIOD,
        )
        .with_target(
            ctx.q(
                f"SELECT non_negative_derivative(max(/^rejected_/), 1s) FROM {ident(STATS)} "
                f"WHERE {where(TIME_FILTER, HOST)} {group_by(*WORKER, interval=INTERVAL)} "
                "fill(none)",
                alias="$tag_host/$tag_worker $col",
            )
        )
        .with_transformation(
            DataTransformerConfig(
                id_val="renameByRegex",
                options={
                    "regex": "(.*)non_negative_derivative_rejected_(.*)",
                    "renamePattern": "$1$2",
                },
            )
        )
    )
    d.with_panel(
        timeseries_panel(
            "Write latency",
            "Slowest InfluxDB batch write per bucket.",
            unit(STATS, "write_latency_s"),
            w=8,
            thresholds=steps((None, GREEN), (1, ORANGE), (5, RED)),
            interval=STATS_PERIOD,
        ).with_target(
            ctx.q(
                stats_query(f"max({ident('write_latency_s')}) AS {ident('write_latency_s')}"),
                alias="$tag_host/$tag_worker",
            )
        )
    )
    d.with_panel(
        timeseries_panel(
            "Spool size",
            "Bytes waiting in the disk spool (they grow while InfluxDB is unreachable).",
            unit(STATS, "spool_bytes"),
            w=8,
            interval=STATS_PERIOD,
        ).with_target(
            ctx.q(
                stats_query(f"max({ident('spool_bytes')}) AS {ident('spool_bytes')}"),
                alias="$tag_host/$tag_worker",
            )
        )
    )
    d.with_panel(
        timeseries_panel(
            "Queue and spool batches",
            "Readings in memory awaiting a write, and batches in the spool.",
            "short",
            w=8,
            interval=STATS_PERIOD,
        ).with_target(
            ctx.q(
                stats_query(
                    f"max({ident('queue_depth')}) AS {ident('queue_depth')}, "
                    f"max({ident('spool_records')}) AS {ident('spool_records')}"
                ),
                alias="$tag_host/$tag_worker $col",
            )
        )
    )
    states = ("mqtt_connected", "influx_up", "paused")
    timeline = timeline_panel(
        "Connections",
        "Broker connection, InfluxDB reachability and whether consumption is paused (spool "
        "near full), per worker.",
        [],
        h=6,
    ).with_target(
        ctx.q(
            stats_query(", ".join(f"last({ident(s)}) AS {ident(s)}" for s in states)),
            alias="$tag_host/$tag_worker $col",
        )
    )
    for s, options in zip(states, (UP_DOWN, UP_DOWN, PAUSED), strict=True):
        timeline.override_by_regexp(f".*{s}$", mapped(options)[:2])
    d.with_panel(timeline)
    return d
