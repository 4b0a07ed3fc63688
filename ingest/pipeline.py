"""The hot path: topic + payload bytes → one line of line protocol, or a rejection with a reason.

Knows device kinds only through ``devices.base.DeviceKind``; decodes and validates in one pass
(msgspec, straight from bytes, because it is much faster than pydantic on the hot path).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec

from devices.base import DeviceKind, Reading, SetAside
from devices.lineproto import TagValueError
from devices.registry import Device, Registry
from ingest.topics import TopicMap

# Rejection categories: the low-cardinality label of envgrid_messages_rejected_total.
OVERSIZE = "oversize"
UNKNOWN_TOPIC = "unknown_topic"
BAD_DEVICE_ID = "bad_device_id"
KIND_MISMATCH = "kind_mismatch"
MALFORMED = "malformed_json"
INVALID = "invalid"
TOO_OLD = "too_old"
IN_FUTURE = "in_future"
EMPTY = "empty"
STORAGE_REJECTED = "storage_rejected"
CATEGORIES = (
    OVERSIZE,
    UNKNOWN_TOPIC,
    BAD_DEVICE_ID,
    KIND_MISMATCH,
    MALFORMED,
    INVALID,
    TOO_OLD,
    IN_FUTURE,
    EMPTY,
    STORAGE_REJECTED,
)


Decoder = Callable[[str, bytes], "Accepted | Rejected"]


@dataclass(slots=True)
class Accepted:
    """A valid reading and its line of line protocol."""

    line: str
    kind: DeviceKind
    reading: Reading
    device: Device
    ts_ms: int
    # Values kept out of the reading (out of range, not a number), stored as <field>_invalid.
    set_aside: tuple[SetAside, ...] = ()


@dataclass(slots=True)
class Rejected:
    """A message that cannot be stored: a category for metrics, a reason for people."""

    category: str
    reason: str


# envgrid's own topic (a dead letter, an alert, a command) under the subscribed <prefix>/#:
# acknowledged, neither stored nor dead-lettered again (see ingest/topics.py).
OWN_TOPIC = Rejected("own_topic", "published by envgrid itself")


class Pipeline:
    """Decodes, validates and encodes one message at a time; never raises on bad input."""

    def __init__(
        self,
        kinds: Mapping[str, DeviceKind],
        registry: Registry,
        topics: TopicMap,
        *,
        max_payload_bytes: int = 256 * 1024,
        max_age_ms: int = 7 * 86_400_000,
        max_future_ms: int = 300_000,
        clock: Callable[[], float] = time.time,
        decoders: Mapping[str, Decoder] | None = None,
        encode_lines: bool = True,
    ) -> None:
        self.kinds = kinds
        # False for the alerts role, which writes nothing: Accepted.line is then "" and a
        # reading with no storable value is still accepted (the sinks see it, and ignore it).
        self.encode_lines = encode_lines
        # Protocol decoders by topic kind segment: (id segment, payload) -> result.
        self.decoders = dict(decoders or {})
        self.registry = registry
        self.topics = topics
        self.max_payload_bytes = max_payload_bytes
        self.max_age_ms = max_age_ms
        self.max_future_ms = max_future_ms
        self.clock = clock
        # Values set apart from accepted readings, by (kind, field, reason): the service's
        # envgrid_values_rejected_total. Counted here, off the hot path (only refused payloads).
        self.values_rejected: Counter[tuple[str, str, str]] = Counter()

    def process(self, topic: str, payload: bytes) -> Accepted | Rejected:
        """Turn one MQTT message into a line of line protocol or a rejection."""
        if len(payload) > self.max_payload_bytes:
            return Rejected(
                OVERSIZE,
                f"payload of {len(payload)} bytes exceeds the limit of "
                f"{self.max_payload_bytes} bytes; not parsed",
            )
        route = self.topics.match(topic)
        if route is None:
            if self.topics.is_own(topic):
                return OWN_TOPIC
            return Rejected(UNKNOWN_TOPIC, _unknown_reason(topic, self.topics))
        kind_name, device_id = route
        decoder = self.decoders.get(kind_name)
        if decoder is not None:
            return decoder(device_id, payload)
        kind = self.kinds[kind_name]
        device = self.registry.resolve(device_id)
        if device is None:
            return Rejected(
                BAD_DEVICE_ID, f"device id {device_id!r} does not match [A-Za-z0-9_.-]{{1,64}}"
            )
        if device.kind is not None and device.kind != kind_name:
            return Rejected(
                KIND_MISMATCH,
                f"device {device_id} is registered as {device.kind}, not {kind_name}",
            )
        try:
            reading: Reading = kind.decoder.decode(payload)
        except msgspec.ValidationError as e:
            return self._salvage(kind, payload, device, e)
        except msgspec.DecodeError as e:
            return Rejected(MALFORMED, f"not valid JSON: {e}")
        return self.accept(kind, reading, device)

    def _salvage(
        self, kind: DeviceKind, payload: bytes, device: Device, error: msgspec.ValidationError
    ) -> Accepted | Rejected:
        """A refused payload with its bad values set apart (``DeviceKind.salvage``): the rest is
        accepted and the bad ones stored as ``<field>_invalid`` + ``<field>_flag``; otherwise the
        whole message is rejected with the decoder's reason, as before."""
        first = kind.explain(str(error))
        try:
            salvaged = kind.salvage(payload)
        except msgspec.ValidationError as e:
            rest = kind.explain(str(e))
            if rest.startswith("no readings"):
                return Rejected(INVALID, f"{kind.name}: {first}; no valid reading left")
            return Rejected(
                INVALID, f"{kind.name}: {rest}" + ("" if rest == first else f"; also {first}")
            )
        if salvaged is None:
            return Rejected(INVALID, f"{kind.name}: {first}")
        reading, aside = salvaged
        res = self.accept(kind, reading, device, ",".join(a.extra() for a in aside))
        if isinstance(res, Accepted):
            res.set_aside = aside
            for a in aside:
                self.values_rejected[(kind.name, a.field, a.reason)] += 1
        return res

    def accept(
        self,
        kind: DeviceKind,
        reading: Reading,
        device: Device,
        extra: str = "",
        extra_tags: str = "",
    ) -> Accepted | Rejected:
        """Check a decoded reading's time window and encode it; ``extra`` is appended as
        further fields (a protocol's flags), already escaped."""
        ts_ms = reading.ts
        if type(ts_ms) is not int:
            ts_ms = reading.ts_ms()
        now_ms = int(self.clock() * 1000)
        if ts_ms > now_ms + self.max_future_ms:
            return Rejected(
                IN_FUTURE,
                f"ts {_iso(ts_ms)} is {(ts_ms - now_ms) / 1000:.0f} s in the future "
                f"(limit {self.max_future_ms // 1000} s): check the device clock",
            )
        if ts_ms < now_ms - self.max_age_ms:
            return Rejected(
                TOO_OLD,
                f"ts {_iso(ts_ms)} is older than the accepted "
                f"{self.max_age_ms / 86_400_000:g} days (ENVGRID_INGEST__MAX_AGE)",
            )
        if not self.encode_lines:
            return Accepted("", kind, reading, device, ts_ms)
        try:
            line = kind.encode(reading, device, ts_ms, extra, extra_tags)
        except TagValueError as e:  # a registry fact or payload tag line protocol cannot carry
            return Rejected(INVALID, f"{kind.name}: tag {e}")
        if line is None:
            return Rejected(EMPTY, "no storable value (every reading null or not finite)")
        return Accepted(line, kind, reading, device, ts_ms)


def _unknown_reason(topic: str, topics: TopicMap) -> str:
    # Say what is wrong with the common mistakes, for the people reading dead letters.
    parts = topic.split("/")
    hint = f"expected {topics.prefix}/<kind>/<device id> with kind one of {', '.join(topics.kinds)}"
    if topic.startswith("/"):
        hint += "; the topic starts with '/'"
    elif topic.endswith("/"):
        hint += "; the topic ends with '/'"
    elif len(parts) >= 2 and parts[-2].lower() in topics.kinds and parts[-2] not in topics.kinds:
        hint += f"; kinds are lower case ({parts[-2]!r})"
    return f"no topic route matches {topic!r}: {hint}"


def _iso(ts_ms: int) -> str:
    try:
        return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).isoformat(timespec="milliseconds")
    except (OverflowError, OSError, ValueError):
        return str(ts_ms)
