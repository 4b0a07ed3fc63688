"""A small asyncio MQTT 5 client for the ingest hot path: persistent session, batched acks.

Receives QoS 0, 1 and 2 (QoS 2 only from a broker that upgrades: we subscribe with QoS 1; it is
acknowledged with PUBREC once durable and completed with PUBCOMP on PUBREL); publishes QoS 0/1.

Why hand-written (project rule: only where it measurably beats the library): paho-mqtt reads every
packet with several recv() calls and one event-loop wake-up per packet. This client parses all the
packets of one 256 KiB read in one pass and sends a batch of PUBACKs in one write. How much
that buys against paho-mqtt (bench/mqtt_reader.py): docs/performance.md, "Why the code is shaped
this way".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import struct
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from ssl import SSLCertVerificationError, SSLContext
from typing import Any, cast

from ingest.subscriptions import read_subscriptions, write_subscriptions

__all__ = [
    "ConnectError",
    "ConnectionLost",
    "Message",
    "MqttClient",
    "MqttError",
    "MqttOptions",
    "ProtocolError",
    "SubscribeError",
    "reason_name",
]

log = logging.getLogger("envgrid.mqtt")

# MQTT 5.0 reason codes (spec 2.4) with the spec's wording, for errors people read.
REASONS: dict[int, str] = {
    0x00: "success",
    0x01: "granted QoS 1",
    0x02: "granted QoS 2",
    0x04: "disconnect with will message",
    0x10: "no matching subscribers",
    0x11: "no subscription existed",
    0x80: "unspecified error",
    0x81: "malformed packet",
    0x82: "protocol error",
    0x83: "implementation specific error",
    0x84: "unsupported protocol version",
    0x85: "client identifier not valid",
    0x86: "bad user name or password",
    0x87: "not authorized",
    0x88: "server unavailable",
    0x89: "server busy",
    0x8A: "banned",
    0x8B: "server shutting down",
    0x8C: "bad authentication method",
    0x8D: "keep alive timeout",
    0x8E: "session taken over",
    0x8F: "topic filter invalid",
    0x90: "topic name invalid",
    0x91: "packet identifier in use",
    0x92: "packet identifier not found",
    0x93: "receive maximum exceeded",
    0x94: "topic alias invalid",
    0x95: "packet too large",
    0x96: "message rate too high",
    0x97: "quota exceeded",
    0x98: "administrative action",
    0x99: "payload format invalid",
    0x9A: "retain not supported",
    0x9B: "QoS not supported",
    0x9C: "use another server",
    0x9D: "server moved",
    0x9E: "shared subscriptions not supported",
    0x9F: "connection rate exceeded",
    0xA0: "maximum connect time",
    0xA1: "subscription identifiers not supported",
    0xA2: "wildcard subscriptions not supported",
}

# CONNACK refusals that retrying will not fix: wait_connected() raises them instead of waiting.
PERMANENT_REFUSALS = frozenset({0x84, 0x85, 0x86, 0x87, 0x8A, 0x8C})

# How long a connection must have lasted for the reconnect backoff to start again from the
# minimum; a broker that accepts and then drops us at once is not hammered at 5 Hz.
STABLE_CONNECTION_S = 5.0


def reason_name(code: int) -> str:
    """The readable name of an MQTT 5 reason code."""
    return REASONS.get(code, "unknown reason code")


def _describe(code: int) -> str:
    return f"0x{code:02X} {reason_name(code)}"


# ------------------------------------------------------------------------------------ errors


class MqttError(Exception):
    """Base of this client's errors; ``reason_code`` is the broker's MQTT 5 reason code, if any."""

    def __init__(self, message: str, reason_code: int | None = None) -> None:
        super().__init__(message)
        self.reason_code = reason_code
        self.reason = reason_name(reason_code) if reason_code is not None else message


class ConnectError(MqttError):
    """The broker refused the connection (see ``reason_code``), or TCP/TLS connect failed."""

    def __init__(
        self, message: str, reason_code: int | None = None, *, permanent: bool = False
    ) -> None:
        super().__init__(message, reason_code)
        self.permanent = permanent  # retrying will not help (credentials, authorization, TLS)


class SubscribeError(ConnectError):
    """The broker refused a subscription in SUBACK; the other filters stay subscribed."""

    def __init__(self, message: str, reason_code: int, topic_filter: str) -> None:
        super().__init__(message, reason_code, permanent=True)
        self.topic_filter = topic_filter


class ProtocolError(MqttError):
    """The broker sent a malformed or unexpected packet."""


class MalformedPacket(ProtocolError):
    """A packet that cannot be parsed (answered with DISCONNECT 0x81, not 0x82)."""


class ConnectionLost(MqttError):
    """The connection ended (or the client was closed) before the operation completed."""


# ---------------------------------------------------------------------------------- public data


@dataclass(slots=True)
class Message:
    """One received PUBLISH; ack QoS 1 messages with ``client.ack(packet_id, epoch)``."""

    topic: str
    payload: bytes
    qos: int
    packet_id: int
    epoch: int
    retain: bool = False
    dup: bool = False


@dataclass
class MqttOptions:
    """Where and how to connect; the password is kept out of repr() and logs."""

    host: str
    port: int
    client_id: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ssl: SSLContext | None = None
    keepalive_s: int = 60
    clean_start: bool = False
    # v5 Session Expiry Interval: the broker keeps our session and queued QoS 1 messages this long.
    session_expiry_s: int = 172800
    # v5 Receive Maximum: unacked QoS 1 messages the broker may send us (must cover an ack batch).
    receive_maximum: int = 20000
    # Filters (including $share/<group>/...), subscribed with QoS 1 after every CONNACK.
    subscriptions: list[str] = field(default_factory=list)
    connect_timeout_s: float = 5.0
    reconnect_min_s: float = 0.2
    reconnect_max_s: float = 30.0
    # After a protocol error the next attempt waits at least this long, doubling per repeated
    # error up to reconnect_max_s, however long the connection lasted: a broker that sends the
    # same bad packet on every connection is not reconnected to in a tight loop.
    protocol_error_backoff_s: float = 1.0
    # Where the filters of this client id's stored session are recorded (JSON, written after
    # each SUBACK): on reconnect, filters no longer configured are UNSUBSCRIBEd. None: not
    # recorded (filters dropped from the config keep delivering while the session lives).
    subscriptions_file: Path | None = None


# ------------------------------------------------------------------------------- wire helpers

_PUBACK = struct.Struct(">BBH").pack  # fixed header, remaining length 2, packet id: reason 0x00
_PUBREC = 0x50  # first bytes for _PUBACK(first, 2, packet_id): QoS 2 receipt and completion
_PUBCOMP = 0x70
_PINGREQ = b"\xc0\x00"
_DISCONNECT_NORMAL = b"\xe0\x00"  # reason 0x00 keeps the session (Session Expiry unchanged)
# Reason 0x00 with Session Expiry Interval 0: the broker deletes the session once we are gone.
_DISCONNECT_END_SESSION = b"\xe0\x07\x00\x05\x11\x00\x00\x00\x00"
# SUBSCRIBE options: maximum QoS 1; Retain Handling 1 = send retained messages only for a new
# subscription, so a resumed session is not flooded with retained messages it already had.
_SUB_OPTIONS = 0x01 | 0x10
_MAX_VARINT = 268_435_455  # 4 bytes of variable byte integer; anything longer is malformed
# Bytes of packets parsed per event-loop iteration before yielding (see _Connection._parse).
SLICE_BYTES = 32 * 1024


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _utf8(text: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise ValueError(f"string longer than 65535 bytes: {text[:40]!r}…")
    return len(raw).to_bytes(2, "big") + raw


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + _varint(len(body)) + body


def _publish_packet(
    topic: bytes, payload: bytes, qos: int, retain: bool, dup: bool, packet_id: int
) -> bytes:
    head = len(topic).to_bytes(2, "big") + topic
    if qos:
        head += packet_id.to_bytes(2, "big")
    head += b"\x00"  # no properties
    first = 0x30 | (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    return bytes((first,)) + _varint(len(head) + len(payload)) + head + payload


_BYTE_PROPS = frozenset({0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A})
_U16_PROPS = frozenset({0x13, 0x21, 0x22, 0x23})
_U32_PROPS = frozenset({0x02, 0x11, 0x18, 0x27})
_STR_PROPS = frozenset({0x03, 0x08, 0x12, 0x15, 0x1A, 0x1C, 0x1F})
_BIN_PROPS = frozenset({0x09, 0x16})
_USER_PROPERTY = 0x26
_SUBSCRIPTION_ID = 0x0B


class _Reader:
    """Bounds-checked reads inside one packet; any overrun is a ProtocolError."""

    __slots__ = ("data", "end", "i")

    def __init__(self, data: bytes, start: int, end: int) -> None:
        self.data = data
        self.i = start
        self.end = end

    def remaining(self) -> int:
        return self.end - self.i

    def take(self, n: int) -> bytes:
        if self.i + n > self.end:
            raise MalformedPacket("packet shorter than its fields")
        chunk = self.data[self.i : self.i + n]
        self.i += n
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "big")

    def varint(self) -> int:
        value = 0
        for shift in (0, 7, 14, 21):
            byte = self.u8()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
        raise MalformedPacket("variable byte integer longer than 4 bytes")

    def string(self) -> str:
        try:
            return self.take(self.u16()).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedPacket(f"invalid UTF-8 string: {exc}") from None

    def properties(self) -> dict[int, Any]:
        """A property list (length prefix included); user properties collect into a list."""
        length = self.varint()
        stop = self.i + length
        if stop > self.end:
            raise MalformedPacket("properties longer than the packet")
        outer_end, self.end = self.end, stop
        props: dict[int, Any] = {}
        try:
            while self.i < stop:
                ident = self.varint()
                value: Any
                if ident in _BYTE_PROPS:
                    value = self.u8()
                elif ident in _U16_PROPS:
                    value = self.u16()
                elif ident in _U32_PROPS:
                    value = self.u32()
                elif ident in _STR_PROPS:
                    value = self.string()
                elif ident in _BIN_PROPS:
                    value = self.take(self.u16())
                elif ident == _SUBSCRIPTION_ID:
                    value = self.varint()
                elif ident == _USER_PROPERTY:
                    props.setdefault(ident, []).append((self.string(), self.string()))
                    continue
                else:
                    raise MalformedPacket(f"unknown property identifier 0x{ident:02X}")
                props[ident] = value
        finally:
            self.end = outer_end
        return props


def _read_length(data: bytes, i: int, n: int) -> tuple[int, int]:
    """Remaining length at data[i:]; (value, index after it), or (-1, -1) if not all here yet."""
    value = 0
    for shift in (0, 7, 14, 21):
        if i >= n:
            return -1, -1
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i
    raise MalformedPacket("remaining length longer than 4 bytes (over 256 MiB)")


# --------------------------------------------------------------------------------- connection


@dataclass(slots=True)
class _Outgoing:
    """A QoS 1 publish of ours until the broker's PUBACK."""

    packet_id: int
    topic: bytes
    payload: bytes
    retain: bool
    future: asyncio.Future[None]
    sent_epoch: int = 0  # epoch of the connection it was last sent on; 0 = never sent


