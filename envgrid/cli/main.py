"""The ``envgrid`` command line."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Annotated

import typer
import yaml

from devices.fleet import fleet
from devices.kinds import KINDS
from devices.lineproto import tag_problem
from devices.registry import Registry, RegistryError, load_registry
from envgrid.cli.alerts import alerts_app, rules_app
from envgrid.cli.common import (
    ConfigOpt,
    fail,
    run_async,
    settings_or_exit,
    setup_logging,
)
from envgrid.cli.console import operators_app
from envgrid.cli.dashboards import dashboards_app
from envgrid.cli.hj212 import commands_app as hj212_commands_app
from envgrid.cli.hj212 import hj212_app
from envgrid.cli.lab import lab_app
from envgrid.cli.pv import pv_app
from envgrid.cli.report import report_app
from envgrid.cli.rollup import rollup_app
from envgrid.cli.shore import shore_app
from envgrid.roles import Role

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="envgrid: environment and energy readings from MQTT to InfluxDB.",
)
spool_app = typer.Typer(no_args_is_help=True, help="Inspect and replay the on-disk spool.")
devices_app = typer.Typer(no_args_is_help=True, help="The device registry.")
app.add_typer(spool_app, name="spool")
app.add_typer(devices_app, name="devices")
app.add_typer(rollup_app, name="rollup")
app.add_typer(rules_app, name="rules")
app.add_typer(alerts_app, name="alerts")
app.add_typer(dashboards_app, name="dashboards")
app.add_typer(hj212_app, name="hj212-gateway")
app.add_typer(hj212_commands_app, name="hj212")
app.add_typer(operators_app, name="operators")
app.add_typer(report_app, name="report")
app.add_typer(pv_app, name="pv")
app.add_typer(lab_app, name="lab")
app.add_typer(shore_app, name="shore")


@app.command()
def run(
    config: ConfigOpt = None,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING")] = "INFO",
    role: Annotated[
        Role,
        typer.Option(
            help="all: ingest and alerts; ingest: no alert engine; alerts: the alert engine "
            "alone (subscribes without sharing, writes no readings)."
        ),
    ] = Role.ALL,
    workers: Annotated[
        int,
        typer.Option(
            min=0,
            help="Ingest processes on this host splitting the stream through an MQTT v5 shared "
            "subscription; 0: one process. With N ≥ 1 this process supervises N `--role "
            "ingest` workers (and one `--role alerts` process when alerts are enabled) and "
            "serves their HTTP API on one port (docs/performance.md).",
        ),
    ] = 0,
    worker: Annotated[
        int | None, typer.Option(hidden=True, help="Set by --workers: this worker's index.")
    ] = None,
) -> None:
    """Run the service: consume MQTT, write InfluxDB, serve /healthz /readyz /metrics."""
    from envgrid.alerting import AlertSetupError
    from envgrid.app import run_service
    from ingest.mqtt import MqttError

    if workers and role is not Role.ALL:
        raise fail("--workers starts its own ingest and alerts processes: drop --role")
    if worker is not None:
        setup_logging(log_level, tag=f"[worker {worker}] ")
    else:
        setup_logging(log_level, tag="[alerts] " if role is Role.ALERTS else "")
    settings = settings_or_exit(config)
    try:
        if workers:
            from envgrid.workers import check_startup, run_workers

            check_startup(settings)
            code = run_async(lambda: run_workers(settings, workers, config, log_level))
        else:
            code = run_async(lambda: run_service(settings, worker=worker, role=role))
    except (RegistryError, MqttError, OSError, AlertSetupError) as e:
        raise fail(str(e)) from None
    raise typer.Exit(code)


@app.command()
def simulate(
    config: ConfigOpt = None,
    per_kind: Annotated[
        int, typer.Option(help="Devices of each kind (from the shipped fleet).")
    ] = 24,
    rate: Annotated[float, typer.Option(help="Messages per second in total.")] = 20.0,
    duration: Annotated[float, typer.Option(help="Seconds to run (0 = until Ctrl-C).")] = 0.0,
    count: Annotated[int, typer.Option(help="Stop after this many messages (0 = no limit).")] = 0,
    bad_fraction: Annotated[float, typer.Option(help="Share of deliberately bad messages.")] = 0.0,
    seed: Annotated[int | None, typer.Option(help="Random seed for repeatable runs.")] = None,
    protocol: Annotated[
        str,
        typer.Option(
            help="json: MQTT messages to the broker; hj212: water and air stations' data "
            "loggers over TCP to the HJ 212 gateway (ENVGRID_HJ212__PORT; --rate unused)."
        ),
    ] = "json",
    drop_hourly: Annotated[
        float,
        typer.Option(
            help="hj212: chance a logger skips an hourly upload (kept: the gateway's 2061 "
            "re-request recovers it)."
        ),
    ] = 0.0,
    clock_drift: Annotated[
        float,
        typer.Option(help="hj212: seconds each logger's clock is off (the gateway sends 1012)."),
    ] = 0.0,
) -> None:
    """Publish a realistic city fleet (water, air, PV, chargers, berths) to the broker."""
    setup_logging("WARNING")
    settings = settings_or_exit(config)
    if protocol != "json":
        from envgrid.cli.hj212 import simulate_hj212

        simulate_hj212(
            settings,
            protocol,
            per_kind,
            duration,
            count,
            bad_fraction,
            seed,
            drop_hourly=drop_hourly,
            clock_drift=clock_drift,
        )
        return
    from envgrid.simulate import run_simulation

    n = run_async(
        lambda: run_simulation(
            settings,
            per_kind=per_kind,
            rate=rate,
            duration=duration,
            count=count,
            bad_fraction=bad_fraction,
            seed=seed,
        )
    )
    typer.echo(f"published {n} messages")


@app.command()
def demo(
    config: ConfigOpt = None,
    rate: Annotated[float, typer.Option(help="Simulated messages per second.")] = 200.0,
    duration: Annotated[float, typer.Option(help="Seconds to run (0 = until Ctrl-C).")] = 0.0,
    bad_fraction: Annotated[float, typer.Option(help="Share of bad messages.")] = 0.02,
    workdir: Annotated[Path, typer.Option(help="Where local servers keep their data.")] = Path(
        "var/demo"
    ),
    history: Annotated[
        bool,
        typer.Option(
            help="First back-fill the fleet's history through the service and roll it up."
        ),
    ] = True,
    history_days: Annotated[
        int, typer.Option(min=1, max=366, help="Days of history to back-fill before going live.")
    ] = 35,
) -> None:
    """One command: local mosquitto + influxd (unless URLs are set), simulator, the service."""
    from envgrid.demo import run_demo
    from ingest.mqtt import MqttError

    settings = settings_or_exit(config)
    try:
        code = run_async(
            lambda: run_demo(
                settings,
                rate=rate,
                duration=duration,
                bad_fraction=bad_fraction,
                workdir=workdir,
                history_days=history_days if history else 0,
            )
        )
    except (RegistryError, OSError, RuntimeError, MqttError) as e:
        raise fail(str(e)) from None
    raise typer.Exit(code)


@spool_app.command("status")
def spool_status(config: ConfigOpt = None) -> None:
    """Segments, batches and bytes waiting in the spool."""
    from ingest.spool import inspect

    s = settings_or_exit(config)
    dirs = [s.ingest.spool_dir, *sorted(s.ingest.spool_dir.glob("worker-*"))]
    for d in dirs:
        if d.is_dir():
            st = inspect(d, s.ingest.spool_max_bytes)  # read-only: the service may be running
            typer.echo(
                f"{d}: {st.segments} segments, {st.records} batches, {st.bytes} bytes "
                f"({st.fill:.1%} of {st.max_bytes})"
            )


@spool_app.command("replay")
def spool_replay(config: ConfigOpt = None) -> None:
    """Write everything in the spool to InfluxDB now (while the service is stopped)."""
    from ingest.deadletter import LocalDeadLetters, make_deadletter
    from ingest.replay import replay_oldest
    from ingest.spool import Spool, SpoolBusy
    from ingest.writer import InfluxWriter

    setup_logging("INFO")
    s = settings_or_exit(config)

    async def replay() -> tuple[int, int]:
        total = refused = 0
        async with InfluxWriter(s.influx) as w:
            for d in [s.ingest.spool_dir, *sorted(s.ingest.spool_dir.glob("worker-*"))]:
                if not d.is_dir():
                    continue
                try:
                    spool = Spool(d, s.ingest.spool_max_bytes, exclusive=True)
                except SpoolBusy as e:
                    raise fail(str(e)) from None
                kept = LocalDeadLetters(d / "deadletters.jsonl")

                async def keep(line: str, reason: str, kept: LocalDeadLetters = kept) -> None:
                    # No broker here: the service's local dead-letter file keeps the line.
                    dl = make_deadletter(
                        lambda t: f"{s.mqtt.topic_prefix}/deadletter/{t}",
                        "spool",
                        line.encode(),
                        reason,
                        max_packet=1 << 28,
                    )
                    await asyncio.to_thread(kept.append, dl, "replayed by envgrid spool replay")

                while (step := await replay_oldest(spool, w, keep)) is not None:
                    if step.failed is not None:
                        raise fail(
                            f"InfluxDB did not take the spool ({step.failed.message}); "
                            f"{len(spool)} batches left in {d}"
                        )
                    total += step.written
                    refused += step.rejected
        return total, refused

    total, refused = run_async(replay)
    typer.echo(f"replayed {total} points")
    if refused:
        typer.echo(
            f"{refused} lines refused by InfluxDB were kept in deadletters.jsonl in the spool "
            "folder",
            err=True,
        )


@devices_app.command("fleet")
def devices_fleet(per_kind: Annotated[int, typer.Option()] = 24, seed: int = 7) -> None:
    """Print the simulated city fleet as a registry file."""
    typer.echo(
        yaml.safe_dump(
            {"devices": fleet(per_kind, seed)}, allow_unicode=True, sort_keys=False, width=120
        )
    )


@devices_app.command("check")
def devices_check(path: Path) -> None:
    """Validate a registry file; report the first problem with its line."""
    from hj212.intake import load_stations

    try:
        reg = load_registry(path)
        stations = load_stations(reg, source=path)
    except RegistryError as e:  # Hj212ConfigError is one too
        raise fail(str(e)) from None
    for d in reg:
        # InfluxDB would refuse every reading of such a device (see devices/lineproto.py).
        kind = KINDS.get(d.kind or "")
        tagged = (*kind.registry_tags, *kind.payload_tags) if kind is not None else ()
        values = [("site", d.site), ("county", d.county)]
        values += [(k, str(v)) for k, v in d.facts.items() if k in tagged and v is not None]
        for key, value in values:
            if (problem := tag_problem(value)) is not None:
                raise fail(f"{path}: device {d.id}: {key} {problem}; change it in the registry")
    from devices import pv

    # Across entries: PV capacity, irradiance_from naming a met station, one rating per area.
    problems = pv.fleet_problems(reg, {d.id: d.kind or "" for d in reg})
    if problems:
        raise fail("\n".join(f"{path}: {p}" for p in problems))
    by_kind: dict[str, int] = {}
    for d in reg:
        by_kind[d.kind or "?"] = by_kind.get(d.kind or "?", 0) + 1
    typer.echo(
        f"{path}: {len(reg)} devices OK ({', '.join(f'{k} {n}' for k, n in by_kind.items())}; "
        f"{len(stations)} HJ 212 stations)"
    )


@devices_app.command("provision")
def devices_provision(
    registry: Path,
    out: Annotated[Path, typer.Option(help="Folder for the broker's files and credentials.")],
    config: ConfigOpt = None,
    device_port: Annotated[int, typer.Option(help="The devices' listener.")] = 1883,
    service_port: Annotated[
        int, typer.Option(help="envgrid's own listener (service, workers, HJ 212 gateway).")
    ] = 1884,
    service_bind: Annotated[
        str, typer.Option(help="Address of envgrid's listener ('' = every interface).")
    ] = "127.0.0.1",
    conf_dir: Annotated[
        str, typer.Option(help="OUT as the broker sees it (e.g. /mosquitto/config in a container).")
    ] = "",
    data_dir: Annotated[
        str, typer.Option(help="The broker's persistence folder.")
    ] = "/var/lib/mosquitto/",
    simulator: Annotated[
        bool, typer.Option(help="Add user 'simulator', allowed every device topic (demo, tests).")
    ] = False,
    prune: Annotated[
        bool, typer.Option(help="Drop credentials of devices no longer in the registry.")
    ] = False,
) -> None:
    """Write a Mosquitto set-up in which each device may publish only on its own topic."""
    from envgrid.provision import BrokerLayout, ProvisionError, provision

    settings = settings_or_exit(config)
    try:
        reg = Registry.parse(registry.read_text(encoding="utf-8"), str(registry), KINDS)
        layout = BrokerLayout(
            device_port=device_port,
            service_port=service_port,
            service_bind=service_bind or None,
            conf_dir=conf_dir,
            persistence_location=data_dir,
        )
        report = provision(
            reg,
            out,
            prefix=settings.mqtt.topic_prefix,
            kinds=KINDS,
            layout=layout,
            simulator=simulator,
            prune=prune,
        )
    except (RegistryError, ProvisionError) as e:
        raise fail(str(e)) from None
    except OSError as e:
        raise fail(f"{e.filename or out}: {e.strerror}") from None
    typer.echo(
        f"{out}: {len(report.added)} credentials added, {len(report.kept)} kept, "
        f"{len(report.removed)} removed; installers' list in {out / 'credentials.csv'}"
    )
    if report.stale:
        typer.echo(
            f"kept {len(report.stale)} devices no longer in the registry "
            f"({', '.join(report.stale[:5])}{' …' if len(report.stale) > 5 else ''}); "
            "--prune drops them",
            err=True,
        )
    typer.echo(
        f"envgrid connects to port {service_port} as user envgrid: "
        f"ENVGRID_MQTT__PASSWORD_FILE={out / 'envgrid.password'} (docs/security.md)"
    )


def main() -> None:
    """Entry point of the ``envgrid`` script."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
