"""Helpers of the HJ 212 tests: a station connection that collects the gateway's replies, the
service with its gateway and command side, and simulated data loggers. Packets of registered
stations and station load live in testkit/stations.py (bench/hj212_load.py shares them) and are
re-exported here."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

from devices.registry import Device, load_registry
from envgrid.settings import Settings
from hj212.codec import FactorValue, parse
from hj212.gateway import Hj212Gateway, ServiceGateway
from hj212.intake import load_stations
from hj212.station import LoggerState
from ingest.service import IngestService
from testkit.stations import (
    SHANGHAI,
    LoadResult,
    local_now,
    ms_of,
    new_qn,
    packet,
    station_load,
    station_registry,
)
from tests.helpers import running_service

__all__ = [
    "SHANGHAI",
    "LoadResult",
    "StationLink",
    "hourly_factors",
    "local_now",
    "logger_state",
    "ms_of",
    "new_qn",
    "packet",
    "rtd_factors",
    "service_with_commands",
    "service_with_gateway",
    "station_load",
    "station_registry",
]


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
