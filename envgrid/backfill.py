"""The demo's history: weeks of simulated fleet readings sent through the running service, then
rolled up, so the report, the assessment and the dashboards have closed days to show.

The readings go the way a device's do: published over MQTT to the broker, taken by the service
(decode, registry, line protocol, writer; acknowledged only once durable) and then rolled up by
the rollup runner, day by day. Nothing is written around the pipeline.

Re-running is safe: readings fall on a grid of ``step`` from the epoch and each device's random
stream is seeded by its id, so a back-fill of the same span sends the same points again, and a
later one sends the days both cover at the same times (with values of its own): InfluxDB
overwrites a point of the same series and time, so nothing is stored twice; the rollups
overwrite theirs too.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from devices.base import DeviceKind
from devices.kinds import KINDS
from devices.registry import Device, Registry
from envgrid.settings import Settings
from envgrid.simulate import publisher
from envgrid.simulator import SimMessage
from ingest.mqtt import MqttClient
from ingest.pipeline import Accepted
from ingest.service import IngestService
from rollups.runner import Rollup, Task

# One reading per device every five minutes: an hour's samples then cover its 60 minutes, above
# the 45 an air hourly mean needs (rollups.windows covered time), PV samples stand well within
# the 15 minutes a sample may stand for, and the demo's 35 days stay short (measured: README,
# "Two commands"; a finer step costs proportionally more).
DEFAULT_STEP = timedelta(minutes=5)
_encode = msgspec.json.Encoder().encode
# Seconds without a history reading arriving, nor any awaiting storage, before giving up.
_STALLED = 10.0
# Readings awaiting the broker's PUBACK at once.
_WINDOW = 2000


class BackfillError(RuntimeError):
    """The service did not store the history in time; the message says how far it got."""


@dataclass(frozen=True, slots=True)
class Span:
    """What a back-fill covers: readings at ``start_ms + k * step_ms`` before ``end_ms``."""

    start_ms: int
    end_ms: int
    step_ms: int
    tz: ZoneInfo

    @classmethod
    def of(cls, days: int, tz: ZoneInfo, now: datetime, step: timedelta = DEFAULT_STEP) -> Span:
        """The ``days`` local days before today and today up to ``now``."""
        first = now.astimezone(tz).date() - timedelta(days=days)
        start = datetime(first.year, first.month, first.day, tzinfo=tz)
        step_ms = int(step.total_seconds() * 1000)
        if step_ms <= 0:
            raise ValueError(f"history step must be positive, not {step}")
        start_ms = -(-int(start.timestamp() * 1000) // step_ms) * step_ms  # onto the grid
        return cls(start_ms, int(now.timestamp() * 1000), step_ms, tz)

    def stamps(self) -> range:
        """Every reading time of the span (epoch ms)."""
        return range(self.start_ms, self.end_ms, self.step_ms)

    def days(self) -> list[date]:
        """The local days the span touches, oldest first."""
        first = datetime.fromtimestamp(self.start_ms / 1000, self.tz).date()
        last = datetime.fromtimestamp((self.end_ms - 1) / 1000, self.tz).date()
        return [first + timedelta(days=i) for i in range((last - first).days + 1)]

    def start(self) -> datetime:
        """The span's start as a time."""
        return datetime.fromtimestamp(self.start_ms / 1000, self.tz)

    def end(self) -> datetime:
        """The span's end as a time."""
        return datetime.fromtimestamp(self.end_ms / 1000, self.tz)


def _kind(device: Device) -> DeviceKind | None:
    kind = KINDS.get(device.kind or "")
    return kind if kind is not None and kind.simulate is not None else None


def history(
    devices: Sequence[Device],
    span: Span,
    *,
    prefix: str,
    seed: int = 19,
    states: dict[str, dict[str, Any]] | None = None,
) -> Iterator[SimMessage]:
    """The devices' readings over the span, in time order; the same for the same arguments.
    ``states`` receives each device's simulator state (its counters where the history ends)."""
    step = timedelta(milliseconds=span.step_ms)
    states = {} if states is None else states
    fleet: list[tuple[Device, DeviceKind, random.Random, dict[str, Any], str]] = [
        (d, k, random.Random(f"{seed}/{d.id}"), states.setdefault(d.id, {}), _topic(prefix, d))
        for d in devices
        if (k := _kind(d)) is not None
    ]
    for ts in span.stamps():
        at = datetime.fromtimestamp(ts / 1000, span.tz)
        for device, kind, rnd, state, topic in fleet:
            fields = kind.sample_history(device, at, rnd, state, step)
            payload = _encode({"ts": ts, **fields})
            yield SimMessage(topic, payload, device_id=device.id, ts_ms=ts)


def _topic(prefix: str, device: Device) -> str:
    return f"{prefix}/{device.kind}/{device.id}"


def count(devices: Sequence[Device], span: Span) -> int:
    """How many readings :func:`history` gives."""
    return sum(1 for d in devices if _kind(d) is not None) * len(span.stamps())


@dataclass(slots=True)
class Result:
    """What a back-fill did."""

    published: int = 0
    stored: int = 0
    days: int = 0
    rollup_points: int = 0
    # Each device's simulator state where the history ends (envgrid.simulator.resume).
    states: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0  # the whole back-fill
    stored_seconds: float = 0.0  # until the service had stored every reading


