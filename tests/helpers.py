"""Test helpers shared by integration tests: settings for the fixtures' servers, a running
in-process service, an MQTT collector, and waiting for InfluxDB to hold what was sent."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from devices.kinds import KINDS
from devices.registry import load_registry
from envgrid.app import DEFAULT_REGISTRY, configure_standards
from envgrid.localstack import LocalInfluxDB, LocalMosquitto
from envgrid.settings import Settings, load_settings
from ingest.mqtt import Message, MqttClient, MqttOptions
from ingest.service import IngestService


def make_settings(
    mosquitto: LocalMosquitto, influxdb: LocalInfluxDB, db: str, tmp: Path, **sections: Any
) -> Settings:
    """Settings pointing at the test servers; ``sections`` override whole sections' keys."""
    base: dict[str, dict[str, Any]] = {
        "mqtt": {"url": mosquitto.url, "client_id": f"envgrid-test-{tmp.name}"},
        "influx": {"url": influxdb.url, "database": db},
        "ingest": {"spool_dir": tmp / "spool", "flush_interval": 0.2},
        "devices": {"registry": DEFAULT_REGISTRY},
        "http": {"port": 0},
    }
    for k, v in sections.items():
        base.setdefault(k, {}).update(v)
    return load_settings(None, **base)


@contextlib.asynccontextmanager
async def running_service(settings: Settings, **kw: Any) -> AsyncIterator[IngestService]:
    """An IngestService running in this event loop, stopped (gracefully) afterwards."""
    configure_standards(settings)
    registry = load_registry(settings.devices.registry)
    service = IngestService(settings, KINDS, registry, **kw)
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


@contextlib.asynccontextmanager
async def mqtt_client(
    broker: LocalMosquitto,
    subscriptions: list[str] | None = None,
    on_message: Callable[[Message], None] | None = None,
    client_id: str = "test-client",
) -> AsyncIterator[MqttClient]:
    """A connected client (publisher, or collector when given subscriptions)."""
    opts = MqttOptions(
        host="127.0.0.1",
        port=broker.port,
        client_id=client_id,
        clean_start=True,
        session_expiry_s=0,
        subscriptions=subscriptions or [],
    )
    client: MqttClient

    def handle(m: Message) -> None:
        if on_message is not None:
            on_message(m)
        if m.qos:
            client.ack(m.packet_id, m.epoch)

    client = MqttClient(opts, handle)
    await client.start()
    await client.wait_connected(timeout=10)
    try:
        yield client
    finally:
        await client.close()


async def wait_for(
    predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.2
) -> None:
    """Poll until ``predicate()`` is true; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def stored_count(influxdb: LocalInfluxDB, db: str, measurements: list[str]) -> int:
    """Points stored across the reading measurements (largest count over fields each)."""
    return sum(influxdb.count(m, db) for m in measurements)
