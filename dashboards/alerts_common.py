"""Alert queries shared by the City overview and the Alerts and ingest health dashboards.

The ``alerts`` measurement holds one point per notification (alerts.notify.InfluxTarget):
tags rule_id, severity, kind, device_id, site, county and state (firing | resolved), fields
message, value and alert_id. An alert episode's state is the state of its latest point.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import table

from dashboards.influxql import InfluxAnnotation, count_latest, group_by, ident, literal, where
from dashboards.panels import (
    ALERT_STATE,
    SCOPE,
    SEVERITY,
    Ctx,
    organize,
    table_panel,
)
from dashboards.schema import ALERTS

# An episode still firing after this long is still listed: long enough for a week-end.
ACTIVE_WINDOW = "time > now() - 7d"
EPISODE = ("rule_id", "device_id")


def annotation(ctx: Ctx) -> db.AnnotationQuery:
    """Every alert notification as an event on the time axis of every graph."""
    query = (
        f"SELECT {ident('message')}, {ident('severity')}, {ident('rule_id')}, "
        f"{ident('device_id')}, {ident('state')} FROM {ident(ALERTS)} "
        f"WHERE {where('$timeFilter', SCOPE)}"
    )
    return (
        db.AnnotationQuery()
        .name("Alerts")
        .datasource(ctx.ds)
        .enable(True)
        .icon_color("red")
        .target(InfluxAnnotation(query, "message", "state,severity,rule_id,device_id"))
    )


def firing_count_query() -> str:
    """How many alert episodes are firing now, and how many there were in 7 days."""
    return count_latest(
        ALERTS,
        value="state",
        pick="alert_id",
        condition="= " + literal("firing"),
        scope=where(ACTIVE_WINDOW, SCOPE),
        series=EPISODE,
        hits="firing",
        total="episodes",
    )


def active_query() -> str:
    """One row per alert episode whose latest notification is 'firing'."""
    cols = ("severity", "kind", "site", "message", "value")
    inner = (
        f"SELECT last({ident('alert_id')}) AS {ident('alert_id')}, {ident('state')}, "
        + ", ".join(ident(c) for c in cols)
        + f" FROM {ident(ALERTS)} WHERE {where(ACTIVE_WINDOW, SCOPE)} {group_by(*EPISODE)}"
    )
    return (
        f"SELECT {ident('alert_id')}, " + ", ".join(ident(c) for c in cols) + f" FROM ({inner}) "
        f"WHERE {ident('state')} = {literal('firing')} {group_by(*EPISODE)}"
    )


def active_table(ctx: Ctx, *, w: int = 24, h: int = 8) -> table.Panel:
    """Alerts firing now, worst first."""
    return table_panel(
        "Alerts firing now",
        "Each alert episode (rule and device) whose latest notification in the last 7 days "
        "is 'firing'. Time is when it fired.",
        w=w,
        h=h,
        units=[("value", "none")],
        coloured={"severity": SEVERITY},
        transformations=[
            organize(
                ["Time", "severity", "rule_id", "device_id", "site", "message", "value"],
                {"Time": "fired at"},
                hide=["alert_id", "kind"],
            )
        ],
        no_value="No alert firing",
        sort="fired at",
    ).with_target(ctx.q(active_query(), table=True))


def history_query() -> str:
    """Every notification in the range, newest first (at most 500)."""
    cols = ("state", "severity", "rule_id", "kind", "device_id", "site", "value", "message")
    return (
        "SELECT "
        + ", ".join(ident(c) for c in cols)
        + f" FROM {ident(ALERTS)} WHERE {where('$timeFilter', SCOPE)} ORDER BY time DESC LIMIT 500"
    )


def history_table(ctx: Ctx, *, w: int = 24, h: int = 10) -> table.Panel:
    """The notification log."""
    return table_panel(
        "Alert notifications",
        "Every firing and resolved notification in the dashboard range, newest first.",
        w=w,
        h=h,
        units=[("value", "none")],
        coloured={"state": ALERT_STATE, "severity": SEVERITY},
        no_value="No alert in this period",
    ).with_target(ctx.q(history_query(), table=True))
