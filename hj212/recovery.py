"""Automatic recovery (补传): find the hours of hourly data a connected station never delivered and
ask it for them with ``2061``.

For each connected station, every ``[hj212] backfill_interval`` and soon after it connects: the
hours of the last ``backfill_lookback`` with no ``data_kind=hourly`` point in InfluxDB are its gaps.
Hours the station answered "no data" (ExeRtn 100) or refused within ``backfill_backoff`` are left
out, so it is not asked for the same hour forever. The newest remaining run of hours (at most
``backfill_max_hours``) becomes one 2061 with the smallest covering BeginTime/EndTime, requested by
``auto``; a station with an open command is not asked for more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Final

from hj212.commands import Command, format_time, parse_time
from hj212.config import GatewayConfig
from hj212.dispatch import Dispatcher
from hj212.intake import Station
from ingest.influxql import InfluxQLClient, QueryError, quote_ident, quote_string, time_literal

__all__ = ["Backfill", "covering_ranges", "hour_floor"]

log = logging.getLogger("envgrid.hj212.backfill")

HOUR: Final = timedelta(hours=1)
# An hour's packet is sent just after the hour ends: give it this long before calling it missing.
_GRACE: Final = timedelta(minutes=15)
# A station that just connected first sends what it holds: look a little later.
_AFTER_CONNECT_S: Final = 2.0
# Scans run one at a time, at most this many a second: after a gateway restart hundreds of
# stations reconnect at once, and their gap queries must not crowd out their packets.
_SCANS_PER_S: Final = 5.0


def hour_floor(t: datetime) -> datetime:
    """The start of ``t``'s hour."""
    return t.replace(minute=0, second=0, microsecond=0)


def covering_ranges(hours: Iterable[datetime], max_hours: int) -> list[tuple[datetime, datetime]]:
    """Runs of consecutive hours as (first, last) pairs, newest run first, each ≤ max_hours."""
    out: list[tuple[datetime, datetime]] = []
    for h in sorted(set(hours)):
        if out and h - out[-1][1] == HOUR and (h - out[-1][0]) // HOUR < max_hours:
            out[-1] = (out[-1][0], h)
        else:
            out.append((h, h))
    return out[::-1]


class Backfill:
    """The recovery task of one gateway: scans its connected stations and queues 2061s."""

    def __init__(
        self,
        settings: GatewayConfig,
        dispatcher: Dispatcher,
        measurements: Mapping[str, str],  # station kind → measurement
    ) -> None:
        self.cfg = settings.hj212
        self.influx = settings.influx
        self.dispatcher = dispatcher
        self.measurements = measurements
        self._task: asyncio.Task[None] | None = None
        self._scanner: asyncio.Task[None] | None = None
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._client: InfluxQLClient | None = None
        dispatcher.on_connect.append(self.trigger)

    def start(self) -> None:
        """Scan every interval (if ``[hj212] backfill`` is on)."""
        if self.cfg.backfill:
            self._client = InfluxQLClient(self.influx)
            self._task = asyncio.create_task(self._loop())
            self._scanner = asyncio.create_task(self._scan_queue())

    async def stop(self) -> None:
        """Stop scanning (queued commands stay in the store)."""
        tasks = [t for t in (self._task, self._scanner) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.close()

    def trigger(self, mn: str) -> None:
        """A station connected: look at its gaps shortly."""
        if self._task is None or mn in self._queued:
            return
        self._queued.add(mn)
        asyncio.get_running_loop().call_later(_AFTER_CONNECT_S, self._queue.put_nowait, mn)

    async def _scan_queue(self) -> None:
        while True:
            mn = await self._queue.get()
            self._queued.discard(mn)
            try:
                await self.scan(mn)
            except Exception:  # one station's scan must not end the task
                log.exception("backfill scan of MN %s failed", mn)
            await asyncio.sleep(1 / _SCANS_PER_S)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.backfill_interval.total_seconds())
            for mn in list(self.dispatcher.states):
                if self.dispatcher.online(mn) and mn not in self._queued:
                    self._queued.add(mn)
                    self._queue.put_nowait(mn)

    async def scan(self, mn: str) -> Command | None:
        """Queue one 2061 for the station's newest gap run; the command, or None."""
        station = self.dispatcher.stations.get(mn)
        if station is None or not self.dispatcher.online(mn) or self.dispatcher.busy(mn):
            return None
        try:
            missing = await self.missing_hours(station)
        except QueryError as e:
            log.warning("backfill of %s: cannot read its hourly data: %s", station.device.id, e)
            return None
        self.dispatcher.states[mn].gaps = len(missing)
        wanted = set(missing) - self._backed_off(mn)
        ranges = covering_ranges(wanted, self.cfg.backfill_max_hours)
        if not ranges or self.dispatcher.busy(mn) or not self.dispatcher.online(mn):
            return None
        first, last = ranges[0]
        params = {"BeginTime": format_time(first), "EndTime": format_time(last)}
        log.info(
            "backfill: asking %s (MN %s) for hourly data %s to %s (%d gap hours)",
            station.device.id, mn, first, last, len(missing),
        )  # fmt: skip
        return self.dispatcher.command(mn, "2061", params, "auto")

    async def missing_hours(self, station: Station, now: datetime | None = None) -> list[datetime]:
        """Local hours of the lookback without an hourly point, oldest first."""
        tz = station.tz
        now_local = (now or datetime.now(UTC)).astimezone(tz)
        end = hour_floor(now_local - _GRACE)  # exclusive
        start = hour_floor(now_local - self.cfg.backfill_lookback)
        if self._client is None:
            self._client = InfluxQLClient(self.influx)
        measurement = self.measurements[station.kind]
        q = (
            f"SELECT * FROM {quote_ident(measurement)} WHERE "
            f'"device_id" = {quote_string(station.device.id)} AND "data_kind" = \'hourly\' '
            f"AND time >= {time_literal(start)} AND time < {time_literal(end)}"
        )
        rows = await self._client.query(q)
        present = {int(t) // 1000 for r in rows if isinstance(t := r.get("time"), int | float)}
        out = []
        h = start
        while h < end:
            if int(h.timestamp()) not in present:
                out.append(h.replace(tzinfo=None))
            h = (h + HOUR).astimezone(tz)
        return out

    def _backed_off(self, mn: str) -> set[datetime]:
        """Hours asked for recently and answered 'no data' or refused."""
        since = time.time() - self.cfg.backfill_backoff.total_seconds()
        out: set[datetime] = set()
        for status in ("no_data", "refused"):
            for cmd in self.dispatcher.store.find(mn=mn, status=status, cn="2061", since=since):
                with contextlib.suppress(KeyError, ValueError):
                    h = parse_time(cmd.params["BeginTime"])
                    last = parse_time(cmd.params["EndTime"])
                    while h <= last:
                        out.add(h)
                        h += HOUR
        return out
