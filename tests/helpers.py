"""Test helpers shared by integration tests: settings for the fixtures' servers, a running
in-process service, an MQTT collector (testkit/mqtt.py, shared with bench/), and waiting for
InfluxDB to hold what was sent."""

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
from ingest.service import IngestService
from testkit.mqtt import mqtt_client

__all__ = ["make_settings", "mqtt_client", "running_service", "stored_count", "wait_for"]


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
