"""A provisioned broker (issue 20): a device speaks only for itself.

Real mosquitto 2.0 runs the files `envgrid devices provision` writes; the real service consumes
through envgrid's own listener and writes to a real InfluxDB. Each forged publish must be
refused by the broker (PUBACK 0x87) and leave InfluxDB as it was.
"""

from __future__ import annotations

import asyncio
import csv
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from devices.kinds import KINDS
from devices.registry import Device, Registry
from envgrid.localstack import LocalInfluxDB
from envgrid.provision import FleetMosquitto, provision
from envgrid.settings import load_settings
from ingest.mqtt import ConnectError, MqttClient, MqttError, MqttOptions
from ingest.service import IngestService
from tests.service_proc import run_envgrid

NOT_AUTHORIZED = 0x87
FLEET = Path(__file__).resolve().parents[2] / "devices" / "fleet.yaml"


async def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.1)


def _devices() -> list[Device]:
    return list(Registry.parse(FLEET.read_text(encoding="utf-8"), "fleet", KINDS))


def _reading(ts_ms: int) -> bytes:
    return json.dumps({"ts": ts_ms, "ac_power_w": 1200.0, "status": "MPPT"}).encode()


def stored_total(influxdb: LocalInfluxDB, db: str) -> int:
    """Readings stored in any measurement (each test reading carries ac_power_w)."""
    rows = influxdb.points('SELECT COUNT("ac_power_w") FROM /.*/', db)
    return sum(int(r["count"]) for r in rows)


def _creds(out: Path) -> dict[str, dict[str, str]]:
    with (out / "credentials.csv").open(encoding="utf-8") as f:
        return {row["user"]: row for row in csv.DictReader(f)}


async def _device_client(
    port: int,
    user: str,
    password: str,
    client_id: str,
    subscriptions: list[str] | None = None,
    seen: list[str] | None = None,
) -> MqttClient:
    opts = MqttOptions(
        host="127.0.0.1",
        port=port,
        client_id=client_id,
        username=user,
        password=password,
        clean_start=True,
        session_expiry_s=0,
        subscriptions=subscriptions or [],
        connect_timeout_s=5.0,
    )
    client = MqttClient(opts, lambda m: seen.append(m.topic) if seen is not None else None)
    await client.start()
    await client.wait_connected(timeout=10)
    return client


@pytest.mark.slow
async def test_a_device_speaks_only_for_itself(
    tmp_path: Path, influxdb: LocalInfluxDB, influx_db: str
) -> None:
    devices = _devices()
    prov = tmp_path / "prov"
    provision(devices, prov, kinds=KINDS)
    creds = _creds(prov)
    pvs = [d for d in devices if d.kind == "pv"]
    me, other = pvs[0], pvs[1]
    station = next(d for d in devices if d.facts.get("mn"))
    assert creds[station.id]["topic"] == f"envgrid/hj212/{station.facts['mn']}"
    pw = creds[me.id]["password"]

    with FleetMosquitto(tmp_path / "mq", prov) as broker:
        envgrid_id = f"envgrid-test-{tmp_path.name}"
        settings = load_settings(
            None,
            mqtt={
                "url": broker.service_url,
                "password_file": broker.service_password_file,
                "client_id": envgrid_id,
            },
            influx={"url": influxdb.url, "database": influx_db},
            ingest={"spool_dir": tmp_path / "spool", "flush_interval": 0.2},
            http={"port": 0},
        )
        service = IngestService(settings, KINDS, Registry(devices))
        await service.start()
        try:
            dev = await _device_client(broker.port, me.id, pw, "anything")
            try:
                now = int(time.time() * 1000)
                await dev.publish(f"envgrid/pv/{me.id}", _reading(now))
                await wait_for(lambda: stored_total(influxdb, influx_db) == 1, 15, "own reading")

                forged = [
                    f"envgrid/pv/{other.id}",  # another device
                    f"envgrid/{station.kind}/{station.id}",  # a station's JSON topic (no PW)
                    "envgrid/alerts/critical/pv/" + me.id,
                    "envgrid/deadletter/envgrid/pv/" + me.id,
                    f"envgrid/hj212cmd/{station.facts['mn']}",
                ]
                for topic in forged:
                    with pytest.raises(MqttError) as refused:
                        await dev.publish(topic, _reading(now + 1))
                    assert refused.value.reason_code == NOT_AUTHORIZED, topic
            finally:
                await dev.close()

            # A device claiming envgrid's client id gets its own name instead: envgrid's
            # session is not taken over (it would have been discarded by clean start).
            thief = await _device_client(broker.port, me.id, pw, envgrid_id)
            await thief.close()
            log = broker.log_file.read_text(encoding="utf-8")
            assert log.count(f" as {envgrid_id} ") == 1, "envgrid's session was taken over"
            assert "already connected, closing old connection" not in log

            # Device credentials do not exist on envgrid's listener, whatever the client id.
            with pytest.raises(ConnectError):
                await _device_client(broker.service_port, me.id, pw, envgrid_id)

            # A device may read nothing: its subscription delivers no one's readings.
            seen: list[str] = []
            snoop_pw = creds[other.id]["password"]
            snoop = await _device_client(
                broker.port, other.id, snoop_pw, other.id, ["envgrid/#", "#"], seen
            )

            # Nothing the refused publishes carried was stored; envgrid still stores.
            later = await _device_client(broker.port, me.id, pw, me.id)
            try:
                await later.publish(f"envgrid/pv/{me.id}", _reading(int(time.time() * 1000) + 5))
            finally:
                await later.close()
            await wait_for(lambda: stored_total(influxdb, influx_db) == 2, 15, "second reading")
            await snoop.close()
            assert seen == [], seen
            rows = influxdb.points('SELECT * FROM /.*/ GROUP BY "device_id"', influx_db)
            assert {r["device_id"] for r in rows} == {me.id}
        finally:
            await service.stop()