async def _publisher(client: MqttClient, stream: Iterator[SimMessage], sent: list[int]) -> None:
    """Publish from the shared stream until it ends, one message awaiting its PUBACK at a time.

    ``_WINDOW`` of these share one stream instead of a task per message: the back-fill
    publishes from the service's own process, where a task per message was a large share of
    the CPU (py-spy). Each takes its next message and queues it without yielding in between,
    so messages go out in the stream's order."""
    for m in stream:
        await client.publish(m.topic, m.payload, qos=1)
        sent[0] += 1


class _Tally:
    """A sink of the service counting the history's readings it accepted: those stamped on the
    span's grid (a PV verdict the rollups send meanwhile is stamped off it)."""

    def __init__(self, span: Span) -> None:
        self.span = span
        self.n = 0

    def __call__(self, res: Accepted) -> None:
        ts, span = res.ts_ms, self.span
        if span.start_ms <= ts < span.end_ms and (ts - span.start_ms) % span.step_ms == 0:
            self.n += 1


async def _durable(
    service: IngestService, tally: _Tally, target: int, timeout: float, bar: Progress, job: TaskID
) -> None:
    """Wait until the service has taken ``target`` history readings and acknowledged every
    message it took (it acknowledges only what InfluxDB or its spool holds)."""
    start = time.monotonic()
    rejected = service.stats.rejected.total()
    last, moved = tally.n, start
    while True:
        now = time.monotonic()
        bar.update(job, completed=min(tally.n, target))
        if tally.n >= target and service.mqtt.unacked_count == 0:
            return
        if tally.n != last or service.mqtt.unacked_count:
            last, moved = tally.n, now
        # Nothing arriving and nothing awaiting storage: the rest is not coming.
        if now - start > timeout or now - moved > _STALLED:
            refused = service.stats.rejected.total() - rejected
            raise BackfillError(
                f"the service stored {tally.n} of {target} history readings in {now - start:.0f} "
                f"s ({service.mqtt.unacked_count} awaiting storage, {refused} refused meanwhile: "
                "see the dead letters in the log)"
            )
        await asyncio.sleep(0.1)


async def _publish(
    settings: Settings,
    stream: Iterator[SimMessage],
    bar: Progress,
    jobs: tuple[TaskID, TaskID],
    tally: _Tally,
) -> int:
    """Publish the stream with these settings' MQTT identity, showing progress; how many."""
    client = publisher(settings, "history")
    sent = [0]

    async def show() -> None:
        while True:
            bar.update(jobs[0], completed=sent[0])
            bar.update(jobs[1], completed=tally.n)
            await asyncio.sleep(0.2)

    await client.start()
    shower = asyncio.create_task(show())
    try:
        await client.wait_connected(timeout=15)
        await asyncio.gather(*(_publisher(client, stream, sent) for _ in range(_WINDOW)))
    finally:
        shower.cancel()
        await client.close()
    bar.update(jobs[0], completed=sent[0])
    return sent[0]


async def backfill(
    settings: Settings,
    service: IngestService,
    registry: Registry,
    span: Span,
    *,
    publish_settings: Settings | None = None,
    console: Console | None = None,
    timeout: float = 600.0,
) -> Result:
    """Publish the registry's history over the span to the broker, wait until the running
    ``service`` has stored all of it, then roll up every day of the span.

    ``publish_settings``: the MQTT identity to publish with (the demo's simulator user);
    ``settings`` by default. ``console``: where the progress bars go (none without it).
    """
    max_age = settings.ingest.max_age
    if span.start_ms < span.end_ms - max_age.total_seconds() * 1000:
        raise BackfillError(
            f"the history starts {span.start():%Y-%m-%d %H:%M}, older than the service accepts "
            f"(ingest.max_age {max_age.total_seconds() / 86400:g} days): raise "
            "ENVGRID_INGEST__MAX_AGE or back-fill fewer days"
        )
    t0 = time.monotonic()
    devices = list(registry)
    total = count(devices, span)
    result = Result()
    columns = (
        TextColumn("{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False, disable=console is None) as bar:
        sent_job = bar.add_task("history published", total=total)
        stored_job = bar.add_task("history stored", total=total)
        days = span.days()
        days_job = bar.add_task("days rolled up", total=len(days))
        tally = _Tally(span)
        service.sinks.append(tally)
        try:
            stream = history(devices, span, prefix=settings.mqtt.topic_prefix, states=result.states)
            result.published = await _publish(
                publish_settings or settings, stream, bar, (sent_job, stored_job), tally
            )
            await _durable(service, tally, result.published, timeout, bar, stored_job)
        finally:
            service.sinks.remove(tally)
        result.stored = tally.n
        result.stored_seconds = time.monotonic() - t0
        async with Rollup(settings, registry) as rollup:
            by_day: dict[date, list[Task]] = {}
            for t in rollup.plan(span.start(), span.end(), datetime.now(UTC)):
                by_day.setdefault(t.day, []).append(t)
            for day in days:
                for t in by_day.get(day, []):
                    result.rollup_points += len(await rollup.run_task(t))
                result.days += 1 if day in by_day else 0
                bar.advance(days_job)
    result.seconds = time.monotonic() - t0
    return result
