"""The synthetic sixth kind of tests/unit/test_synthetic_kind.py on the console's devices page,
read back from a real InfluxDB: the line the pipeline made is stored, the console's latest-value
queries find it, and the page names the kind and shows its key value in both languages."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
from fastapi import FastAPI

from alerts.engine import AlertEngine
from alerts.rules import load_rules
from alerts.store import AlertStore
from console import build_console
from console.auth import Operator, hash_password, save_operators
from console.web import Console
from devices.kinds import KINDS, registered
from devices.registry import Registry
from envgrid.localstack import LocalInfluxDB
from envgrid.settings import load_settings
from ingest.pipeline import Accepted, Pipeline
from ingest.topics import TopicMap
from tests.unit.test_synthetic_kind import NOISE, REGISTRY_YAML


def _console(tmp_path: Path, influxdb: LocalInfluxDB, db: str, registry: Registry) -> Console:
    ops = tmp_path / "operators.yaml"
    save_operators(ops, {"duty": Operator("duty", "值班员", hash_password("pw-123456", rounds=4))})
    settings = load_settings(
        None,
        influx={"url": influxdb.url, "database": db},
        console={"operators": ops, "session_secret_file": tmp_path / "key"},
    )
    console = build_console(
        settings, AlertEngine(load_rules(None), AlertStore(":memory:")), registry
    )
    assert console is not None
    return console


async def test_devices_page_shows_the_registered_kind(
    influxdb: LocalInfluxDB, influx_db: str, tmp_path: Path
) -> None:
    with registered(NOISE):
        registry = Registry.parse(REGISTRY_YAML, "reg.yaml", KINDS)
        pipeline = Pipeline(KINDS, registry, TopicMap("envgrid", KINDS))
        now_ms = int(time.time() * 1000)
        res = pipeline.process(
            "envgrid/noise/NS-001", json.dumps({"ts": now_ms, "laeq_db": 55.5}).encode()
        )
        assert isinstance(res, Accepted), res
        influxdb.write(res.line, influx_db)

        console = _console(tmp_path, influxdb, influx_db, registry)
        try:
            ctx = await console.device_rows("en", {"kind": "noise"})
            rows = {r["id"]: r for r in ctx["rows"]}
            assert set(rows) == {"NS-001", "NS-002"}  # the kind filter knows the new kind
            assert rows["NS-001"]["status"] == "online"
            assert rows["NS-001"]["values"] == ["LAeq 55.5 dB(A)"]
            assert rows["NS-001"]["kind_label"] == "Noise station"
            assert rows["NS-002"]["status"] == "never"
            assert ("noise", "Noise station") in ctx["kinds"]

            app = FastAPI()
            app.include_router(console.router)
            operator = console.book.get("duty")
            assert operator is not None
            cookie, _ = console.sessions.issue(operator)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport,
                base_url="http://console",
                cookies={console.sessions.COOKIE: cookie},
            ) as http:
                page = await http.get("/devices", params={"kind": "noise"})
            assert page.status_code == 200, page.text[:300]
            assert "噪声自动站" in page.text and "LAeq 55.5 dB(A)" in page.text
            assert "NS-002" in page.text
        finally:
            await console.close()
