"""``envgrid hj212-gateway``: the HJ 212-2017 TCP gateway for station data loggers."""

from __future__ import annotations

from collections import Counter
from typing import Annotated

import typer

from devices.registry import RegistryError
from envgrid.cli.common import ConfigOpt, fail, run_async, settings_or_exit, setup_logging
from envgrid.settings import Settings

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
            )
        )
    except (RegistryError, ValueError) as e:
        raise fail(str(e)) from None
    typer.echo(
        f"sent {report.sent} HJ 212 packets from {report.stations} stations "
        f"({report.rtd} real-time, {report.hourly} hourly, {report.flagged_values} flagged "
        f"values, {report.bad} bad on purpose); {report.replies} replies"
    )
