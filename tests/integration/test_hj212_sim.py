"""The HJ 212 station simulator against the gateway: real-time and hourly data, maintenance
flags, and the fleet's quirky stations (MODBUS CRC, PM in ng/m³ under old names, short MN) all
arrive in InfluxDB in envgrid's units. Simulated time runs 60× faster so an hour boundary passes."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

from devices.registry import load_registry
from envgrid.app import DEFAULT_REGISTRY
from envgrid.localstack import LocalInfluxDB, LocalMosquitto
from hj212.intake import load_stations
from hj212.simulator import Hj212Simulator
from tests.helpers import make_settings, wait_for
from tests.hj212_support import SHANGHAI, service_with_gateway

IDS = ("WQ-001", "WQ-004", "AQ-005", "AQ-010")


async def test_simulated_stations_real_time_hourly_and_maintenance(
    mosquitto: LocalMosquitto, influxdb: LocalInfluxDB, influx_db: str, tmp_path: Path
) -> None:
    stations = [
        s
        for s in load_stations(load_registry(DEFAULT_REGISTRY), "Asia/Shanghai").values()
        if s.device.id in IDS
    ]
    assert len(stations) == len(IDS)
    # Start at hh:55 at least an hour ago: 6 real seconds are 6 simulated minutes at 60×, so the
    # next hour begins during the run and every packet's DataTime stays in the past.
    now = datetime.now(SHANGHAI)
    start = (now - timedelta(hours=2)).replace(minute=55, second=0, microsecond=0)
    settings = make_settings(
        mosquitto, influxdb, influx_db, tmp_path, hj212={"port": 0, "host": "127.0.0.1"}
    )

    def stored() -> list[dict]:
        return [
            *influxdb.points("SELECT * FROM water_quality GROUP BY *", influx_db),
            *influxdb.points("SELECT * FROM air_quality GROUP BY *", influx_db),
        ]

    async with service_with_gateway(settings) as (service, gateway):
        sim = Hj212Simulator(
            stations, "127.0.0.1", gateway.port, interval=30, maintenance=0.3, seed=5,
            speed=60, start=start,
        )  # fmt: skip
        report = await sim.run(duration=6.5)
        await wait_for(
            lambda: gateway.stats.total("ok") >= report.sent, 10, "every packet published"
        )
        await wait_for(lambda: len(stored()) >= report.sent, 20, "every simulated packet stored")
    assert report.stations == 4 and report.connects == 4 and report.bad == 0
    assert report.hourly == 4 and report.rtd >= 4 * 10
    assert report.flagged_values > 0
    assert report.replies >= report.sent - 4  # only a packet in flight at the end may miss it
    assert gateway.stats.total("ok") == report.sent and service.stats.rejected.total() == 0

    rows = stored()
    assert len(rows) == report.sent
    hourly = [r for r in rows if r["data_kind"] == "hourly"]
    assert sorted(r["device_id"] for r in hourly) == sorted(IDS)
    hour_ms = int((start + timedelta(minutes=5)).timestamp() * 1000) - 3_600_000
    assert {int(r["time"]) for r in hourly} == {hour_ms}  # the hour that just ended
    flagged = [
        (r["device_id"], k, v)
        for r in rows
        for k, v in r.items()
        if k.endswith("_flag") and v is not None
    ]
    assert flagged and {v for _d, _k, v in flagged} <= {"M", "C"}
    for r in rows:
        if r["device_id"] == "AQ-005" and r.get("pm25_ug_m3") is not None:
            assert 5 < r["pm25_ug_m3"] < 300  # sent in ng/m³, stored in µg/m³
        if r["device_id"] in ("AQ-005", "AQ-010") and r.get("pressure_hpa") is not None:
            assert 990 < r["pressure_hpa"] < 1040  # sent in kPa


async def test_simulated_loggers_recover_a_dropped_hour_and_take_the_clock(
    mosquitto: LocalMosquitto, influxdb: LocalInfluxDB, influx_db: str, tmp_path: Path
) -> None:
    """Issue 15's demo: a logger that skips its hourly upload is asked for it (2061) and sends
    it; a logger whose clock is 10 minutes fast gets one 1012 and follows it."""
    from tests.hj212_support import service_with_commands

    loaded = load_stations(load_registry(DEFAULT_REGISTRY), "Asia/Shanghai")
    by_id = {s.device.id: s for s in loaded.values()}
    now = datetime.now(SHANGHAI)
    # 30 simulated seconds before an hour two hours ago: at 60× that hour ends after 0.5 s.
    start = (now - timedelta(hours=2)).replace(minute=59, second=30, microsecond=0)
    hour = start.replace(minute=0, second=0, tzinfo=None)
    settings = make_settings(
        mosquitto, influxdb, influx_db, tmp_path,
        hj212={"port": 0, "host": "127.0.0.1", "command_store": tmp_path / "commands.db",
               "backfill_lookback": "3h"},
    )  # fmt: skip
    async with service_with_commands(settings) as hj:
        assert hj.gateway is not None and hj.commands is not None
        port = hj.gateway.port
        dropping = Hj212Simulator(
            [by_id["WQ-002"]], "127.0.0.1", port, interval=30, maintenance=0, seed=1, speed=60,
            start=start, drop_hourly=1.0,
        )  # fmt: skip
        drifting = Hj212Simulator(
            [by_id["AQ-002"]], "127.0.0.1", port, interval=1, maintenance=0, seed=2,
            clock_drift=600,
        )  # fmt: skip
        store = hj.commands.store
        mn_w, mn_a = by_id["WQ-002"].mn, by_id["AQ-002"].mn

        def done() -> bool:
            got = [c.status for c in store.find(mn=mn_w, cn="2061")]
            return "succeeded" in got and [c.status for c in store.find(mn=mn_a)] == ["succeeded"]

        stop = asyncio.Event()
        runs = asyncio.gather(dropping.run(30, stop), drifting.run(30, stop))
        try:
            await wait_for(done, 25, "the hour recovered and the clock set")
        finally:
            stop.set()
            report_w, report_a = await runs

        def hourly() -> list[dict]:
            return influxdb.points(
                "SELECT * FROM water_quality WHERE device_id = 'WQ-002' AND data_kind = 'hourly'",
                influx_db,
            )

        await wait_for(lambda: len(hourly()) == 1, 10, "the recovered hour stored")
        assert report_w.dropped_hours == 1 and report_w.hourly == 0
        ok = [c for c in store.find(mn=mn_w, cn="2061") if c.status == "succeeded"]
        assert [c.packets for c in ok] == [1]
        assert [int(p["time"]) for p in hourly()] == [
            int(hour.replace(tzinfo=SHANGHAI).timestamp() * 1000)
        ]
        (sync,) = store.find(mn=mn_a)
        assert sync.cn == "1012" and sync.requested_by == "auto"
        assert report_a.commands == 1
