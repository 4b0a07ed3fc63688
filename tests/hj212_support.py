"""Helpers of the HJ 212 tests: packets of registered stations, the service with its gateway,
and a station connection that collects the gateway's replies."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from devices.registry import Device, Registry, load_registry
from envgrid.settings import Settings
from hj212.codec import FactorValue, Packet, build, parse
from hj212.gateway import Hj212Gateway, ServiceGateway
from hj212.intake import load_stations
from hj212.station import LoggerState
from ingest.service import IngestService
from tests.helpers import running_service

SHANGHAI = ZoneInfo("Asia/Shanghai")
_QN = itertools.count(1)


def local_now(minutes_ago: float = 0) -> datetime:
    """Naive Asia/Shanghai wall time, whole seconds (what a station writes in DataTime)."""
    t = datetime.now(SHANGHAI) - timedelta(minutes=minutes_ago)
    return t.replace(microsecond=0, tzinfo=None)


def ms_of(local: datetime) -> int:
    """Epoch ms of a naive Asia/Shanghai time."""
    return int(local.replace(tzinfo=SHANGHAI).timestamp() * 1000)


def new_qn() -> str:
    """A unique 17-digit QN."""
    return f"{datetime.now(SHANGHAI):%Y%m%d%H%M%S}{next(_QN) % 1000:03d}"


def packet(
    device: Device,
    cn: str,
    t: datetime,
    factors: Mapping[str, Mapping[str, Any]],
    *,
    flag: int = 5,
    qn: str | None = None,
    pw: str | None = None,
    mn: str | None = None,
    st: str | None = None,
) -> tuple[str, bytes]:
    """(QN, frame) of a data packet of a registered station; factors: code → {rtd: …, flag: …}."""
    qn = qn or new_qn()
    p = Packet(
        qn=qn,
        st=st or ("21" if device.kind == "water" else "22"),
        cn=cn,
        pw=pw or str(device.facts["pw"]),
        mn=mn or str(device.facts["mn"]),
        flag=flag,
        data_time=t,
        factors={code: FactorValue(code, **v) for code, v in factors.items()},
    )
    crc = (device.facts.get("hj212") or {}).get("crc", "hj212")
    return qn, build(p, crc)


@dataclass
class StationLink:
    """One TCP connection of a station's data logger; collects the QNs of replies."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    replies: list[str] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    requests: list[bytes] = field(default_factory=list)  # the platform's commands (unanswered)
    task: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, port: int) -> StationLink:
        """Connect to the gateway on the loopback."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        link = cls(reader, writer)
        link.task = asyncio.create_task(link._read())
        return link

    async def _read(self) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                line = await self.reader.readuntil(b"\r\n")
                reply = parse(line)
                if reply.st != "91":
                    self.requests.append(line)  # e.g. the backfill's 2061: not a reply
                    continue
                self.raw.append(line)
                # Flag=8 answers a 2025-edition packet (version bits 2), Flag=4 the others.
                assert (reply.st, reply.cn) == ("91", "9014") and reply.flag in (4, 8), line
                self.replies.append(reply.qn)

    async def send(self, data: bytes) -> None:
        """Write bytes as one TCP write."""
        self.writer.write(data)
        await self.writer.drain()

    async def close(self) -> None:
        """Close the connection and stop collecting."""
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


@contextlib.asynccontextmanager
async def service_with_gateway(
    settings: Settings,
) -> AsyncIterator[tuple[IngestService, Hj212Gateway]]:
    """The ingest service with HJ 212 intake and its TCP gateway (port 0: any free port)."""
    assert settings.devices.registry is not None
    registry = load_registry(settings.devices.registry)
    hj = ServiceGateway(settings, registry)
    async with running_service(settings, protocols=hj.protocols) as service:
        await hj.start(service)
        assert hj.gateway is not None
        try:
            yield service, hj.gateway
        finally:
            await hj.stop()


# ------------------------------------------------------------------------------ load


def station_registry(path: Path, stations: int) -> Registry:
    """A registry file of ``stations`` HJ 212 stations (half water, half air) at ``path``."""
    from devices.fleet import fleet

    per_kind = (stations + 1) // 2
    devices = [d for d in fleet(per_kind) if d["kind"] in ("water", "air")][:stations]
    path.write_text(
        yaml.safe_dump({"devices": devices}, allow_unicode=True, sort_keys=False), "utf-8"
    )
    return load_registry(path)


@dataclass
class LoadResult:
    """What a load run sent and what came back."""

    connections: int
    seconds: float
    sent: int = 0
    replied: int = 0
    errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)  # send → reply, seconds
    unreplied: list[str] = field(default_factory=list)  # QNs without a reply
    max_send_lag: float = 0.0  # how late the generator sent against its schedule, seconds

    def quantile(self, q: float) -> float:
        """A latency quantile in seconds (0 without replies)."""
        if not self.latencies:
            return 0.0
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(q * len(xs)))]


_WATER = {"w01001": 7.4, "w01009": 7.2, "w01019": 3.1, "w21003": 0.35, "w21011": 0.07}
_AIR = {"a34004": 31.0, "a34002": 52.0, "a21026": 7.0, "a21004": 22.0, "a05024": 70.0}


async def station_load(
    port: int, devices: list[Device], seconds: float, rate: float = 1.0, settle: float = 15.0
) -> LoadResult:
    """One connection per device, each sending ``rate`` real-time packets a second (asking a
    reply) for ``seconds``; then wait up to ``settle`` s for the last replies."""
    result = LoadResult(connections=len(devices), seconds=seconds)
    base = local_now(minutes_ago=60)
    loop = asyncio.get_running_loop()
    start = loop.time() + 1.0
    n = int(seconds * rate)
    pending: dict[str, float] = {}

    async def one(idx: int, device: Device) -> None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError as e:
            result.errors.append(f"{device.id}: connect: {e}")
            return

        async def replies() -> None:
            while True:
                line = await reader.readuntil(b"\r\n")
                at = line.find(b"QN=")
                qn = line[at + 3 : at + 20].decode()
                sent_at = pending.pop(qn, None)
                if sent_at is not None:
                    result.replied += 1
                    result.latencies.append(loop.time() - sent_at)

        task = asyncio.create_task(replies())
        values = _WATER if device.kind == "water" else _AIR
        factors = {c: {"rtd": v, "flag": "N"} for c, v in values.items()}
        offset = idx / len(devices) / rate  # spread the stations over one period
        try:
            for i in range(n):
                delay = start + offset + i / rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    result.max_send_lag = max(result.max_send_lag, -delay)
                qn = f"{idx:07d}{i:010d}"
                _, frame = packet(device, "2011", base + timedelta(seconds=i), factors, qn=qn)
                pending[qn] = loop.time()
                writer.write(frame)
                result.sent += 1
                await writer.drain()
            deadline = loop.time() + settle
            while loop.time() < deadline and any(f"{idx:07d}{i:010d}" in pending for i in range(n)):
                await asyncio.sleep(0.1)
        except (ConnectionError, OSError) as e:
            result.errors.append(f"{device.id}: {e}")
        finally:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            writer.close()

    await asyncio.gather(*(one(i, d) for i, d in enumerate(devices)))
    result.unreplied = sorted(pending)
    return result


# ------------------------------------------------------------------------------ commands


@contextlib.asynccontextmanager
async def service_with_commands(settings: Settings) -> AsyncIterator[ServiceGateway]:
    """The ingest service with HJ 212 intake, gateway and command side (dispatcher, MQTT inbox,
    backfill); the ServiceGateway, whose ``gateway`` and ``commands`` are set."""
    assert settings.devices.registry is not None
    registry = load_registry(settings.devices.registry)
    hj = ServiceGateway(settings, registry)
    async with running_service(settings, protocols=hj.protocols) as service:
        await hj.start(service)
        assert hj.gateway is not None and hj.commands is not None
        try:
            yield hj
        finally:
            await hj.stop()


def logger_state(settings: Settings, device: Device, edition: str = "2017") -> LoggerState:
    """A simulated data logger of a registered station."""
    assert settings.devices.registry is not None
    registry = load_registry(settings.devices.registry)
    stations = load_stations(registry, "Asia/Shanghai")
    return LoggerState(stations[str(device.facts["mn"])], edition=edition)


def hourly_factors(values: Mapping[str, float]) -> dict[str, FactorValue]:
    """Hourly groups (-Avg/-Min/-Max, flag N) of factor values."""
    return {
        c: FactorValue(c, avg=v, min=round(v * 0.95, 4), max=round(v * 1.05, 4), flag="N")
        for c, v in values.items()
    }


def rtd_factors(values: Mapping[str, float]) -> dict[str, FactorValue]:
    """Real-time groups (-Rtd, flag N) of factor values."""
    return {c: FactorValue(c, rtd=v, flag="N") for c, v in values.items()}
