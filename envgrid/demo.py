"""``envgrid demo``: local broker and InfluxDB (unless URLs are configured), the simulated fleet
and the service in one process, with live counts, stopped cleanly on Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.live import Live
from rich.table import Table

from console.auth import Operator, hash_password, load_operators, save_operators
from devices.kinds import KINDS
from devices.registry import Registry
from envgrid.app import DEFAULT_REGISTRY, Running, started
from envgrid.localstack import LocalInfluxDB, free_port
from envgrid.provision import SIMULATOR_USER, FleetMosquitto, provision
from envgrid.settings import Settings
from envgrid.simulate import run_simulation
from envgrid.simulator import resume
from ingest.service import IngestService

log = logging.getLogger("envgrid.demo")


DEMO_OPERATOR = "demo"


def _overridden(name: str) -> bool:
    return f"ENVGRID_{name}" in {k.upper() for k in os.environ}


def demo_operator(path: Path) -> str:
    """Give operator ``demo`` (an admin) a new random password in ``path``; the password.

    Only its bcrypt hash is written; the password is printed once by the caller, and a new
    one is made at every start, so no password ever sits in the repository or the work dir.
    """
    password = secrets.token_urlsafe(12)
    ops = load_operators(path)
    ops[DEMO_OPERATOR] = Operator(DEMO_OPERATOR, "演示值班员", hash_password(password), admin=True)
    save_operators(path, ops)
    return password


async def run_demo(
    settings: Settings,
    *,
    rate: float,
    duration: float,
    bad_fraction: float,
    workdir: Path,
    history_days: int = 0,
) -> int:
    """Run the whole pipeline locally, after ``history_days`` of history; the exit code."""
    from envgrid.cli.common import setup_logging

    workdir.mkdir(parents=True, exist_ok=True)
    setup_logging("INFO", workdir / "envgrid.log")
    console = Console()
    stack = contextlib.ExitStack()
    updates: dict[str, object] = {}
    sim_mqtt = settings.mqtt
    if not _overridden("MQTT__URL"):
        # The broker runs the set-up `envgrid devices provision` writes: each device (and the
        # simulator, which speaks for all of them) on the devices' listener, envgrid on its own.
        registry = settings.devices.registry or DEFAULT_REGISTRY
        devices = list(Registry.parse(registry.read_text(encoding="utf-8"), str(registry), KINDS))
        fleet_dir = workdir / "mosquitto-fleet"
        provision(
            devices, fleet_dir, prefix=settings.mqtt.topic_prefix, kinds=KINDS, simulator=True
        )
        broker = stack.enter_context(FleetMosquitto(workdir / "mosquitto", fleet_dir))
        updates["mqtt"] = settings.mqtt.model_copy(
            update={"url": broker.service_url, "password_file": broker.service_password_file}
        )
        sim_mqtt = settings.mqtt.model_copy(
            update={
                "url": f"mqtt://{SIMULATOR_USER}@{broker.host}:{broker.port}",
                "password_file": fleet_dir / "simulator.password",
            }
        )
        console.print(
            f"[bold]mosquitto[/] devices {broker.url}, envgrid {broker.service_url} "
            f"(data in {broker.data_dir}; credentials in {fleet_dir / 'credentials.csv'})"
        )
    if not _overridden("INFLUX__URL"):
        influx = stack.enter_context(LocalInfluxDB(workdir / "influxdb"))
        influx.create_database(settings.influx.database)
        updates["influx"] = settings.influx.model_copy(update={"url": influx.url, "api": "v1"})
        console.print(f"[bold]influxd[/]   {influx.url} (database {settings.influx.database})")
    if settings.devices.registry is None:
        updates["devices"] = settings.devices.model_copy(update={"registry": DEFAULT_REGISTRY})
    ingest: dict[str, object] = {}
    if not _overridden("INGEST__SPOOL_DIR"):
        ingest["spool_dir"] = workdir / "spool"
    if history_days and not _overridden("INGEST__MAX_AGE"):
        # The service refuses readings older than max_age; the history must pass that check.
        ingest["max_age"] = max(settings.ingest.max_age, timedelta(days=history_days + 2))
    if ingest:
        updates["ingest"] = settings.ingest.model_copy(update=ingest)
    if not _overridden("ALERTS__STORE"):
        updates["alerts"] = settings.alerts.model_copy(update={"store": workdir / "alerts.db"})
    if not _overridden("HTTP__PORT"):
        updates["http"] = settings.http.model_copy(update={"port": free_port()})
    password: str | None = None
    if settings.console.enabled and not _overridden("CONSOLE__OPERATORS"):
        # A newcomer who opens the console can sign in: a demo operator in the demo's own file.
        operators = workdir / "operators.yaml"
        password = demo_operator(operators)
        update: dict[str, object] = {"operators": operators}
        if not _overridden("CONSOLE__SESSION_SECRET_FILE"):
            update["session_secret_file"] = workdir / "console-session.key"
        updates["console"] = settings.console.model_copy(update=update)
    settings = settings.model_copy(update=updates)
    sim_settings = settings.model_copy(update={"mqtt": sim_mqtt})
    local = bool(stack._exit_callbacks)  # type: ignore[attr-defined]
    with stack:
        t0 = time.monotonic()
        async with started(settings) as running:
            if password is not None:
                console.print(
                    f"[bold]console[/]   http://{settings.http.host}:{running.http.port}/ — sign "
                    f"in as [bold]{DEMO_OPERATOR}[/] with password [bold]{password}[/] (new at "
                    f"every start; only its hash is kept, in {workdir / 'operators.yaml'})"
                )
            if history_days:
                await _history(settings, sim_settings, running, history_days, console)
            published = await _watch(
                settings, sim_settings, running, rate, duration, bad_fraction, workdir, console
            )
            # Give the last batch its flush before the orderly stop (which flushes too).
            await asyncio.sleep(settings.ingest.flush_interval.total_seconds() + 0.5)
        console.print(_table(running.service, time.monotonic() - t0))
        _print_hints(settings, published, workdir, console, local)
    return 0


async def _history(
    settings: Settings, sim_settings: Settings, running: Running, days: int, console: Console
) -> None:
    """Back-fill ``days`` of the fleet's history through the running service and roll it up."""
    from envgrid.backfill import Span, backfill

    span = Span.of(days, ZoneInfo(settings.standards.timezone), datetime.now(UTC))
    console.print(
        f"[bold]history[/]   {days} days of the fleet ({span.start():%Y-%m-%d} to now), one "
        f"reading per device every {span.step_ms // 60_000} min, through the service "
        "(skip it with --no-history)"
    )
    r = await backfill(
        settings,
        running.service,
        running.registry,
        span,
        publish_settings=sim_settings,
        console=console,
    )
    resume(r.states)  # live readings continue the history's energy registers
    console.print(
        f"[bold]history[/]   {r.stored:,} readings stored in {r.stored_seconds:,.0f} s, "
        f"{r.days} days rolled up ({r.rollup_points:,} rollup points) in "
        f"{r.seconds - r.stored_seconds:,.0f} s"
    )
    closed = span.days()[:-1]
    if closed:
        # The plan's own period is another year: name the history's closed days.
        console.print(
            f"[bold]report[/]    while the demo runs: ENVGRID_INFLUX__URL={settings.influx.url} "
            f"envgrid report --from {closed[0]} --to {closed[-1]}"
        )


