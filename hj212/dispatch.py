"""Sends tracked commands to stations over their live gateway connections, one at a time each.

A station's commands wait in the store (``queued``) until it is connected; then they go out
oldest first. Each is sent and sent again (the station's ``1000`` OverTime/ReCount, defaulting to
``[hj212] command_timeout``/``command_retries``) until a ``9011`` answers it, then waits for
``9012`` (every data packet in answer restarts that wait). Every step is committed to the store
before the next, so after a gateway restart the open commands are sent again with the same QN.
Data packets sent in answer are not handled here: the gateway publishes them like any upload,
so they take the normal intake path; here they are only counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final, TypeVar
from zoneinfo import ZoneInfo

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from hj212.codec import CN_DATA_KIND, Packet, build
from hj212.commands import (
    ANSWERS,
    QN_RTN,
    Command,
    CommandError,
    edition_of,
    format_time,
    new_command,
    request_packet,
)
from hj212.config import Hj212Settings
from hj212.intake import Station
from hj212.store import Store

__all__ = ["Dispatcher", "StationLink", "StationState"]

log = logging.getLogger("envgrid.hj212.commands")

_T = TypeVar("_T")

_ST: Final = {"water": "21", "air": "22"}
# How often queued commands are checked for expiry.
_SWEEP_S: Final = 5.0


@dataclass(slots=True)
class StationState:
    """What the platform knows of one station (``/metrics``, the API, the console)."""

    mn: str
    device_id: str
    online: bool = False
    edition: str = ""
    last_packet: float = 0.0  # epoch seconds
    packets: int = 0
    last_command: str = ""  # "CN QN"
    last_result: str = ""  # status of the last finished command
    clock_offset_s: float | None = None  # station DataTime - platform clock (real-time data)
    clock_syncs: int = 0
    gaps: int = 0  # missing hours found by the last backfill scan
    last_clock_sync: float = 0.0  # monotonic
    connected_at: float = 0.0  # epoch seconds of the current connection
    peer: str = ""  # its source address


class StationLink:
    """The live connection of one station, as the dispatcher writes to it."""

    def __init__(
        self, send: Callable[[bytes], Awaitable[None]], edition: str, crc: str, peer: str = ""
    ) -> None:
        self.send = send
        self.edition = edition
        self.crc = crc
        self.peer = peer


@dataclass(slots=True)
class _InFlight:
    cmd: Command
    answered: asyncio.Event
    progress: asyncio.Event


class Dispatcher:
    """Command queues per station, their tracking, the station state and the clock watch."""

    def __init__(
        self,
        cfg: Hj212Settings,
        stations: MutableMapping[str, Station],
        store: Store,
        tz: ZoneInfo,
        share_every_s: float = 5.0,
    ) -> None:
        self.cfg = cfg
        self.stations = stations
        self.store = store
        self.tz = tz
        self.states = {mn: StationState(mn, s.device.id) for mn, s in stations.items()}
        self.finished: Counter[tuple[str, str]] = Counter()  # (CN, status) → commands
        self._links: dict[str, StationLink] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._inflight: dict[str, _InFlight] = {}  # MN → the command sent and not finished
        self._sweeper: asyncio.Task[None] | None = None
        self._sharer: asyncio.Task[None] | None = None
        self.share_every_s = share_every_s
        # One thread for the store: its calls run in the order made (a station's hold before
        # the claim of its commands, a let-go before the next hold), off the event loop.
        self._db = ThreadPoolExecutor(1, thread_name_prefix="hj212-store")
        self._unheld: set[str] = set()  # connected here, but the store did not take the hold
        self.on_connect: list[Callable[[str], None]] = []  # e.g. the backfill's trigger
        self.on_finished: list[Callable[[Command], None]] = []

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Start expiring commands for stations that never connect (and, with a shared store,
        renewing this gateway's lease, sharing station state and picking up routed commands)."""
        self._sweeper = asyncio.create_task(self._sweep())
        if self.store.shared:
            self._sharer = asyncio.create_task(self._share())

    async def stop(self) -> None:
        """Stop sending; open commands stay in the store and go out after a restart."""
        tasks = [t for t in (self._sweeper, self._sharer, *self._workers.values()) if t]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._workers.clear()
        self._db.shutdown(wait=True)

    async def _call(self, fn: Callable[..., _T], *args: object) -> _T:
        """``fn(*args)`` on the store's thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._db, functools.partial(fn, *args))

    def _hold(self, mn: str, link: StationLink) -> None:
        """On the store's thread: record that the station is connected here. If the database
        does not take it, the share tick tries again (without it the station's commands cannot
        be claimed here)."""
        try:
            self.store.hold(mn, link.peer, link.edition)
            self._unheld.discard(mn)
        except Exception:
            self._unheld.add(mn)
            raise

    def _background(self, fn: Callable[..., object], *args: object) -> None:
        """``fn(*args)`` on the store's thread, in order, without waiting for it."""

        def run() -> None:
            try:
                fn(*args)
            except Exception as e:  # the next share tick writes the state again
                log.warning("HJ 212 shared station state: %s", str(e).strip()[:200])

        with contextlib.suppress(RuntimeError):  # stopped: the lease runs out instead
            self._db.submit(run)

    # ---------------------------------------------------------------- connections
    def attach(self, mn: str, link: StationLink) -> None:
        """The station's connection is authenticated: its queued commands can go out."""
        state = self.states.get(mn)
        if state is None:
            return
        fresh = self._links.get(mn) is not link
        self._links[mn] = link
        state.online = True
        state.edition = link.edition
        if fresh:
            state.connected_at, state.peer = time.time(), link.peer
            if self.store.shared:
                # Before the sender's first claim (same thread): the claim needs the hold.
                self._background(self._hold, mn, link)
            # Only a new connection can make waiting commands sendable; a command submitted
            # later kicks the sender itself, so packets on a known link cost no store query.
            for callback in self.on_connect:
                callback(mn)
            self.kick(mn)

    def detach(self, mn: str, link: StationLink) -> None:
        """The connection closed; a command in flight is sent again on the next one."""
        if self._links.get(mn) is link:
            del self._links[mn]
            self.states[mn].online = False
            worker = self._workers.pop(mn, None)
            if worker is not None:
                worker.cancel()
            if self.store.shared:
                self._background(self.store.let_go, mn)

    def online(self, mn: str) -> bool:
        """Whether the station has a connection to this gateway."""
        return mn in self._links

    # ---------------------------------------------------------------- commands
    def submit(self, cmd: Command) -> bool:
        """Store a command (idempotent by QN) and send it when its station is connected."""
        if cmd.mn not in self.stations:
            raise CommandError(f"unknown MN {cmd.mn[:30]!r}: no station in the registry has it")
        waiting = self.store.open_commands(cmd.mn)
        if len(waiting) >= self.cfg.max_queued_commands and cmd.qn not in {c.qn for c in waiting}:
            raise CommandError(
                f"MN {cmd.mn} already has {len(waiting)} open commands "
                "([hj212] max_queued_commands): wait for them to finish or expire"
            )
        added = self.store.add(cmd)
        self.kick(cmd.mn)
        return added

    def command(self, mn: str, cn: str, params: dict[str, str], requested_by: str) -> Command:
        """Create, store and queue a command for ``mn``."""
        cmd = new_command(
            mn, cn, params, requested_by, self.tz, self.cfg.command_expiry.total_seconds()
        )
        self.submit(cmd)
        return cmd

    def busy(self, mn: str) -> bool:
        """Whether the station has an open command (queued or in flight)."""
        return bool(self.store.open_commands(mn))

    def kick(self, mn: str) -> None:
        """Start the station's sender if it is connected and idle."""
        if mn not in self._links:
            return
        worker = self._workers.get(mn)
        if worker is None or worker.done():
            self._workers[mn] = asyncio.create_task(self._worker(mn))

    async def _worker(self, mn: str) -> None:
        try:
            while mn in self._links:
                cmd = await self._call(self.store.claim, mn)
                if cmd is None:
                    return  # none, or another gateway holds the station (shared store)
                if not await self._run(cmd, self._links[mn]):
                    return  # another gateway claimed it: the station moved there
        except asyncio.CancelledError:
            raise
        except ConnectionError:
            pass  # the connection went: the command is sent again on the next one
        except Exception:  # one station's trouble must not stop the others
            log.exception("HJ 212 command sender for MN %s failed", mn)
        finally:
            self._inflight.pop(mn, None)
            if self._workers.get(mn) is asyncio.current_task():
                del self._workers[mn]

    async def _run(self, cmd: Command, link: StationLink) -> bool:
        """Send one command and follow it to its end; False if another gateway took it."""
        station = self.stations[cmd.mn]
        state = self.states[cmd.mn]
        if cmd.expires <= time.time():
            return await self._finish(
                cmd, "expired", "the station did not take it before it expired"
            )
        flight = _InFlight(cmd, asyncio.Event(), asyncio.Event())
        self._inflight[cmd.mn] = flight
        state.last_command = f"{cmd.cn} {cmd.qn}"
        timeout = float(station.overtime or self.cfg.command_timeout.total_seconds())
        tries = 1 + (station.recount if station.recount is not None else self.cfg.command_retries)
        frame = build(request_packet(cmd, _ST[station.kind], station.pw, link.edition), link.crc)  # type: ignore[arg-type]
        for attempt in range(tries):
            cmd.status, cmd.attempts, cmd.updated = "sent", cmd.attempts + 1, time.time()
            if attempt == 0 and not await self._save(cmd):
                return False  # re-sends are counted in memory, saved with the outcome
            if attempt and self.store.shared and not await self._call(self.store.save, cmd):
                return False  # the station connected to another gateway meanwhile
            await link.send(frame)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await flight.answered.wait()
                break
        else:
            return await self._finish(
                cmd, "timed_out", f"no 9011 after {tries} sends, {timeout:g} s apart"
            )
        if cmd.qn_rtn != 1:
            why = QN_RTN.get(cmd.qn_rtn or 0, "unknown answer")
            return await self._finish(cmd, "refused", f"QnRtn {cmd.qn_rtn}: {why}")
        cmd.status, cmd.updated = "accepted", time.time()
        if not await self._save(cmd):
            return False
        wait = self.cfg.execute_timeout.total_seconds()
        while cmd.exe_rtn is None:
            flight.progress.clear()
            try:
                async with asyncio.timeout(wait):
                    await flight.progress.wait()
            except TimeoutError:
                return await self._finish(
                    cmd, "timed_out", f"no 9012 within {wait:g} s of the last answer"
                )
        if cmd.exe_rtn == 1:
            if cmd.cn == "1072":
                await self._new_pw(cmd)
            return await self._finish(cmd, "succeeded", "")
        if cmd.exe_rtn == 100:
            return await self._finish(cmd, "no_data", "ExeRtn 100: the station has no data for it")
        return await self._finish(cmd, "failed", f"ExeRtn {cmd.exe_rtn}")

    async def _save(self, cmd: Command) -> bool:
        # A commit waits for the disk (synchronous FULL) or the database: off the event loop,
        # so hundreds of stations' commands do not hold up the packets of every connection.
        return await self._call(self.store.save, cmd)

    async def _finish(self, cmd: Command, status: str, detail: str) -> bool:
        """Record the end of a command; False if it was not ours to end (shared store: another
        gateway claimed it, or ended it first)."""
        cmd.status, cmd.detail, cmd.updated = status, detail, time.time()
        if not await self._save(cmd):
            self._inflight.pop(cmd.mn, None)
            return False
        self._inflight.pop(cmd.mn, None)
        state = self.states.get(cmd.mn)
        if state is not None:
            state.last_result = status
        self.finished[(cmd.cn, status)] += 1
        log.info("HJ 212 command %s CN %s for MN %s: %s %s", cmd.qn, cmd.cn, cmd.mn, status, detail)
        for callback in self.on_finished:
            callback(cmd)
        return True

    async def _new_pw(self, cmd: Command) -> None:
        # Only now, with the station's confirmation, does the platform switch passwords.
        pw = cmd.params["NewPW"]
        self.stations[cmd.mn] = replace(self.stations[cmd.mn], pw=pw)
        await self._call(self.store.set_pw, cmd.mn, pw)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(_SWEEP_S)
            now = time.time()
            try:
                due = [c for c in await self._call(self.store.open_commands) if c.expires <= now]
            except Exception as e:  # e.g. the shared database unreachable: next sweep
                log.warning("HJ 212 command expiry: %s", str(e).strip()[:200])
                continue
            for cmd in due:
                if cmd.mn in self._inflight:
                    continue
                try:
                    await self._finish(
                        cmd, "expired", "the station did not connect before it expired"
                    )
                except Exception as e:  # the next sweep tries again
                    log.warning("HJ 212 command %s not expired: %s", cmd.qn, str(e)[:200])
                    break

    async def _share(self) -> None:
        """Every ``share_every_s``: renew this gateway's lease, write the state of the stations
        connected here (throttled: not per packet), take passwords other gateways confirmed,
        and start sending commands queued through another host for stations connected here
        (the MQTT nudge only makes that sooner)."""
        while True:
            try:
                await self._call(self.store.renew)
                for mn in list(self._unheld):
                    link = self._links.get(mn)
                    if link is None:
                        self._unheld.discard(mn)
                    else:
                        await self._call(self._hold, mn, link)
                held = [self.states[mn] for mn in list(self._links)]
                await self._call(self.store.publish, held)
                for mn, pw in (await self._call(self.store.passwords)).items():
                    if mn in self.stations and self.stations[mn].pw != pw:
                        self.stations[mn] = replace(self.stations[mn], pw=pw)
                for mn in await self._call(self.store.waiting, [s.mn for s in held]):
                    self.kick(mn)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the database may be back at the next tick
                log.warning("HJ 212 shared state: %s", str(e).strip()[:200])
            await asyncio.sleep(self.share_every_s)

    # ---------------------------------------------------------------- packets from stations
    def packet(self, mn: str, packet: Packet, link: StationLink) -> bool:
        """Note an authenticated packet; True when it is an answer consumed here (9011, 9012,
        a read's value, 1013, heartbeat), False when the gateway publishes it as data."""
        state = self.states.get(mn)
        if state is None:
            return False
        state.packets += 1
        state.last_packet = time.time()
        station = self.stations[mn]
        if station.edition != "auto":
            link.edition = station.edition
        else:
            link.edition = edition_of(packet.flag) if packet.flag >> 2 else "2017"
        self.attach(mn, link)
        cn = packet.cn
        flight = self._inflight.get(mn)
        mine = flight is not None and flight.cmd.qn == packet.qn
        if cn == "9011":
            if mine and flight is not None:
                flight.cmd.qn_rtn = _int(packet.cp_extra.get("QnRtn"))
                flight.answered.set()
            return True
        if cn == "9012":
            if mine and flight is not None:
                flight.cmd.exe_rtn = _int(packet.cp_extra.get("ExeRtn")) or 0
                flight.answered.set()  # some loggers skip 9011 for a command they execute
                if flight.cmd.qn_rtn is None:
                    flight.cmd.qn_rtn = 1
                flight.progress.set()
            return True
        if cn in ANSWERS and mine and flight is not None:
            flight.cmd.result.update(packet.cp_extra)
            flight.cmd.packets += 1
            flight.progress.set()
            return True
        if cn == "1013":
            # The station asks for the time: HJ 212-2017 answers a 1013 with a 1012.
            self._sync_quietly(mn, "station")
            return True
        if cn == "9015":
            return True  # HJ 212-2025 heartbeat: the connection is alive, nothing to store
        if cn in CN_DATA_KIND and mine and flight is not None:
            flight.cmd.packets += 1
            flight.progress.set()
        return False

    # ---------------------------------------------------------------- clock watch
    def clock_check(self, mn: str, packet: Packet) -> None:
        """Real-time DataTime against the platform clock; a 1012 when beyond the tolerance.

        A logger also sends real-time data it buffered during an outage, with old DataTimes
        but a QN (its send time, YYYYMMDDhhmmsszzz) from its clock now: a 1012 goes out only
        when the QN is off as well (or is no time at all)."""
        station = self.stations.get(mn)
        if station is None or packet.data_time is None:
            return
        now = time.time()
        offset = packet.data_time.replace(tzinfo=station.tz).timestamp() - now
        state = self.states[mn]
        state.clock_offset_s = offset
        tolerance = self.cfg.clock_tolerance.total_seconds()
        if abs(offset) <= tolerance:
            return
        sent = _qn_time(packet.qn, station.tz)
        if sent is None or abs(sent - now) <= tolerance:
            return
        if state.clock_syncs and (
            time.monotonic() - state.last_clock_sync < self.cfg.clock_sync_interval.total_seconds()
        ):
            return
        self._sync_quietly(mn, "auto")

    def _sync_quietly(self, mn: str, requested_by: str) -> None:
        # On the packet path: a store that cannot be reached (a shared database cut off) must
        # not cost the station its connection; the next packet tries again.
        try:
            self.sync_clock(mn, requested_by)
        except CommandError:
            raise
        except Exception as e:
            log.warning("HJ 212 clock sync for MN %s not queued: %s", mn, str(e).strip()[:200])

    def sync_clock(self, mn: str, requested_by: str) -> Command | None:
        """Queue a 1012 with the platform's time (unless one is already waiting)."""
        if any(c.cn == "1012" for c in self.store.open_commands(mn)):
            return None
        station = self.stations[mn]
        state = self.states[mn]
        state.last_clock_sync = time.monotonic()
        state.clock_syncs += 1
        # SystemTime is filled in when the command is built: the station's local time now.
        now = datetime.now(station.tz).replace(microsecond=0, tzinfo=None)
        return self.command(mn, "1012", {"SystemTime": format_time(now)}, requested_by)

    def collector(self) -> Collector:
        """Per-station state and command outcomes for /metrics (registered MNs only)."""
        return _Collector(self)


