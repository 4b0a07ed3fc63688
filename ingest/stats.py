"""Counters of the running service, kept as plain ints on the hot path.

Incrementing a prometheus-client metric per message costs more than decoding it; the service
bumps these fields instead and :class:`StatsCollector` exposes them at scrape time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client import Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry


@dataclass
class Stats:
    """Everything /metrics and the envgrid_stats measurement report."""

    received: Counter[str] = field(default_factory=Counter)  # by kind (or 'unrouted')
    rejected: Counter[str] = field(default_factory=Counter)  # by category
    # Values set apart from accepted readings, by (kind, field, reason); the pipeline's counter.
    values_rejected: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    points_written: int = 0
    batches_written: int = 0
    write_failures: int = 0
    spooled_batches: int = 0
    spooled_points: int = 0
    replayed_points: int = 0
    deadlettered: int = 0
    deadletters_local: int = 0  # refused by the broker, kept in the local file
    acked: int = 0
    ack_stalls: int = 0
    # Gauges, refreshed by the service.
    queue_depth: int = 0
    unacked: int = 0
    spool_bytes: int = 0
    spool_records: int = 0
    spool_max_bytes: int = 0
    mqtt_connected: bool = False
    influx_up: bool = True
    paused: bool = False
    last_write_latency_s: float = 0.0
    oldest_unacked_s: float = 0.0
    ack_stalled: bool = False


def counter_by(
    name: str, doc: str, labels: list[str], counts: Iterable[tuple[str | tuple[str, ...], int]]
) -> CounterMetricFamily:
    """A counter family with a sample per (label value or tuple of them, count), sorted."""
    family = CounterMetricFamily(name, doc, labels=labels)
    for key, n in sorted(counts):
        family.add_metric(list(key) if isinstance(key, tuple) else [key], n)
    return family


class StatsCollector(Collector):
    """Exposes :class:`Stats` in Prometheus format."""

    def __init__(
        self, stats: Stats, extra: Callable[[], Iterator[GaugeMetricFamily]] | None = None
    ):
        self.stats = stats
        self.extra = extra

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        s = self.stats
        yield counter_by(
            "envgrid_messages_received", "MQTT messages received", ["kind"], s.received.items()
        )
        yield counter_by(
            "envgrid_messages_rejected",
            "Messages dead-lettered, by reason",
            ["reason"],
            s.rejected.items(),
        )
        yield counter_by(
            "envgrid_values_rejected",
            "Values kept out of accepted readings (stored as <field>_invalid), by reason",
            ["kind", "field", "reason"],
            s.values_rejected.items(),
        )
        for name, doc, value in (
            ("envgrid_points_written", "Points accepted by InfluxDB", s.points_written),
            ("envgrid_batches_written", "Batches accepted by InfluxDB", s.batches_written),
            (
                "envgrid_write_failures",
                "Batch writes that failed and were spooled or held",
                s.write_failures,
            ),
            ("envgrid_spooled_batches", "Batches written to the spool", s.spooled_batches),
            ("envgrid_spooled_points", "Points written to the spool", s.spooled_points),
            ("envgrid_replayed_points", "Points replayed from the spool", s.replayed_points),
            ("envgrid_deadlettered", "Messages published to the dead-letter topic", s.deadlettered),
            ("envgrid_messages_acked", "Messages acknowledged to the broker", s.acked),
            (
                "envgrid_deadletters_local",
                "Dead letters the broker refused, kept in the local dead-letter file",
                s.deadletters_local,
            ),
            (
                "envgrid_ack_stalls",
                "Times acknowledgements stalled past ingest.ack_stall_after",
                s.ack_stalls,
            ),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        for name, doc, gv in (
            ("envgrid_queue_depth", "Readings in memory awaiting a write", s.queue_depth),
            ("envgrid_unacked_messages", "Messages received and not yet acknowledged", s.unacked),
            ("envgrid_spool_bytes", "Bytes held in the spool", s.spool_bytes),
            ("envgrid_spool_records", "Batches held in the spool", s.spool_records),
            ("envgrid_spool_max_bytes", "Spool size limit", s.spool_max_bytes),
            ("envgrid_mqtt_connected", "1 when connected to the broker", int(s.mqtt_connected)),
            ("envgrid_influx_up", "1 when the last write reached InfluxDB", int(s.influx_up)),
            (
                "envgrid_oldest_unacked_seconds",
                "Age of the oldest message not yet acknowledged (0 when none waits)",
                s.oldest_unacked_s,
            ),
            (
                "envgrid_ack_stalled",
                "1 when acks have not progressed for ingest.ack_stall_after while messages wait",
                int(s.ack_stalled),
            ),
            (
                "envgrid_consumer_paused",
                "1 when consumption is paused (spool near full)",
                int(s.paused),
            ),
        ):
            yield GaugeMetricFamily(name, doc, value=gv)
        if self.extra is not None:
            yield from self.extra()


def new_registry(stats: Stats) -> tuple[CollectorRegistry, Histogram]:
    """A Prometheus registry with the service's counters and the write-latency histogram."""
    reg = CollectorRegistry()
    reg.register(StatsCollector(stats))
    latency = Histogram(
        "envgrid_write_latency_seconds",
        "InfluxDB write latency per batch",
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        registry=reg,
    )
    return reg, latency