class _Connection(asyncio.Protocol):
    """One TCP/TLS connection: parses every complete packet of each read in one pass."""

    def __init__(self, client: MqttClient) -> None:
        self.client = client
        self.on_message = client._on_message
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()  # an incomplete packet (or packets held while paused)
        self.need = 0  # bytes the first buffered packet needs; below that, skip parsing
        self.epoch = 0  # set by CONNACK; PUBLISH before that is a protocol error
        self.unacked: set[int] = set()  # QoS 1 and 2 packet ids delivered and not acked yet
        self.qos2: set[int] = set()  # those of them that are QoS 2 (acked with PUBREC)
        self.aliases: dict[int, str] = {}  # topic aliases, in case a broker uses them anyway
        self.connacked: asyncio.Future[None] = self.loop.create_future()
        self.ready: asyncio.Future[None] = self.loop.create_future()  # after SUBACK
        self.lost: asyncio.Future[str] = self.loop.create_future()
        self.lost_reason: str | None = None
        self.suback_id = 0
        self.unsuback_id = 0
        self.hold = False  # stop parsing (paused by the application, or closing)
        self.yielding = False  # a slice was parsed; the rest waits for the next loop iteration
        self.yield_paused = False  # reading paused by that, not by the application
        # Our own Receive Maximum, enforced here too: mosquitto 2.0.11 stops honouring it once
        # PUBACKs flow and sends far past it (the measurement: docs/performance.md, "Why the
        # code is shaped this way"). Past it, reading stops until acks bring the count down, so
        # memory stays bounded and packet ids are never reused in flight (past 65,535 unacked
        # the broker has to reuse them). Not while a publish of
        # ours awaits its PUBACK: the application may ack only after it (a dead letter), and
        # that PUBACK arrives on this same stream.
        self.max_unacked = client._opts.receive_maximum
        self.throttled = False
        self.discard = False  # closing: what still arrives is redelivered next session
        self.paused = False
        self.keepalive = 0
        self.last_recv = self.last_sent = time.monotonic()
        self.ping_outstanding = False
        self.timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop transports are not subclasses
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.hold = True
        reason = self.lost_reason or (
            f"connection lost: {exc}" if exc else "connection closed by the other end"
        )
        for fut in (self.connacked, self.ready):
            if not fut.done():
                fut.set_exception(ConnectionLost(reason))
                fut.exception()  # retrieved here: nobody may be awaiting it any more
        if not self.lost.done():
            self.lost.set_result(reason)
        self.client._connection_lost(self, reason)

    def data_received(self, data: bytes) -> None:
        if self.discard:
            return
        self.last_recv = time.monotonic()
        self.ping_outstanding = False
        buf = self.buf
        if buf:
            buf += data
            # A large packet arrives in many reads: do not re-parse the buffer until it is whole.
            if len(buf) < self.need or self.hold or self.throttled:
                return
            data = bytes(buf)
            buf.clear()
        elif self.hold or self.throttled:
            buf += data
            return
        self._feed(data)

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost follows

    # -- parsing

    def _feed(self, data: bytes) -> None:
        try:
            pos = self._parse(data)
        except ProtocolError as exc:
            self.client._protocol_error(self, exc)
            return
        if pos < len(data):
            self.buf += memoryview(data)[pos:]
            # Only when _parse stopped at the slice limit (not at an incomplete packet, which
            # must wait for more data: yielding for it would spin).
            if pos >= SLICE_BYTES and not self.hold and not self.yielding and not self.throttled:
                # Complete packets left over after one slice: let the loop run other tasks
                # (the InfluxDB write that acks them) and come back for the next slice.
                self.yielding = True
                transport = self.transport
                if transport is not None and not self.paused and not transport.is_closing():
                    transport.pause_reading()  # the buffer holds enough for now
                    self.yield_paused = True
                self.loop.call_soon(self._next_slice)

    def _next_slice(self) -> None:
        self.yielding = False
        if self.buf and not self.hold and not self.discard and not self.throttled:
            data = bytes(self.buf)
            self.buf.clear()
            self._feed(data)
        if self.yield_paused and not self.yielding:
            self.yield_paused = False
            transport = self.transport
            # Not if the application paused reading meanwhile: set_paused(False) resumes.
            if (
                transport is not None
                and not self.paused
                and not self.throttled
                and not transport.is_closing()
            ):
                transport.resume_reading()

    def drain(self) -> None:
        """Parse what was held in the buffer while reading was paused."""
        if self.buf and not self.hold and not self.throttled:
            data = bytes(self.buf)
            self.buf.clear()
            self._feed(data)

    def _parse(self, data: bytes) -> int:
        """Handle every complete packet in ``data``; returns how many bytes were consumed."""
        n = len(data)
        pos = 0
        self.need = 0
        on_message = self.on_message
        unacked = self.unacked
        unacked_add = unacked.add
        epoch = self.epoch
        # At most one slice per call: a whole read of a backlog is many milliseconds of pipeline
        # work, and the InfluxDB write that acks it needs several loop iterations (send,
        # answer), each of which would wait a whole read. Slicing drains faster in less memory
        # at the same CPU per message (docs/performance.md, "Why the code is shaped this way").
        limit = SLICE_BYTES
        while pos + 1 < n and not self.hold and pos < limit and not self.throttled:
            first = data[pos]
            length = data[pos + 1]
            head = pos + 2
            if length & 0x80:
                length, head = _read_length(data, pos + 1, n)
                if head < 0:
                    break
            end = head + length
            if end > n:
                self.need = end - pos
                break
            if first >> 4 == 3:  # PUBLISH: the hot path, kept inline
                if not epoch:
                    raise ProtocolError("PUBLISH before CONNACK")
                qos = (first >> 1) & 3
                p = head + 2 + ((data[head] << 8) | data[head + 1]) if length >= 2 else end + 1
                if p + (3 if qos else 1) > end:
                    raise MalformedPacket("PUBLISH shorter than its topic and header fields")
                try:
                    topic = data[head + 2 : p].decode()
                except UnicodeDecodeError as exc:
                    raise MalformedPacket(f"PUBLISH topic is not valid UTF-8: {exc}") from None
                if qos:
                    if qos == 3:
                        raise MalformedPacket("PUBLISH with QoS 3")
                    packet_id = (data[p] << 8) | data[p + 1]
                    p += 2
                else:
                    packet_id = 0
                if data[p]:  # properties present: rare, so parsed in the slow path
                    p, topic = self._publish_properties(data, p, end, topic)
                else:
                    p += 1
                    if not topic:
                        raise ProtocolError("PUBLISH with an empty topic and no topic alias")
                msg = Message(
                    topic, data[p:end], qos, packet_id, epoch, first & 1 == 1, first & 8 == 8
                )
                if qos:
                    if qos != 1:
                        if not self._qos2_arrived(packet_id):
                            pos = end
                            continue  # a redelivery we hold already: not delivered twice
                    elif packet_id in unacked:
                        # Acking the first would ack this one too, and its own ack would be
                        # lost: reconnect instead, and the session redelivers both.
                        raise ProtocolError(f"packet identifier {packet_id} reused while unacked")
                    else:
                        unacked_add(packet_id)
                    if len(unacked) >= self.max_unacked and not self.client._awaiting_puback():
                        self._throttle()
                try:
                    on_message(msg)
                except Exception as exc:  # a bad handler must not take the connection down
                    self.client._handler_failed(exc)
            else:
                self._control(first, data, head, end)
                epoch = self.epoch
            pos = end
        return pos

    def _qos2_arrived(self, packet_id: int) -> bool:
        """Book a QoS 2 PUBLISH; False if it is one we hold already (not to deliver again)."""
        client = self.client
        if packet_id in client._released_wait:
            # We sent PUBREC (the message is durable) and the broker did not get it: again.
            self.write(_PUBACK(_PUBREC, 2, packet_id))
            return False
        if packet_id in self.qos2:
            return False  # delivered on this connection, not durable yet: its ack will come
        if packet_id in self.unacked:
            raise ProtocolError(f"packet identifier {packet_id} reused while unacked")
        self.unacked.add(packet_id)
        self.qos2.add(packet_id)
        return True

    def _publish_properties(self, data: bytes, p: int, end: int, topic: str) -> tuple[int, str]:
        reader = _Reader(data, p, end)
        props = reader.properties()
        alias = props.get(0x23)
        if alias is not None:
            # We announce Topic Alias Maximum 0 (the default), so a broker should never use
            # aliases; resolve them anyway rather than drop a connection full of messages.
            if alias == 0:
                raise ProtocolError("topic alias 0")
            if topic:
                self.aliases[alias] = topic
            else:
                try:
                    topic = self.aliases[alias]
                except KeyError:
                    raise ProtocolError(f"unknown topic alias {alias}") from None
        elif not topic:
            raise ProtocolError("PUBLISH with an empty topic and no topic alias")
        return reader.i, topic

    def _control(self, first: int, data: bytes, head: int, end: int) -> None:
        kind = first >> 4
        reader = _Reader(data, head, end)
        if kind == 4:  # PUBACK
            packet_id = reader.u16()
            code = reader.u8() if reader.remaining() else 0
            props = reader.properties() if reader.remaining() else {}
            self.client._puback(packet_id, code, props.get(0x1F))
        elif kind == 13:  # PINGRESP
            pass
        elif kind == 6:  # PUBREL: the broker got our PUBREC; complete the QoS 2 exchange
            if first != 0x62:
                raise MalformedPacket(f"PUBREL flags 0x{first & 0x0F:X}")
            packet_id = reader.u16()
            known = packet_id in self.client._released_wait
            self.client._released_wait.discard(packet_id)
            # 0x92 packet identifier not found: a PUBREL for nothing we received.
            self.write(
                _PUBACK(_PUBCOMP, 2, packet_id)
                if known
                else b"\x70\x03" + packet_id.to_bytes(2, "big") + b"\x92"
            )
        elif kind == 2:  # CONNACK
            if self.connacked.done():
                raise ProtocolError("second CONNACK on one connection")
            flags = reader.u8()
            code = reader.u8()
            if flags & 0xFE:
                raise ProtocolError(f"CONNACK flags 0x{flags:02X}")
            props = reader.properties() if reader.remaining() else {}
            self.client._connack(self, bool(flags & 1), code, props)
        elif kind == 9:  # SUBACK
            packet_id = reader.u16()
            props = reader.properties()
            codes = list(reader.take(reader.remaining()))
            if packet_id != self.suback_id or self.ready.done():
                raise ProtocolError(f"SUBACK for packet id {packet_id} we did not send")
            self.client._suback(self, codes, props.get(0x1F))
        elif kind == 11:  # UNSUBACK
            packet_id = reader.u16()
            if packet_id and packet_id == self.unsuback_id:
                reader.properties()
                self.client._unsuback(self, list(reader.take(reader.remaining())))
                return
            waiter = self.client._unsub_waiters.pop(packet_id, None)
            if waiter is None:
                raise ProtocolError(f"UNSUBACK for packet id {packet_id} we did not send")
            if not waiter.done():
                waiter.set_result(None)
        elif kind == 14:  # DISCONNECT from the broker
            code = reader.u8() if reader.remaining() else 0
            props = reader.properties() if reader.remaining() else {}
            self.client._server_disconnect(self, code, props)
        else:
            raise ProtocolError(f"unexpected packet type {kind} (first byte 0x{first:02X})")

    # -- writing, keepalive, flow control

    def write(self, data: bytes) -> bool:
        transport = self.transport
        if transport is None or transport.is_closing() or self.discard:
            return False
        transport.write(data)
        self.last_sent = time.monotonic()
        return True

    @property
    def open(self) -> bool:
        """Writable: connected, not closing, and not past our DISCONNECT."""
        transport = self.transport
        return transport is not None and not transport.is_closing() and not self.discard

    def start_keepalive(self, keepalive: int) -> None:
        self.keepalive = keepalive
        if keepalive > 0 and self.timer is None:
            self.timer = self.loop.call_later(keepalive / 2, self._keepalive_tick)

    def _keepalive_tick(self) -> None:
        self.timer = None
        if not self.open:
            return
        now = time.monotonic()
        ka = self.keepalive
        if self.paused or self.throttled:
            self.last_recv = now  # we are not reading on purpose: silence proves nothing
        if now - self.last_recv >= 1.5 * ka:
            self.close(
                f"no packet from the broker for {now - self.last_recv:.1f} s (keepalive {ka} s)",
                abort=True,
            )
            return
        # Ping when we sent nothing for a keepalive (the broker's rule), and also when we heard
        # nothing for one: a connection that only sends would otherwise never prove the broker
        # alive and would be dropped at 1.5 × keepalive.
        if now - self.last_sent >= ka or (now - self.last_recv >= ka and not self.ping_outstanding):
            self.write(_PINGREQ)
            self.ping_outstanding = True
        due = min(self.last_sent + ka, self.last_recv + 1.5 * ka)
        if not self.ping_outstanding:
            due = min(due, self.last_recv + ka)
        self.timer = self.loop.call_later(max(0.05, due - now), self._keepalive_tick)

    def set_paused(self, paused: bool) -> None:
        """Transport flow control; only after the handshake, which must read CONNACK/SUBACK."""
        self.paused = paused
        transport = self.transport
        if transport is None or transport.is_closing() or not self.ready.done():
            return
        if paused:
            self.hold = True
            transport.pause_reading()
        else:
            self.hold = False
            self.last_recv = time.monotonic()
            if not self.throttled:
                transport.resume_reading()
            if self.buf:
                self.loop.call_soon(self.drain)

    def _throttle(self) -> None:
        """Receive Maximum reached: stop reading until acks free room (see max_unacked)."""
        self.throttled = True
        transport = self.transport
        if transport is not None and not self.paused and not transport.is_closing():
            transport.pause_reading()

    def unthrottle(self, force: bool = False) -> None:
        """Acks freed room below Receive Maximum (or a publish of ours needs its PUBACK read):
        read again, held packets first."""
        if not self.throttled or (len(self.unacked) >= self.max_unacked and not force):
            return
        self.throttled = False
        self.last_recv = time.monotonic()
        transport = self.transport
        if transport is not None and not self.paused and not transport.is_closing():
            transport.resume_reading()
        if self.buf:
            self.loop.call_soon(self.drain)

    def close(self, reason: str, *, abort: bool = False, disconnect: bytes | None = None) -> None:
        """End this connection, remembering why; ``disconnect`` is sent first if given."""
        if self.lost_reason is None:
            self.lost_reason = reason
        self.hold = True
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if disconnect is not None:
            transport.write(disconnect)
        if abort:
            transport.abort()
        else:
            transport.close()
            # close() waits for the write buffer to drain; a broker that stopped reading
            # must not keep this connection half-open forever.
            self.loop.call_later(2.0, transport.abort)


