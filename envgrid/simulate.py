"""Running the simulator against a broker (``envgrid simulate`` and the demo)."""

from __future__ import annotations

import asyncio
import itertools
import os
import time

from devices.fleet import fleet
from devices.kinds import KINDS
from devices.registry import Device, Registry, load_registry
from envgrid.settings import Settings
from envgrid.simulator import live, publish_all
from hj212.intake import load_stations
from hj212.simulator import Hj212Simulator, SimReport, gateway_address
from ingest.broker import client_options
from ingest.mqtt import MqttClient


def fleet_devices(settings: Settings, per_kind: int) -> list[Device]:
    """The devices to simulate: the configured registry, or the shipped fleet of that size."""
    if settings.devices.registry is not None:
        return list(load_registry(settings.devices.registry))
    import yaml

    reg = Registry.parse(yaml.safe_dump({"devices": fleet(per_kind)}), "fleet", KINDS)
    return list(reg)


def publisher(settings: Settings, name: str = "sim") -> MqttClient:
    """An MQTT client that only publishes."""
    opts = client_options(settings.mqtt, f"envgrid-{name}-{os.getpid()}")
    return MqttClient(opts, lambda msg: None)


async def run_simulation(
    settings: Settings,
    *,
    per_kind: int,
    rate: float,
    duration: float,
    count: int,
    bad_fraction: float,
    seed: int | None,
    stop: asyncio.Event | None = None,
) -> int:
    """Publish the live fleet until duration, count or ``stop``; the number published."""
    devices = fleet_devices(settings, per_kind)
    client = publisher(settings)
    await client.start()
    await client.wait_connected(timeout=15)
    stream = live(devices, prefix=settings.mqtt.topic_prefix, bad_fraction=bad_fraction, seed=seed)
    deadline = time.monotonic() + duration if duration else None

    def until_done() -> bool:
        return (deadline is not None and time.monotonic() >= deadline) or bool(
            stop and stop.is_set()
        )

    limited = itertools.islice(stream, count) if count else stream
    gated = itertools.takewhile(lambda _m: not until_done(), limited)
    try:
        return await publish_all(client, gated, rate=rate, window=max(10, int(rate)))
    finally:
        await client.close()


async def run_hj212_simulation(
    settings: Settings,
    *,
    per_kind: int,
    duration: float,
    count: int,
    bad_fraction: float,
    seed: int | None,
    interval: float = 30.0,
    stop: asyncio.Event | None = None,
    drop_hourly: float = 0.0,
    clock_drift: float = 0.0,
) -> SimReport:
    """``envgrid simulate --protocol hj212``: every HJ 212 station of the registry (or fleet)."""
    host, port = gateway_address(settings)
    registry = Registry(fleet_devices(settings, per_kind))
    stations = list(
        load_stations(registry, settings.standards.timezone, settings.devices.registry).values()
    )
    if not stations:
        raise ValueError("no station in the registry has an mn and pw: nothing to simulate")
    sim = Hj212Simulator(
        stations,
        host,
        port,
        interval=interval,
        bad_fraction=bad_fraction,
        seed=seed,
        count=count,
        drop_hourly=drop_hourly,
        clock_drift=clock_drift,
    )
    return await sim.run(duration, stop)
