"""Dead letters: the JSON that says why a message was refused, made to fit what the broker
accepts, and a local file for the ones the broker refuses all the same.

A dead letter that cannot be published must never hold its original unacknowledged: the
broker would redeliver it after every restart, and with the Receive Maximum full of such
messages ingestion stops (docs/delivery.md, "Dead letters").
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# A longer topic is never a device's: the dead letter keeps its start and says how long it was.
MAX_TOPIC_BYTES = 4096
MQTT_MAX_TOPIC_BYTES = 0xFFFF
# Fixed header (5), topic length (2), packet id (2), properties length (1).
_PUBLISH_OVERHEAD = 10
# (topic, payload, reason) limits in bytes, tried in turn until the packet fits the broker's
# Maximum Packet Size; the last keeps no payload at all.
_STEPS = ((MAX_TOPIC_BYTES, 4096, 2048), (1024, 1024, 512), (256, 256, 256), (64, 64, 128))
_MIN_STEP = (32, 0, 48)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A dead letter ready to publish: where, and the JSON body."""

    topic: str
    body: bytes

    @property
    def packet_size(self) -> int:
        """Upper bound of its QoS 1 PUBLISH packet in bytes."""
        return len(self.topic.encode("utf-8")) + len(self.body) + _PUBLISH_OVERHEAD


def cut_utf8(text: str, limit: int) -> str:
    """``text`` shortened to at most ``limit`` UTF-8 bytes, never inside a character."""
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    return raw[:limit].decode("utf-8", "ignore")


def deadletter_payload(
    topic: str,
    payload: bytes,
    reason: str,
    *,
    max_bytes: int = 4096,
    max_topic_bytes: int = MAX_TOPIC_BYTES,
    max_reason_bytes: int = 2048,
    size: int | None = None,
    now: float | None = None,
) -> bytes:
    """The JSON published on the dead-letter topic: topic, payload (text or base64), reason.

    What does not fit its limit is cut and said so: ``truncated`` with the payload's ``size``
    (``size`` overrides it when ``payload`` is already a part), ``topic_size`` for a topic.
    """
    kept_topic = cut_utf8(topic, max_topic_bytes)
    body: dict[str, Any] = {"topic": kept_topic, "reason": cut_utf8(reason, max_reason_bytes)}
    if len(kept_topic) < len(topic):
        body["topic_size"] = len(topic.encode("utf-8"))
    try:
        body["payload"] = cut_utf8(payload.decode("utf-8"), max_bytes)
        body["payload_encoding"] = "text"
    except UnicodeDecodeError:
        body["payload"] = base64.b64encode(payload[:max_bytes]).decode("ascii")
        body["payload_encoding"] = "base64"
    total = len(payload) if size is None else max(size, len(payload))
    if total > max_bytes or total > len(payload):
        body["truncated"] = True
        body["size"] = total
    body["received_at"] = datetime.fromtimestamp(
        time.time() if now is None else now, tz=UTC
    ).isoformat(timespec="milliseconds")
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def make_deadletter(
    where: Callable[[str], str],
    topic: str,
    payload: bytes,
    reason: str,
    *,
    max_packet: int,
    size: int | None = None,
    now: float | None = None,
) -> DeadLetter:
    """The dead letter of ``topic``, published on ``where(topic)``, cut until it fits a
    packet of ``max_packet`` bytes; the smallest form is returned even if it does not fit
    (publishing it then fails and the local file keeps it)."""
    dl = DeadLetter("", b"")
    for topic_cap, payload_cap, reason_cap in (*_STEPS, _MIN_STEP):
        dl = DeadLetter(
            cut_utf8(where(cut_utf8(topic, topic_cap)), MQTT_MAX_TOPIC_BYTES),
            deadletter_payload(
                topic,
                payload,
                reason,
                max_bytes=payload_cap,
                max_topic_bytes=topic_cap,
                max_reason_bytes=reason_cap,
                size=size,
                now=now,
            ),
        )
        if dl.packet_size <= max_packet:
            break
    return dl


class LocalDeadLetters:
    """An append-only JSON-lines file of dead letters the broker refused, fsynced per record.

    Each line: the dead-letter topic, the broker's refusal and the dead letter itself.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, dl: DeadLetter, refused: str) -> None:
        """Write one record durably (call it in a thread: it fsyncs)."""
        record = {
            "deadletter_topic": dl.topic,
            "refused": refused,
            "deadletter": json.loads(dl.body),
        }
        line = json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def read(self) -> list[dict[str, Any]]:
        """Every record, oldest first (empty when the file does not exist)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line]
