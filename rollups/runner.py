"""Rollups: read a local day (or some hours) from InfluxDB, compute, write the results back.

The computation is ``rollups.windows`` (pure); this module only plans which windows to compute,
fetches the readings with InfluxQL, and writes the points. Every result is stamped with its
window's start and carries the same tags each time, so recomputing a window overwrites it:
the background task and ``envgrid rollup`` can run any number of times.

What is recomputed (``Rollup.plan``): every closed hour in the asked period; a local day that is
closed and overlaps the period is recomputed whole (its hours and its daily figures), so late data
changes the hourly and daily points together. The service's background task recomputes the last
``rollup.startup_lookback`` once at start, then the last ``rollup.lateness`` every
``rollup.interval``; readings older than that (a station back-filling after a long outage) need
``envgrid rollup --from --to``. On a cluster, the task runs only on the holder of a lease
(``elect``, given by the caller): a host that takes the lead over starts as a start does, with
the start-up lookback, so windows that closed while nobody led are computed too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from devices.lineproto import FieldValue
from devices.registry import Registry
from ingest.config import MqttSettings
from ingest.influxql import (
    InfluxQLClient,
    QueryError,
    Series,
    finite,
    quote_ident,
    quote_string,
    time_literal,
)
from ingest.mqtt import MqttError
from ingest.writer import InfluxWriter, Outcome
from rollups import pv_job
from rollups.config import QcSettings, RollupConfig
from rollups.qc import FAIL, QcConfig, load_qc, run_tests
from rollups.review import Marks, ReviewStore, rollup_marks
from rollups.windows import (
    DATA_KIND_TAG,
    ROLLUP_KINDS,
    STATION_HOURLY,
    Options,
    Point,
    RollupKind,
    Station,
    Validity,
    Window,
    day_window,
    hour_windows,
    local_days,
)

log = logging.getLogger("envgrid.rollup")

# "pv" is the PV daily job (rollups.pv_job): closed days only, no hourly points.
KIND_NAMES: tuple[str, ...] = (*ROLLUP_KINDS, pv_job.NAME)
# Lines per write; rollups of one day of a large fleet stay well under InfluxDB's body limits.
_WRITE_BATCH = 5000
# Rows per chunk of a streamed query answer (InfluxDB 1.x may cap unchunked answers).
_CHUNK = 10_000

# Runs a job (the background task) while this process leads the cluster's rollups, until the
# event is set: envgrid.cluster.leader.Elected.run.
Elect = Callable[[asyncio.Event, Callable[[], Awaitable[None]]], Coroutine[Any, Any, None]]


class RollupError(RuntimeError):
    """Rollup points could not be written; the message says what InfluxDB answered."""


@dataclass(frozen=True, slots=True)
class Task:
    """One unit of work: a kind and a local day, some of its hours, and whether the daily."""

    kind: str
    day: date
    hours: tuple[int, ...] | None  # hour indexes of the day; None = all of them
    daily: bool

    def describe(self) -> str:
        """A short label for progress output."""
        what = "day" if self.daily else f"{len(self.hours or ())} h"
        return f"{self.kind} {self.day.isoformat()} ({what})"


@dataclass(slots=True)
class Report:
    """What a run did."""

    tasks: int = 0
    points: int = 0
    by_measurement: dict[str, int] = field(default_factory=dict)


def qc_measurement(kind: RollupKind) -> str:
    """Where a kind's QC flags are stored: ``<measurement>_qc``, beside the raw readings (which
    are never rewritten: a flag is a point of its own, at the sample's time)."""
    return f"{kind.source}_qc"


