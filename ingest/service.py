"""The ingest service: MQTT in, validated batches out to InfluxDB or the spool, acks after.

Delivery (docs/delivery.md): a message is acknowledged to the broker only once its reading is
durable, accepted by InfluxDB or fsynced to the spool, and a rejected message only once its dead
letter is durable: acknowledged by the broker, or, when the broker refuses it, fsynced to the
local dead-letter file. Memory is bounded by the MQTT v5 Receive Maximum: the
broker stops sending when that many messages are unacknowledged, so a slow or absent InfluxDB
slows consumption instead of growing memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import socket
import time
from asyncio import FIRST_COMPLETED
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from devices.base import DeviceKind
from devices.lineproto import encode_line
from devices.registry import Registry
from ingest.broker import client_options
from ingest.config import IngestConfig, redact_url
from ingest.deadletter import DeadLetter, LocalDeadLetters, make_deadletter
from ingest.mqtt import ConnectError, ConnectionLost, Message, MqttClient, MqttError, MqttOptions
from ingest.pipeline import (
    OWN_TOPIC,
    STORAGE_REJECTED,
    Accepted,
    Decoder,
    Pipeline,
    Rejected,
)
from ingest.replay import replay_oldest
from ingest.seams import Broker, BrokerFactory, Writer
from ingest.spool import Spool, SpoolFull
from ingest.stats import Stats, new_registry
from ingest.topics import TopicMap
from ingest.writer import Delivery, InfluxWriter, Outcome

log = logging.getLogger("envgrid.service")

ReadingSink = Callable[[Accepted], None]


@dataclass(slots=True)
class Batch:
    """Lines to write, the messages to ack once they are durable, and pending dead letters."""

    lines: list[str] = field(default_factory=list)
    acks: list[tuple[int, int]] = field(default_factory=list)
    origins: list[Message] = field(default_factory=list)
    deadletters: list[asyncio.Future[None]] = field(default_factory=list)
    started: float = 0.0
    durable: asyncio.Future[None] | None = None  # the write (or spooling) under way


class IngestService:
    """One ingest process: consumer, batcher, writer, spool and replay."""

    def __init__(
        self,
        settings: IngestConfig,
        kinds: dict[str, DeviceKind],
        registry: Registry,
        *,
        worker: int | None = None,
        subscribe: bool = True,
        protocols: dict[str, Callable[[Pipeline], Decoder]] | None = None,
        evaluate_only: bool = False,
        broker: BrokerFactory = MqttClient,
        writer: Writer | None = None,
    ) -> None:
        """Validate and wire; no I/O until :meth:`start` (which connects and opens the spool).

        ``broker`` makes the MQTT session from its options and callbacks; ``writer`` is where
        batches go. Both default to the real ones (Mosquitto or any MQTT v5 broker, InfluxDB).
        """
        self.settings = settings
        self.worker = worker
        # The alerts role: readings go to the sinks only; no writes, no dead letters (the ingest
        # role does both); messages are still acked.
        self.evaluate_only = evaluate_only
        ing = settings.ingest
        protocols = protocols or {}
        self.topics = TopicMap(
            settings.mqtt.topic_prefix,
            kinds,
            settings.mqtt.topics,
            settings.mqtt.shared_group,
            protocols=protocols,
        )
        self.pipeline = Pipeline(
            kinds,
            registry,
            self.topics,
            max_payload_bytes=ing.max_payload_bytes,
            max_age_ms=int(ing.max_age.total_seconds() * 1000),
            max_future_ms=int(ing.max_future.total_seconds() * 1000),
            encode_lines=not evaluate_only,  # the alerts role writes no lines
        )
        for name, make_decoder in protocols.items():
            self.pipeline.decoders[name] = make_decoder(self.pipeline)
        self.registry = registry
        self.stats = Stats(
            spool_max_bytes=ing.spool_max_bytes, values_rejected=self.pipeline.values_rejected
        )
        self.metrics, self._latency = new_registry(self.stats)
        self.writer: Writer = writer if writer is not None else InfluxWriter(settings.influx)
        self.spool_dir = ing.spool_dir if worker is None else ing.spool_dir / f"worker-{worker}"
        self._spool: Spool | None = None  # opened (and locked) by start()
        self.local_deadletters = LocalDeadLetters(self.spool_dir / "deadletters.jsonl")
        self.sinks: list[ReadingSink] = []
        self.mqtt: Broker = broker(self._mqtt_options(subscribe), self._on_message, self._on_state)
        self._batch = Batch()
        self._sealed: deque[Batch] = deque()
        self._wake = asyncio.Event()
        self._spool_event = asyncio.Event()
        self._influx_down = False
        self._stopping = False
        self._stop_at: float | None = None  # when stop_reading() was called
        self._waiting_since: float | None = None  # first watch that saw unacked messages
        self._stall_after = ing.ack_stall_after.total_seconds()
        self._stopped = False
        self._tasks: list[asyncio.Task[None]] = []
        self._batch_size = ing.batch_size
        self._concurrency = ing.write_concurrency
        self._flush_s = ing.flush_interval.total_seconds()
        self._high = int(ing.spool_max_bytes * ing.spool_high_water)
        self._low = int(self._high * 0.8)

    @property
    def spool(self) -> Spool:
        """The on-disk spool; exists from start() on."""
        if self._spool is None:
            raise RuntimeError("the spool is opened by start()")
        return self._spool

    # ---------------------------------------------------------------- set-up
    def _mqtt_options(self, subscribe: bool) -> MqttOptions:
        m = self.settings.mqtt
        subscriptions = self.topics.subscriptions() if subscribe else []
        # Next to the spool: per worker, like the session it records.
        record = self.spool_dir / "subscriptions.json" if subscribe else None
        return client_options(m, m.effective_client_id(self.worker), subscriptions, record)

    async def start(self) -> None:
        """Open the spool, connect and start the background tasks; returns once subscribed."""
        self._spool = Spool(self.spool_dir, self.settings.ingest.spool_max_bytes, exclusive=True)
        self._refresh_spool_stats()
        log.info(
            "envgrid ingest: broker %s, InfluxDB %s (%s), %d registered devices, spool %s",
            redact_url(self.settings.mqtt.url),
            redact_url(self.settings.influx.url),
            self.settings.influx.api,
            len(self.registry),
            self.spool.directory,
        )
        if len(self.spool):
            log.info("spool holds %d batches from an earlier run: replaying", len(self.spool))
            self._spool_event.set()
        await self.mqtt.start()
        loop = asyncio.get_running_loop()
        for coro in (
            self._flush_loop(),
            self._replay_loop(),
            self._stats_loop(),
            self._watch_loop(),
        ):
            self._tasks.append(loop.create_task(coro))
        try:
            await self.mqtt.wait_connected(timeout=max(10.0, self.settings.mqtt.connect_timeout_s))
        except ConnectError as e:
            if e.permanent:
                raise  # the broker refused us (credentials, authorisation): an operator's error
            # Not reachable yet is not fatal: the client keeps reconnecting, /readyz says why.
            log.warning(
                "broker %s not reachable yet: retrying in the background",
                redact_url(self.settings.mqtt.url),
            )

    # ---------------------------------------------------------------- hot path
    def _on_message(self, msg: Message) -> None:
        if self._stopping:
            return  # not acked: the broker redelivers it to the next run
        res = self.pipeline.process(msg.topic, msg.payload)
        batch = self._batch
        if not batch.lines and not batch.acks:
            batch.started = time.monotonic()
        if type(res) is Accepted:
            self.stats.received[res.kind.name] += 1
            if not self.evaluate_only:
                batch.lines.append(res.line)
                batch.origins.append(msg)
            if msg.qos:
                batch.acks.append((msg.packet_id, msg.epoch))
            for sink in self.sinks:
                try:
                    sink(res)
                except Exception:  # an alert bug must not stop ingestion
                    log.exception("reading sink failed")
        elif res is OWN_TOPIC:
            # Our own dead letters, alerts, commands, under the subscribed <prefix>/#.
            if msg.qos:
                batch.acks.append((msg.packet_id, msg.epoch))
        else:
            assert isinstance(res, Rejected)
            self.stats.received["unrouted" if res.category == "unknown_topic" else "rejected"] += 1
            self.stats.rejected[res.category] += 1
            if not self.evaluate_only:
                batch.deadletters.append(self._deadletter(msg.topic, msg.payload, res.reason))
            if msg.qos:
                batch.acks.append((msg.packet_id, msg.epoch))
        # Acks count too: the alerts role writes no lines, and rejects add acks only. Sealed by
        # the flush timer alone, such a batch acked once a second, so the broker's Receive
        # Maximum capped that process at Receive Maximum messages a second.
        if len(batch.lines) >= self._batch_size or len(batch.acks) >= self._batch_size:
            self._seal()

    def _deadletter(self, topic: str, payload: bytes, reason: str) -> asyncio.Future[None]:
        dl = self._deadletter_of(topic, payload, reason)
        return asyncio.ensure_future(self._publish_deadletter(dl))

    def _deadletter_of(self, topic: str, payload: bytes, reason: str) -> DeadLetter:
        self.stats.deadlettered += 1
        return make_deadletter(
            self.topics.deadletter, topic, payload, reason, max_packet=self.mqtt.max_packet_size
        )

    async def _publish_deadletter(self, dl: DeadLetter) -> None:
        """Publish a dead letter; one the broker refuses is kept in the local file instead.

        Raises ConnectionLost only when the client was closed: the original then stays
        unacknowledged and comes again to the next run.
        """
        try:
            await self.mqtt.publish(dl.topic, dl.body, qos=1)
            return
        except ConnectionLost:
            raise
        except (MqttError, ValueError) as e:
            await self._keep_locally(dl, str(e))

    async def _keep_locally(self, dl: DeadLetter, refused: str) -> None:
        """Fsync a dead letter the broker did not take to the local file, retrying the disk."""
        backoff = 0.5
        while True:
            try:
                await asyncio.to_thread(self.local_deadletters.append, dl, refused)
                break
            except OSError as e:
                # The original stays unacked (and so do those after it) until the disk takes it.
                log.warning(
                    "cannot keep a refused dead letter in %s (%s)", self.local_deadletters.path, e
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
        self.stats.deadletters_local += 1
        log.warning(
            "the broker refused a dead letter (%s): kept in %s",
            refused,
            self.local_deadletters.path,
        )

    def _seal(self) -> None:
        if self._batch.lines or self._batch.acks:
            self._sealed.append(self._batch)
            self._batch = Batch()
            self._wake.set()

    # ---------------------------------------------------------------- delivery
    async def _flush_loop(self) -> None:
        while True:
            if not self._sealed:
                age = time.monotonic() - self._batch.started
                if (self._batch.lines or self._batch.acks) and age >= self._flush_s:
                    self._seal()
                else:
                    self._wake.clear()
                    timeout = (
                        self._flush_s - age
                        if (self._batch.lines or self._batch.acks)
                        else self._flush_s
                    )
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout=max(0.01, timeout))
                    continue
            # Up to write_concurrency batches are written at once, but acked strictly in the
            # order they were sealed: MQTT wants PUBACKs in the order the PUBLISHes came, and a
            # batch leaves _sealed only once acked, so stop() knows what is left. Several writes
            # in flight let InfluxDB index new series on more than one core; with few devices it
            # makes no difference (docs/performance.md, "Why the code is shaped this way").
            for b in itertools.islice(self._sealed, self._concurrency):
                if b.durable is None:
                    b.durable = asyncio.ensure_future(self._make_durable(b))
            head = self._sealed[0]
            assert head.durable is not None
            if not head.durable.done():
                self._wake.clear()  # a batch sealed meanwhile may start its write at once
                waker = asyncio.ensure_future(self._wake.wait())
                try:
                    await asyncio.wait((head.durable, waker), return_when=FIRST_COMPLETED)
                finally:
                    waker.cancel()
                continue
            head.durable.result()  # a bug in the write path ends this task, as it always did
            self._ack(head)
            self._sealed.popleft()
            self._refresh_queue_stats()

    async def _commit(self, batch: Batch, write_by: float | None = None) -> None:
        """Make a batch durable unless a finished write already did, then ack it (shutdown)."""
        d = batch.durable
        if d is None or not d.done() or d.cancelled() or d.exception() is not None:
            await self._make_durable(batch, write_by)
        self._ack(batch)

    def _ack(self, batch: Batch) -> None:
        self.stats.acked += self.mqtt.ack_many(batch.acks)

    async def _make_durable(self, batch: Batch, write_by: float | None = None) -> None:
        """Write a batch to InfluxDB or the spool and dead-letter what InfluxDB refused.

        ``write_by`` (shutdown): an InfluxDB write still unanswered then is given up and the
        batch spooled instead, so a hung InfluxDB cannot hold the exit past the grace period.
        """
        backoff = 0.5
        while batch.lines:
            if not self._influx_down:
                d = await self._deliver(batch.lines, write_by)
                self._latency.observe(d.latency_s)
                self.stats.last_write_latency_s = d.latency_s
                if d.outcome is Outcome.OK:
                    self._note_written(batch.lines, d)
                    for idx, reason in d.rejected:
                        origin = batch.origins[idx]
                        batch.deadletters.append(
                            self._deadletter(origin.topic, origin.payload, reason)
                        )
                        self.stats.rejected[STORAGE_REJECTED] += 1
                    break
                self.stats.write_failures += 1
                self._mark_down(d)
            try:
                await asyncio.to_thread(self.spool.append, "\n".join(batch.lines).encode())
            except (SpoolFull, OSError) as e:
                # Full, or the disk failing (ENOSPC, EIO): an exception here would end the
                # flush task and silently stall ingestion. Hold the batch unacked instead.
                self._set_paused(True)
                log.warning(
                    "cannot spool (%s): holding %d readings, the broker keeps the rest",
                    e if isinstance(e, OSError) else f"full at {self.spool.size_bytes} bytes",
                    len(batch.lines),
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            self.stats.spooled_batches += 1
            self.stats.spooled_points += len(batch.lines)
            self._refresh_spool_stats()
            self._spool_event.set()
            break
        if batch.deadletters:
            await self._await_deadletters(batch)

    async def _deliver(self, lines: list[str], write_by: float | None) -> Delivery:
        if write_by is None:
            return await self.writer.deliver(lines)
        try:
            return await asyncio.wait_for(
                self.writer.deliver(lines), timeout=max(0.0, write_by - time.monotonic())
            )
        except TimeoutError:
            # InfluxDB may still store what it was sent: the spooled copy then overwrites it.
            return Delivery(Outcome.RETRY, message="no answer before the shutdown deadline")

    async def _await_deadletters(self, batch: Batch) -> None:
        # Each dead letter is durable once this returns (broker or local file), or the client
        # was closed, which ends the connection the acks were for: the originals come again.
        # Never clear the batch's acks: its other messages are durable, and unacked they would
        # fill the Receive Maximum and stop ingestion for good.
        results = await asyncio.gather(*batch.deadletters, return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, ConnectionLost):
                log.error("dead letter failed unexpectedly: %r", r)

    def _note_written(self, lines: list[str], d: Delivery) -> None:
        self.stats.points_written += len(lines) - len(d.rejected)
        self.stats.batches_written += 1
        self.stats.influx_up = True

    def _mark_down(self, d: Delivery) -> None:
        if not self._influx_down:
            log.warning("InfluxDB write failed (%s): spooling until it answers again", d.message)
        self._influx_down = True
        self.stats.influx_up = False
        self._spool_event.set()

    async def _replay_loop(self) -> None:
        """Keep the replay running: a disk error reading or deleting a segment is logged and
        retried after a pause instead of silently ending the replay."""
        while True:
            try:
                await self._replay()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("spool replay failed; retrying in 5 s")
                await asyncio.sleep(5)

    async def _replay(self) -> None:
        """Drain the spool oldest-first whenever InfluxDB answers; back off with jitter."""
        backoff = 0.5
        cap = self.settings.ingest.replay_backoff_max.total_seconds()
        while True:
            if not len(self.spool):
                if self._influx_down and await self.writer.ping():
                    self._influx_down = False
                    self.stats.influx_up = True
                    log.info("InfluxDB answers again")
                if not self._influx_down:
                    self._spool_event.clear()
                    await self._spool_event.wait()
                    continue
                await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
                backoff = min(backoff * 2, cap)
                continue
            step = await replay_oldest(self.spool, self.writer, self._deadletter_spooled)
            if step is None:
                continue
            if step.failed is not None:
                self._mark_down(step.failed)
                await asyncio.sleep(backoff * random.uniform(0.5, 1.0))
                backoff = min(backoff * 2, cap)
                continue
            self.stats.replayed_points += step.written
            self.stats.points_written += step.written
            self.stats.batches_written += step.writes
            self._refresh_spool_stats()
            if self._influx_down:
                log.info("InfluxDB answers again: replaying the spool")
            self._influx_down = False
            self.stats.influx_up = True
            backoff = 0.5
            if not len(self.spool):
                log.info("spool drained")

    async def _deadletter_spooled(self, line: str, reason: str) -> None:
        # The original message was acked when it was spooled: the line itself is what is left.
        self.stats.rejected[STORAGE_REJECTED] += 1
        dl = make_deadletter(
            self.topics.deadletter,
            "spool",
            line.encode(),
            reason,
            max_packet=self.mqtt.max_packet_size,
        )
        self.stats.deadlettered += 1
        try:
            await self._publish_deadletter(dl)
        except ConnectionLost as e:
            # Shutting down, and the segment is dropped next: the local file keeps the line.
            await self._keep_locally(dl, str(e))

    # ---------------------------------------------------------------- state
    def _refresh_spool_stats(self) -> None:
        st = self.spool.status()
        self.stats.spool_bytes, self.stats.spool_records = st.bytes, st.records
        if st.bytes >= self._high:
            self._set_paused(True)
        elif st.bytes <= self._low:
            self._set_paused(False)

    def _refresh_queue_stats(self) -> None:
        self.stats.queue_depth = len(self._batch.lines) + sum(len(b.lines) for b in self._sealed)
        # The connection's count is the truth: it includes messages whose bookkeeping a bug lost.
        self.stats.unacked = max(
            self.mqtt.unacked_count,
            len(self._batch.acks) + sum(len(b.acks) for b in self._sealed),
        )

    def _watch_acks(self, now: float) -> None:
        """Age of the oldest unacknowledged message, and whether acks have stalled.

        Two views, the larger wins: the oldest batch still waiting for its write, and the time
        since the connection last saw a PUBACK of ours while it holds unacked messages (that
        one also catches messages the batches lost track of).
        """
        oldest = 0.0
        if self._sealed:
            oldest = now - self._sealed[0].started
        elif self._batch.acks:
            oldest = now - self._batch.started
        if self.mqtt.unacked_count:
            if self._waiting_since is None:
                self._waiting_since = now
            oldest = max(oldest, now - max(self._waiting_since, self.mqtt.last_ack_at))
        else:
            self._waiting_since = None
        self.stats.oldest_unacked_s = oldest
        stalled = oldest > self._stall_after
        if stalled and not self.stats.ack_stalled:
            self.stats.ack_stalls += 1
            self._refresh_queue_stats()
            log.error(
                "acknowledgements stalled: %d messages unacknowledged, the oldest for %.0f s",
                self.stats.unacked,
                oldest,
            )
        elif self.stats.ack_stalled and not stalled:
            log.info("acknowledgements progress again")
        self.stats.ack_stalled = stalled

    async def _watch_loop(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self._stall_after / 4))
            self._watch_acks(time.monotonic())

    def _set_paused(self, paused: bool) -> None:
        if paused == self.stats.paused:
            return
        self.stats.paused = paused
        if self._stopping:
            return  # stop() keeps reading to the end (see there)
        if paused:
            log.warning(
                "spool at %d of %d bytes: pausing consumption (the broker holds the "
                "messages), /readyz is unready",
                self.stats.spool_bytes,
                self.stats.spool_max_bytes,
            )
            self.mqtt.pause_reading()
        else:
            log.info("spool below its high-water mark: resuming consumption")
            self.mqtt.resume_reading()

    def _on_state(self, connected: bool, reason: str) -> None:
        self.stats.mqtt_connected = connected
        if connected:
            log.info("connected to the broker (%s)", reason)
        elif self._stopped:
            log.info("disconnected from the broker (%s)", reason)
        else:
            log.warning("broker connection lost (%s): reconnecting", reason)

    def readiness(self) -> tuple[bool, list[str]]:
        """Whether the service takes traffic, and why not."""
        why = []
        if self._stopping:
            why.append("shutting down")
        if not self.stats.mqtt_connected:
            why.append("not connected to the MQTT broker")
        if self.stats.paused:
            why.append(
                f"spool near its limit ({self.stats.spool_bytes} of "
                f"{self.stats.spool_max_bytes} bytes): consumption paused"
            )
        if self.stats.ack_stalled:
            why.append(
                f"acknowledgements stalled: {self.stats.unacked} messages unacknowledged, "
                f"the oldest for {self.stats.oldest_unacked_s:.0f} s"
            )
        return not why, why

    async def _stats_loop(self) -> None:
        """Write the service's own counters to the envgrid_stats measurement for Grafana."""
        interval = self.settings.ingest.stats_interval.total_seconds()
        host = socket.gethostname()
        while True:
            await asyncio.sleep(interval)
            self._refresh_queue_stats()
            s = self.stats
            fields: list[tuple[str, float | int | bool | str]] = [
                ("received", sum(s.received.values())),
                ("rejected", sum(s.rejected.values())),
                ("points_written", s.points_written),
                ("spool_bytes", s.spool_bytes),
                ("spool_records", s.spool_records),
                ("queue_depth", s.queue_depth),
                ("write_latency_s", float(s.last_write_latency_s)),
                ("mqtt_connected", s.mqtt_connected),
                ("influx_up", s.influx_up),
                ("paused", s.paused),
            ]
            fields += [(f"rejected_{k}", v) for k, v in s.rejected.items()]
            tags = [("host", host), ("worker", str(self.worker if self.worker is not None else 0))]
            line = encode_line("envgrid_stats", tags, fields, int(time.time() * 1000))
            if line and not self._influx_down:
                await self.writer.write(line.encode(), 1)

    # ---------------------------------------------------------------- shutdown
    def stop_reading(self) -> None:
        """Take no more messages (they stay unacked for the next run); the grace period starts.

        Call it as soon as the signal arrives, so time spent stopping other parts counts too.
        """
        if self._stop_at is None:
            self._stop_at = time.monotonic()
            self._stopping = True

    async def stop(self) -> None:
        """Stop reading, make what is in memory durable within the grace period, disconnect."""
        if self._stopped:
            return
        self._stopped = True
        self.stop_reading()
        assert self._stop_at is not None
        grace = self.settings.ingest.shutdown_grace.total_seconds()
        end = self._stop_at + grace
        # Keep a share of the grace for spooling what InfluxDB did not take, and for closing.
        close_by = end - min(2.0, grace * 0.2)
        write_by = close_by - min(2.0, grace * 0.2)
        # Reading goes on (new messages are dropped unacked by _on_message): the PUBACKs of
        # dead letters still in flight and the broker's answer to DISCONNECT must get through.
        self.mqtt.resume_reading()
        # The flush task may be mid-commit: cancel it first so no batch is committed twice
        # concurrently (a batch leaves _sealed only after its commit finished).
        flush = self._tasks[0] if self._tasks else None
        if flush is not None:
            flush.cancel()
            await asyncio.gather(flush, return_exceptions=True)
        # Writes still in flight are given up and redone below under the shutdown deadline
        # (idempotent: InfluxDB may have stored them already).
        inflight = [b.durable for b in self._sealed if b.durable and not b.durable.done()]
        for t in inflight:
            t.cancel()
        await asyncio.gather(*inflight, return_exceptions=True)
        self._seal()
        try:
            while self._sealed and time.monotonic() < close_by:
                await asyncio.wait_for(
                    self._commit(self._sealed[0], write_by),
                    timeout=max(0.1, close_by - time.monotonic()),
                )
                self._sealed.popleft()
        except TimeoutError:
            pass
        if self._sealed:
            self._refresh_queue_stats()
            log.warning(
                "shutdown grace of %.0f s passed: %d unacked readings will be redelivered",
                grace,
                self.stats.unacked,
            )
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # DISCONNECT keeps the session; a broker that does not answer cannot hold us past the
        # grace period (close() itself waits up to 3 s for it).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.mqtt.close(), timeout=max(0.5, end - time.monotonic()))
        await self.writer.close()
        if self._spool is not None:
            self._spool.close()
        log.info(
            "stopped: %d points written, %d spooled, %d dead-lettered",
            self.stats.points_written,
            self.stats.spooled_points,
            self.stats.deadlettered,
        )
