"""HJ 212 station simulator: each registered water and air station's data logger, over TCP.

Every station keeps one connection to the gateway and sends what a real logger sends: real-time
data (CN 2011) every 30 s, hourly data (CN 2061: -Avg/-Min/-Max of the hour) just after each hour,
with occasional maintenance (Flag M, calibration C on water) runs. Values come from the fleet
simulators in devices/, converted to the units and names each station is configured to send
(``hj212:`` units, aliases, CRC variant), so the per-device settings are exercised end to end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from devices.kinds import KINDS
from hj212.codec import FACTORS, FactorValue, Hj212Error, Packet, build, parse
from hj212.config import GatewayConfig
from hj212.intake import Station
from hj212.station import LoggerState

__all__ = ["Hj212Simulator", "SimReport", "gateway_address", "wire_codes"]

log = logging.getLogger("envgrid.hj212.sim")

_ST = {"water": "21", "air": "22"}


@dataclass
class SimReport:
    """What a simulation sent and got back."""

    stations: int = 0
    sent: int = 0
    rtd: int = 0
    hourly: int = 0
    flagged_values: int = 0  # values sent with an invalid flag (M, C)
    bad: int = 0  # packets sent with a broken CRC on purpose
    replies: int = 0
    connects: int = 0
    dropped_hours: int = 0  # hourly uploads skipped on purpose (kept for a re-request)
    commands: int = 0  # platform requests answered
    sent_qns: dict[str, list[str]] = field(default_factory=dict)  # MN → QNs asking a reply
    replied_qns: dict[str, list[str]] = field(default_factory=dict)  # MN → QNs replied


def wire_codes(kind: str) -> dict[str, str]:
    """envgrid field → HJ 212-2017 factor code for a station kind (w… water, a… air)."""
    letter = "w" if kind == "water" else "a"
    return {name: code for code, (name, _unit) in FACTORS.items() if code[0] == letter}


@dataclass
class _Sim:
    station: Station
    rnd: random.Random
    codes: dict[str, str]
    names: dict[str, str]  # code → name on the wire (an alias where configured)
    state: dict[str, Any] = field(default_factory=dict)
    hour: datetime | None = None  # local hour the samples below belong to
    samples: dict[str, list[float]] = field(default_factory=dict)  # valid wire values this hour
    invalid: dict[str, list[float]] = field(default_factory=dict)
    maintenance: int = 0  # real-time packets left in the current maintenance run
    maintenance_flag: str = "M"
    maintenance_codes: tuple[str, ...] = ()
    phase: float = 0.0  # simulated seconds after the start of this logger's first packet
    last_qn_ms: int = 0
    logger: LoggerState | None = None  # history, clock and settings the commands act on


class Hj212Simulator:
    """Drives the gateway at host:port with one TCP connection per station."""

    def __init__(
        self,
        stations: Sequence[Station],
        host: str,
        port: int,
        *,
        interval: float = 30.0,
        maintenance: float = 0.01,
        bad_fraction: float = 0.0,
        seed: int | None = None,
        speed: float = 1.0,
        start: datetime | None = None,
        count: int = 0,
        drop_hourly: float = 0.0,
        clock_drift: float = 0.0,
    ) -> None:
        self.stations = list(stations)
        self.host, self.port = host, port
        self.interval = interval  # simulated seconds between real-time packets
        self.maintenance = maintenance  # chance per real-time packet that maintenance begins
        self.bad_fraction = bad_fraction
        self.seed = seed
        # Simulated time runs `speed` times faster than real time from `start` (default now).
        self.speed = speed
        self.start = start
        self.count = count
        # Chance that an hourly upload is skipped (the logger keeps it and sends it when the
        # platform asks), and how far (s) each logger's clock is off: the demo of recovery.
        self.drop_hourly = drop_hourly
        self.clock_drift = clock_drift
        self.report = SimReport(stations=len(self.stations))
        self._done = asyncio.Event()

    def _now(self, t0: float, start: datetime) -> datetime:
        return start + timedelta(seconds=(time.monotonic() - t0) * self.speed)

    async def run(self, duration: float = 0.0, stop: asyncio.Event | None = None) -> SimReport:
        """Simulate until ``duration`` real seconds, ``count`` packets, or ``stop``."""
        master = random.Random(self.seed)
        start = self.start or datetime.now().astimezone()
        t0 = time.monotonic()
        tasks = [
            asyncio.create_task(self._station(self._sim(s, master), t0, start))
            for s in self.stations
        ]
        waiters = [asyncio.create_task(self._done.wait())]
        if stop is not None:
            waiters.append(asyncio.create_task(stop.wait()))
        try:
            await asyncio.wait(
                waiters, timeout=duration or None, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for t in tasks + waiters:
                t.cancel()
            await asyncio.gather(*tasks, *waiters, return_exceptions=True)
        return self.report

    def _sim(self, station: Station, master: random.Random) -> _Sim:
        codes = wire_codes(station.kind)
        alias_of = {code: name for name, code in station.aliases.items()}
        names = {code: alias_of.get(code, code) for code in codes.values()}
        sim = _Sim(station, random.Random(master.random()), codes, names)
        # Flag 9 (see _packet) is the 2025 edition's version bits: answer commands in it too.
        edition = "2025" if station.kind == "water" and station.mn[-1] in "13579" else "2017"
        sim.logger = LoggerState(
            station, edition=edition, clock_offset=timedelta(seconds=self.clock_drift)
        )
        return sim

    async def _station(self, sim: _Sim, t0: float, start: datetime) -> None:
        # Loggers are not synchronised: spread the stations over one interval (each connects
        # at once and keeps its connection, as loggers do).
        sim.phase = sim.rnd.uniform(0, self.interval)
        backoff = 0.5
        while not self._done.is_set():
            try:
                reader, writer = await asyncio.open_connection(self.host, self.port)
            except OSError as e:
                log.warning("station %s: cannot connect (%s)", sim.station.device.id, e)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            backoff = 0.5
            self.report.connects += 1
            replies = asyncio.create_task(self._replies(sim, reader, writer))
            try:
                await self._send_loop(sim, writer, t0, start)
            except (ConnectionError, OSError) as e:
                log.warning("station %s: connection lost (%s)", sim.station.device.id, e)
            finally:
                replies.cancel()
                with contextlib.suppress(BaseException):
                    await replies
                writer.close()

    async def _replies(
        self, sim: _Sim, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        mn = sim.station.mn
        assert sim.logger is not None
        while True:
            line = await reader.readuntil(b"\r\n")
            try:
                packet = parse(line, sim.logger.station.leniency)
            except Hj212Error:
                continue
            if packet.st != "91":
                # A platform request (re-send, clock, intervals...): answer as a logger does.
                self.report.commands += 1
                for frame in sim.logger.answer(packet):
                    writer.write(frame)
                await writer.drain()
                continue
            self.report.replies += 1
            self.report.replied_qns.setdefault(mn, []).append(packet.qn)

    async def _send_loop(
        self, sim: _Sim, writer: asyncio.StreamWriter, t0: float, start: datetime
    ) -> None:
        tz = sim.station.tz
        first = sim.phase - (time.monotonic() - t0) * self.speed
        if first > 0:
            await asyncio.sleep(first / self.speed)
        while not self._done.is_set():
            now = self._now(t0, start).astimezone(tz).replace(microsecond=0, tzinfo=None)
            if sim.logger is not None:
                now += sim.logger.clock_offset  # the logger's own clock (1012 corrects it)
            hour = now.replace(minute=0, second=0)
            frames: list[bytes] = []
            if sim.hour is not None and hour > sim.hour:
                hourly = self._hourly(sim, sim.hour, now)
                if hourly is not None:
                    frames.append(hourly)
            if sim.hour is None or hour > sim.hour:
                sim.hour, sim.samples, sim.invalid = hour, {}, {}
            frames.append(self._rtd(sim, now))
            for frame in frames:
                if self.count and self.report.sent >= self.count:
                    self._done.set()
                    return
                writer.write(frame)
                self.report.sent += 1
            await writer.drain()
            elapsed = (time.monotonic() - t0) * self.speed
            next_at = sim.phase + (int((elapsed - sim.phase) / self.interval) + 1) * self.interval
            await asyncio.sleep(max(0.0, (next_at - elapsed) / self.speed))

    # ---------------------------------------------------------------- packets
    def _packet(self, sim: _Sim, cn: str, t: datetime, factors: dict[str, FactorValue]) -> bytes:
        st = sim.logger.station if sim.logger is not None else sim.station  # 1072 changes PW
        # Surface-water loggers are often seen with Flag=9; both ask for a reply (bit A).
        flag = 9 if st.kind == "water" and st.mn[-1] in "13579" else 5
        # QN: the send time in ms, kept unique per station (two packets may leave in one ms).
        drift = sim.logger.clock_offset.total_seconds() if sim.logger is not None else 0.0
        ms = max(int((time.time() + drift) * 1000), sim.last_qn_ms + 1)
        sim.last_qn_ms = ms
        sent = datetime.fromtimestamp(ms / 1000, tz=st.tz)
        qn = sent.strftime("%Y%m%d%H%M%S") + f"{ms % 1000:03d}"
        packet = Packet(
            qn=qn, st=_ST[st.kind], cn=cn, pw=st.pw, mn=st.mn, flag=flag, data_time=t,
            factors=factors,
        )  # fmt: skip
        frame = build(packet, st.leniency.crc)
        if self.bad_fraction and sim.rnd.random() < self.bad_fraction:
            self.report.bad += 1
            crc = frame[-6:-2]
            flipped = b"0" if crc[-1:] != b"0" else b"1"
            return frame[:-3] + flipped + b"\r\n"
        self.report.sent_qns.setdefault(st.mn, []).append(qn)
        return frame

    def _rtd(self, sim: _Sim, t: datetime) -> bytes:
        st = sim.station
        values = KINDS[st.kind].sample(st.device, t, sim.rnd, sim.state)
        if sim.maintenance == 0 and sim.rnd.random() < self.maintenance:
            # Maintenance lasts a few real-time packets and covers one or a few analysers.
            sim.maintenance = sim.rnd.randint(2, 8)
            sim.maintenance_flag = "C" if st.kind == "water" and sim.rnd.random() < 0.3 else "M"
            codes = sorted(sim.codes[f] for f in values if f in sim.codes)
            sim.maintenance_codes = tuple(sim.rnd.sample(codes, k=sim.rnd.randint(1, 3)))
        factors: dict[str, FactorValue] = {}
        for name, value in values.items():
            code = sim.codes.get(name)
            if code is None:
                continue
            wire = round(value / st.scale[code], 4)
            flag = "N"
            if sim.maintenance and code in sim.maintenance_codes:
                flag = sim.maintenance_flag
                self.report.flagged_values += 1
                sim.invalid.setdefault(code, []).append(wire)
            else:
                sim.samples.setdefault(code, []).append(wire)
            factors[code] = FactorValue(sim.names[code], rtd=wire, flag=flag)
        if sim.maintenance:
            sim.maintenance -= 1
        self.report.rtd += 1
        return self._packet(sim, "2011", t, _by_name(factors.values()))

    def _hourly(self, sim: _Sim, hour: datetime, now: datetime) -> bytes | None:
        factors: dict[str, FactorValue] = {}
        for code in sorted(set(sim.samples) | set(sim.invalid)):
            valid = sim.samples.get(code, [])
            # HJ 212: an hour without enough valid samples is itself flagged.
            values, flag = (valid, "N") if valid else (sim.invalid[code], "M")
            if flag != "N":
                self.report.flagged_values += 1
            factors[code] = FactorValue(
                sim.names[code],
                avg=round(sum(values) / len(values), 4),
                min=min(values),
                max=max(values),
                flag=flag,
            )
        factors = _by_name(factors.values())
        if sim.logger is not None:
            sim.logger.keep("2061", hour, factors)
        if self.drop_hourly and sim.rnd.random() < self.drop_hourly:
            self.report.dropped_hours += 1
            return None
        self.report.hourly += 1
        return self._packet(sim, "2061", hour, factors)


def _by_name(values: Iterable[FactorValue]) -> dict[str, FactorValue]:
    return {fv.code: fv for fv in values}


def gateway_address(settings: GatewayConfig) -> tuple[str, int]:
    """Where the simulator connects: the [hj212] host (loopback for a wildcard) and port."""
    port = settings.hj212.port
    if not port:
        raise ValueError(
            "no HJ 212 gateway port: set ENVGRID_HJ212__PORT (or [hj212] port) to the port "
            "`envgrid run` or `envgrid hj212-gateway` listens on"
        )
    host = settings.hj212.host
    return ("127.0.0.1" if host in ("", "0.0.0.0", "::") else host), port
