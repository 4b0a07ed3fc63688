"""The HJ 212 station simulator against the gateway: real-time and hourly data, maintenance
flags, and the fleet's quirky stations (MODBUS CRC, PM in ng/m³ under old names, short MN) all
arrive in InfluxDB in envgrid's units. Simulated time runs 60× faster so an hour boundary passes."""

from __future__ import annotations

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
