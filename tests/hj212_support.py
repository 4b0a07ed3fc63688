"""Helpers of the HJ 212 tests: packets of registered stations, the service with its gateway,
and a station connection that collects the gateway's replies."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from devices.hj212 import FactorValue, Packet, build, parse
from devices.kinds import KINDS
from devices.registry import Device, Registry
from ingest.config import Settings
from ingest.hj212_gateway import Hj212Gateway, ServiceGateway
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
                self.raw.append(line)
                reply = parse(line)
                assert (reply.st, reply.cn, reply.flag) == ("91", "9014", 4), line
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
    registry = Registry.load(settings.devices.registry, KINDS)
    hj = ServiceGateway(settings, registry)
    async with running_service(settings, protocols=hj.protocols) as service:
        await hj.start(service)
        assert hj.gateway is not None
        try:
            yield service, hj.gateway
        finally:
            await hj.stop()
