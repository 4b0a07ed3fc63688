"""The v2 write dialect against a real server that speaks it (VictoriaMetrics), and the v1
dialect's auth headers; Debian's InfluxDB 1.6 answers 404 on /api/v2/write."""

from __future__ import annotations

from pathlib import Path

from devices.registry import load_registry
from envgrid.app import DEFAULT_REGISTRY
from envgrid.localstack import LocalInfluxDB, LocalMosquitto, LocalVictoriaMetrics
from envgrid.simulator import generate, publish_all
from ingest.writer import InfluxWriter, Outcome, classify
from tests.helpers import make_settings, mqtt_client, running_service, wait_for


async def test_service_writes_through_v2(
    mosquitto: LocalMosquitto,
    influxdb: LocalInfluxDB,
    victoria: LocalVictoriaMetrics,
    tmp_path: Path,
) -> None:
    devices = [d for d in load_registry(DEFAULT_REGISTRY) if d.kind == "pv"][:5]
    msgs = list(generate(devices, 50, seed=5))
    settings = make_settings(
        mosquitto,
        influxdb,
        "unused",
        tmp_path,
        influx={
            "url": victoria.url,
            "api": "v2",
            "token": "secret-token",
            "org": "city",
            "bucket": "envgrid",
        },
        mqtt={"client_id": "envgrid-v2-test"},
    )
    async with (
        running_service(settings) as service,
        mqtt_client(mosquitto, client_id="v2-pub") as pub,
    ):
        await publish_all(pub, iter(msgs))
        await wait_for(lambda: service.stats.points_written >= 50, 20, "50 points written")
    series = victoria.export('{__name__="pv_inverter_ac_power_w"}')
    stored = {(s["metric"]["device_id"], t) for s in series for t in s["timestamps"]}
    assert stored == {(m.device_id, m.ts_ms) for m in msgs}
    # tags made it as labels
    assert {s["metric"]["county"] for s in series} == {d.county for d in devices}


async def test_v2_against_influxdb_1_is_a_clear_retry(influxdb: LocalInfluxDB) -> None:
    from ingest.config import InfluxSettings

    w = InfluxWriter(InfluxSettings(url=influxdb.url, api="v2", token="t"))  # type: ignore[arg-type]
    res = await w.write(b"m v=1 1", 1)
    await w.close()
    assert res.status == 404 and res.outcome is Outcome.RETRY  # kept (spooled), not dropped


def test_classify_table() -> None:
    assert classify(204, "", 10) is Outcome.OK
    assert classify(None, "connection refused", 10) is Outcome.RETRY
    assert classify(500, "timeout", 10) is Outcome.RETRY
    assert classify(503, "", 10) is Outcome.THROTTLE
    assert classify(429, "", 10) is Outcome.THROTTLE
    assert classify(400, "partial write: field type conflict", 10) is Outcome.SPLIT
    assert classify(400, "partial write: field type conflict", 1) is Outcome.REJECT
    assert classify(413, "too large", 5000) is Outcome.SPLIT
    assert classify(401, "unauthorized", 10) is Outcome.RETRY
    assert classify(404, "database not found", 10) is Outcome.RETRY
