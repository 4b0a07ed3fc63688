"""HJ 212-2017 TCP gateway: station data loggers connect here; packets go to the broker.

Each intact packet of a registered station with the right PW is published, raw, to
``<prefix>/hj212/<MN>`` with QoS 1, where the service's HJ 212 intake turns it into a reading
(same pipeline, dead-letter and delivery guarantee as JSON readings). Only after the broker's
PUBACK does the gateway send the ``ST=91;CN=9014`` reply a packet asks for, so a station resends
whatever envgrid did not take. Packets the gateway itself refuses (broken frame, bad length or CRC,
unknown MN, wrong PW) go to ``<prefix>/deadletter/<prefix>/hj212/<MN or unknown>`` with the reason,
and are never published to the data topic, so each ends in the dead-letter topic exactly once.

Memory per connection is bounded (``[hj212] buffer_limit``): a frame is at most 1036 bytes, and
bytes that cannot belong to one are dropped while the stream resyncs on the next ``##``. Every
connection is handled by its own task, one packet at a time, so a slow, silent or garbage-sending
station holds only its own connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final, Protocol
from zoneinfo import ZoneInfo

from fastapi import APIRouter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry
from pydantic import SecretStr

from devices.registry import Registry
from hj212.api import SharedApi
from hj212.codec import (
    MAX_FRAME_LEN,
    CrcError,
    FieldError,
    FrameError,
    Hj212Error,
    LengthError,
    Packet,
    build_reply,
    parse,
)
from hj212.commands import Command
from hj212.config import GatewayConfig, command_store_path
from hj212.dispatch import Dispatcher, StationLink
from hj212.intake import PROTOCOL, Station, decoder_factory, load_stations
from hj212.routing import publish_command
from hj212.store import CommandStore, Store
from hj212.store_pg import PgCommandStore, SharedConfig, StoreError
from ingest.broker import client_options
from ingest.deadletter import make_deadletter
from ingest.mqtt import ConnectError, MqttClient, MqttError, MqttOptions
from ingest.stats import counter_by

__all__ = [
    "Framer",
    "GatewayStats",
    "Hj212Gateway",
    "Junk",
    "ServiceGateway",
    "publisher_options",
]

log = logging.getLogger("envgrid.hj212")

# Per-packet results: the `result` label of envgrid_hj212_packets_total.
OK = "ok"  # published, the intake stores it
FORWARDED = "forwarded_invalid"  # intact and authenticated, but the intake will dead-letter it
BAD_CRC = "bad_crc"
BAD_LENGTH = "bad_length"
BAD_FRAME = "bad_frame"
UNKNOWN_MN = "unknown_mn"
WRONG_PW = "wrong_pw"
GARBAGE = "garbage"  # bytes outside any frame, oversize or cut-off frames
PUBLISH_FAILED = "publish_failed"
ANSWER = "command_answer"  # 9011, 9012, a read's value, 1013, heartbeat: taken by the dispatcher
RESULTS: Final = (
    OK, FORWARDED, BAD_CRC, BAD_LENGTH, BAD_FRAME, UNKNOWN_MN, WRONG_PW, GARBAGE, ANSWER,
)  # fmt: skip


# Junk reasons (the start of a garbage run decides its reason).
OUTSIDE = "bytes outside an HJ 212 frame (## ... CR LF)"
OVERSIZE = f"frame longer than {MAX_FRAME_LEN} bytes without CR LF"
TRUNCATED = "frame cut off: a new ## began before its CR LF"
CUT_AT_CLOSE = "frame cut off: the connection closed before its CR LF"

# A connection that sends this much garbage in one run is not a data logger: close it.
MAX_GARBAGE_RUN: Final = 64 * 1024
# Bytes of a garbage run kept for its dead letter.
JUNK_KEEP: Final = 1024
_BLANK: Final = frozenset(b" \t\r\n\x00")
_MN_OK: Final = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_LOG_EVERY_S: Final = 60.0


# ---------------------------------------------------------------------------------------------
# Framing
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Junk:
    """A run of bytes that is no frame: its first bytes, its size and why it was dropped."""

    head: bytes
    size: int
    reason: str

    @property
    def blank(self) -> bool:
        """Only whitespace or NUL (line noise between frames): dropped without a dead letter."""
        return self.size == len(self.head) and all(b in _BLANK for b in self.head)


class Framer:
    """Splits a TCP byte stream into ``##`` … CR LF frames, holding at most one frame's bytes."""

    def __init__(self, max_frame: int = MAX_FRAME_LEN) -> None:
        self.max_frame = max_frame
        self.buf = bytearray()
        self.run: Junk | None = None  # the garbage run in progress

    def feed(self, data: bytes) -> list[bytes | Junk]:
        """Frames (bytes, CR LF included) and finished garbage runs (Junk) in stream order."""
        buf = self.buf
        buf += data
        out: list[bytes | Junk] = []
        while buf:
            if buf[:2] != b"##":
                start = buf.find(b"##")
                if start < 0:
                    # A trailing '#' may be the first half of the next "##".
                    cut = len(buf) - 1 if buf[-1:] == b"#" else len(buf)
                    if cut == 0:
                        break
                    self._junk(buf[:cut], OUTSIDE)
                    del buf[:cut]
                    continue
                self._junk(buf[:start], OUTSIDE)
                del buf[:start]
            # buf starts with "##": the garbage run before it, if any, is over.
            if self.run is not None:
                out.append(self.run)
                self.run = None
            end = buf.find(b"\r\n", 2, self.max_frame)
            inner = buf.find(b"##", 2, end if end >= 0 else self.max_frame)
            if inner >= 0:
                self._junk(buf[:inner], TRUNCATED)
                del buf[:inner]
                continue
            if end >= 0:
                out.append(bytes(buf[: end + 2]))
                del buf[: end + 2]
                continue
            if len(buf) < self.max_frame:
                break  # a partial frame: wait for the rest
            # No CR LF and no new "##" within a maximum frame: drop it (keeping a last '#').
            self._junk(buf[: self.max_frame - 1], OVERSIZE)
            del buf[: self.max_frame - 1]
        if self.run is not None and buf[:2] == b"##":
            out.append(self.run)
            self.run = None
        return out

    def flush(self) -> Junk | None:
        """At the end of the stream: the unfinished garbage run and any partial frame."""
        if self.buf:
            self._junk(bytes(self.buf), CUT_AT_CLOSE if self.buf[:2] == b"##" else OUTSIDE)
            self.buf.clear()
        run, self.run = self.run, None
        return run

    @property
    def garbage_pending(self) -> int:
        """Bytes in the garbage run in progress."""
        return self.run.size if self.run is not None else 0

    def _junk(self, piece: bytes | bytearray, reason: str) -> None:
        if not piece:
            return
        run = self.run
        if run is None:
            self.run = Junk(bytes(piece[:JUNK_KEEP]), len(piece), reason)
        else:
            if len(run.head) < JUNK_KEEP:
                run.head += bytes(piece[: JUNK_KEEP - len(run.head)])
            run.size += len(piece)


