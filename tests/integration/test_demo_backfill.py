"""The demo's history back-fill through the real service (broker, pipeline, writer, rollups): a
few days of a small fleet, run twice, stored once, and rolled up into valid days."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

from devices.fleet import fleet
from devices.kinds import KINDS
from devices.registry import load_registry
from envgrid.app import started
from envgrid.backfill import Span, backfill, count, history
from envgrid.localstack import LocalInfluxDB, LocalMosquitto
from tests.helpers import make_settings

DAYS = 3


async def test_history_is_stored_once_and_rolled_up_on_a_second_run(
    mosquitto: LocalMosquitto, influxdb: LocalInfluxDB, influx_db: str, tmp_path: Path
) -> None:
    registry_file = tmp_path / "fleet.yaml"
    registry_file.write_text(yaml.safe_dump({"devices": fleet(per_kind=2)}, allow_unicode=True))
    settings = make_settings(
        mosquitto,
        influxdb,
        influx_db,
        tmp_path,
        devices={"registry": registry_file},
        ingest={"max_age": f"{DAYS + 2}d"},
        alerts={"store": tmp_path / "alerts.db"},
        rollup={"review_store": tmp_path / "review.db"},
    )
    tz = ZoneInfo(settings.standards.timezone)
    # The same span both times (a fixed "now"), so the second run sends the same readings.
    span = Span.of(DAYS, tz, datetime.now(UTC) - timedelta(minutes=1))
    registry = load_registry(registry_file)
    devices = list(registry)
    per_measurement: Counter[str] = Counter(
        KINDS[d.kind or ""].measurement
        for m in history(devices, span, prefix=settings.mqtt.topic_prefix)
        for d in [registry.resolve(m.device_id)]
        if d is not None
    )
    assert sum(per_measurement.values()) == count(devices, span)
    assert set(per_measurement) == {k.measurement for k in KINDS.values()}

    runs = []
    async with started(settings) as running:
        for _ in range(2):
            runs.append(await backfill(settings, running.service, running.registry, span))
            stored = {m: influxdb.count(m, influx_db) for m in per_measurement}
            assert stored == dict(per_measurement)  # every reading exactly once, after each run
    assert [r.published for r in runs] == [count(devices, span)] * 2
    assert [r.stored for r in runs] == [r.published for r in runs]  # taken again, each time
    assert runs[0].days == len(span.days()) == DAYS + 1  # today's closed hours roll up too
    assert running.service.stats.rejected.total() == 0

    daily = influxdb.points(
        'SELECT "valid", "aqi" FROM "air_quality_daily" GROUP BY "device_id"', influx_db
    )
    air_ids = {d.id for d in devices if d.kind == "air"}
    closed = span.days()[:-1]
    valid = [r for r in daily if r["valid"] is True]
    assert {r["device_id"] for r in valid} == air_ids
    assert len(valid) == len(air_ids) * len(closed)  # every closed day of every station
    assert len(daily) == len(valid)  # and no day twice
    water = influxdb.points('SELECT "water_class" FROM "water_quality_daily"', influx_db)
    assert len(water) == len({d.id for d in devices if d.kind == "water"}) * len(closed)
