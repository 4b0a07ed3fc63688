"""A simulated data logger's side of platform commands: it keeps history, answers like a real one.

Used by the station simulator (``envgrid simulate --protocol hj212``) and by the tests, so both
drive the real gateway over TCP. The logger answers a request with ``9011`` (QnRtn 1), then for a
re-request (2061/2051/2031) the packets it holds between BeginTime and EndTime with the request's
QN, then ``9012`` (ExeRtn 1, or 100 when it holds none). It honours ``1012`` (its clock), reads and
sets its intervals (1061-1064), ``1000`` and ``1072`` (its PW changes after it confirmed).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from hj212.codec import FactorValue, Hj212Error, Packet, build, parse
from hj212.commands import EDITION_VERSION, format_time, parse_time
from hj212.intake import Station

__all__ = ["DataLogger", "LoggerState"]

_ST: Final = {"water": "21", "air": "22"}
_DATA_CNS: Final = frozenset({"2061", "2051", "2031"})


@dataclass
class LoggerState:
    """What a data logger holds: its data history, clock offset and settings."""

    station: Station
    edition: str = "2017"
    # CN (2061 hourly, 2051 minute, 2031 daily) → DataTime → the factors sent for it.
    history: dict[str, dict[datetime, dict[str, FactorValue]]] = field(default_factory=dict)
    clock_offset: timedelta = timedelta(0)  # station clock minus true local time
    rtd_interval: int = 30
    min_interval: int = 10
    overtime: int = 5
    recount: int = 3
    ignore: int = 0  # requests to leave unanswered (a logger that misses commands)
    requests: list[Packet] = field(default_factory=list)  # every request received
    _last_qn_ms: int = 0

    @property
    def flag(self) -> int:
        """Flag of the packets it sends without asking for a reply."""
        return EDITION_VERSION[self.edition] << 2

    def now(self) -> datetime:
        """The logger's own clock (naive local time, whole seconds)."""
        t = datetime.now(self.station.tz) + self.clock_offset
        return t.replace(microsecond=0, tzinfo=None)

    def keep(self, cn: str, t: datetime, factors: dict[str, FactorValue]) -> None:
        """Remember data it produced (sent or not), so it can send it again."""
        self.history.setdefault(cn, {})[t] = factors

    def qn(self) -> str:
        """A new QN from the logger's clock."""
        t = self.now()
        ms = max(int(t.timestamp() * 1000), self._last_qn_ms + 1)
        self._last_qn_ms = ms
        return f"{format_time(datetime.fromtimestamp(ms // 1000))}{ms % 1000:03d}"

    def frame(
        self,
        cn: str,
        qn: str,
        cp: dict[str, str] | None = None,
        *,
        st: str | None = None,
        data_time: datetime | None = None,
        factors: dict[str, FactorValue] | None = None,
        reply: bool = False,
    ) -> bytes:
        """One packet of this logger."""
        s = self.station
        packet = Packet(
            qn=qn, st=st or _ST[s.kind], cn=cn, pw=s.pw, mn=s.mn, flag=self.flag | int(reply),
            data_time=data_time, factors=factors or {}, cp_extra=cp or {},
        )  # fmt: skip
        return build(packet, s.leniency.crc)

    def answer(self, request: Packet) -> list[bytes]:
        """The frames a logger sends in answer to a platform request."""
        self.requests.append(request)
        if self.ignore > 0:
            self.ignore -= 1
            return []
        qn, cn, cp = request.qn, request.cn, request.cp_extra
        if cn in ("9014", "9011", "9012"):
            return []
        known = cn in _DATA_CNS or cn in ("1000", "1011", "1012", "1061", "1062", "1063")
        known = known or cn in ("1064", "1072")
        out = [self.frame("9011", qn, {"QnRtn": "1" if known else "2"}, st="91")]
        if not known:
            return out
        exe = "1"
        if cn in _DATA_CNS:
            try:
                begin, end = parse_time(cp["BeginTime"]), parse_time(cp["EndTime"])
            except (KeyError, ValueError):
                return [self.frame("9011", qn, {"QnRtn": "2"}, st="91")]
            rows = sorted((t, f) for t, f in self.history.get(cn, {}).items() if begin <= t <= end)
            for t, factors in rows:
                out.append(self.frame(cn, qn, data_time=t, factors=factors, reply=True))
            exe = "1" if rows else "100"
        elif cn == "1012":
            target = parse_time(cp.get("SystemTime", ""))
            true_now = datetime.now(self.station.tz).replace(tzinfo=None)
            self.clock_offset = target - true_now
        elif cn == "1011":
            out.append(self.frame("1011", qn, {"SystemTime": format_time(self.now())}))
        elif cn == "1061":
            out.append(self.frame("1061", qn, {"RtdInterval": str(self.rtd_interval)}))
        elif cn == "1062":
            self.rtd_interval = int(cp.get("RtdInterval", self.rtd_interval))
        elif cn == "1063":
            out.append(self.frame("1063", qn, {"MinInterval": str(self.min_interval)}))
        elif cn == "1064":
            self.min_interval = int(cp.get("MinInterval", self.min_interval))
        elif cn == "1000":
            self.overtime = int(cp.get("OverTime", self.overtime))
            self.recount = int(cp.get("ReCount", self.recount))
        out.append(self.frame("9012", qn, {"ExeRtn": exe}, st="91"))
        if cn == "1072" and "NewPW" in cp:
            # The new PW is used from the packet after the confirmation on.
            self.station = dataclasses.replace(self.station, pw=cp["NewPW"])
        return out


class DataLogger:
    """One logger's TCP connection: sends what it is told, answers commands meanwhile."""

    def __init__(self, state: LoggerState) -> None:
        self.state = state
        self.replies: list[Packet] = []  # 9014 and other frames that are no request
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None

    async def connect(self, host: str, port: int) -> None:
        """Open the connection and start answering."""
        reader, writer = await asyncio.open_connection(host, port)
        self._writer = writer
        self._task = asyncio.create_task(self._read(reader))

    async def send(self, frame: bytes) -> None:
        """Write one frame."""
        assert self._writer is not None
        self._writer.write(frame)
        await self._writer.drain()

    async def upload(self, cn: str, t: datetime, factors: dict[str, FactorValue]) -> str:
        """Send (and keep) one data packet asking for a reply; its QN."""
        if cn != "2011":
            self.state.keep(cn, t, factors)
        qn = self.state.qn()
        await self.send(self.state.frame(cn, qn, data_time=t, factors=factors, reply=True))
        return qn

    async def _read(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                line = await reader.readuntil(b"\r\n")
                try:
                    packet = parse(line, self.state.station.leniency)
                except Hj212Error:
                    continue
                if packet.cn == "9014" or packet.st == "91":
                    self.replies.append(packet)
                    continue
                for frame in self.state.answer(packet):
                    await self.send(frame)

    async def close(self) -> None:
        """Close the connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError):
                await self._writer.wait_closed()
