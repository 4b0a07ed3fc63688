"""100 station connections at one packet per second each, through the gateway and the service,
on the real broker and InfluxDB: every packet replied to and stored, none lost or doubled.
(bench/hj212_load.py runs 500 against `envgrid run` and reports the numbers.)"""

from __future__ import annotations

from pathlib import Path

from devices.kinds import KINDS
from envgrid.localstack import LocalInfluxDB, LocalMosquitto
from tests.helpers import make_settings, wait_for
from tests.hj212_support import service_with_gateway, station_load, station_registry

CONNECTIONS = 100
SECONDS = 5


async def test_hundred_stations_one_packet_per_second(
    mosquitto: LocalMosquitto, influxdb: LocalInfluxDB, influx_db: str, tmp_path: Path
) -> None:
    registry = station_registry(tmp_path / "stations.yaml", CONNECTIONS)
    devices = list(registry)
    assert len(devices) == CONNECTIONS
    settings = make_settings(
        mosquitto,
        influxdb,
        influx_db,
        tmp_path,
        devices={"registry": tmp_path / "stations.yaml"},
        # Every simulated station connects from 127.0.0.1.
        hj212={"port": 0, "host": "127.0.0.1", "max_connections_per_source": CONNECTIONS},
    )
    async with service_with_gateway(settings) as (service, gateway):
        result = await station_load(gateway.port, devices, SECONDS)
        total = CONNECTIONS * SECONDS
        await wait_for(
            lambda: (
                influxdb.count(KINDS["water"].measurement, influx_db, "ph")
                + influxdb.count(KINDS["air"].measurement, influx_db, "pm25_ug_m3")
                >= total
            ),
            30,
            f"{total} readings stored",
        )
    assert result.errors == []
    assert (result.sent, result.replied, result.unreplied) == (total, total, [])
    water = influxdb.count(KINDS["water"].measurement, influx_db, "ph")
    air = influxdb.count(KINDS["air"].measurement, influx_db, "pm25_ug_m3")
    assert water + air == total  # each packet stored once
    assert gateway.stats.total("ok") == total and gateway.stats.publish_failures == 0
    assert service.stats.rejected.total() == 0
