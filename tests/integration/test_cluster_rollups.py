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
        assert b.rollup.passes >= 1 and a.rollup.passes == passes_a

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


async def test_without_a_cluster_database_the_rollups_run_unelected(
    influxdb: LocalInfluxDB,
) -> None:
    settings = load_settings(None, influx={"url": influxdb.url}, rollup={"enabled": True})
    assert rollup_leader(settings) is None
