"""HJ 212 as users run it: `envgrid run` with ENVGRID_HJ212__PORT, `envgrid hj212-gateway`
(alone, and --check), `envgrid simulate --protocol hj212`, and one-line errors."""

from __future__ import annotations

import asyncio
import re
import subprocess
from pathlib import Path

import httpx
import pytest

from devices.registry import load_registry
from envgrid.app import DEFAULT_REGISTRY
from envgrid.localstack import LocalInfluxDB, LocalMosquitto, free_port
from hj212.gateway import ServiceGateway
from tests.helpers import make_settings, running_service, wait_for
from tests.hj212_support import StationLink, local_now, packet
from tests.service_proc import ENVGRID, clean_env, service
from tests.service_proc import run_envgrid as envgrid

REG = load_registry(DEFAULT_REGISTRY)


def test_check_and_bad_station_settings(tmp_path: Path) -> None:
    r = envgrid(
        "hj212-gateway", "--check", env={"ENVGRID_DEVICES__REGISTRY": str(DEFAULT_REGISTRY)}
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "48 HJ 212 stations OK (air 24, water 24)"
    reg = tmp_path / "stations.yaml"
    reg.write_text(
        "devices:\n"
        "  - {id: AQ-1, kind: air, site: a, county: b, mn: '320800220000000000000001', pw: '1'}\n"
        "  - id: AQ-2\n    kind: air\n    site: a\n    county: b\n"
        "    mn: '320800220000000000000002'\n    pw: '222222'\n"
        "    hj212: {units: {a34004: ppb}}\n",
        encoding="utf-8",
    )
    env = {"ENVGRID_DEVICES__REGISTRY": str(reg), "ENVGRID_HJ212__PORT": "0"}
    for args in (("hj212-gateway", "--check"), ("run",)):
        r = envgrid(*args, env=env)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.strip().splitlines() == [
            f"envgrid: {reg}:2: device 'AQ-1': pw must be 6 printable ASCII characters "
            "without ; , = &"
        ], r.stderr
    r = envgrid("hj212-gateway", env={"ENVGRID_DEVICES__REGISTRY": str(DEFAULT_REGISTRY)})
    assert r.returncode == 2 and "no port: give --port or set ENVGRID_HJ212__PORT" in r.stderr
    r = envgrid("simulate", "--protocol", "modbus")
    assert r.returncode == 2 and "unknown protocol 'modbus': use json or hj212" in r.stderr
    r = envgrid("simulate", "--protocol", "hj212")
    assert r.returncode == 2 and "no HJ 212 gateway port: set ENVGRID_HJ212__PORT" in r.stderr


async def test_envgrid_run_with_the_gateway_port(
    mosquitto: LocalMosquitto, influxdb: LocalInfluxDB, influx_db: str, tmp_path: Path
) -> None:
    wq = REG.get("WQ-002")
    assert wq is not None
    port = free_port()
    t = local_now(minutes_ago=3)
    qn, frame = packet(wq, "2011", t, {"w01001": {"rtd": 7.6, "flag": "N"}})
    async with service(
        tmp_path, mosquitto, influxdb.url, influx_db, hj212__port=str(port), hj212__host="127.0.0.1"
    ) as svc:
        link = await StationLink.open(port)
        await link.send(frame)
        await wait_for(lambda: link.replies == [qn], 15, "the reply")
        await wait_for(lambda: influxdb.count("water_quality", influx_db) == 1, 15, "the reading")
        r = await svc.http.get("/metrics", timeout=5)
        assert f'envgrid_hj212_packets_total{{mn="{wq.facts["mn"]}",result="ok"}} 1.0' in r.text
        await link.close()
        code, _took = await svc.terminate()
        assert code == 0, svc.tail()
    row = influxdb.points("SELECT * FROM water_quality GROUP BY *", influx_db)[0]
    assert (row["device_id"], row["ph"], row["data_kind"]) == ("WQ-002", 7.6, "rtd")


async def test_standalone_gateway_and_the_simulator_command(
    mosquitto: LocalMosquitto, influxdb: LocalInfluxDB, influx_db: str, tmp_path: Path
) -> None:
    port, http_port = free_port(), free_port()
    env = {
        **clean_env(),
        "ENVGRID_MQTT__URL": mosquitto.url,
        "ENVGRID_MQTT__CLIENT_ID": f"gw-{tmp_path.name}",
        "ENVGRID_DEVICES__REGISTRY": str(DEFAULT_REGISTRY),
        "ENVGRID_HJ212__PORT": str(port),
        "ENVGRID_HJ212__HOST": "127.0.0.1",
        "ENVGRID_HTTP__PORT": str(http_port),
        "ENVGRID_HJ212__COMMAND_STORE": str(tmp_path / "commands.db"),
    }
    log = (tmp_path / "gateway.log").open("wb")
    gw = subprocess.Popen([ENVGRID, "hj212-gateway"], env=env, stdout=log, stderr=log)
    settings = make_settings(mosquitto, influxdb, influx_db, tmp_path)
    hj = ServiceGateway(settings, REG)
    try:
        async with (
            running_service(settings, protocols=hj.protocols),
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", trust_env=False) as http,
        ):

            async def ready() -> bool:
                try:
                    return (await http.get("/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            for _ in range(100):
                if await ready():
                    break
                await asyncio.sleep(0.2)
            else:
                raise AssertionError((tmp_path / "gateway.log").read_text())
            sim = await asyncio.to_thread(
                envgrid, "simulate", "--protocol", "hj212", "--count", "5", "--seed", "3", env=env
            )
            assert sim.returncode == 0, sim.stderr
            assert sim.stdout.startswith("sent 5 HJ 212 packets from 48 stations"), sim.stdout
            await wait_for(
                lambda: (
                    (
                        influxdb.count("water_quality", influx_db)
                        + influxdb.count("air_quality", influx_db)
                    )
                    == 5
                ),
                20,
                "the simulated packets stored",
            )
            metrics = (await http.get("/metrics")).text
            opened = re.search(r"^envgrid_hj212_connections_opened_total (\S+)$", metrics, re.M)
            assert opened is not None and float(opened.group(1)) >= 5  # one per station
    finally:
        gw.terminate()
        assert gw.wait(15) == 0, (tmp_path / "gateway.log").read_text()
        log.close()


@pytest.mark.slow  # a gateway process, three CLI runs and an 8 s simulation
async def test_commands_from_the_cli_and_the_api_reach_a_station_of_the_standalone_gateway(
    mosquitto: LocalMosquitto, tmp_path: Path
) -> None:
    from hj212.station import DataLogger
    from tests.hj212_support import rtd_factors
    from tests.integration.test_hj212_gateway import WATER

    port, http_port = free_port(), free_port()
    env = {
        **clean_env(),
        "ENVGRID_MQTT__URL": mosquitto.url,
        "ENVGRID_MQTT__CLIENT_ID": f"gw-{tmp_path.name}",
        "ENVGRID_DEVICES__REGISTRY": str(DEFAULT_REGISTRY),
        "ENVGRID_HJ212__PORT": str(port),
        "ENVGRID_HJ212__HOST": "127.0.0.1",
        "ENVGRID_HJ212__BACKFILL": "false",
        "ENVGRID_HJ212__COMMAND_STORE": str(tmp_path / "commands.db"),
        "ENVGRID_HTTP__PORT": str(http_port),
        "ENVGRID_HTTP__TOKEN": "s3cret-token",
    }
    from hj212.intake import load_stations
    from hj212.station import LoggerState

    wq = load_stations(REG, "Asia/Shanghai")["320800210000000000000003"]
    log = (tmp_path / "gateway.log").open("wb")
    gw = subprocess.Popen([ENVGRID, "hj212-gateway"], env=env, stdout=log, stderr=log)
    logger = DataLogger(LoggerState(wq))
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{http_port}", trust_env=False
        ) as http:
            for _ in range(100):
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.2)
            else:
                raise AssertionError((tmp_path / "gateway.log").read_text())
            # Queued while the station is offline, sent once it connects.
            r = await asyncio.to_thread(envgrid, "hj212", "command", wq.mn, "1063", env=env)
            assert r.returncode == 0, r.stderr
            assert re.fullmatch(r"\d{17} queued: CN 1063 for MN " + wq.mn, r.stdout.strip())
            await logger.connect("127.0.0.1", port)
            await logger.upload("2011", logger.state.now(), rtd_factors(WATER))
            r = await asyncio.to_thread(
                envgrid, "hj212", "command", wq.mn, "1062", "RtdInterval=60", "--wait", "15",
                env=env,
            )  # fmt: skip
            assert r.returncode == 0, r.stderr
            assert r.stdout.strip().endswith("succeeded (0 data packets)"), r.stdout
            assert logger.state.rtd_interval == 60
            # A typo is one line, no traceback.
            r = await asyncio.to_thread(
                envgrid, "hj212", "command", wq.mn, "1062", "RtdIntervl=60", env=env
            )
            assert r.returncode == 2 and "Traceback" not in r.stderr
            assert "takes no 'RtdIntervl'" in r.stderr, r.stderr
            # The HTTP API: writes need the bearer token.
            body = {"mn": wq.mn, "cn": "1011", "params": {}}
            assert (await http.post("/api/hj212/commands", json=body)).status_code == 401
            r2 = await http.post(
                "/api/hj212/commands",
                json=body,
                headers={"Authorization": "Bearer s3cret-token"},
            )
            assert r2.status_code == 201, r2.text
            qn = r2.json()["qn"]
            for _ in range(50):
                listed = (await http.get("/api/hj212/commands", params={"mn": wq.mn})).json()
                if listed[0]["status"] == "succeeded":
                    break
                await asyncio.sleep(0.2)
            assert [c["cn"] for c in listed] == ["1011", "1062", "1063"]  # newest first
            assert listed[0]["qn"] == qn and "SystemTime" in listed[0]["result"]
            assert [c["status"] for c in listed] == ["succeeded"] * 3
            stations = (await http.get("/api/hj212/stations")).json()
            mine = next(s for s in stations if s["mn"] == wq.mn)
            assert mine["online"] is True and mine["last_result"] == "succeeded"
            metrics = (await http.get("/metrics")).text
            assert (
                f'envgrid_hj212_station_online{{device_id="{wq.device.id}",mn="{wq.mn}"}} 1.0'
                in metrics
            )
            r = await asyncio.to_thread(envgrid, "hj212", "commands", "--mn", wq.mn, env=env)
            assert r.returncode == 0 and len(r.stdout.strip().splitlines()) == 3, r.stdout
            # The simulator's loggers, 10 minutes fast: the gateway sets their clocks.
            await logger.close()
            r = await asyncio.to_thread(
                envgrid, "simulate", "--protocol", "hj212", "--clock-drift", "600",
                "--duration", "8", "--seed", "4", env=env,
            )  # fmt: skip
            assert r.returncode == 0, r.stderr
            answered = re.search(r"(\d+) platform commands answered", r.stdout)
            assert answered is not None and int(answered.group(1)) >= 1, r.stdout
            listed = (await http.get("/api/hj212/commands", params={"status": "succeeded"})).json()
            assert any(c["cn"] == "1012" and c["requested_by"] == "auto" for c in listed)
    finally:
        await logger.close()
        gw.terminate()
        assert gw.wait(15) == 0, (tmp_path / "gateway.log").read_text()
        log.close()
