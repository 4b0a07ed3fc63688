"""``envgrid hj212-gateway``: the HJ 212-2017 TCP gateway for station data loggers."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Annotated

import typer

from devices.registry import RegistryError
from envgrid.cli.common import ConfigOpt, fail, run_async, settings_or_exit, setup_logging
from envgrid.settings import Settings

if TYPE_CHECKING:
    from hj212.store import Store

hj212_app = typer.Typer(
    help="HJ 212-2017 TCP gateway: station data loggers connect, packets go to the broker."
)


@hj212_app.callback(invoke_without_command=True)
def hj212_gateway(
    config: ConfigOpt = None,
    host: Annotated[
        str | None, typer.Option(help="Listen address (default ENVGRID_HJ212__HOST).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Listen port (default ENVGRID_HJ212__PORT).")
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Validate the stations' HJ 212 settings and exit.")
    ] = False,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING")] = "INFO",
) -> None:
    """Accept station connections, publish each packet to <prefix>/hj212/<MN>, reply 9014.

    Runs alone (the service consumes the topic); `envgrid run` runs the same gateway itself when
    ENVGRID_HJ212__PORT is set. Its /metrics are on ENVGRID_HTTP__PORT.
    """
    from devices.registry import load_registry
    from envgrid.gateway import run_gateway
    from hj212.intake import load_stations
    from ingest.mqtt import MqttError

    setup_logging(log_level)
    overrides = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    settings = settings_or_exit(config)
    if overrides:
        settings = settings.model_copy(
            update={"hj212": settings.hj212.model_copy(update=overrides)}
        )
    try:
        stations = load_stations(
            load_registry(settings.devices.registry),
            settings.standards.timezone,
            settings.devices.registry,
        )
    except RegistryError as e:
        raise fail(str(e)) from None
    if check:
        kinds = Counter(s.kind for s in stations.values())
        typer.echo(
            f"{len(stations)} HJ 212 stations OK "
            f"({', '.join(f'{k} {n}' for k, n in sorted(kinds.items())) or 'none'})"
        )
        return
    if settings.hj212.port is None:
        raise fail("no port: give --port or set ENVGRID_HJ212__PORT (or [hj212] port)")
    try:
        code = run_async(lambda: run_gateway(settings))
    except (RegistryError, MqttError, OSError) as e:
        raise fail(str(e)) from None
    raise typer.Exit(code)


def simulate_hj212(
    settings: Settings,
    protocol: str,
    per_kind: int,
    duration: float,
    count: int,
    bad_fraction: float,
    seed: int | None,
    *,
    drop_hourly: float = 0.0,
    clock_drift: float = 0.0,
) -> None:
    """``envgrid simulate --protocol hj212``: the stations' loggers against the gateway."""
    from envgrid.simulate import run_hj212_simulation

    if protocol != "hj212":
        raise fail(f"unknown protocol {protocol!r}: use json or hj212")
    try:
        report = run_async(
            lambda: run_hj212_simulation(
                settings,
                per_kind=per_kind,
                duration=duration,
                count=count,
                bad_fraction=bad_fraction,
                seed=seed,
                drop_hourly=drop_hourly,
                clock_drift=clock_drift,
            )
        )
    except (RegistryError, ValueError) as e:
        raise fail(str(e)) from None
    typer.echo(
        f"sent {report.sent} HJ 212 packets from {report.stations} stations "
        f"({report.rtd} real-time, {report.hourly} hourly, {report.flagged_values} flagged "
        f"values, {report.bad} bad on purpose); {report.replies} replies"
    )
    if report.dropped_hours or report.commands:
        typer.echo(
            f"{report.dropped_hours} hourly uploads skipped on purpose; "
            f"{report.commands} platform commands answered"
        )


# ---------------------------------------------------------------------------------------------
# envgrid hj212 command / commands
# ---------------------------------------------------------------------------------------------

commands_app = typer.Typer(
    help="Commands to HJ 212 stations (re-request data, set clocks, intervals, PW); "
    "docs/hj212.md 'Commands'."
)