def _qn_time(qn: str, tz: ZoneInfo) -> float | None:
    """Epoch seconds of a QN that is a time stamp (YYYYMMDDhhmmsszzz), else None."""
    try:
        return datetime.strptime(qn[:14], "%Y%m%d%H%M%S").replace(tzinfo=tz).timestamp()
    except ValueError:
        return None


def _int(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() and len(text) < 6 else None


class _Collector(Collector):
    def __init__(self, d: Dispatcher) -> None:
        self.d = d

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        labels = ["mn", "device_id"]
        online = GaugeMetricFamily(
            "envgrid_hj212_station_online", "1 while the station is connected", labels=labels
        )
        last = GaugeMetricFamily(
            "envgrid_hj212_station_last_packet_timestamp_seconds",
            "When the station's last packet arrived",
            labels=labels,
        )
        offset = GaugeMetricFamily(
            "envgrid_hj212_station_clock_offset_seconds",
            "Station DataTime minus the platform clock (real-time data)",
            labels=labels,
        )
        gaps = GaugeMetricFamily(
            "envgrid_hj212_station_gaps",
            "Missing hours of hourly data found by the last backfill scan",
            labels=labels,
        )
        packets = CounterMetricFamily(
            "envgrid_hj212_station_packets", "Authenticated packets per station", labels=labels
        )
        for s in self.d.states.values():
            key = [s.mn, s.device_id]
            online.add_metric(key, 1.0 if s.online else 0.0)
            packets.add_metric(key, s.packets)
            if s.last_packet:
                last.add_metric(key, s.last_packet)
            if s.clock_offset_s is not None:
                offset.add_metric(key, s.clock_offset_s)
            gaps.add_metric(key, s.gaps)
        yield from (online, last, offset, gaps, packets)
        done = CounterMetricFamily(
            "envgrid_hj212_commands_finished",
            "Commands finished, by CN and status",
            labels=["cn", "status"],
        )
        for (cn, status), n in sorted(self.d.finished.items()):
            done.add_metric([cn, status], n)
        yield done
