"""What the ingest service needs from a broker connection and from a time-series store.

:class:`~ingest.mqtt.MqttClient` and :class:`~ingest.writer.InfluxWriter` are the real ones;
the service takes others through its constructor, so the same service tests run against an
in-memory broker and store (fast) and against Mosquitto and InfluxDB (real).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from ingest.mqtt import Message, MqttOptions
from ingest.writer import Delivery, WriteResult


class Broker(Protocol):
    """One MQTT session: messages in, our publishes and acks out."""

    @property
    def unacked_count(self) -> int: ...
    @property
    def last_ack_at(self) -> float: ...
    @property
    def max_packet_size(self) -> int: ...

    async def start(self) -> None: ...
    async def wait_connected(self, timeout: float | None = None) -> None: ...
    async def close(self) -> None: ...
    async def publish(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False
    ) -> None: ...
    def ack_many(self, items: Sequence[tuple[int, int]]) -> int: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...


BrokerFactory = Callable[
    [MqttOptions, Callable[[Message], None], Callable[[bool, str], None]], Broker
]


class Writer(Protocol):
    """Where batches of line protocol become durable."""

    async def deliver(self, lines: Sequence[str]) -> Delivery: ...
    async def write(self, body: bytes, lines: int) -> WriteResult: ...
    async def ping(self) -> bool: ...
    async def close(self) -> None: ...