async def _watch(
    settings: Settings,
    sim_settings: Settings,
    running: Running,
    rate: float,
    duration: float,
    bad_fraction: float,
    workdir: Path,
    console: Console,
) -> int:
    """Run the simulator and show live counts until Ctrl-C or the duration; messages sent."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    sim = asyncio.create_task(
        run_simulation(
            sim_settings,
            per_kind=24,
            rate=rate,
            duration=duration,
            count=0,
            bad_fraction=bad_fraction,
            seed=None,
            stop=stop,
        )
    )
    console.print(
        f"[bold]envgrid[/]   http://{settings.http.host}:{running.http.port}/ (console, "
        f"/metrics) — logs in {workdir / 'envgrid.log'}; Ctrl-C stops everything"
    )
    t0 = time.monotonic()
    base = running.service.stats.points_written  # the history's, if any: not live points/s
    with Live(_table(running.service, 0.0, base), console=console, refresh_per_second=2) as live:
        while not stop.is_set() and not sim.done():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.5)
            live.update(_table(running.service, time.monotonic() - t0, base))
    stop.set()
    return await sim


def _print_hints(
    settings: Settings, published: int, workdir: Path, console: Console, local: bool
) -> None:
    console.print(f"published {published} messages. Query what was stored, e.g.:")
    if not _overridden("INFLUX__URL"):
        console.print(
            f"  (start the demo's InfluxDB again first: influxd -config "
            f"{workdir / 'influxdb' / 'influxdb.conf'})"
        )
    console.print(
        f"  influx -host 127.0.0.1 -port {_port(settings.influx.url)} "
        f"-database {settings.influx.database} -execute "
        "'SELECT count(*) FROM /.*/ GROUP BY device_id LIMIT 5'"
    )
    console.print(
        f"  curl -G '{settings.influx.url}/query' --data-urlencode "
        f"'db={settings.influx.database}' --data-urlencode "
        "'q=SELECT last(water_class) FROM water_quality GROUP BY site'"
    )
    if local:
        console.print(f"local servers stopped; their data stays in {workdir}")


def _port(url: str) -> int:
    from urllib.parse import urlsplit

    return urlsplit(url).port or 8086


def _table(service: IngestService, elapsed: float, base: int = 0) -> Table:
    s = service.stats
    t = Table(title=f"envgrid demo — {elapsed:,.0f} s")
    t.add_column("kind")
    t.add_column("received", justify="right")
    for kind in KINDS:
        t.add_row(kind, f"{s.received.get(kind, 0):,}")
    t.add_row(
        "[red]rejected[/]",
        f"{sum(s.rejected.values()):,} "
        + " ".join(f"{k}={v}" for k, v in sorted(s.rejected.items())),
    )
    t.add_row("[green]points written[/]", f"{s.points_written:,}")
    rate = (s.points_written - base) / elapsed if elapsed > 1 else 0.0
    t.add_row("points/s", f"{rate:,.0f}")
    t.add_row("spool", f"{s.spool_records} batches, {s.spool_bytes:,} bytes")
    t.add_row("broker", "connected" if s.mqtt_connected else "[red]disconnected[/]")
    return t