def peek_header(frame: bytes) -> dict[str, str]:
    """Best-effort header fields (QN, ST, CN, PW, MN, Flag) of a frame that may be broken."""
    body = frame[6:]
    at = body.find(b";CP=&&")
    head = body[:at] if at >= 0 else body[:200]
    out: dict[str, str] = {}
    for item in head.decode("ascii", "replace").split(";"):
        key, eq, value = item.partition("=")
        if eq and key in ("QN", "ST", "CN", "PW", "MN", "Flag") and key not in out:
            out[key] = value
    return out


def _topic_mn(mn: str | None) -> str:
    """The MN as a topic segment: as sent when it is 1–24 letters/digits, else 'unknown'."""
    if mn and len(mn) <= 24 and set(mn.encode()) <= _MN_OK:
        return mn
    return "unknown"


# ---------------------------------------------------------------------------------------------
# Counters
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class ConnStats:
    """Counters of one open connection (exported while it is open)."""

    peer: str
    opened: float
    mn: str = ""
    packets: int = 0
    rejected: int = 0
    replies: int = 0
    bytes_in: int = 0
    host: str = ""  # the source address, for per-source limits
    wrong_pw: int = 0
    rejects_in_a_row: int = 0
    deadletters: int = 0
    link: StationLink | None = None  # set once a station authenticated on this connection