def test_rerun_keeps_credentials_and_adds_devices(tmp_path: Path) -> None:
    devices = _devices()
    out = tmp_path / "prov"
    first = provision(devices[:3], out, kinds=KINDS)
    before = _creds(out)
    passwd_before = (out / "devices.passwd").read_text()
    second = provision(devices[:4], out, kinds=KINDS)
    after = _creds(out)
    assert first.added == tuple(sorted(d.id for d in devices[:3]))
    assert second.added == (devices[3].id,)
    for user, row in before.items():
        assert after[user]["password"] == row["password"]
    # Existing hashes are kept byte for byte: the password file only grows.
    assert set(passwd_before.splitlines()) < set((out / "devices.passwd").read_text().splitlines())
    assert (out / "credentials.csv").stat().st_mode & 0o777 == 0o600
    # A device that left the registry keeps its credential unless pruned.
    third = provision(devices[1:4], out, kinds=KINDS)
    assert third.stale == (devices[0].id,) and devices[0].id in _creds(out)
    pruned = provision(devices[1:4], out, kinds=KINDS, prune=True)
    assert pruned.removed == (devices[0].id,) and devices[0].id not in _creds(out)
    assert f"user {devices[0].id}\n" not in (out / "devices.acl").read_text()


def test_the_command_as_docs_security_shows_it(tmp_path: Path) -> None:
    """`envgrid devices provision devices/fleet.yaml --out DIR`, run twice, and a bad registry."""
    out = tmp_path / "envgrid-mqtt"
    r = run_envgrid("devices", "provision", str(FLEET), "--out", str(out))
    n = len(_devices())
    assert r.returncode == 0, r.stderr
    assert f"{n} credentials added, 0 kept" in r.stdout
    assert "ENVGRID_MQTT__PASSWORD_FILE=" in r.stdout
    assert (out / "envgrid.password").read_text().strip() not in r.stdout + r.stderr
    r = run_envgrid("devices", "provision", str(FLEET), "--out", str(out))
    assert r.returncode == 0 and f"0 credentials added, {n} kept" in r.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("devices:\n  - {id: envgrid-x, kind: pv, site: a, county: b}\n")
    r = run_envgrid("devices", "provision", str(bad), "--out", str(tmp_path / "bad"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "'envgrid-x' starts with 'envgrid'" in r.stderr and len(r.stderr.splitlines()) == 1
