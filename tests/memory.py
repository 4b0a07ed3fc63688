"""An in-memory broker session and store for the ingest service (FastStream's pattern).

They follow the seams in ``ingest.seams``. ``tests/unit/test_service_contract.py`` runs the
same cases against them and against a real Mosquitto and InfluxDB, so a fast test cannot pass
on behaviour the real parts do not have.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence

from ingest.mqtt import Message, MqttError, MqttOptions
from ingest.writer import Delivery, Outcome, WriteResult


def matches(topic_filter: str, topic: str) -> bool:
    """MQTT topic filter matching (``+``, ``#``, ``$share/<group>/`` prefix)."""
    if topic_filter.startswith("$share/"):
        topic_filter = topic_filter.split("/", 2)[2]
    f, t = topic_filter.split("/"), topic.split("/")
    for i, part in enumerate(f):
        if part == "#":
            return True
        if i >= len(t) or (part != "+" and part != t[i]):
            return False
    return len(f) == len(t)


class MemoryBroker:
    """One MQTT session held in memory: ``deliver`` plays the broker sending a message."""

    def __init__(
        self,
        options: MqttOptions,
        on_message: Callable[[Message], None],
        on_state: Callable[[bool, str], None],
        *,
        max_packet_size: int = 1 << 28,
    ) -> None:
        self.options = options
        self._on_message = on_message
        self._on_state = on_state
        self.max_packet_size = max_packet_size
        self.epoch = 1
        self.last_ack_at = time.monotonic()
        self.unacked: dict[int, Message] = {}
        self.acked: list[int] = []
        self.published: list[tuple[str, bytes]] = []
        self.paused = False
        self._next_id = 0

    @property
    def unacked_count(self) -> int:
        return len(self.unacked)

    async def start(self) -> None:
        self._on_state(True, "in-memory broker")

    async def wait_connected(self, timeout: float | None = None) -> None:
        return None

    async def close(self) -> None:
        self._on_state(False, "client closed")

    async def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        if len(topic.encode()) > 0xFFFF:
            raise ValueError("topic longer than 65535 bytes")
        size = len(topic.encode()) + len(payload) + 10
        if size > self.max_packet_size:
            raise MqttError(
                f"publish of {size} bytes exceeds the broker's Maximum Packet Size "
                f"{self.max_packet_size}",
                0x95,
            )
        self.published.append((topic, payload))

    def ack_many(self, items: Sequence[tuple[int, int]]) -> int:
        n = 0
        for packet_id, epoch in items:
            if epoch == self.epoch and self.unacked.pop(packet_id, None) is not None:
                self.acked.append(packet_id)
                n += 1
        if n:
            self.last_ack_at = time.monotonic()
        return n

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def deliver(self, topic: str, payload: bytes) -> bool:
        """Send a QoS 1 message if the session subscribes to its topic; False otherwise."""
        if not any(matches(f, topic) for f in self.options.subscriptions):
            return False
        self._next_id = self._next_id % 65535 + 1
        msg = Message(topic, payload, 1, self._next_id, self.epoch)
        self.unacked[msg.packet_id] = msg
        self._on_message(msg)
        return True


class MemoryStore:
    """A time-series store in memory: idempotent by series and timestamp, like InfluxDB."""

    def __init__(self) -> None:
        self.points: dict[tuple[str, str], str] = {}
        self.down = False
        self.refuse: tuple[str, ...] = ()  # lines holding one of these are refused for good

    async def deliver(self, lines: Sequence[str]) -> Delivery:
        if self.down:
            return Delivery(Outcome.RETRY, message="in-memory store is down")
        rejected = []
        for i, line in enumerate(lines):
            if any(r in line for r in self.refuse):
                rejected.append((i, "refused by the in-memory store"))
                continue
            series, _fields, ts = _split(line)
            self.points[(series, ts)] = line
        return Delivery(Outcome.OK, rejected=rejected, writes=1)

    async def write(self, body: bytes, lines: int) -> WriteResult:
        if self.down:
            return WriteResult(Outcome.RETRY, None, "in-memory store is down")
        return WriteResult(Outcome.OK, 204, "")

    async def ping(self) -> bool:
        return not self.down

    async def close(self) -> None:
        return None

    def count(self, measurement: str) -> int:
        return sum(1 for series, _ts in self.points if series.split(",", 1)[0] == measurement)


_BLANK = re.compile(r"(?<!\\) ")


def _split(line: str) -> tuple[str, str, str]:
    # Line protocol escapes blanks in tags, so the first unescaped blank ends the series.
    series, rest = _BLANK.split(line, maxsplit=1)
    fields, _sep, ts = rest.rpartition(" ")
    return series, fields, ts
