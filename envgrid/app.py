"""Service wiring: settings → registry → ingest service + HTTP server, run until a signal."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass

from console import build_console
from devices import air
from devices.kinds import KINDS
from devices.registry import FLEET, Registry, load_registry
from envgrid.alerting import build_alerting, role_settings
from envgrid.cluster.leader import Elected
from envgrid.gateway import hj212_shared
from envgrid.recovered import recompute_recovered
from envgrid.review import build_review
from envgrid.roles import Role
from envgrid.settings import Settings
from hj212.gateway import ServiceGateway
from ingest.http import HttpServer, create_app
from ingest.service import IngestService
from rollups.runner import start_background

log = logging.getLogger("envgrid")

DEFAULT_REGISTRY = FLEET  # the demo's fleet


def configure_standards(settings: Settings) -> None:
    """Apply the city's time zone and HJ 633 edition to the derived values."""
    air.configure(settings.standards.timezone, settings.standards.aqi_edition)


@dataclass
class Running:
    """The parts of a started envgrid process, for callers that watch them (the demo)."""

    service: IngestService
    http: HttpServer
    registry: Registry


@contextlib.asynccontextmanager
async def started(
    settings: Settings, *, worker: int | None = None, role: Role = Role.ALL
) -> AsyncIterator[Running]:
    """Start ingest and/or alerts (``role``: all, ingest, alerts), the HTTP API, the HJ 212
    intake and the rollups; stop them in order (readings made durable first) on exit."""
    configure_standards(settings)
    registry = load_registry(settings.devices.registry)
    settings = role_settings(settings, role)
    # HJ 212 intake; TCP gateway if a port is set; commands and station state in the cluster
    # database when there is one (gateways on several hosts, docs/deploy.md).
    hj212 = ServiceGateway(settings, registry, hj212_shared(settings))
    service = IngestService(
        settings,
        KINDS,
        registry,
        worker=worker,
        evaluate_only=not role.ingests,
        protocols=hj212.protocols,
    )
    alerting = build_alerting(settings, service, registry, role=role)
    # The operator console (docs/console.md) is served with the alerts it works on.
    console = (
        build_console(
            settings,
            alerting.engine,
            registry,
            notify=alerting.dispatcher,
            hj212=hj212.dispatcher,  # with a cluster database: every host's stations
        )
        if alerting
        else None
    )
    routers = [r.router for r in (alerting, console) if r is not None]
    routers.append(hj212.router(settings.http.token))  # /api/hj212: commands, station state
    review_router, review_store = build_review(settings, registry, console)  # /api/review
    routers.append(review_router)
    app = create_app(service.metrics, service.readiness, routers)
    http = HttpServer(app, settings.http.host, settings.http.port, settings.http.trusted_proxies)
    await http.start()
    log.info("HTTP on http://%s:%d (/healthz /readyz /metrics)", settings.http.host, http.port)
    try:
        await service.start()
        if (worker or 0) == 0:  # one TCP gateway per host: the first --workers worker runs it
            await hj212.start(service)
    except Exception:
        await service.stop()
        await http.stop()
        raise
    if alerting is not None:
        await alerting.start()
    leader = rollup_leader(settings)
    rollups = (
        start_background(settings, registry, worker, leader.run if leader else None)
        if role.ingests
        else None
    )
    if rollups is not None and hj212.commands is not None:
        recompute_recovered(hj212.commands.dispatcher, rollups.rollup)  # 补传 fills windows
    try:
        yield Running(service, http, registry)
    finally:
        service.stop_reading()  # at once: the shutdown grace period counts from the signal
        await hj212.stop()  # stations resend what was not replied to
        if rollups is not None:
            await rollups.stop()
        await service.stop()
        if alerting is not None:
            # After the service: every reading it acked has been evaluated. What cannot go out
            # now (MQTT is closed) stays in the outbox for the next run.
            await alerting.stop()
        await http.stop()
        if console is not None:
            await console.close()
        review_store.close()


def rollup_leader(settings: Settings) -> Elected | None:
    """On a cluster, the rollups run on the holder of the ``rollups`` lease (docs/deploy.md)."""
    c = settings.cluster
    if not c.enabled:
        return None
    return Elected(c.database_url, "rollups", c.member(), c.failover, c.renew)


async def run_service(
    settings: Settings, *, worker: int | None = None, role: Role = Role.ALL
) -> int:
    """Run until SIGTERM/SIGINT; the exit code."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with started(settings, worker=worker, role=role):
        # What start-up built lives as long as the process: keep it out of the cyclic GC's
        # full collections, which would otherwise walk all of it again and again under load.
        gc.freeze()
        await stop.wait()
        log.info("signal received: stopping")
    return 0
