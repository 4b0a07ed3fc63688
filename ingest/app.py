"""Service wiring: settings → registry → ingest service + HTTP server, run until a signal."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

from devices import air
from devices.kinds import KINDS
from devices.registry import Registry
from ingest.config import Settings
from ingest.http import HttpServer, create_app
from ingest.rollup import start_background
from ingest.service import IngestService

log = logging.getLogger("envgrid")

DEFAULT_REGISTRY = Path(__file__).resolve().parent.parent / "devices" / "fleet.yaml"


def load_registry(settings: Settings) -> Registry:
    """The configured registry, or an empty one (every device unregistered)."""
    if settings.devices.registry is None:
        return Registry()
    return Registry.load(settings.devices.registry, KINDS)


def configure_standards(settings: Settings) -> None:
    """Apply the city's time zone and HJ 633 edition to the derived values."""
    air.configure(settings.standards.timezone, settings.standards.aqi_edition)


async def run_service(settings: Settings, *, worker: int | None = None) -> int:
    """Run ingest (and the HTTP API) until SIGTERM/SIGINT; the exit code."""
    configure_standards(settings)
    registry = load_registry(settings)
    service = IngestService(settings, KINDS, registry, worker=worker)
    app = create_app(service.metrics, service.readiness)
    http = HttpServer(app, settings.http.host, settings.http.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await http.start()
    log.info("HTTP on http://%s:%d (/healthz /readyz /metrics)", settings.http.host, http.port)
    try:
        await service.start()
    except Exception:
        await service.stop()
        await http.stop()
        raise
    rollups = start_background(settings, registry, worker)
    await stop.wait()
    log.info("signal received: stopping")
    if rollups is not None:
        await rollups.stop()
    await service.stop()
    await http.stop()
    return 0
