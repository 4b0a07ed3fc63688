"""Rollups on a cluster: every host runs the task, the holder of the ``rollups`` lease computes.

Two rollup runners in this process share one lease in a real PostgreSQL and one real InfluxDB,
as two hosts' first workers would. Only the leader runs passes; killing it (its task cancelled,
the lease not released) lets the other take over once the lease runs out, and the new leader's
first pass covers the start-up lookback, so windows the dead leader never computed are.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from devices.registry import Device, Registry
from envgrid.app import rollup_leader
from envgrid.cluster.leader import Elected, Lease
from envgrid.localstack import LocalInfluxDB
from envgrid.settings import Settings, load_settings
from rollups.runner import Background, start_background
from tests.cluster_support import pg_url, postgres

__all__ = ["pg_url", "postgres"]  # fixtures

FAILOVER_S, RENEW_S = 3.0, 1.0


def _settings(influxdb: LocalInfluxDB, db: str, pg: str, member: str) -> Settings:
    return load_settings(
        None,
        influx={"url": influxdb.url, "database": db},
        # Lateness 2 h: a pass of a running leader reaches back 2 h; a new leader's first pass
        # the start-up lookback (12 h).
        rollup={"enabled": True, "interval": 0.3, "lateness": "2h", "startup_lookback": "12h"},
        cluster={
            "database": pg,
            "member_id": member,
            "failover": f"{FAILOVER_S}s",
            "renew": f"{RENEW_S}s",
        },
    )


def _hourly_n(influxdb: LocalInfluxDB, db: str, at_ms: int) -> object:
    rows = influxdb.points(
        f'SELECT "pm25_ug_m3_n" FROM "air_quality_hourly" WHERE time = {at_ms}ms', db
    )
    return rows[0]["pm25_ug_m3_n"] if rows else None


async def _until(what: str, check: object, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


def _hour(hours_ago: int) -> int:
    """The start (ms) of the hour that began ``hours_ago`` hours ago (Shanghai hours fall on
    UTC hours)."""
    top = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return int((top - timedelta(hours=hours_ago)).timestamp() * 1000)


def _hour_of_readings(start_ms: int, value: float, n: int = 60) -> str:
    return "\n".join(
        f"air_quality,device_id=AQ-R,site=s,county=c pm25_ug_m3={value} {start_ms + i * 60_000}"
        for i in range(n)
    )


def _runner(settings: Settings, registry: Registry) -> tuple[Background, Elected]:
    leader = rollup_leader(settings)
    assert leader is not None
    bg = start_background(settings, registry, None, leader.run)
    assert bg is not None
    return bg, leader


async def test_one_host_rolls_up_and_another_takes_over_when_it_dies(
    influxdb: LocalInfluxDB, influx_db: str, pg_url: str
) -> None:
    registry = Registry([Device(id="AQ-R", kind="air", site="s", county="c", known=True)])
    last, older = _hour(1), _hour(5)  # within the lateness; beyond it, within the lookback
    influxdb.write(_hour_of_readings(last, 30.0), influx_db)
    lease = await Lease.connect(pg_url, "rollups", "test", timedelta(seconds=FAILOVER_S))
    a, lead_a = _runner(_settings(influxdb, influx_db, pg_url, "a"), registry)
    b: Background | None = None
    try:
        await _until("a leads", lambda: lead_a.leading)
        b, lead_b = _runner(_settings(influxdb, influx_db, pg_url, "b"), registry)
        await _until("a's passes", lambda: a.rollup.passes >= 3)
        await _until("b tried the lease", lambda: lead_b._valid_until == 0.0)
        await asyncio.sleep(2 * RENEW_S)  # b keeps trying meanwhile
        assert _hourly_n(influxdb, influx_db, last) == 60
        assert await lease.current() == "a"
        assert b.rollup.passes == 0, "the standby ran a pass"
        assert not lead_b.leading

        # a's host dies: its task ends without releasing the lease. Meanwhile a late hour
        # arrives that no pass of a running leader would reach (beyond the lateness).
        a._task.cancel()
        killed = time.monotonic()
        await asyncio.gather(a._task, return_exceptions=True)
        await a.rollup.close()
        passes_a = a.rollup.passes
        influxdb.write(_hour_of_readings(older, 40.0, 50), influx_db)
        influxdb.write(
            f"air_quality,device_id=AQ-R,site=s,county=c pm25_ug_m3=90.0 {last + 1}", influx_db
        )
        assert await lease.current() == "a"  # the dead leader's lease still runs

        await _until("b leads", lambda: lead_b.leading, FAILOVER_S + 5)
        took = time.monotonic() - killed
        print(f"b took the rollups over {took:.1f} s after a died (failover {FAILOVER_S} s)")
        # Not before the lease ran out (a renewed it at most a renew before dying), and at the
        # standby's next try after that.
        assert FAILOVER_S - RENEW_S - 0.5 <= took <= FAILOVER_S + 2 * RENEW_S, took
        assert await lease.current() == "b"
        await _until("the late hour rolled up", lambda: _hourly_n(influxdb, influx_db, older) == 50)
        await _until("the last hour again", lambda: _hourly_n(influxdb, influx_db, last) == 61)
        await _until("b's first pass done", lambda: b is not None and b.rollup.passes >= 1)
        assert a.rollup.passes == passes_a

        # A clean stop gives the lease up at once.
        await b.stop()
        b = None
        assert await lease.current() is None
    finally:
        if not a._task.done():
            await a.stop()
        if b is not None:
            await b.stop()
        await lease.close()


async def _valve(target: int, flowing: asyncio.Event) -> asyncio.Server:
    """A relay of 127.0.0.1:<port> to ``target`` that holds every byte while ``flowing`` is
    clear, connections kept open: what a cut cable looks like to both ends."""

    async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while data := await r.read(65536):
                await flowing.wait()
                w.write(data)
                await w.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            w.close()

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        ur, uw = await asyncio.open_connection("127.0.0.1", target)
        await asyncio.gather(pipe(r, uw), pipe(ur, w), return_exceptions=True)

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def test_a_leader_whose_database_calls_hang_stops_before_another_leads(
    influxdb: LocalInfluxDB, influx_db: str, pg_url: str
) -> None:
    registry = Registry([Device(id="AQ-R", kind="air", site="s", county="c", known=True)])
    flowing = asyncio.Event()
    flowing.set()
    port = int(pg_url.rsplit(":", 1)[1].split("/", 1)[0])
    relay = await _valve(port, flowing)
    via = pg_url.replace(f":{port}/", f":{relay.sockets[0].getsockname()[1]}/")
    a, lead_a = _runner(_settings(influxdb, influx_db, via, "a"), registry)
    b: Background | None = None
    try:
        await _until("a leads", lambda: lead_a.leading)
        b, lead_b = _runner(_settings(influxdb, influx_db, pg_url, "b"), registry)
        await _until("a's passes", lambda: a.rollup.passes >= 2)
        flowing.clear()  # a's renewals now hang: no error, no answer
        cut = time.monotonic()
        stepped_down: float | None = None
        while not lead_b.leading:
            assert not (lead_a.leading and lead_b.leading)
            if stepped_down is None and not lead_a.leading:
                stepped_down, passes_a = time.monotonic() - cut, a.rollup.passes
            assert time.monotonic() - cut < FAILOVER_S + 5, "b never led"
            await asyncio.sleep(0.02)
        took = time.monotonic() - cut
        print(f"a stood down {stepped_down:.1f} s after its calls hung; b led at {took:.1f} s")
        assert stepped_down is not None and stepped_down <= FAILOVER_S - RENEW_S
        await _until("b's first pass", lambda: b is not None and b.rollup.passes >= 1)
        assert a.rollup.passes == passes_a  # a computed nothing after standing down
        flowing.set()  # the cable is back: a's late call finds b leading and a stands by
        await asyncio.sleep(2 * RENEW_S)
        assert lead_b.leading and not lead_a.leading and a.rollup.passes == passes_a
    finally:
        flowing.set()
        await a.stop()
        if b is not None:
            await b.stop()
        relay.close()


async def test_without_a_cluster_database_the_rollups_run_unelected(
    influxdb: LocalInfluxDB,
) -> None:
    settings = load_settings(None, influx={"url": influxdb.url}, rollup={"enabled": True})
    assert rollup_leader(settings) is None
