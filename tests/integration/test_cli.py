"""The command line as users meet it: one clear line on bad input, and a demo that stores data."""

from __future__ import annotations

from pathlib import Path

from devices.kinds import KINDS
from envgrid.localstack import LocalInfluxDB
from tests.service_proc import run_envgrid as run


def test_bad_config_is_one_line_without_traceback(tmp_path: Path) -> None:
    r = run("run", env={"ENVGRID_INFLUX__API": "v3", "ENVGRID_MQTT__URL": "http://x"}, cwd=tmp_path)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines == [
        "envgrid: config error: mqtt.url [ENVGRID_MQTT__URL]: expected mqtt://[user:pass@]host"
        "[:port] or mqtts://… for TLS",
        "config error: influx.api [ENVGRID_INFLUX__API]: Input should be 'v1' or 'v2' (got 'v3')",
    ]
    cfg = tmp_path / "envgrid.toml"
    cfg.write_text("[ingest]\nbatch_size = 0\n")
    r = run("run", "--config", str(cfg))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"ingest.batch_size [ENVGRID_INGEST__BATCH_SIZE or {cfg}:2]" in r.stderr


def test_bad_registry_names_file_and_line(tmp_path: Path) -> None:
    reg = tmp_path / "devices.yaml"
    reg.write_text(
        "devices:\n  - {id: WQ-1, kind: water, site: a, county: b}\n"
        "  - {id: WQ 2, kind: water, site: a, county: b}\n"
    )
    r = run("devices", "check", str(reg))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"{reg}:3: device 'WQ 2': id: must match" in r.stderr
    r = run(
        "run",
        env={
            "ENVGRID_DEVICES__REGISTRY": str(reg),
            "ENVGRID_MQTT__URL": "mqtt://127.0.0.1:1",
            "ENVGRID_HTTP__PORT": "0",
        },
        cwd=tmp_path,
    )
    assert r.returncode == 2 and f"{reg}:3:" in r.stderr and "Traceback" not in r.stderr
    assert run("devices", "check", "devices/fleet.yaml").returncode == 0


def test_demo_stores_all_five_kinds(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    r = run(
        "demo",
        "--duration",
        "6",
        "--rate",
        "150",
        "--no-history",
        "--workdir",
        str(work),
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Query what was stored" in r.stdout
    with LocalInfluxDB(work / "influxdb") as influx:  # the demo's own data, reopened
        for kind in KINDS.values():
            assert influx.count(kind.measurement, "envgrid") > 0, kind.measurement
        assert influx.count("envgrid_stats", "envgrid") >= 0