def options_from(settings: RollupConfig) -> Options:
    """The rollup options (time zone, validity, forced edition) of these settings."""
    r = settings.rollup
    return Options(
        tz=ZoneInfo(settings.standards.timezone),
        validity=Validity(
            hour_min_minutes=r.hour_min_minutes,
            max_sample_interval_ms=int(r.max_sample_interval.total_seconds() * 1000),
            day_min_hours=r.day_min_hours,
            o3_8h_min_hours=r.o3_8h_min_hours,
            o3_8h_min_windows=r.o3_8h_min_windows,
            water_day_min_hours=r.water_day_min_hours,
        ),
        forced_edition=settings.standards.aqi_edition,
    )


def _max_age(settings: RollupConfig) -> timedelta:
    """The oldest reading the service accepts (``ingest.max_age``; 7 days without it)."""
    ingest = getattr(settings, "ingest", None)
    age = getattr(ingest, "max_age", None)
    return age if isinstance(age, timedelta) else timedelta(days=7)


def _ms(dt: datetime) -> int:
    if dt.tzinfo is None:
        raise ValueError("rollup times must be timezone-aware")
    return int(dt.timestamp() * 1000)


class Rollup:
    """Computes and writes rollups for one InfluxDB database and device registry."""

    def __init__(
        self,
        settings: RollupConfig,
        registry: Registry,
        *,
        kinds: Iterable[str] = KIND_NAMES,
    ) -> None:
        self.settings = settings
        self.registry = registry
        kinds = tuple(kinds)
        self.kinds: tuple[RollupKind, ...] = tuple(
            ROLLUP_KINDS[k] for k in kinds if k in ROLLUP_KINDS
        )
        self.opts = options_from(settings)
        self._store: ReviewStore | None = None
        self.passes = 0  # background passes completed by this process
        qc = getattr(settings, "qc", None)
        if isinstance(qc, QcSettings) and not qc.enabled:
            self.qc = QcConfig({}, {})
        else:
            self.qc = load_qc(qc.config if isinstance(qc, QcSettings) else None)
        self.client = InfluxQLClient(settings.influx)
        self.writer = InfluxWriter(settings.influx)
        # Chunked answers are a v1 /query feature (1.x, 3.x); the 2.x compatibility API may not
        # stream, and one day of one kind is small enough to come in one piece there.
        self._chunk = _CHUNK if settings.influx.api == "v1" else None
        # The PV daily job sends its verdicts as readings through the broker, to the alert rules.
        mqtt = getattr(settings, "mqtt", None)
        self._publisher = pv_job.MqttPublisher(mqtt) if isinstance(mqtt, MqttSettings) else None
        self.pv = (
            pv_job.PvDaily(
                self.client,
                registry,
                settings.rollup,
                self.opts,
                self._chunk,
                self._publisher,
                mqtt.topic_prefix if isinstance(mqtt, MqttSettings) else "envgrid",
                _max_age(settings),
            )
            if pv_job.NAME in kinds
            else None
        )

    async def __aenter__(self) -> Rollup:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP sessions."""
        await self.client.close()
        await self.writer.close()
        if self._store is not None:
            self._store.close()
        if self._publisher is not None:
            await self._publisher.close()

    # ------------------------------------------------------------------------------ planning

    def plan(self, start: datetime, end: datetime, now: datetime | None = None) -> list[Task]:
        """The tasks that recompute every closed window overlapping [start, end).

        A closed day overlapping the period is recomputed whole (hours and daily); for the day
        still running, only its closed hours in the period.
        """
        now_ms = _ms(now or datetime.now(UTC))
        start_ms, end_ms = _ms(start), min(_ms(end), now_ms)
        tasks: list[Task] = []
        for day in local_days(start_ms, end_ms, self.opts.tz):
            if day_window(day, self.opts.tz).end_ms <= now_ms:
                tasks += [Task(k.name, day, None, True) for k in self.kinds]
                if self.pv is not None:
                    tasks.append(Task(pv_job.NAME, day, None, True))
                continue
            hours = tuple(
                i
                for i, h in enumerate(hour_windows(day, self.opts.tz))
                if h.end_ms <= now_ms and h.end_ms > start_ms and h.start_ms < end_ms
            )
            if hours:
                tasks += [Task(k.name, day, hours, False) for k in self.kinds]
        return tasks

    # ------------------------------------------------------------------------------- running

    async def run_range(
        self,
        start: datetime,
        end: datetime,
        *,
        now: datetime | None = None,
        progress: Callable[[Task], None] | None = None,
    ) -> Report:
        """Recompute and write every closed window overlapping [start, end)."""
        report = Report()
        for task in self.plan(start, end, now):
            points = await self.run_task(task)
            report.tasks += 1
            report.points += len(points)
            for p in points:
                report.by_measurement[p.measurement] = (
                    report.by_measurement.get(p.measurement, 0) + 1
                )
            if progress is not None:
                progress(task)
        return report

    async def run_recent(
        self, now: datetime | None = None, *, within: float | None = None
    ) -> Report:
        """Recompute the windows closed within the lateness window (or ``within`` seconds)."""
        now = now or datetime.now(UTC)
        span = self.settings.rollup.lateness.total_seconds() if within is None else within
        return await self.run_range(
            datetime.fromtimestamp(now.timestamp() - span, tz=UTC), now, now=now
        )

    async def run_task(self, task: Task) -> list[Point]:
        """Fetch one task's readings, compute its points and write them; the points."""
        if task.kind == pv_job.NAME and self.pv is not None:
            points, verdicts = await self.pv.compute(task.day)
            await self.write(points)
            try:
                await self.pv.publish(task.day, verdicts)
            except (MqttError, OSError, TimeoutError) as e:
                # The figures are stored; the verdicts go out on the next pass over the day.
                log.warning("PV verdicts of %s not published: %s", task.day, e)
            return points
        kind = ROLLUP_KINDS[task.kind]
        hours = hour_windows(task.day, self.opts.tz)
        if task.daily or task.hours is None:
            span = day_window(task.day, self.opts.tz)
        else:
            span = Window(hours[min(task.hours)].start_ms, hours[max(task.hours)].end_ms)
        stations = await self.fetch(kind, span)
        flags = self.apply_qc(kind, stations)
        marked = self.apply_marks(stations, span)
        points = kind.compute(stations, task.day, self.opts, task.hours, task.daily)
        if marked:
            await self._clear(kind, marked, span, task)
        if self.qc.kinds.get(kind.name) or self.qc.devices:
            # Flags this pass no longer raises must go; a DELETE costs InfluxDB a tombstone,
            # so only when the window holds flags at all.
            when = f"time >= {time_literal(span.start_ms)} AND time < {time_literal(span.end_ms)}"
            qc_m = quote_ident(qc_measurement(kind))
            if await self.client.query(f"SELECT * FROM {qc_m} WHERE {when} LIMIT 1"):
                await self.client.execute(f"DELETE FROM {qc_m} WHERE {when}")
        await self.write(flags)
        await self.write(points)
        return points + flags

    def apply_qc(self, kind: RollupKind, stations: Sequence[Station]) -> list[Point]:
        """Run the QC tests on each station's samples: the flags (3 and 4) as points of
        ``<measurement>_qc`` (``<field>_qc``, ``<field>_qc_test``), and the failed samples taken
        out of ``stations`` (noted in ``Station.left_out``)."""
        out: list[Point] = []
        for st in stations:
            device = st.tags.get("device_id", "")
            per_field = self.qc.for_device(kind.name, device)
            by_ts: dict[int, dict[str, FieldValue]] = {}
            for name, cfg in per_field.items():
                samples = st.raw.get(name)
                if not samples:
                    continue
                flags = run_tests(samples, cfg)
                if not flags:
                    continue
                for ts, f in flags.items():
                    by_ts.setdefault(ts, {}).update(
                        {f"{name}_qc": f.flag, f"{name}_qc_test": f.test}
                    )
                    if f.flag == FAIL:
                        st.left_out.append((ts, name, f"qc fail ({f.test})"))
                failed = {ts for ts, f in flags.items() if f.flag == FAIL}
                st.raw[name] = [s for s in samples if s[0] not in failed]
            tags = {k: v for k, v in st.tags.items() if k in ("device_id", "site", "county")}
            out += [Point(qc_measurement(kind), tags, fv, ts) for ts, fv in sorted(by_ts.items())]
        return out

    def _review(self) -> ReviewStore:
        """The review store (no file until the review API records the first mark)."""
        if self._store is None:
            self._store = ReviewStore(self.settings.rollup.review_store)
        return self._store

    def apply_marks(self, stations: Sequence[Station], span: Window) -> list[str]:
        """Take the samples review marks invalidate out of ``stations`` (noting each in
        ``Station.left_out``); the ids of the devices with marks in the span."""
        store = self._review()
        ids = [st.tags["device_id"] for st in stations if st.tags.get("device_id")]
        # Exceptional-event marks leave the data valid: only the period assessment reads them.
        marks = Marks(
            rollup_marks(store.marks(from_ms=span.start_ms, to_ms=span.end_ms, device_ids=ids))
        )
        if not marks:
            return []
        for st in stations:
            device = st.tags.get("device_id", "")
            if not marks.for_device(device):
                continue
            for series in (st.raw, st.hourly):
                for name, samples in series.items():
                    kept = []
                    for s in samples:
                        mark = marks.verdict(device, name, s[0])
                        if mark is None:
                            kept.append(s)
                        else:
                            st.left_out.append((s[0], name, mark.describe()))
                    series[name] = kept
        return marks.devices()

    async def _clear(self, kind: RollupKind, devices: Sequence[str], span: Window, t: Task) -> None:
        """Delete the rollup points a recomputation of marked devices replaces: InfluxDB keeps
        the fields a rewrite leaves out, so a mean a mark removes would otherwise stay."""
        when = f"time >= {time_literal(span.start_ms)} AND time < {time_literal(span.end_ms)}"
        ids = " OR ".join(f'"device_id" = {quote_string(d)}' for d in devices)
        hourly, daily, area = kind.outputs
        targets = [(hourly, f"({ids}) AND {when}")]
        if t.daily:
            targets += [(daily, f"({ids}) AND {when}"), (area, when)]
        for measurement, where in targets:
            await self.client.execute(f"DELETE FROM {quote_ident(measurement)} WHERE {where}")

    async def fetch(self, kind: RollupKind, span: Window) -> list[Station]:
        """The valid readings of one kind in a window, grouped into stations.

        Only the normal field names are read: invalid-flagged values live under
        ``<field>_invalid`` (module notes of rollups.windows) and are left out by construction.
        """
        fields = ", ".join(quote_ident(f) for f in kind.fields)
        q = (
            f"SELECT {fields} FROM {quote_ident(kind.source)} "
            f"WHERE time >= {time_literal(span.start_ms)} AND time < {time_literal(span.end_ms)} "
            "GROUP BY *"
        )
        series = await self.client.series(q, chunk_size=self._chunk)
        return self._stations(kind, series)

    def _stations(self, kind: RollupKind, series: Sequence[Series]) -> list[Station]:
        by_id: dict[str, Station] = {}
        for s in series:
            device_id = s.tags.get("device_id", "")
            if not device_id:
                continue  # not a device's series (nothing to attach a rollup to)
            st = by_id.get(device_id)
            if st is None:
                st = by_id[device_id] = self._station(kind, device_id, s.tags)
            target = st.hourly if s.tags.get(DATA_KIND_TAG) == STATION_HOURLY else st.raw
            cols = [(i, c) for i, c in enumerate(s.columns) if c in kind.fields]
            t_col = s.columns.index("time")
            for values in s.values:
                ts = values[t_col]
                if not isinstance(ts, int):
                    continue
                for i, name in cols:
                    v = finite(values[i])
                    if v is not None:
                        target.setdefault(name, []).append((ts, v))
        return [by_id[k] for k in sorted(by_id)]

    def _station(self, kind: RollupKind, device_id: str, tags: dict[str, str]) -> Station:
        """Tags of a station's rollups: from the registry when it knows the device (as the raw
        points got theirs), else from the raw points' own tags."""
        device = self.registry.get(device_id)
        if device is not None:
            out = {"device_id": device.id, "site": device.site, "county": device.county}
            # The same tags the raw points got (Device.tags_for): the facts as registered.
            for key in kind.tag_keys:
                if device.facts.get(key) is not None:
                    out[key] = str(device.facts[key])
            assessment = kind.assessment(device) or ""
            every = kind.kind.facts(device).interval
            interval_ms = int(every.total_seconds() * 1000) if every is not None else None
        else:
            keys = ("device_id", "site", "county", *kind.tag_keys)
            out = {k: tags[k] for k in keys if tags.get(k)}
            assessment = tags.get("assessment", "")
            interval_ms = None
        return Station(
            tags={k: v for k, v in out.items() if v != ""},
            assessment=assessment,
            interval_ms=interval_ms,
        )

    async def write(self, points: Sequence[Point]) -> None:
        """Write points; RollupError unless InfluxDB took every one."""
        lines = [line for p in points if (line := p.line()) is not None]
        for i in range(0, len(lines), _WRITE_BATCH):
            batch = lines[i : i + _WRITE_BATCH]
            d = await self.writer.deliver(batch)
            if d.outcome is not Outcome.OK:
                raise RollupError(f"InfluxDB did not take the rollup points: {d.message}")
            if d.rejected:
                idx, reason = d.rejected[0]
                raise RollupError(f"InfluxDB refused a rollup point ({reason}): {batch[idx][:200]}")

    # ---------------------------------------------------------------------- background task

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Recompute the start-up lookback once, then the lateness window every interval."""
        r = self.settings.rollup
        lookback: float | None = r.startup_lookback.total_seconds()
        while not stop.is_set():
            try:
                report = await self.run_recent(within=lookback)
                self.passes += 1
                if report.points:
                    log.info("rollup: %d points in %d tasks", report.points, report.tasks)
                lookback = None  # done once: from now on only the lateness window
            except (QueryError, RollupError) as e:
                # InfluxDB down or refusing: keep the service up and try again next interval.
                log.warning("rollup failed, retrying in %s: %s", r.interval, e)
            except Exception:
                # A bug or unexpected data must not end the task silently: log it, keep going.
                log.exception("rollup pass failed, retrying in %s", r.interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=r.interval.total_seconds())


class Background:
    """The service's rollup task: started with the service, stopped before it; with ``elect``,
    run only while this process leads (each new lead starts with the start-up lookback)."""

    def __init__(self, rollup: Rollup, elect: Elect | None = None) -> None:
        self.rollup = rollup
        self._stop = asyncio.Event()
        job = rollup.run_forever(self._stop) if elect is None else elect(self._stop, self._job)
        self._task = asyncio.create_task(job, name="rollup")

    async def _job(self) -> None:
        await self.rollup.run_forever(self._stop)

    async def stop(self) -> None:
        """Stop after the current task (a half-written day is rewritten whole next time)."""
        self._stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout=10)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.rollup.close()


def start_background(
    settings: RollupConfig,
    registry: Registry,
    worker: int | None = None,
    elect: Elect | None = None,
) -> Background | None:
    """Start the rollup task if ``rollup.enabled`` and this is the first (or only) worker; with
    ``elect`` (a cluster), it runs only while this process leads."""
    if not settings.rollup.enabled or (worker or 0) != 0:
        return None
    log.info(
        "rollups every %s (lateness %s, start-up lookback %s)%s",
        settings.rollup.interval,
        settings.rollup.lateness,
        settings.rollup.startup_lookback,
        "" if elect is None else " while this host leads them",
    )
    return Background(Rollup(settings, registry), elect)
