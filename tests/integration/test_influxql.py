"""The InfluxQL client (ingest.influxql) against the real InfluxDB."""

from __future__ import annotations

import pytest

from envgrid.localstack import LocalInfluxDB, free_port
from envgrid.settings import load_settings
from ingest.influxql import InfluxQLClient, QueryError, quote_ident

LINES = "\n".join(
    f'm,site=s{i % 2},device_id=d{i % 2} v={i}.5,n={i}i,ok=true,label="x{i}" {1_000 + i}'
    for i in range(5)
)


def client_for(influxdb: LocalInfluxDB, db: str) -> InfluxQLClient:
    return InfluxQLClient(load_settings(None, influx={"url": influxdb.url, "database": db}).influx)


async def test_rows_carry_their_series_tags_and_ms_times(
    influxdb: LocalInfluxDB, influx_db: str
) -> None:
    influxdb.write(LINES, influx_db)
    async with client_for(influxdb, influx_db) as c:
        rows = await c.query('SELECT "v", "n", "ok", "label" FROM "m" GROUP BY "site"')
        assert rows == [
            {"site": "s0", "time": 1000, "v": 0.5, "n": 0, "ok": True, "label": "x0"},
            {"site": "s0", "time": 1002, "v": 2.5, "n": 2, "ok": True, "label": "x2"},
            {"site": "s0", "time": 1004, "v": 4.5, "n": 4, "ok": True, "label": "x4"},
            {"site": "s1", "time": 1001, "v": 1.5, "n": 1, "ok": True, "label": "x1"},
            {"site": "s1", "time": 1003, "v": 3.5, "n": 3, "ok": True, "label": "x3"},
        ]
        series = await c.series('SELECT mean("v") FROM "m" GROUP BY *')
        assert [(s.name, s.tags, s.values) for s in series] == [
            ("m", {"device_id": "d0", "site": "s0"}, [[0, 2.5]]),
            ("m", {"device_id": "d1", "site": "s1"}, [[0, 2.5]]),
        ]
        # Several statements: one result each, in order.
        results = await c.results('SELECT count("v") FROM "m"; SELECT max("n") FROM "m"')
        assert [r.rows() for r in results] == [
            [{"time": 0, "count": 5}],
            [{"time": 1004, "max": 4}],
        ]
        assert await c.query('SELECT "v" FROM "m" WHERE "site" = $site', params={"site": "s1"}) == [
            {"time": 1001, "v": 1.5},
            {"time": 1003, "v": 3.5},
        ]


async def test_chunked_answers_are_stitched_back_into_series(
    influxdb: LocalInfluxDB, influx_db: str
) -> None:
    influxdb.write(LINES, influx_db)
    async with client_for(influxdb, influx_db) as c:
        series = await c.series('SELECT "v" FROM "m" GROUP BY "site"', chunk_size=1)
        assert [(s.tags["site"], [v[1] for v in s.values]) for s in series] == [
            ("s0", [0.5, 2.5, 4.5]),
            ("s1", [1.5, 3.5]),
        ]


async def test_errors_carry_influxdbs_message(influxdb: LocalInfluxDB, influx_db: str) -> None:
    async with client_for(influxdb, influx_db) as c:
        with pytest.raises(QueryError) as e:
            await c.query("SELEKT * FROM m")
        assert "error parsing query" in str(e.value) and "SELEKT" in str(e.value)
        assert e.value.status == 400 and not e.value.unreachable
        with pytest.raises(QueryError, match="database not found"):
            await c.query("SELECT * FROM m", database="no_such_db_here")
        # execute: statements without rows; redefining a policy differently is an error.
        await c.execute(
            f"CREATE RETENTION POLICY rp1 ON {quote_ident(influx_db)} DURATION 1d REPLICATION 1"
        )
        with pytest.raises(QueryError, match="retention policy already exists"):
            await c.execute(
                f"CREATE RETENTION POLICY rp1 ON {quote_ident(influx_db)} DURATION 2d REPLICATION 1"
            )


async def test_unreachable_server_is_a_query_error_without_secrets() -> None:
    port = free_port()  # nothing listens there
    settings = load_settings(
        None, influx={"url": f"http://127.0.0.1:{port}", "token": "tok-123", "timeout_s": 2}
    ).influx
    async with InfluxQLClient(settings) as c:
        with pytest.raises(QueryError) as e:
            await c.query("SELECT 1")
    assert e.value.unreachable and f"127.0.0.1:{port}" in str(e.value)
    assert "tok-123" not in str(e.value) and "\n" not in str(e.value)
