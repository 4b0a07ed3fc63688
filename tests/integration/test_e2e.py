"""End to end through the real broker and InfluxDB: 10,000 mixed readings, 5 % bad."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from devices.kinds import KINDS
from devices.registry import load_registry
from envgrid.app import DEFAULT_REGISTRY
from envgrid.localstack import LocalInfluxDB, LocalMosquitto
from envgrid.simulator import generate, publish_all
from ingest.mqtt import Message
from tests.helpers import make_settings, mqtt_client, running_service, stored_count, wait_for

N = 10_000


async def test_ten_thousand_mixed_readings(
    mosquitto: LocalMosquitto, influxdb: LocalInfluxDB, influx_db: str, tmp_path: Path
) -> None:
    registry = load_registry(DEFAULT_REGISTRY)
    devices = list(registry)
    msgs = list(generate(devices, N, bad_fraction=0.05, seed=2026))
    bad = [m for m in msgs if m.expect]
    good = [m for m in msgs if not m.expect]
    assert 400 < len(bad) < 600 and len({m.expect for m in bad}) == 7  # every category

    letters: list[Message] = []
    settings = make_settings(mosquitto, influxdb, influx_db, tmp_path)
    async with (
        running_service(settings) as service,
        mqtt_client(mosquitto, ["envgrid/deadletter/#"], letters.append, "dl-collector"),
        mqtt_client(mosquitto, client_id="publisher") as pub,
    ):
        await publish_all(pub, iter(msgs), window=500)
        measurements = [k.measurement for k in KINDS.values()]
        await wait_for(
            lambda: (
                stored_count(influxdb, influx_db, measurements) >= len(good)
                and len(letters) >= len(bad)
            ),
            60,
            "all readings stored and dead-lettered",
        )
        await wait_for(lambda: service.stats.acked >= N, 10, "every message acknowledged")

    # Exactly the valid readings: per measurement, with their tags, fields and timestamps.
    by_kind = Counter(KINDS[m.topic.split("/")[1]].measurement for m in good)
    for measurement, n in by_kind.items():
        assert influxdb.count(measurement, influx_db) == n, measurement
    rows: dict[tuple[str, int], dict[str, object]] = {}
    for measurement in by_kind:
        for r in influxdb.points(f'SELECT * FROM "{measurement}" GROUP BY *', influx_db):
            rows[(str(r["device_id"]), int(r["time"]))] = r
    fleet = {d.id: d for d in devices}
    for m in good:
        row = rows[(m.device_id, m.ts_ms)]
        dev = fleet[m.device_id]
        assert (row["site"], row["county"]) == (dev.site, dev.county)
        for key, value in json.loads(m.payload).items():
            if key == "ts":
                continue
            got = row.get("connector" if key == "connector_id" and row.get(key) is None else key)
            if isinstance(value, (bool, str)):
                assert got == value, (m.device_id, key)
            else:
                assert abs(float(got) - value) < 1e-9, (m.device_id, key, got, value)  # type: ignore[arg-type]

    # Each bad message reached the dead-letter topic exactly once, with its reason.
    want = Counter((m.topic, m.payload[:4096]) for m in bad)
    got = Counter()
    for letter in letters:
        body = json.loads(letter.payload)
        assert letter.topic == f"envgrid/deadletter/{body['topic']}"
        assert body["reason"] and body["received_at"]
        payload = (
            body["payload"].encode()
            if body["payload_encoding"] == "text"
            else __import__("base64").b64decode(body["payload"])
        )
        got[(body["topic"], payload)] += 1
        if body.get("truncated"):
            assert body["size"] > 256 * 1024
    assert got == want
    assert sum(service.stats.rejected.values()) == len(bad)
    assert Counter(m.expect for m in bad) == +service.stats.rejected