@dataclass
class GatewayStats:
    """The gateway's counters, exposed on /metrics by :meth:`collector`."""

    opened: int = 0
    refused: int = 0
    refused_by: Counter[str] = field(default_factory=Counter)  # by reason
    deadletters_suppressed: int = 0
    closed: Counter[str] = field(default_factory=Counter)  # by reason
    packets: dict[str, Counter[str]] = field(default_factory=dict)  # MN → result → count
    replies: Counter[str] = field(default_factory=Counter)  # MN → replies sent
    deadlettered: int = 0
    garbage_bytes: int = 0
    publish_failures: int = 0
    open: dict[int, ConnStats] = field(default_factory=dict)

    def count(self, mn: str, result: str) -> None:
        """One packet of a registered MN (or 'unknown') with its result."""
        per = self.packets.get(mn)
        if per is None:
            per = self.packets[mn] = Counter()
        per[result] += 1

    def total(self, result: str) -> int:
        """Packets with this result over every MN."""
        return sum(c[result] for c in self.packets.values())

    def collector(self) -> Collector:
        """A Prometheus collector reading these counters at scrape time."""
        return _Collector(self)


class _Collector(Collector):
    def __init__(self, stats: GatewayStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        s = self.stats
        yield GaugeMetricFamily(
            "envgrid_hj212_connections", "Open station connections", value=len(s.open)
        )
        yield CounterMetricFamily(
            "envgrid_hj212_connections_opened", "Station connections accepted", value=s.opened
        )
        yield CounterMetricFamily(
            "envgrid_hj212_connections_refused",
            "Connections refused (max_connections, per-source limit, wrong-PW back-off)",
            value=s.refused,
        )
        yield counter_by(
            "envgrid_hj212_connections_refused_by_reason",
            "Connections refused: max_connections, per_source (one address's share) or backoff "
            "(a source closed for wrong PWs)",
            ["reason"],
            s.refused_by.items(),
        )
        yield counter_by(
            "envgrid_hj212_connections_closed",
            "Station connections closed",
            ["reason"],
            s.closed.items(),
        )
        packets = CounterMetricFamily(
            "envgrid_hj212_packets",
            "HJ 212 packets by station MN ('unknown' if not registered) and result",
            labels=["mn", "result"],
        )
        for mn, per in sorted(s.packets.items()):
            for result, n in sorted(per.items()):
                packets.add_metric([mn, result], n)
        yield packets
        yield counter_by(
            "envgrid_hj212_replies", "9014 data replies sent, by MN", ["mn"], s.replies.items()
        )
        for name, doc, value in (
            ("envgrid_hj212_deadlettered", "Dead letters published by the gateway", s.deadlettered),
            ("envgrid_hj212_garbage_bytes", "Bytes dropped outside frames", s.garbage_bytes),
            (
                "envgrid_hj212_deadletters_suppressed",
                "Refusals only counted: the connection had used its dead-letter allowance",
                s.deadletters_suppressed,
            ),
            (
                "envgrid_hj212_publish_failures",
                "Packets the broker did not take (no reply sent)",
                s.publish_failures,
            ),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        # Per open connection; a series ends when its connection closes.
        labels = ["peer", "mn"]
        conn_families = {
            "packets": CounterMetricFamily(
                "envgrid_hj212_connection_packets", "Packets on an open connection", labels=labels
            ),
            "rejected": CounterMetricFamily(
                "envgrid_hj212_connection_rejected",
                "Packets refused on an open connection",
                labels=labels,
            ),
            "replies": CounterMetricFamily(
                "envgrid_hj212_connection_replies", "Replies on an open connection", labels=labels
            ),
            "bytes_in": CounterMetricFamily(
                "envgrid_hj212_connection_received_bytes",
                "Bytes received on an open connection",
                labels=labels,
            ),
        }
        now = time.monotonic()
        age = GaugeMetricFamily(
            "envgrid_hj212_connection_age_seconds", "Age of an open connection", labels=labels
        )
        for c in list(s.open.values()):
            key = [c.peer, c.mn or "unknown"]
            for attr, fam in conn_families.items():
                fam.add_metric(key, getattr(c, attr))
            age.add_metric(key, now - c.opened)
        yield from conn_families.values()
        yield age


# ---------------------------------------------------------------------------------------------
# Gateway
# ---------------------------------------------------------------------------------------------


# Sources remembered for wrong-PW back-off; beyond this the oldest offences are forgotten.
_MAX_PENALTIES: Final = 10_000


@dataclass(slots=True)
class _Penalty:
    until: float  # monotonic time until which the source is refused
    strikes: int


class _Closing(Exception):
    """Ends one connection's loop with a reason for the counters."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Hj212Gateway:
    """The asyncio TCP server for station data loggers; publishes through ``client``."""

    def __init__(
        self,
        settings: GatewayConfig,
        stations: Mapping[str, Station],
        client: MqttClient,
        *,
        metrics: CollectorRegistry | None = None,
        dispatcher: Dispatcher | None = None,
    ) -> None:
        self.cfg = settings.hj212
        self.dispatcher = dispatcher
        self.prefix = settings.mqtt.topic_prefix
        self.stations = stations
        self.client = client
        self.stats = GatewayStats()
        if metrics is not None:
            metrics.register(self.stats.collector())
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._logged: dict[tuple[str, str], float] = {}
        self._idle_s = self.cfg.idle_timeout.total_seconds()
        self._per_source: Counter[str] = Counter()  # open connections by source address
        self._penalties: dict[str, _Penalty] = {}  # sources closed for wrong PWs

    @property
    def port(self) -> int:
        """The port listened on (useful when configured as 0)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("gateway not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def listening(self) -> bool:
        """Whether the server accepts connections."""
        return self._server is not None and self._server.is_serving()

    async def start(self, host: str | None = None, port: int | None = None) -> None:
        """Listen on host:port (default: the [hj212] settings)."""
        host = host or self.cfg.host
        port = self.cfg.port if port is None else port
        if port is None:
            raise ValueError("no HJ 212 port: set ENVGRID_HJ212__PORT or [hj212] port")
        try:
            self._server = await asyncio.start_server(
                self._serve,
                host,
                port,
                limit=self.cfg.buffer_limit,
                # Hundreds of stations reconnect at once after an outage.
                backlog=min(self.cfg.max_connections, 4096),
            )
        except OSError as e:
            raise OSError(
                f"HJ 212 gateway cannot listen on {host}:{port} ({e.strerror}); "
                "choose another ENVGRID_HJ212__PORT"
            ) from None
        log.info(
            "HJ 212 gateway listening on %s:%d for %d registered stations",
            host,
            self.port,
            len(self.stations),
        )

    async def stop(self) -> None:
        """Stop listening and close every station connection (unreplied packets are resent)."""
        if self._server is not None:
            self._server.close()
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    # ---------------------------------------------------------------- one connection
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        peer = _peer(writer)
        host = peer.rpartition(":")[0] or peer
        why = self._refusal(host)
        if why is not None:
            self.stats.refused += 1
            self.stats.refused_by[why] += 1
            self._log("refused", why, f"connection from {host} refused: {why}")
            writer.transport.abort()
            return
        self._tasks.add(task)
        self._per_source[host] += 1
        conn = ConnStats(peer=peer, opened=time.monotonic(), host=host)
        key = id(conn)
        self.stats.open[key] = conn
        self.stats.opened += 1
        framer = Framer()
        reason = "eof"
        try:
            await self._loop(reader, writer, conn, framer)
        except _Closing as e:
            reason = e.reason
        except asyncio.CancelledError:
            reason = "shutdown"
        except (ConnectionError, OSError):
            reason = "reset"
        except Exception:  # one connection's bug must not stop the gateway
            log.exception("HJ 212 connection %s failed", peer)
            reason = "error"
        finally:
            run = framer.flush()
            if run is not None and reason != "shutdown":
                with contextlib.suppress(Exception):
                    await self._junk(conn, run)
            if conn.link is not None and self.dispatcher is not None:
                self.dispatcher.detach(conn.mn, conn.link)
            self.stats.closed[reason] += 1
            del self.stats.open[key]
            self._tasks.discard(task)
            left = self._per_source[host] - 1
            if left > 0:
                self._per_source[host] = left
            else:
                del self._per_source[host]
            if reason in ("shutdown", "error"):
                writer.transport.abort()
            else:
                writer.close()
            log.debug("HJ 212 connection %s (%s) closed: %s", peer, conn.mn or "?", reason)

    def _refusal(self, host: str) -> str | None:
        """Why a new connection from ``host`` is refused, or None to accept it."""
        penalty = self._penalties.get(host)
        if penalty is not None and penalty.until > time.monotonic():
            return "backoff"
        if len(self._tasks) >= self.cfg.max_connections:
            return "max_connections"
        if self._per_source[host] >= self.cfg.max_connections_per_source:
            return "per_source"
        return None

    def _penalise(self, host: str) -> None:
        """Refuse ``host`` for a while: the back-off doubles with each repeat offence."""
        now = time.monotonic()
        old = self._penalties.pop(host, None)
        strikes = 1 if old is None else old.strikes + 1
        base = self.cfg.wrong_pw_backoff.total_seconds()
        cap = self.cfg.wrong_pw_backoff_max.total_seconds()
        self._penalties[host] = _Penalty(now + min(cap, base * 2 ** min(strikes - 1, 30)), strikes)
        if len(self._penalties) > _MAX_PENALTIES:
            # Bounded: expired entries go first, then the oldest offences.
            for h in [h for h, p in self._penalties.items() if p.until <= now]:
                del self._penalties[h]
            while len(self._penalties) > _MAX_PENALTIES:
                del self._penalties[next(iter(self._penalties))]

    async def _loop(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        conn: ConnStats,
        framer: Framer,
    ) -> None:
        limit = self.cfg.buffer_limit
        while True:
            try:
                async with asyncio.timeout(self._idle_s):
                    # The framer holds less than one frame between reads, so this stays >= 1 KiB.
                    data = await reader.read(limit - len(framer.buf))
            except TimeoutError:
                raise _Closing("idle") from None
            if not data:
                return
            conn.bytes_in += len(data)
            for item in framer.feed(data):
                if isinstance(item, Junk):
                    await self._junk(conn, item)
                else:
                    await self._packet(conn, writer, item)
            if framer.garbage_pending > MAX_GARBAGE_RUN:
                raise _Closing("garbage")

    async def _packet(self, conn: ConnStats, writer: asyncio.StreamWriter, frame: bytes) -> None:
        conn.packets += 1
        head = peek_header(frame)
        mn = head.get("MN")
        station = self.stations.get(mn) if mn is not None else None
        if station is None:
            if mn is None:
                await self._reject(conn, frame, None, BAD_FRAME, _why_unreadable(frame))
            else:
                shown = mn if _topic_mn(mn) == mn else repr(mn[:40])
                await self._reject(
                    conn,
                    frame,
                    mn,
                    UNKNOWN_MN,
                    f"unknown MN {shown}: no station in the device registry has it "
                    "(add mn and pw to its entry)",
                )
            return
        assert mn is not None
        packet: Packet | None = None
        try:
            packet = parse(frame, station.leniency, station.aliases)
        except CrcError as e:
            await self._reject(conn, frame, mn, BAD_CRC, str(e))
            return
        except LengthError as e:
            await self._reject(conn, frame, mn, BAD_LENGTH, str(e))
            return
        except FrameError as e:
            await self._reject(conn, frame, mn, BAD_FRAME, str(e))
            return
        except Hj212Error:
            # Intact (CRC good) but not storable as sent: published anyway, so the intake
            # dead-letters it with its reason and the station is not made to resend it.
            packet = None
        pw = packet.pw if packet is not None else head.get("PW", "")
        if not station.pw_ok(pw):
            # Neither password is ever written to a reason or a log line.
            conn.wrong_pw += 1
            await self._reject(
                conn, frame, mn, WRONG_PW, f"wrong PW for MN {mn} ({station.device.id})"
            )
            if conn.wrong_pw >= self.cfg.max_wrong_pw:
                self._penalise(conn.host)
                raise _Closing("wrong_pw")
            return
        conn.mn = mn
        conn.rejects_in_a_row = 0
        if self.dispatcher is not None and packet is not None:
            if conn.link is None:
                conn.link = StationLink(
                    _sender(writer, self._idle_s), "2017", station.leniency.crc, conn.peer
                )
            if self.dispatcher.packet(mn, packet, conn.link):
                self.stats.count(mn, ANSWER)  # a command's answer: nothing to store
                return
            if packet.cn == "2011":
                self.dispatcher.clock_check(mn, packet)
        try:
            await self.client.publish(f"{self.prefix}/{PROTOCOL}/{mn}", frame, qos=1)
        except MqttError as e:
            # Not taken, so no reply: the station resends it.
            self.stats.publish_failures += 1
            self.stats.count(mn, PUBLISH_FAILED)
            self._log(mn, PUBLISH_FAILED, f"broker did not take a packet of MN {mn}: {e}")
            return
        self.stats.count(mn, OK if packet is not None else FORWARDED)
        reply = _reply(packet, head, station)
        if reply is not None:
            writer.write(reply)
            try:
                async with asyncio.timeout(self._idle_s):
                    await writer.drain()
            except TimeoutError:
                raise _Closing("not reading replies") from None
            conn.replies += 1
            self.stats.replies[mn] += 1

    async def _reject(
        self, conn: ConnStats, frame: bytes, mn: str | None, result: str, reason: str
    ) -> None:
        conn.rejected += 1
        # Labels stay bounded: an MN that is not registered is counted as 'unknown'.
        label = mn if mn is not None and mn in self.stations else "unknown"
        self.stats.count(label, result)
        await self._deadletter(
            conn, _topic_mn(mn), frame, f"{reason} [HJ 212 gateway, {conn.peer}]"
        )
        self._log(label, result, f"HJ 212 packet refused: {reason} [{conn.peer}]")
        self._flood_check(conn)

    def _flood_check(self, conn: ConnStats) -> None:
        conn.rejects_in_a_row += 1
        if conn.rejects_in_a_row > self.cfg.max_rejects_in_a_row:
            raise _Closing("flood")

    async def _junk(self, conn: ConnStats, run: Junk) -> None:
        self.stats.garbage_bytes += run.size
        if run.blank:
            return
        conn.rejected += 1
        self.stats.count("unknown", GARBAGE)
        reason = f"{run.reason}: {run.size} bytes dropped [HJ 212 gateway, {conn.peer}]"
        await self._deadletter(conn, "unknown", run.head, reason, size=run.size)
        self._log("unknown", GARBAGE, f"HJ 212 {run.reason}: {run.size} bytes [{conn.peer}]")
        self._flood_check(conn)

    async def _deadletter(
        self, conn: ConnStats, mn: str, payload: bytes, reason: str, size: int = 0
    ) -> None:
        if conn.deadletters >= self.cfg.max_deadletters_per_connection:
            self.stats.deadletters_suppressed += 1
            return
        conn.deadletters += 1
        topic = f"{self.prefix}/{PROTOCOL}/{mn}"
        # A garbage run is kept only in part: its size says how big it was.
        dl = make_deadletter(
            lambda t: f"{self.prefix}/deadletter/{t}",
            topic,
            payload,
            reason,
            max_packet=self.client.max_packet_size,
            size=size or None,
        )
        try:
            await self.client.publish(dl.topic, dl.body, qos=1)
        except MqttError as e:
            log.warning("could not publish an HJ 212 dead letter (%s): %s", e, reason)
            return
        self.stats.deadlettered += 1

    def _log(self, mn: str, result: str, message: str) -> None:
        # One line per MN and result a minute: a misconfigured station must not flood the log.
        now = time.monotonic()
        last = self._logged.get((mn, result))
        if last is None or now - last >= _LOG_EVERY_S:
            self._logged[(mn, result)] = now
            log.warning("%s", message)


def _reply(packet: Packet | None, head: Mapping[str, str], station: Station) -> bytes | None:
    """The 9014 reply when the packet's Flag asks for one (bit A), else None."""
    if packet is None:
        flag_text = head.get("Flag", "")
        if not (flag_text.isdigit() and int(flag_text) & 1):
            return None
        try:
            packet = Packet(
                qn=head.get("QN", ""), st="", cn="", pw=head.get("PW", ""), mn=station.mn, flag=0
            )
            if not (len(packet.qn) == 17 and packet.qn.isdigit()):
                return None
            return build_reply(packet, station.leniency.crc)
        except FieldError:
            return None
    if not packet.reply_requested:
        return None
    return build_reply(packet, station.leniency.crc)


def _sender(writer: asyncio.StreamWriter, timeout: float) -> Callable[[bytes], Awaitable[None]]:
    async def send(frame: bytes) -> None:
        writer.write(frame)
        try:
            async with asyncio.timeout(timeout):
                await writer.drain()
        except TimeoutError:
            writer.transport.abort()  # the connection's loop then ends as a reset
            raise ConnectionError("station not reading") from None

    return send


def _why_unreadable(frame: bytes) -> str:
    try:
        parse(frame)
    except Hj212Error as e:
        return f"{e} (no MN to look up)"
    return "no MN in the header"


def _peer(writer: asyncio.StreamWriter) -> str:
    info = writer.get_extra_info("peername")
    if isinstance(info, tuple) and len(info) >= 2:
        return f"{info[0]}:{info[1]}"
    return str(info or "?")


# ---------------------------------------------------------------------------------------------
# Wiring: inside `envgrid run`, and standalone (`envgrid hj212-gateway`)
# ---------------------------------------------------------------------------------------------


class _ServiceLike(Protocol):
    """What ServiceGateway needs of IngestService."""

    evaluate_only: bool
    worker: int | None
    metrics: CollectorRegistry


def open_store(settings: GatewayConfig, shared: SharedConfig | None) -> Store:
    """The command store: PostgreSQL when gateways share one (a cluster), else SQLite."""
    if shared is not None:
        return PgCommandStore(shared)
    return CommandStore(command_store_path(settings))


class Commands:
    """The command side of a gateway: store, dispatcher, MQTT inbox and the backfill task."""

    def __init__(
        self,
        settings: GatewayConfig,
        stations: dict[str, Station],
        metrics: CollectorRegistry | None = None,
        client_suffix: str = "hj212cmd",
        shared: SharedConfig | None = None,
    ) -> None:
        from devices.kinds import KINDS
        from hj212.recovery import Backfill
        from hj212.routing import CommandInbox

        self.store = open_store(settings, shared)
        # Passwords stations confirmed by 1072 replace the registry's (the dict is shared
        # with the intake, so both check the new one).
        for mn, pw in self.store.passwords().items():
            if mn in stations:
                stations[mn] = dataclasses.replace(stations[mn], pw=pw)
        tz = ZoneInfo(settings.standards.timezone)
        self.dispatcher = Dispatcher(
            settings.hj212,
            stations,
            self.store,
            tz,
            share_every_s=shared.renew_s if shared is not None else 5.0,
        )
        if metrics is not None:
            metrics.register(self.dispatcher.collector())
        self.backfill = Backfill(
            settings, self.dispatcher, {k: KINDS[k].measurement for k in ("water", "air")}
        )
        self.inbox = CommandInbox(settings, self.dispatcher, client_suffix)

    async def start(self) -> None:
        """Take routed commands, send queued ones, look for gaps."""
        self.dispatcher.start()
        self.backfill.start()
        await self.inbox.start()

    async def stop(self) -> None:
        """Stop; open commands stay in the store and go out after the next start."""
        await self.inbox.close()
        await self.backfill.stop()
        await self.dispatcher.stop()
        self.store.close()


class ServiceGateway:
    """HJ 212 in ``envgrid run``: the intake decoder always, the gateway when a port is set.

    With ``shared`` (a cluster database) the command store and station state are PostgreSQL's,
    and a process without the gateway still serves /api/hj212 from them."""

    def __init__(
        self, settings: GatewayConfig, registry: Registry, shared: SharedConfig | None = None
    ) -> None:
        self.settings = settings
        self.shared = shared
        self.shared_api: SharedApi | None = None
        # Without the gateway here, with a shared store: a dispatcher that never sends, over
        # the shared store, its station state copied from the shared table (for the console).
        self.viewer: Dispatcher | None = None
        self._viewing: asyncio.Task[None] | None = None
        # Validates every station's mn/pw/hj212 facts now: a bad entry stops start-up.
        self.stations = load_stations(
            registry, settings.standards.timezone, settings.devices.registry
        )
        self.protocols = {PROTOCOL: decoder_factory(self.stations)}
        self.gateway: Hj212Gateway | None = None
        self.client: MqttClient | None = None
        self.commands: Commands | None = None

    def router(self, token: SecretStr | None) -> APIRouter:
        """/api/hj212 (commands, station state), answering 503 until the gateway runs."""
        from hj212.api import create_router

        return create_router(
            lambda: self.commands.dispatcher if self.commands is not None else None,
            token.get_secret_value() if token is not None else None,
            lambda: self.shared_api,
        )

    def dispatcher(self) -> Dispatcher | None:
        """The dispatcher the console works on: the gateway's, or the shared store's view."""
        return self.commands.dispatcher if self.commands is not None else self.viewer

    async def _view(self, store: PgCommandStore, every_s: float) -> None:
        """Copy the shared station state into the viewer's, every ``every_s``."""
        assert self.viewer is not None
        states = self.viewer.states
        while True:
            try:
                rows = await asyncio.to_thread(store.stations)
            except Exception as e:  # the database may be back at the next look
                log.warning("HJ 212 shared station state unreadable: %s", str(e).strip()[:200])
                rows = None
            for row in rows or ():
                s = states.get(row.mn)
                if s is None:
                    continue
                s.online, s.edition, s.last_packet, s.packets = (
                    row.online, row.edition, row.last_packet, row.packets,
                )  # fmt: skip
                s.last_command, s.last_result, s.clock_offset_s, s.gaps = (
                    row.last_command, row.last_result, row.clock_offset_s, row.gaps,
                )  # fmt: skip
                s.connected_at, s.peer = row.connected_at or 0.0, row.peer
            await asyncio.sleep(every_s)

    def _shared_api(self, store: Store, client: MqttClient | None) -> SharedApi | None:
        if not isinstance(store, PgCommandStore):
            return None
        prefix = self.settings.mqtt.topic_prefix

        async def nudge(cmd: Command) -> None:
            assert client is not None
            await publish_command(client, prefix, cmd)

        return SharedApi(
            store,
            self.stations,
            self.settings.hj212,
            ZoneInfo(self.settings.standards.timezone),
            nudge if client is not None else None,
        )

    async def start(self, service: _ServiceLike) -> None:
        """Start the TCP gateway if ENVGRID_HJ212__PORT is set (not in the alerts role)."""
        if self.settings.hj212.port is None or service.evaluate_only:
            if self.shared is not None:
                # No gateway here, but /api/hj212 works from the shared store.
                try:
                    store = await asyncio.to_thread(PgCommandStore, self.shared, gateway=False)
                except StoreError as e:
                    log.warning("/api/hj212 unavailable: %s", e)
                    return
                self.shared_api = self._shared_api(store, None)
                tz = ZoneInfo(self.settings.standards.timezone)
                self.viewer = Dispatcher(self.settings.hj212, self.stations, store, tz)
                self._viewing = asyncio.create_task(self._view(store, self.shared.renew_s))
            return
        # A publish-only connection of its own rather than the service's: its PUBACKs never
        # wait behind the readings the broker streams to the consumer (shared, replies took
        # seconds under load: docs/performance.md, "Why the code is shaped this way"), and
        # pausing consumption does not stall the stations.
        client = MqttClient(publisher_options(self.settings, worker=service.worker), no_messages)
        await client.start()
        commands = Commands(self.settings, self.stations, service.metrics, shared=self.shared)
        try:
            await wait_for_broker(client, self.settings)
            self.gateway = Hj212Gateway(
                self.settings,
                self.stations,
                client,
                metrics=service.metrics,
                dispatcher=commands.dispatcher,
            )
            await commands.start()
            await self.gateway.start()
        except BaseException:
            await commands.stop()
            await client.close()
            raise
        self.client = client
        self.commands = commands
        self.shared_api = self._shared_api(commands.store, client)

    async def stop(self) -> None:
        """Close the gateway and its MQTT connection (unreplied packets are resent)."""
        if self.gateway is not None:
            await self.gateway.stop()
        if self.commands is not None:
            await self.commands.stop()
        elif self.shared_api is not None:
            if self._viewing is not None:
                self._viewing.cancel()
                await asyncio.gather(self._viewing, return_exceptions=True)
            if self.viewer is not None:
                await self.viewer.stop()
            self.shared_api.store.close()
        if self.client is not None:
            await self.client.close()


def no_messages(_message: object) -> None:
    """The publish-only client subscribes to nothing."""


async def wait_for_broker(client: MqttClient, settings: GatewayConfig) -> None:
    """Wait for the broker; only a refusal (credentials, authorisation) is fatal."""
    try:
        await client.wait_connected(timeout=max(10.0, settings.mqtt.connect_timeout_s))
    except ConnectError as e:
        if e.reason_code is not None:
            raise
        log.warning("HJ 212 gateway: broker not reachable yet, retrying in the background")


def publisher_options(
    settings: GatewayConfig, name: str = "hj212", worker: int | None = None
) -> MqttOptions:
    """MQTT options of the gateway's publish-only client."""
    m = settings.mqtt
    # Publish only: nothing to resume, unacked publishes are retried by the client itself.
    return client_options(m, f"{m.effective_client_id(worker)}-{name}")
