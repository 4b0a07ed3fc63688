"""The standalone HJ 212 gateway process (``envgrid hj212-gateway run``): the gateway, its MQTT
client and /healthz /readyz /metrics, without the ingest service."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import APIRouter
from prometheus_client.registry import CollectorRegistry

from devices.registry import load_registry
from envgrid.settings import Settings
from hj212.config import command_store_path
from hj212.gateway import (
    Commands,
    Hj212Gateway,
    no_messages,
    publisher_options,
    wait_for_broker,
)
from hj212.intake import load_stations
from hj212.routing import publish_command
from hj212.store import CommandStore, Store
from hj212.store_pg import PgCommandStore, SharedConfig
from ingest.http import HttpServer, create_app
from ingest.mqtt import MqttClient

log = logging.getLogger("envgrid.hj212")


def hj212_shared(settings: Settings) -> SharedConfig | None:
    """With a cluster database: where the gateways share commands and station state."""
    c = settings.cluster
    if not c.enabled:
        return None
    return SharedConfig(
        c.database_url(), c.member(), c.renew.total_seconds(), c.failover.total_seconds()
    )


def command_store(settings: Settings) -> Store:
    """The command store as the CLI opens it: the cluster's PostgreSQL (queue and read only, no
    gateway lease) when there is one, else the SQLite file."""
    shared = hj212_shared(settings)
    if shared is not None:
        return PgCommandStore(shared, gateway=False)
    return CommandStore(command_store_path(settings))


def commands_router(
    commands: Commands, settings: Settings, client: MqttClient | None = None
) -> APIRouter:
    """/api/hj212 (commands, station state) of this gateway; writes need ENVGRID_HTTP__TOKEN.
    With a shared store it shows every host's stations and commands."""
    from zoneinfo import ZoneInfo

    from hj212.api import SharedApi, create_router
    from hj212.commands import Command

    token = settings.http.token
    shared = None
    if isinstance(commands.store, PgCommandStore):
        prefix = settings.mqtt.topic_prefix

        async def nudge(cmd: Command) -> None:
            assert client is not None
            await publish_command(client, prefix, cmd)

        shared = SharedApi(
            commands.store,
            commands.dispatcher.stations,
            settings.hj212,
            ZoneInfo(settings.standards.timezone),
            nudge if client is not None else None,
        )
    return create_router(
        lambda: commands.dispatcher,
        token.get_secret_value() if token is not None else None,
        lambda: shared,
    )


async def run_gateway(settings: Settings, stop: asyncio.Event | None = None) -> int:
    """Run the standalone gateway (and /healthz /readyz /metrics) until a signal or ``stop``."""
    import signal

    registry = load_registry(settings.devices.registry)
    stations = load_stations(registry, settings.standards.timezone, settings.devices.registry)
    connected = False

    def on_state(up: bool, reason: str) -> None:
        nonlocal connected
        connected = up
        if up:
            log.info("connected to the broker (%s)", reason)
        else:
            log.warning("broker connection lost (%s): reconnecting", reason)

    # Its own client id: an `envgrid run` gateway on the same host uses "-hj212".
    client = MqttClient(publisher_options(settings, "hj212-gateway"), no_messages, on_state)
    metrics = CollectorRegistry()
    commands = Commands(settings, stations, metrics, "hj212-gateway-cmd", hj212_shared(settings))
    gateway = Hj212Gateway(
        settings, stations, client, metrics=metrics, dispatcher=commands.dispatcher
    )

    def readiness() -> tuple[bool, list[str]]:
        why = []
        if not connected:
            why.append("not connected to the MQTT broker")
        if not gateway.listening:
            why.append("HJ 212 gateway not listening")
        return not why, why

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    http = HttpServer(
        create_app(metrics, readiness, [commands_router(commands, settings, client)]),
        settings.http.host,
        settings.http.port,
        settings.http.trusted_proxies,
    )
    await client.start()
    try:
        await wait_for_broker(client, settings)
        await commands.start()
        await gateway.start()
        await http.start()
        log.info("HTTP on http://%s:%d (/healthz /readyz /metrics)", settings.http.host, http.port)
        await stop.wait()
        log.info("stopping the HJ 212 gateway")
    finally:
        await gateway.stop()
        await commands.stop()
        await http.stop()
        await client.close()
    return 0
