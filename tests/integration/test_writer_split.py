"""InfluxWriter.deliver on a real influxd: bisection finds the refused lines, keeps the rest."""

from __future__ import annotations

import time

from envgrid.localstack import LocalInfluxDB, free_port
from ingest.config import InfluxSettings
from ingest.writer import InfluxWriter, Outcome


def _lines(n: int, t0: int) -> list[str]:
    return [f"probe,device_id=D{i:03d} v={i}.5 {t0 + i}" for i in range(n)]


async def test_split_finds_the_refused_lines_and_stores_the_rest(
    influxdb: LocalInfluxDB, influx_db: str
) -> None:
    t0 = (int(time.time()) - 600) * 1000
    influxdb.write(f'probe,device_id=SEED x="text" {t0}', influx_db)  # x is a string field
    lines = _lines(400, t0 + 1)
    lines[137] = f"probe,device_id=D137 x=1.5 {t0 + 138}"  # field type conflict
    lines[301] = f"probe,device_id=D301 v= {t0 + 302}"  # does not parse
    async with InfluxWriter(InfluxSettings(url=influxdb.url, database=influx_db)) as w:
        d = await w.deliver(lines)
    assert d.outcome is Outcome.OK
    assert [i for i, _ in d.rejected] == [137, 301]
    conflict, parse = (reason for _, reason in d.rejected)
    assert conflict.startswith("InfluxDB 400: ") and "field type conflict" in conflict
    assert parse.startswith("InfluxDB 400: ") and "unable to parse" in parse
    # Bisection, not line by line: two bad lines in 400 cost about 2 × 2 × log2(400) writes.
    assert d.writes <= 40, d.writes
    stored = {
        str(r["device_id"])
        for r in influxdb.points('SELECT "v" FROM "probe" GROUP BY "device_id"', influx_db)
    }
    assert stored == {f"D{i:03d}" for i in range(400)} - {"D137", "D301"}


async def test_no_answer_and_missing_database_keep_the_batch(
    influxdb: LocalInfluxDB, influx_db: str
) -> None:
    lines = _lines(10, (int(time.time()) - 600) * 1000)
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    async with InfluxWriter(InfluxSettings(url=dead, database=influx_db, timeout_s=2)) as w:
        d = await w.deliver(lines)
        assert d.outcome is Outcome.RETRY and not d.rejected and d.writes == 1
        assert not await w.ping()
    async with InfluxWriter(InfluxSettings(url=influxdb.url, database="no_such_db")) as w:
        d = await w.deliver(lines)
    assert d.outcome is Outcome.RETRY and not d.rejected  # 404: configuration, not the data
    assert "database not found" in d.message
