"""Start-up output a user sees: no secret from a URL, one line for a bad port (issue 20)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from envgrid.localstack import free_port
from tests.service_proc import ENVGRID, clean_env, run_envgrid


@pytest.mark.parametrize(
    ("var", "url"),
    [
        ("ENVGRID_MQTT__URL", "mqtt://127.0.0.1:99999"),
        ("ENVGRID_MQTT__URL", "mqtt://envgrid:pw@127.0.0.1:18x3"),
        ("ENVGRID_INFLUX__URL", "http://127.0.0.1:8086x"),
    ],
)
def test_bad_port_is_one_line(tmp_path: Path, var: str, url: str) -> None:
    proc = run_envgrid("run", env={var: url}, cwd=tmp_path, timeout=30)
    assert proc.returncode != 0
    lines = [x for x in (proc.stdout + proc.stderr).splitlines() if x.strip()]
    assert len(lines) == 1, lines
    assert var in lines[0] and "port" in lines[0] and "Traceback" not in lines[0]
    assert ":pw@" not in lines[0]


def test_influx_url_password_not_printed(tmp_path: Path) -> None:
    # Nothing listens on these ports: the service starts, logs its settings and keeps retrying.
    env = clean_env(
        ENVGRID_INFLUX__URL=f"http://reader:SECRET-7781@127.0.0.1:{free_port()}",
        ENVGRID_MQTT__URL=f"mqtt://envgrid:MQSECRET-12@127.0.0.1:{free_port()}",
        ENVGRID_INGEST__SPOOL_DIR=str(tmp_path / "spool"),
    )
    proc = subprocess.Popen(
        [ENVGRID, "run"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        seen = ""
        assert proc.stdout is not None
        while "envgrid ingest:" not in seen and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen += line
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    text = seen + out
    assert "envgrid ingest:" in text, text
    assert "reader:***@127.0.0.1" in text
    assert "SECRET-7781" not in text and "MQSECRET-12" not in text


@pytest.mark.parametrize(
    ("entry", "said"),
    [
        ("    site: 'trail\\'\n", "site 'trail\\' ends in a backslash"),
        ('    site: ok\n    berth: "B1\\\\"\n', "berth 'B1\\' ends in a backslash"),
        ('    site: "two\\nlines"\n', "U+000A"),
    ],
)
def test_devices_check_reports_a_tag_influxdb_would_refuse(
    tmp_path: Path, entry: str, said: str
) -> None:
    """Before: `devices check` said OK and InfluxDB refused every reading of the device."""
    registry = tmp_path / "devices.yaml"
    registry.write_text(
        "devices:\n  - id: SP-9\n    kind: shore_power\n    county: Qingjiangpu\n" + entry
    )
    proc = run_envgrid("devices", "check", str(registry))
    assert proc.returncode != 0
    lines = [x for x in (proc.stdout + proc.stderr).splitlines() if x.strip()]
    assert len(lines) == 1 and "SP-9" in lines[0] and said in lines[0], lines
