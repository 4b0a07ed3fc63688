"""The fleet simulator: realistic readings for every registered device, and bad ones on purpose.

Each bad message says which rejection it must cause, so tests and the demo can check that every
one of them reached the dead-letter topic with the right reason.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from devices.base import DeviceKind
from devices.kinds import KINDS
from devices.registry import Device
from ingest import pipeline as p

if TYPE_CHECKING:
    from ingest.mqtt import MqttClient


@dataclass(slots=True)
class SimMessage:
    """One message to publish and the rejection category it must cause (None: valid)."""

    topic: str
    payload: bytes
    expect: str | None = None
    device_id: str = ""
    ts_ms: int = 0


def _bad(
    dev: Device, prefix: str, ts: int, rnd: random.Random, others: Sequence[Device]
) -> SimMessage:
    """A message broken in one of many realistic ways."""
    topic = f"{prefix}/{dev.kind}/{dev.id}"
    out_of_range = dict(_kind(dev).bad_sample)
    choice = rnd.randrange(12)
    if not out_of_range and choice in (1, 3):
        choice = 4  # a kind without a bad sample: a payload without readings instead
    if choice == 0:
        return SimMessage(topic, b'{"ts": %d, ' % ts, p.MALFORMED)
    if choice == 1:
        return SimMessage(topic, json.dumps({"ts": ts, **out_of_range}).encode(), p.INVALID)
    if choice == 2:
        return SimMessage(topic, json.dumps({"ts": ts, "flux_capacitor": 1.21}).encode(), p.INVALID)
    if choice == 3:
        field = next(iter(out_of_range))
        return SimMessage(topic, json.dumps({"ts": ts, field: "seven"}).encode(), p.INVALID)
    if choice == 4:
        return SimMessage(topic, json.dumps({"ts": ts}).encode(), p.INVALID)
    if choice == 5:
        return SimMessage(
            f"{prefix}/{dev.kind}/bad id!", json.dumps({"ts": ts}).encode(), p.BAD_DEVICE_ID
        )
    if choice == 6:
        other = next((o for o in others if o.kind != dev.kind), None)
        if other is not None:
            return SimMessage(
                f"{prefix}/{other.kind}/{dev.id}", b'{"ts": %d}' % ts, p.KIND_MISMATCH
            )
        return SimMessage(topic, b"[]", p.INVALID)
    if choice == 7:
        old = min(ts, int(time.time() * 1000)) - 30 * 86_400_000
        return SimMessage(topic, _valid_payload(dev, old, rnd), p.TOO_OLD)
    if choice == 8:
        ahead = max(ts, int(time.time() * 1000)) + 3_600_000
        return SimMessage(topic, _valid_payload(dev, ahead, rnd), p.IN_FUTURE)
    if choice == 9:
        return SimMessage(topic, b'{"ts": %d, "pad": "%s"}' % (ts, b"x" * 300_000), p.OVERSIZE)
    if choice == 10:
        return SimMessage(topic, b"\xff\xfe\x00binary\x80", p.MALFORMED)
    naive = datetime.fromtimestamp(ts / 1000).isoformat()  # no UTC offset
    return SimMessage(topic, json.dumps({"ts": naive, **_sample(dev, ts, rnd)}).encode(), p.INVALID)


_STATE: dict[str, dict[str, Any]] = {}


def resume(states: Mapping[str, dict[str, Any]]) -> None:
    """Carry on from these devices' simulator states (the demo's history back-fill), so live
    readings continue its counters (energy registers) instead of starting new ones."""
    _STATE.update(states)


def _kind(dev: Device) -> DeviceKind:
    kind = KINDS.get(dev.kind or "")
    if kind is None:
        raise ValueError(f"device {dev.id!r}: no registered kind {dev.kind!r} to simulate")
    return kind


def _sample(dev: Device, ts_ms: int, rnd: random.Random) -> dict[str, Any]:
    now = datetime.fromtimestamp(ts_ms / 1000, tz=UTC).astimezone()
    return _kind(dev).sample(dev, now, rnd, _STATE.setdefault(dev.id, {}))


def _valid_payload(dev: Device, ts_ms: int, rnd: random.Random) -> bytes:
    return json.dumps({"ts": ts_ms, **_sample(dev, ts_ms, rnd)}).encode()


def generate(
    devices: Sequence[Device],
    count: int,
    *,
    prefix: str = "envgrid",
    start_ms: int | None = None,
    step_ms: int = 60_000,
    bad_fraction: float = 0.0,
    seed: int = 42,
) -> Iterator[SimMessage]:
    """``count`` messages round-robin over ``devices``; each device's ``ts`` advances by step."""
    rnd = random.Random(seed)
    rounds = -(-count // max(1, len(devices)))
    start = start_ms if start_ms is not None else int(time.time() * 1000) - rounds * step_ms
    for i in range(count):
        dev = devices[i % len(devices)]
        ts = start + (i // len(devices)) * step_ms
        if bad_fraction and rnd.random() < bad_fraction:
            m = _bad(dev, prefix, ts, rnd, devices)
        else:
            m = SimMessage(f"{prefix}/{dev.kind}/{dev.id}", _valid_payload(dev, ts, rnd))
        m.device_id, m.ts_ms = dev.id, ts
        yield m


async def publish_all(
    client: MqttClient,
    messages: Iterator[SimMessage],
    *,
    window: int = 1000,
    rate: float | None = None,
    on_sent: Callable[[SimMessage], None] | None = None,
) -> int:
    """Publish with QoS 1, at most ``window`` awaiting PUBACK, optionally paced to ``rate``/s."""
    sem = asyncio.Semaphore(window)
    pending: set[asyncio.Task[None]] = set()
    t0, n = time.monotonic(), 0

    async def one(m: SimMessage) -> None:
        try:
            await client.publish(m.topic, m.payload, qos=1)
            if on_sent is not None:
                on_sent(m)
        finally:
            sem.release()

    for m in messages:
        await sem.acquire()
        task = asyncio.create_task(one(m))
        pending.add(task)
        task.add_done_callback(pending.discard)
        n += 1
        if rate:
            ahead = n / rate - (time.monotonic() - t0)
            if ahead > 0:
                await asyncio.sleep(ahead)
    if pending:
        await asyncio.gather(*pending)
    return n


def live(
    devices: Sequence[Device],
    *,
    prefix: str = "envgrid",
    bad_fraction: float = 0.0,
    seed: int | None = None,
) -> Iterator[SimMessage]:
    """An endless stream timestamped now, round-robin over the fleet."""
    rnd = random.Random(seed)
    last: dict[str, int] = {}
    i = 0
    while True:
        dev = devices[i % len(devices)]
        i += 1
        ts = max(int(time.time() * 1000), last.get(dev.id, 0) + 1)
        last[dev.id] = ts
        if bad_fraction and rnd.random() < bad_fraction:
            m = _bad(dev, prefix, ts, rnd, devices)
        else:
            m = SimMessage(f"{prefix}/{dev.kind}/{dev.id}", _valid_payload(dev, ts, rnd))
        m.device_id, m.ts_ms = dev.id, ts
        yield m
