"""HJ 212 stations under load: packets of registered stations and one TCP connection per
station sending real-time data to the gateway, with the replies' latencies. Shared by the HJ 212
tests (through tests/hj212_support.py) and bench/hj212_load.py."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from devices.registry import Device, Registry, load_registry
from hj212.codec import FactorValue, Packet, build

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
