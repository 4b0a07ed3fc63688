"""``envgrid rules check`` and ``envgrid alerts list|ack``.

``alerts`` commands open the alert store (SQLite) directly rather than calling the HTTP API: they
work on the server whether or not the service runs, need no token (the file's permissions are the
access control), and SQLite's WAL mode lets them read and write while the service runs. From
another machine, use the HTTP API (docs/alerts.md).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer

from alerts.dispatch import notifications
from alerts.notify import DeliveryError
from alerts.receivers import build_receiver
from alerts.routing import RoutingError, check_routing, is_routing_file, load_routing
from alerts.rules import check_rules
from alerts.store import AlertFilter, AlertStore, StoreError
from envgrid.cli.common import ConfigOpt, fail, settings_or_exit

rules_app = typer.Typer(no_args_is_help=True, help="Alert rule files.")
alerts_app = typer.Typer(no_args_is_help=True, help="Alerts in the alert store.")

STATES = ("pending", "firing", "resolved")


@rules_app.command("check")
def rules_check(
    path: Annotated[Path, typer.Argument(help="A rule file or a folder of *.yaml.")],
) -> None:
    """Validate rules or a routing file: every problem with its file, line and fix (exit 1)."""
    if path.is_file() and is_routing_file(path):
        _check_routing(path)
        return
    rules, errors = check_rules(path)
    for e in errors:
        typer.echo(e, err=True)
    if errors:
        raise fail(f"{len(errors)} problem(s) in {path}", code=1)
    by_kind = Counter(r.kind for r in rules.rules)
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(by_kind.items()))
    typer.echo(f"{path}: {len(rules)} rules OK ({kinds})")


def _check_routing(path: Path) -> None:
    routing, errors = check_routing(path)
    for e in errors:
        typer.echo(e, err=True)
    if errors:
        raise fail(f"{len(errors)} problem(s) in {path}", code=1)
    typer.echo(
        f"{path}: routing OK ({len(routing.receivers)} receivers, {len(routing.routes)} routes, "
        f"{len(routing.oncall.rotas)} rotas)"
    )
    now = datetime.now(UTC)
    for rota, person, until in routing.oncall.board(now):
        who = f"{person.label} ({person.id})" if person else "nobody"
        typer.echo(f"  on call now in {rota}: {who} until {until:%Y-%m-%d %H:%M %Z}")


@alerts_app.command("notifications")
def alerts_notifications(
    alert_id: Annotated[int, typer.Argument(help="The alert's id (see `envgrid alerts list`).")],
    config: ConfigOpt = None,
) -> None:
    """What was sent for an alert, to whom, when, and with what result."""
    store, tz = _open_store(config)
    try:
        rows = notifications(store, alert_id)
    finally:
        store.close()
    if not rows:
        typer.echo(f"no notifications for alert {alert_id}")
        return
    for n in rows:
        when = datetime.fromtimestamp(n.created_ms / 1000, tz)
        group = f" (one message for {n.alerts_in_message})" if n.alerts_in_message > 1 else ""
        err = f": {n.last_error}" if n.last_error and n.result != "delivered" else ""
        typer.echo(
            f"{when:%Y-%m-%d %H:%M:%S} {n.target:<16} {n.reason:<10} {n.result}"
            f"{' after ' + str(n.attempts) + ' failed attempts' if n.attempts else ''}{group}{err}"
        )


@alerts_app.command("test-receiver")
def alerts_test_receiver(
    name: Annotated[str, typer.Argument(help="A receiver of ENVGRID_ALERTS__ROUTING.")],
    config: ConfigOpt = None,
) -> None:
    """Send a test message to one receiver now and print the vendor's answer."""
    s = settings_or_exit(config)
    if s.alerts.routing is None:
        raise fail("no routing file: set ENVGRID_ALERTS__ROUTING (docs/notifications.md)")
    try:
        routing = load_routing(s.alerts.routing)
    except RoutingError as e:
        raise fail("\n".join(e.errors)) from None
    conf = routing.receivers.get(name)
    if conf is None:
        known = ", ".join(routing.receivers) or "none"
        raise fail(f"no receiver {name!r} in {s.alerts.routing}; known: {known}")
    target = build_receiver(conf)

    async def send() -> None:
        payload: dict[str, Any] = {"type": "alerts", "reason": "test", "alerts": []}
        if conf.spec.oncall:
            person = routing.oncall.now(conf.spec.oncall, datetime.now(UTC))
            if person is not None:
                payload["people"] = [{"id": person.id, "name": person.label}]
                payload["mobiles"] = [*conf.spec.mobiles, *([person.mobile] * bool(person.mobile))]
                payload["emails"] = [person.email] if person.email else []
        payload.setdefault("mobiles", list(conf.spec.mobiles))
        try:
            await target.send(payload, json.dumps(payload))
        finally:
            await target.close()

    try:
        asyncio.run(send())
    except DeliveryError as e:
        kind = "permanent error" if e.permanent else "temporary error"
        raise fail(f"{name}: {kind}: {e}") from None
    typer.echo(f"{name}: test message accepted by {conf.spec.type}")


def _open_store(config: Path | None) -> tuple[AlertStore, ZoneInfo]:
    s = settings_or_exit(config)
    path = s.alerts.store
    if not path.exists():
        raise fail(
            f"no alert store at {path}: the service has not run with alerts here yet; "
            "set ENVGRID_ALERTS__STORE to the service's store"
        )
    try:
        return AlertStore(path), ZoneInfo(s.standards.timezone)
    except StoreError as e:
        raise fail(str(e)) from None


@alerts_app.command("list")
def alerts_list(
    config: ConfigOpt = None,
    state: Annotated[
        str | None, typer.Option(help="pending, firing or resolved (default: all).")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
) -> None:
    """Alerts, newest first: id, state, severity, rule, device, since, who acked."""
    if state is not None and state not in STATES:
        raise fail(f"unknown state {state!r}: use one of {', '.join(STATES)}")
    store, tz = _open_store(config)
    try:
        rows = store.list_alerts(AlertFilter(state=state, limit=limit))
    finally:
        store.close()
    if not rows:
        typer.echo("no alerts" + (f" in state {state}" if state else ""))
        return
    for r in rows:
        since = datetime.fromtimestamp((r.fired_ms or r.started_ms) / 1000, tz)
        flags = " [silenced]" if r.silenced else ""
        acked = f" acked by {r.acked_by}" if r.acked_by else ""
        typer.echo(
            f"{r.id:>6} {r.state:<8} {r.severity:<8} {r.rule_id} {r.device_id}"
            f"{' ' + r.series if r.series else ''} since {since:%Y-%m-%d %H:%M:%S}"
            f"{flags}{acked}: {r.message}"
        )


@alerts_app.command("ack")
def alerts_ack(
    alert_id: Annotated[int, typer.Argument(help="The alert's id (see `envgrid alerts list`).")],
    by: Annotated[str, typer.Option("--by", help="Who acknowledges.")],
    comment: Annotated[str, typer.Option("--comment", help="Why, or what is being done.")] = "",
    config: ConfigOpt = None,
) -> None:
    """Acknowledge an alert: records who, when and the comment."""
    if not by.strip():
        raise fail("--by needs a name")
    store, tz = _open_store(config)
    try:
        now = int(datetime.now(tz).timestamp() * 1000)
        rec = store.ack(alert_id, by.strip(), comment, now)
    finally:
        store.close()
    if rec is None:
        raise fail(f"no alert {alert_id}; see `envgrid alerts list`")
    typer.echo(
        f"alert {alert_id} ({rec.rule_id} {rec.device_id}, {rec.state}) acknowledged by {by}"
    )