@commands_app.command("command")
def send_command(
    mn: Annotated[str, typer.Argument(help="The station's MN.")],
    cn: Annotated[str, typer.Argument(help="Command code, e.g. 2061, 1012, 1061.")],
    params: Annotated[
        list[str] | None,
        typer.Argument(help="CP parameters KEY=VALUE, e.g. BeginTime=20261201000000."),
    ] = None,
    by: Annotated[str, typer.Option(help="Who asks (recorded with the command).")] = "cli",
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for the outcome (0: do not wait).")
    ] = 0.0,
    config: ConfigOpt = None,
) -> None:
    """Queue a command for a station: stored, and routed to the gateway holding its connection
    on <prefix>/hj212cmd/<MN>. Prints its QN (and its outcome with --wait)."""
    from zoneinfo import ZoneInfo

    from devices.registry import load_registry
    from envgrid.gateway import command_store
    from hj212.commands import SYSTEM_TIME_NOW, CommandError, new_command
    from hj212.intake import load_stations
    from hj212.store_pg import StoreError

    settings = settings_or_exit(config)
    try:
        stations = load_stations(
            load_registry(settings.devices.registry),
            settings.standards.timezone,
            settings.devices.registry,
        )
    except RegistryError as e:
        raise fail(str(e)) from None
    if mn not in stations:
        raise fail(f"unknown MN {mn!r}: no station in the device registry has it")
    values: dict[str, str] = {}
    for item in params or []:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise fail(f"parameter {item!r}: write KEY=VALUE, e.g. BeginTime=20261201000000")
        values[key] = value
    tz = stations[mn].tz
    if cn == "1012" and values.get("SystemTime", SYSTEM_TIME_NOW) == SYSTEM_TIME_NOW:
        from datetime import datetime

        from hj212.commands import format_time

        values["SystemTime"] = format_time(datetime.now(tz).replace(tzinfo=None))
    try:
        cmd = new_command(
            mn, cn, values, by, ZoneInfo(str(tz)), settings.hj212.command_expiry.total_seconds()
        )
    except CommandError as e:
        raise fail(str(e)) from None
    try:
        store = command_store(settings)
    except StoreError as e:
        raise fail(str(e)) from None
    try:
        store.add(cmd)
        run_async(lambda: _route(settings, cmd))
        typer.echo(f"{cmd.qn} queued: CN {cn} for MN {mn}")
        if wait > 0:
            final = _wait(store, cmd.qn, wait)
            typer.echo(f"{cmd.qn} {final}")
    finally:
        store.close()


async def _route(settings: Settings, cmd: object) -> None:
    from hj212.commands import Command
    from hj212.gateway import publisher_options
    from hj212.routing import publish_command
    from ingest.mqtt import MqttClient, MqttError

    assert isinstance(cmd, Command)
    client = MqttClient(publisher_options(settings, "hj212-cli"), lambda _m: None)
    await client.start()
    try:
        await client.wait_connected(timeout=max(5.0, settings.mqtt.connect_timeout_s))
        await publish_command(client, settings.mqtt.topic_prefix, cmd)
    except MqttError as e:
        raise fail(f"cannot route the command through the broker: {e}") from None
    finally:
        await client.close()


def _wait(store: Store, qn: str, seconds: float) -> str:
    import time

    deadline = time.monotonic() + seconds
    while True:
        cmd = store.get(qn)
        if cmd is not None and (not cmd.open or time.monotonic() >= deadline):
            extra = f" {cmd.result}" if cmd.result else ""
            return f"{cmd.status} ({cmd.packets} data packets){extra} {cmd.detail}".rstrip()
        if time.monotonic() >= deadline:
            return "not seen in the command store"
        time.sleep(0.2)


@commands_app.command("commands")
def list_commands(
    mn: Annotated[str | None, typer.Option(help="Only this station's commands.")] = None,
    status: Annotated[str | None, typer.Option(help="Only commands in this status.")] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 50,
    config: ConfigOpt = None,
) -> None:
    """The commands in the store, newest first."""
    from datetime import datetime

    from envgrid.gateway import command_store
    from hj212.store_pg import StoreError

    settings = settings_or_exit(config)
    try:
        store = command_store(settings)
    except StoreError as e:
        raise fail(str(e)) from None
    try:
        rows = store.find(mn=mn, status=status, limit=limit)
    finally:
        store.close()
    if not rows:
        typer.echo("no commands")
        return
    for c in rows:
        when = datetime.fromtimestamp(c.created).isoformat(timespec="seconds")
        params = " ".join(f"{k}={v}" for k, v in c.params.items())
        typer.echo(
            f"{c.qn}  {when}  {c.mn}  CN {c.cn}  {c.status:<9}  by {c.requested_by}  "
            f"packets {c.packets}  {params}  {c.detail}".rstrip()
        )
