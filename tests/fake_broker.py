"""A scriptable, hostile MQTT 5 broker for client tests: an asyncio server that speaks just
enough of the protocol for a test to play a misbehaving broker packet by packet.

Each connection runs the test's script, an ``async def script(s: FakeSession)``; the session
parses what the client sends and offers helpers to answer (CONNACK with chosen properties,
SUBACK, PUBLISH at any QoS with any packet id, raw bytes). What the real broker does is proven
against mosquitto elsewhere (tests/integration/test_mqtt_client.py); this one exists for what
mosquitto never does (upgrade to QoS 2, reuse a packet id, announce Receive Maximum 0, send a
malformed packet).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

HOST = "127.0.0.1"

# Packet types (MQTT 5 2.1.2).
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def utf8(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


def packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + varint(len(body)) + body


def publish(
    topic: str, payload: bytes, qos: int = 1, packet_id: int = 0, dup: bool = False
) -> bytes:
    """A PUBLISH packet, without properties."""
    body = utf8(topic) + (packet_id.to_bytes(2, "big") if qos else b"") + b"\x00" + payload
    return packet(0x30 | (0x08 if dup else 0) | (qos << 1), body)


@dataclass
class Packet:
    """One packet the client sent: type, the flag bits of the first byte, the rest."""

    type: int
    flags: int
    body: bytes

    @property
    def packet_id(self) -> int:
        return int.from_bytes(self.body[:2], "big")

    @property
    def reason(self) -> int:
        """The reason code of a PUBACK/PUBREC/PUBCOMP (after the id) or DISCONNECT (first)."""
        if self.type == DISCONNECT:
            return self.body[0] if self.body else 0
        return self.body[2] if len(self.body) > 2 else 0

    def filters(self) -> list[str]:
        """The topic filters of a SUBSCRIBE or UNSUBSCRIBE."""
        i = 2
        plen, i = _read_varint(self.body, i)
        i += plen
        out = []
        while i < len(self.body):
            n = int.from_bytes(self.body[i : i + 2], "big")
            out.append(self.body[i + 2 : i + 2 + n].decode())
            i += 2 + n + (1 if self.type == SUBSCRIBE else 0)
        return out


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i


@dataclass
class FakeSession:
    """One client connection as the script sees it."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    broker: FakeBroker
    index: int  # 0 for the first connection to this broker, and so on
    client_id: str = ""
    clean_start: bool = False
    received: list[Packet] = field(default_factory=list)

    async def read(self, timeout: float = 5.0) -> Packet:
        """The next packet from the client (PINGREQs are answered and skipped)."""
        while True:
            async with asyncio.timeout(timeout):
                first = (await self.reader.readexactly(1))[0]
                length = shift = 0
                while True:
                    byte = (await self.reader.readexactly(1))[0]
                    length |= (byte & 0x7F) << shift
                    shift += 7
                    if not byte & 0x80:
                        break
                body = await self.reader.readexactly(length)
            p = Packet(first >> 4, first & 0x0F, body)
            self.received.append(p)
            self.broker.received.append((self.index, p))
            if p.type == PINGREQ:
                self.send(b"\xd0\x00")
                continue
            return p

    async def expect(self, kind: int, timeout: float = 5.0) -> Packet:
        p = await self.read(timeout)
        assert p.type == kind, f"expected packet type {kind}, got {p.type} {p.body!r}"
        return p

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def accept(
        self, session_present: bool = False, props: bytes = b"", subscribe: bool = True
    ) -> list[str]:
        """Read CONNECT, send CONNACK (with raw ``props``), answer SUBSCRIBE with QoS 1 each."""
        connect = await self.expect(CONNECT)
        flags = connect.body[7]
        self.clean_start = bool(flags & 0x02)
        i = 10
        plen, i = _read_varint(connect.body, i)
        i += plen
        n = int.from_bytes(connect.body[i : i + 2], "big")
        self.client_id = connect.body[i + 2 : i + 2 + n].decode()
        flags = bytes((1 if session_present else 0, 0))  # session present, reason 0x00
        self.send(packet(0x20, flags + varint(len(props)) + props))
        if not subscribe:
            return []
        sub = await self.expect(SUBSCRIBE)
        filters = sub.filters()
        self.send(packet(0x90, sub.body[:2] + b"\x00" + b"\x01" * len(filters)))
        return filters

    async def closed(self, timeout: float = 30.0) -> None:
        """Wait until the client closes the connection (or ``timeout`` passes with nothing
        received), reading what it still sends."""
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            while True:
                await self.read(timeout)


Script = Callable[[FakeSession], Awaitable[None]]


class FakeBroker:
    """``async with FakeBroker(script) as broker:`` listens on ``broker.port``."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.port = 0
        self.sessions: list[FakeSession] = []
        self.connected_at: list[float] = []  # time.monotonic() of each connection
        self.received: list[tuple[int, Packet]] = []  # (connection index, packet)
        self.errors: list[BaseException] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> FakeBroker:
        self._server = await asyncio.start_server(self._handle, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        session = FakeSession(reader, writer, self, len(self.sessions))
        self.sessions.append(session)
        self.connected_at.append(time.monotonic())
        try:
            await self.script(session)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client hung up: the test checks what it sent before
        except Exception as exc:  # an assertion in the script: the test re-raises it
            self.errors.append(exc)
        finally:
            writer.close()
            self._tasks.discard(task)

    def packets(self, kind: int, index: int | None = None) -> list[Packet]:
        """The packets of one type the client sent (on connection ``index``, or any)."""
        return [p for i, p in self.received if p.type == kind and (index is None or i == index)]
