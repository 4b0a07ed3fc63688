"""``envgrid rules check`` and ``envgrid alerts list|ack``.

``alerts`` commands open the alert store (SQLite) directly rather than calling the HTTP API: they
work on the server whether or not the service runs, need no token (the file's permissions are the
access control), and SQLite's WAL mode lets them read and write while the service runs. From
another machine, use the HTTP API (docs/alerts.md).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer

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
    """Validate rules: every problem with its file, line and fix (exit 1 if any)."""
    rules, errors = check_rules(path)
    for e in errors:
        typer.echo(e, err=True)
    if errors:
        raise fail(f"{len(errors)} problem(s) in {path}", code=1)
    by_kind = Counter(r.kind for r in rules.rules)
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(by_kind.items()))
    typer.echo(f"{path}: {len(rules)} rules OK ({kinds})")


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