# ------------------------------------------------------------------------------------ client


class MqttClient:
    """MQTT 5 client: QoS 1 subscriptions with manual acks, QoS 0/1 publish, auto-reconnect.

    All methods must be called from the event loop that ran ``start()``.
    """

    def __init__(
        self,
        options: MqttOptions,
        on_message: Callable[[Message], None],
        on_state: Callable[[bool, str], None] | None = None,
    ) -> None:
        _validate(options)
        self._opts = options
        self._on_message = on_message
        self._on_state = on_state
        self._client_id = options.client_id  # replaced by an Assigned Client Identifier
        self._clean_start = options.clean_start  # only for the first connection (see _run)
        self._task: asyncio.Task[None] | None = None
        self._conn: _Connection | None = None
        self._connected = False
        self._closed = False
        self._epoch = 0
        self._session_present = False
        self._paused = False
        self._refused: ConnectError | None = None  # a refusal wait_connected() must raise
        self._last_error: Exception | None = None
        self._waiters: list[asyncio.Future[None]] = []
        # Our QoS 1 publishes until PUBACK, in publish order; _queue holds those not yet sent
        # on the current connection (all of them again after a reconnect).
        self._out: dict[int, _Outgoing] = {}
        self._queue: deque[int] = deque()
        self._inflight = 0
        self._next_id = 0
        self._sub_id = 0  # packet id of our SUBSCRIBE until its SUBACK
        self._unsub_waiters: dict[int, asyncio.Future[None]] = {}  # UNSUBSCRIBE → UNSUBACK
        # close() ends the session (Session Expiry 0) instead of keeping it: set by a cluster
        # member that drained a dead member's session and hands nothing back to it.
        self.end_session_on_close = False
        self._pump_scheduled = False
        self._id_waiters: list[asyncio.Future[None]] = []
        # What the broker told us in CONNACK.
        self._send_quota = 65535  # its Receive Maximum: our QoS 1 publishes in flight
        self._max_packet = _MAX_VARINT + 5
        self._max_qos = 1
        self._retain_ok = True
        self._handler_errors = 0
        self._handler_logged_at = -1e9
        # QoS 2 packet ids we sent PUBREC for and await PUBREL: session state, kept across
        # connections so a redelivered PUBLISH of one is answered, not delivered again.
        self._released_wait: set[int] = set()
        self._protocol_errors = 0  # consecutive connections ended by a protocol error
        self._unsub_id = 0  # packet id of the UNSUBSCRIBE of dropped filters until UNSUBACK
        # When a PUBACK of ours last went out (or the connection began): the service's stall
        # watch compares it with the messages still unacknowledged.
        self._last_ack_at = time.monotonic()

    # -- public state

    @property
    def connected(self) -> bool:
        """True from CONNACK + SUBACK until the connection ends."""
        return self._connected

    @property
    def epoch(self) -> int:
        """Connection counter; a Message may only be acked on the connection it came from."""
        return self._epoch

    @property
    def unacked_count(self) -> int:
        """QoS 1 messages delivered on this connection and not acknowledged yet."""
        conn = self._conn
        return len(conn.unacked) if conn is not None and conn.open else 0

    @property
    def last_ack_at(self) -> float:
        """time.monotonic() of our latest PUBACK, or of the latest CONNACK if later."""
        return self._last_ack_at

    @property
    def max_packet_size(self) -> int:
        """The largest packet the broker accepts (its CONNACK Maximum Packet Size)."""
        return self._max_packet

    @property
    def session_present(self) -> bool:
        """Whether the broker resumed our session in the latest CONNACK."""
        return self._session_present

    # -- lifecycle

    async def start(self) -> None:
        """Start connecting (and reconnecting) in the background; returns at once."""
        if self._closed:
            raise ConnectionLost("client is closed")
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"mqtt {self._opts.client_id}")

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait for CONNACK and SUBACK; raise ConnectError if the broker refused us."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            if self._closed:
                raise ConnectionLost("client is closed")
            refused = self._refused
            if refused is not None:
                raise _copy_error(refused)
            if self._connected:
                return
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                remaining = None if deadline is None else max(0.0, deadline - loop.time())
                await asyncio.wait_for(waiter, remaining)
            except TimeoutError:
                last = f"; last attempt: {self._last_error}" if self._last_error else ""
                raise ConnectError(
                    f"not connected to {self._opts.host}:{self._opts.port} within {timeout} s{last}"
                ) from None

    async def close(self) -> None:
        """Send DISCONNECT (reason 0x00: the session is kept), close, stop reconnecting."""
        if self._closed:
            return
        self._closed = True
        was_connected = self._connected
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        conn = self._conn
        if conn is not None:
            if conn.epoch and conn.open:
                # Wait for the broker to hang up after our DISCONNECT instead of closing our
                # side at once: it handles packets in order, so by then it has applied every ack
                # we sent. Closing first loses the acks still unread in its socket buffer when a
                # new connection takes the session over (over a third of them in a test:
                # docs/performance.md, "Why the code is shaped this way").
                conn.write(
                    _DISCONNECT_END_SESSION if self.end_session_on_close else _DISCONNECT_NORMAL
                )
                conn.discard = True  # nothing more is sent; what arrives comes again next time
                if conn.transport is not None:
                    conn.transport.resume_reading()  # or a paused reader never sees the EOF
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(conn.lost), 2.0)
            conn.close("client closed", abort=True)
            if conn.transport is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(conn.lost), 1.0)
        self._connected = False
        self._conn = None
        for pub in self._out.values():
            if not pub.future.done():
                pub.future.set_exception(ConnectionLost("client closed before the broker's PUBACK"))
        self._out.clear()
        self._queue.clear()
        self._wake(self._id_waiters)
        self._wake(self._waiters)
        if was_connected:
            self._notify(False, "client closed")

    async def unsubscribe(self, filters: Sequence[str], timeout: float = 10.0) -> None:
        """Remove filters from the session (also ones a previous holder subscribed) and wait
        for UNSUBACK: from then on the broker routes nothing new to this session."""
        conn = self._conn
        if conn is None or not conn.open or not self._connected or not filters:
            raise ConnectionLost("not connected: cannot unsubscribe")
        packet_id = self._free_id()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._unsub_waiters[packet_id] = waiter
        body = packet_id.to_bytes(2, "big") + b"\x00" + b"".join(_utf8(f) for f in filters)
        try:
            if not conn.write(_packet(0xA2, body)):
                raise ConnectionLost("connection closing: cannot unsubscribe")
            await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except TimeoutError:
            raise ConnectionLost(f"no UNSUBACK within {timeout:.0f} s") from None
        finally:
            self._unsub_waiters.pop(packet_id, None)

    # -- acks

    def ack(self, packet_id: int, epoch: int) -> bool:
        """PUBACK one received QoS 1 message; False (nothing sent) if not of this connection."""
        conn = self._conn
        if conn is None or conn.epoch != epoch or packet_id not in conn.unacked:
            # After a reconnect the broker reuses packet ids: acking a stale id could ack a
            # different, not yet durable message. The stale one will be redelivered instead.
            return False
        qos2 = packet_id in conn.qos2
        if not conn.write(_PUBACK(_PUBREC if qos2 else 0x40, 2, packet_id)):
            return False
        conn.unacked.discard(packet_id)
        if qos2:
            conn.qos2.discard(packet_id)
            self._released_wait.add(packet_id)
        self._last_ack_at = time.monotonic()
        if conn.throttled:
            conn.unthrottle()
        return True

    def ack_many(self, items: Sequence[tuple[int, int]]) -> int:
        """PUBACK all (packet_id, epoch) pairs of the current connection in one write."""
        conn = self._conn
        if conn is None or not conn.open:
            return 0
        current = conn.epoch
        unacked = conn.unacked
        qos2 = conn.qos2  # empty (falsy) unless a broker upgraded to QoS 2
        parts = []
        for packet_id, epoch in items:
            if epoch == current and packet_id in unacked:
                unacked.discard(packet_id)
                if qos2 and packet_id in qos2:
                    # Durable now: PUBREC, and PUBCOMP when the broker's PUBREL comes.
                    qos2.discard(packet_id)
                    self._released_wait.add(packet_id)
                    parts.append(_PUBACK(_PUBREC, 2, packet_id))
                else:
                    parts.append(_PUBACK(0x40, 2, packet_id))
        if parts:
            conn.write(b"".join(parts))
            self._last_ack_at = time.monotonic()
            if conn.throttled:
                conn.unthrottle()
        return len(parts)

    def _awaiting_puback(self) -> bool:
        """A publish of ours whose caller still waits for its PUBACK (see _Connection.max_unacked);
        a cancelled one does not count, or it would switch the Receive Maximum off for good."""
        return any(not pub.future.done() for pub in self._out.values())

    # -- flow control

    def pause_reading(self) -> None:
        """Stop reading from the broker (kept across reconnects after their handshake)."""
        self._paused = True
        if self._conn is not None:
            self._conn.set_paused(True)

    def resume_reading(self) -> None:
        """Resume reading; messages held in the buffer are delivered first."""
        self._paused = False
        if self._conn is not None:
            self._conn.set_paused(False)

    # -- publish

    async def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        """Publish; QoS 1 returns after the broker's PUBACK, waiting through disconnections."""
        if qos not in (0, 1):
            raise ValueError(f"qos must be 0 or 1, not {qos}")
        if not topic or "+" in topic or "#" in topic:
            raise ValueError(f"invalid topic name for publish: {topic!r}")
        topic_b = topic.encode("utf-8")
        if len(topic_b) > 0xFFFF:
            raise ValueError("topic longer than 65535 bytes")
        payload = bytes(payload)
        if qos == 0:
            # Fire and forget, but not into a dead socket: wait for a connection first.
            while True:
                if self._closed:
                    raise ConnectionLost("client is closed")
                conn = self._conn
                if self._connected and conn is not None and conn.open:
                    conn.write(_publish_packet(topic_b, payload, 0, retain, False, 0))
                    return
                await self._wait_change()
        packet_id = await self._allocate_id()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        pub = _Outgoing(packet_id, topic_b, payload, retain, future)
        self._out[packet_id] = pub
        self._queue.append(packet_id)
        if self._conn is not None and self._conn.throttled:
            self._conn.unthrottle(force=True)  # its PUBACK must be read (see max_unacked)
        self._schedule_pump()
        try:
            await future
        except asyncio.CancelledError:
            if pub.sent_epoch == 0 and self._out.get(packet_id) is pub:
                del self._out[packet_id]  # never sent: forget it (the queue skips it)
                self._wake(self._id_waiters)
            # Sent: its id stays taken until the PUBACK (or the next connection, which drops
            # it); it is never resent, and it no longer keeps reading past Receive Maximum.
            conn = self._conn
            if conn is not None and conn.throttled:
                conn.unthrottle()
            raise

    def _free_id(self) -> int:
        """The next packet id in 1..65535 not in flight (publishes or our SUBSCRIBE)."""
        while True:
            self._next_id = self._next_id % 65535 + 1
            n = self._next_id
            if (
                n not in self._out
                and n != self._sub_id
                and n != self._unsub_id
                and n not in self._unsub_waiters
            ):
                return self._next_id

    async def _allocate_id(self) -> int:
        while True:
            if self._closed:
                raise ConnectionLost("client is closed")
            # One id stays free for the SUBSCRIBE sent after a reconnect.
            if len(self._out) < 65534:
                return self._free_id()
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._id_waiters.append(waiter)
            await waiter

    def _schedule_pump(self) -> None:
        # Publishes made in one loop iteration go out in one write.
        if not self._pump_scheduled:
            self._pump_scheduled = True
            asyncio.get_running_loop().call_soon(self._pump)

    def _pump(self) -> None:
        """Send queued QoS 1 publishes while the broker's Receive Maximum allows."""
        self._pump_scheduled = False
        conn = self._conn
        if conn is None or not conn.epoch or not conn.open:
            return
        epoch = conn.epoch
        chunks: list[bytes] = []
        while self._queue and self._inflight < self._send_quota:
            pub = self._out.get(self._queue.popleft())
            if pub is None or pub.future.done() or pub.sent_epoch == epoch:
                continue
            packet = _publish_packet(
                pub.topic, pub.payload, 1, pub.retain, pub.sent_epoch != 0, pub.packet_id
            )
            problem = None
            if len(packet) > self._max_packet:
                problem = MqttError(
                    f"publish of {len(packet)} bytes exceeds the broker's "
                    f"Maximum Packet Size {self._max_packet}",
                    0x95,
                )
            elif self._max_qos < 1:
                problem = MqttError("the broker does not support QoS 1", 0x9B)
            elif pub.retain and not self._retain_ok:
                problem = MqttError("the broker does not support retained messages", 0x9A)
            if problem is not None:
                del self._out[pub.packet_id]
                pub.future.set_exception(problem)
                continue
            pub.sent_epoch = epoch
            self._inflight += 1
            chunks.append(packet)
        if chunks:
            conn.write(b"".join(chunks))

    def _puback(self, packet_id: int, code: int, reason_string: str | None) -> None:
        pub = self._out.pop(packet_id, None)
        if pub is None:
            log.warning("PUBACK for packet id %d that is not in flight; ignored", packet_id)
            return
        if self._conn is not None and pub.sent_epoch == self._conn.epoch:
            self._inflight -= 1
        if not pub.future.done():
            if code < 0x80:
                pub.future.set_result(None)
            else:
                detail = f" ({reason_string})" if reason_string else ""
                pub.future.set_exception(
                    MqttError(
                        f"broker rejected publish to {pub.topic.decode(errors='replace')!r}: "
                        f"{_describe(code)}{detail}",
                        code,
                    )
                )
        self._wake(self._id_waiters)
        if self._queue:
            self._schedule_pump()  # one write for the publishes freed by a read full of PUBACKs

    # -- connection loop

    async def _run(self) -> None:
        attempt = 0
        while not self._closed:
            began = time.monotonic()
            errors_before = self._protocol_errors
            try:
                reason = await self._connect_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every failure means: back off and retry
                self._attempt_failed(exc)
            else:
                log.warning("disconnected from %s:%d: %s", self._opts.host, self._opts.port, reason)
                if time.monotonic() - began >= STABLE_CONNECTION_S:
                    attempt = 0
                    if self._protocol_errors == errors_before:
                        self._protocol_errors = 0  # a good connection ended for another reason
            if self._closed:
                return
            opts = self._opts
            delay = min(opts.reconnect_max_s, opts.reconnect_min_s * 2**attempt)
            if self._protocol_errors > errors_before:
                # Not reset by a long connection: the same bad packet may come after a while.
                floor = opts.protocol_error_backoff_s * 2 ** min(self._protocol_errors - 1, 30)
                delay = max(delay, min(opts.reconnect_max_s, floor))
            attempt = min(attempt + 1, 30)
            # Jitter spreads the reconnects of many workers after a broker restart.
            await asyncio.sleep(delay * (0.5 + random.random() / 2))

    async def _connect_once(self) -> str:
        """One connection from TCP connect to its end; returns why it ended."""
        opts = self._opts
        loop = asyncio.get_running_loop()
        conn = _Connection(self)
        self._conn = conn
        try:
            async with asyncio.timeout(opts.connect_timeout_s):
                try:
                    await loop.create_connection(
                        lambda: conn,
                        opts.host,
                        opts.port,
                        ssl=opts.ssl,
                        server_hostname=opts.host if opts.ssl else None,
                    )
                except SSLCertVerificationError as exc:
                    raise ConnectError(
                        f"TLS certificate of {opts.host}:{opts.port} not "
                        f"accepted: {exc.verify_message}",
                        permanent=True,
                    ) from exc
                except OSError as exc:
                    raise ConnectError(f"cannot connect to {opts.host}:{opts.port}: {exc}") from exc
                conn.write(self._connect_packet())
                # shield: a cancelled wait must not cancel the future the connection resolves.
                await asyncio.shield(conn.connacked)
        except TimeoutError:
            conn.close("connect timeout", abort=True)
            raise ConnectError(
                f"no answer from {opts.host}:{opts.port} within {opts.connect_timeout_s} s "
                "(TCP/TLS connect or CONNACK)"
            ) from None
        except BaseException:
            conn.close("connect failed", abort=True)
            raise
        # SUBACK may come after the whole queued backlog; keepalive bounds this wait.
        await asyncio.shield(conn.ready)
        return await asyncio.shield(conn.lost)

    def _connect_packet(self) -> bytes:
        opts = self._opts
        flags = 0x02 if self._clean_start else 0
        if opts.username is not None:
            flags |= 0x80
        if opts.password is not None:
            flags |= 0x40
        props = (
            b"\x11"
            + opts.session_expiry_s.to_bytes(4, "big")
            + b"\x21"
            + opts.receive_maximum.to_bytes(2, "big")
        )
        body = (
            _utf8("MQTT")
            + b"\x05"
            + bytes((flags,))
            + opts.keepalive_s.to_bytes(2, "big")
            + _varint(len(props))
            + props
            + _utf8(self._client_id)
        )
        if opts.username is not None:
            body += _utf8(opts.username)
        if opts.password is not None:
            secret = opts.password.encode("utf-8")
            body += len(secret).to_bytes(2, "big") + secret
        return _packet(0x10, body)

    def _connack(self, conn: _Connection, session: bool, code: int, props: dict[int, Any]) -> None:
        opts = self._opts
        if code != 0:
            text = props.get(0x1F)
            detail = f" ({text})" if text else ""
            if code < 0x80:
                # An MQTT 3.1.1 broker answers a v5 CONNECT with return code 1.
                exc = ConnectError(
                    f"{opts.host}:{opts.port} refused the connection with MQTT 3 "
                    f"return code {code}: it does not support MQTT 5{detail}",
                    code,
                    permanent=True,
                )
            else:
                exc = ConnectError(
                    f"{opts.host}:{opts.port} refused the connection: {_describe(code)}{detail}",
                    code,
                    permanent=code in PERMANENT_REFUSALS,
                )
            conn.connacked.set_exception(exc)
            conn.close(f"refused: {_describe(code)}")
            return
        # Zero is not a value these may take (MQTT 5 3.2.2.3.3 and 3.2.2.3.6).
        if props.get(0x21) == 0:
            raise ProtocolError("CONNACK with Receive Maximum 0")
        if props.get(0x27) == 0:
            raise ProtocolError("CONNACK with Maximum Packet Size 0")
        self._epoch += 1
        conn.epoch = self._epoch
        self._last_ack_at = time.monotonic()
        self._session_present = session
        if 0x12 in props:
            self._client_id = props[0x12]  # resume this session on every reconnect
        self._send_quota = props.get(0x21, 65535)
        self._max_packet = props.get(0x27, _MAX_VARINT + 5)
        self._max_qos = props.get(0x24, 2)
        self._retain_ok = bool(props.get(0x25, 1))
        if not session and not self._clean_start and self._epoch > 1:
            log.warning(
                "broker %s:%d did not keep session %r: messages queued while we were "
                "away are lost unless their publishers resend them",
                opts.host,
                opts.port,
                self._client_id,
            )
        self._clean_start = False  # resume the session on every reconnect
        if not session:
            self._released_wait.clear()  # a new session: the broker holds no PUBREL for us
        # Publishes whose callers gave up after sending: not resent (the broker keeps no state
        # of a QoS 1 publish it did not ack), so their ids are free again.
        for packet_id in [i for i, pub in self._out.items() if pub.future.done()]:
            del self._out[packet_id]
        conn.connacked.set_result(None)
        conn.start_keepalive(props.get(0x13, opts.keepalive_s))
        if opts.subscriptions:
            conn.suback_id = self._sub_id = self._free_id()
            body = conn.suback_id.to_bytes(2, "big") + b"\x00"
            for topic_filter in opts.subscriptions:
                body += _utf8(topic_filter) + bytes((_SUB_OPTIONS,))
            conn.write(_packet(0x82, body))
        if session:
            # After SUBSCRIBE: a message matching only a new filter is never missed in between.
            self._unsubscribe_dropped(conn)
        # Unacked publishes go again (DUP set), then the queued ones, in publish order.
        self._inflight = 0
        self._queue = deque(self._out)
        self._pump()
        if not opts.subscriptions:
            self._established(conn, "")

    def _unsubscribe_dropped(self, conn: _Connection) -> None:
        """UNSUBSCRIBE the filters the resumed session holds and the options no longer list."""
        path = self._opts.subscriptions_file
        if path is None:
            return
        recorded = read_subscriptions(path, self._record_key())
        dropped = [f for f in recorded or () if f not in self._opts.subscriptions]
        if not dropped:
            return
        log.info("unsubscribing from filters no longer configured: %s", ", ".join(dropped))
        conn.unsuback_id = self._unsub_id = self._free_id()
        body = conn.unsuback_id.to_bytes(2, "big") + b"\x00"
        body += b"".join(_utf8(f) for f in dropped)
        conn.write(_packet(0xA2, body))

    def _unsuback(self, conn: _Connection, codes: list[int]) -> None:
        self._unsub_id = conn.unsuback_id = 0
        # 0x11 "no subscription existed" is fine; any other refusal is only logged.
        for code in codes:
            if code >= 0x80:
                log.warning("broker refused to unsubscribe a dropped filter: %s", _describe(code))
        self._record_subscriptions(conn)

    def _record_key(self) -> str:
        return f"{self._opts.host}:{self._opts.port}/{self._client_id}"

    def _record_subscriptions(self, conn: _Connection) -> None:
        path = self._opts.subscriptions_file
        if path is None or conn.unsuback_id or not conn.ready.done():
            return  # after both SUBACK and UNSUBACK
        try:
            write_subscriptions(path, self._record_key(), self._opts.subscriptions)
        except OSError as exc:
            log.warning("cannot record the subscribed filters in %s: %s", path, exc)

    def _suback(self, conn: _Connection, codes: list[int], reason_string: str | None) -> None:
        self._sub_id = 0
        filters = self._opts.subscriptions
        if len(codes) != len(filters):
            raise ProtocolError(f"SUBACK has {len(codes)} reason codes for {len(filters)} filters")
        problems = []
        refused: SubscribeError | None = None
        for topic_filter, code in zip(filters, codes, strict=True):
            if code >= 0x80:
                detail = f" ({reason_string})" if reason_string else ""
                message = f"broker refused subscription {topic_filter!r}: {_describe(code)}{detail}"
                log.error("%s", message)
                problems.append(message)
                refused = refused or SubscribeError(message, code, topic_filter)
            elif code == 0:
                # Granted QoS 0: the broker may drop these messages, which breaks our delivery.
                log.warning("broker granted only QoS 0 for %r", topic_filter)
        self._established(conn, "; ".join(problems), refused)
        self._record_subscriptions(conn)

    def _established(
        self, conn: _Connection, problems: str, refused: SubscribeError | None = None
    ) -> None:
        opts = self._opts
        self._connected = True
        # A subscription refusal stays visible to wait_connected(); the other filters work.
        self._refused = refused
        self._last_error = None
        conn.ready.set_result(None)
        if self._paused:
            conn.set_paused(True)
        state = (
            f"connected to {opts.host}:{opts.port} as {self._client_id!r} "
            f"(session {'resumed' if self._session_present else 'new'}, epoch {self._epoch})"
        )
        log.info("%s", state)
        self._wake(self._waiters)
        self._notify(True, f"{state}; {problems}" if problems else state)

    def _connection_lost(self, conn: _Connection, reason: str) -> None:
        if self._conn is not conn:
            return
        was_connected = self._connected
        self._connected = False
        self._inflight = 0
        self._sub_id = 0
        self._unsub_id = 0
        if was_connected and not self._closed:
            self._notify(False, reason)
        self._wake(self._waiters)

    def _server_disconnect(self, conn: _Connection, code: int, props: dict[int, Any]) -> None:
        text = props.get(0x1F)
        detail = f" ({text})" if text else ""
        if 0x1C in props:
            detail += f"; server reference {props[0x1C]!r}"
        reason = f"broker sent DISCONNECT {_describe(code)}{detail}"
        if code == 0x8E:
            reason += f": another client connected with client id {self._client_id!r}"
        level = logging.ERROR if code in (0x8E, 0x87, 0x8A) else logging.WARNING
        log.log(level, "%s:%d %s", self._opts.host, self._opts.port, reason)
        conn.close(reason)

    def _protocol_error(self, conn: _Connection, exc: ProtocolError) -> None:
        log.error(
            "protocol error from %s:%d: %s; dropping the connection and reconnecting",
            self._opts.host,
            self._opts.port,
            exc,
            exc_info=exc,
        )
        self._last_error = exc
        self._protocol_errors += 1
        if not conn.connacked.done():
            conn.connacked.set_exception(exc)
        # DISCONNECT 0x81 malformed packet, or 0x82 protocol error.
        disconnect = b"\xe0\x01\x81" if isinstance(exc, MalformedPacket) else b"\xe0\x01\x82"
        conn.close(f"protocol error: {exc}", disconnect=disconnect)

    def _attempt_failed(self, exc: Exception) -> None:
        self._last_error = exc
        if isinstance(exc, ConnectError) and exc.permanent:
            # ERROR the first time; the same refusal again (every backoff step) is a WARNING.
            repeated = self._refused is not None and str(self._refused) == str(exc)
            self._refused = exc
            log.log(
                logging.WARNING if repeated else logging.ERROR,
                "%s; retrying in the background",
                exc,
            )
            self._wake(self._waiters)
        elif isinstance(exc, ProtocolError):
            pass  # logged with its details where it was detected
        elif isinstance(exc, MqttError):
            log.warning("%s; retrying", exc)
        else:
            log.error("unexpected error while connecting; retrying", exc_info=exc)

    # -- helpers

    def _handler_failed(self, exc: Exception) -> None:
        # Logged with its traceback, but at most every 10 s so a broken handler cannot flood.
        self._handler_errors += 1
        now = time.monotonic()
        if now - self._handler_logged_at >= 10.0:
            self._handler_logged_at = now
            log.error(
                "on_message handler raised (%d failures so far); the message stays unacked "
                "unless the handler acked it",
                self._handler_errors,
                exc_info=exc,
            )

    def _notify(self, up: bool, reason: str) -> None:
        if self._on_state is None:
            return
        try:
            self._on_state(up, reason)
        except Exception:
            log.exception("on_state handler raised")

    def _wait_change(self) -> asyncio.Future[None]:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        return waiter

    @staticmethod
    def _wake(waiters: list[asyncio.Future[None]]) -> None:
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        waiters.clear()


def _copy_error(exc: ConnectError) -> ConnectError:
    """A fresh exception per raise, so tracebacks do not pile up on one shared object."""
    if isinstance(exc, SubscribeError):
        return SubscribeError(str(exc), exc.reason_code or 0x80, exc.topic_filter)
    return ConnectError(str(exc), exc.reason_code, permanent=exc.permanent)


def _validate(opts: MqttOptions) -> None:
    if not 0 <= opts.keepalive_s <= 0xFFFF:
        raise ValueError("keepalive_s must be 0..65535")
    if not 1 <= opts.receive_maximum <= 0xFFFF:
        raise ValueError("receive_maximum must be 1..65535")
    if not 0 <= opts.session_expiry_s <= 0xFFFFFFFF:
        raise ValueError("session_expiry_s must be 0..4294967295")
    if opts.reconnect_min_s <= 0 or opts.reconnect_max_s < opts.reconnect_min_s:
        raise ValueError("need 0 < reconnect_min_s <= reconnect_max_s")
    for text in (opts.client_id, opts.username or "", opts.password or "", *opts.subscriptions):
        _utf8(text)
    if any(not f for f in opts.subscriptions):
        raise ValueError("empty subscription filter")
