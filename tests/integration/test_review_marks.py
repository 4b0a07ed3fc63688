"""Review marks against the real InfluxDB (issue 16): an auditor's mark (here the machine token,
recorded as ``api``) invalidates 10:00-12:00 PM2.5; the rollups recompute the day without those
hours and name them with the reason; a restore brings every figure back exactly; the marks list
says who and why; an operator without the auditor role gets 403."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from fastapi import FastAPI, Request

from devices.registry import Device, Registry
from envgrid.localstack import LocalInfluxDB
from envgrid.review import build_review
from envgrid.settings import load_settings
from report.figures import Reporter, load_plan
from report.render import render
from rollups.review_api import router
from rollups.runner import Rollup

TZ = ZoneInfo("Asia/Shanghai")
DAY = datetime(2026, 3, 2, tzinfo=TZ)
TOKEN = "review-test-token"
OUT = ("air_quality_hourly", "air_quality_daily", "city_air_daily")


def ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def seed(influxdb: LocalInfluxDB, db: str) -> None:
    """A day of 1-minute readings; PM2.5 is 20 + the local hour, the rest constant."""
    lines = []
    for minute in range(1440):
        t = DAY + timedelta(minutes=minute)
        fields = (
            f"pm25_ug_m3={20 + t.hour},pm10_ug_m3=50,so2_ug_m3=8,no2_ug_m3=20,"
            "co_mg_m3=0.6,o3_ug_m3=60"
        )
        lines.append(f"air_quality,device_id=AQ-R1,site=S,county=C {fields} {ms(t)}")
    influxdb.write("\n".join(lines), db)


def snapshot(influxdb: LocalInfluxDB, db: str) -> dict[str, Any]:
    return {m: influxdb.points(f'SELECT * FROM "{m}" GROUP BY *', db) for m in OUT}


def hour(rows: list[dict[str, Any]], h: int) -> dict[str, Any]:
    (r,) = [r for r in rows if r["time"] == ms(DAY + timedelta(hours=h))]
    return r


async def test_invalidate_and_restore_through_the_api(
    influxdb: LocalInfluxDB, influx_db: str, tmp_path: Path
) -> None:
    seed(influxdb, influx_db)
    settings = load_settings(
        None,
        influx={"url": influxdb.url, "database": influx_db},
        rollup={"review_store": str(tmp_path / "review.db")},
        http={"token": TOKEN},
        qc={"enabled": False},  # constant synthetic values; QC has its own tests
    )
    registry = Registry(
        [Device(id="AQ-R1", kind="air", site="S", county="C", facts={"assessment": "national"})]
    )
    async with Rollup(settings, registry, kinds=["air"]) as rollup:
        await rollup.run_range(DAY, DAY + timedelta(days=1))
    before = snapshot(influxdb, influx_db)
    daily = before["air_quality_daily"][0]
    assert (daily["pm25_ug_m3"], daily["pm25_ug_m3_n"], daily["left_out"]) == (31.5, 24, "")

    review, store = build_review(settings, registry, None)
    app = FastAPI()
    app.include_router(review)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    mark = {
        "device_id": "AQ-R1",
        "fields": ["pm25_ug_m3"],
        "from": (DAY + timedelta(hours=10)).isoformat(),
        "to": (DAY + timedelta(hours=12)).isoformat(),
        "action": "invalidate",
        "reason": "maintenance",
        "comment": "analyser cleaned",
    }
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        r = await c.post("/api/review/marks", json=mark, headers=auth)
        assert r.status_code == 201, r.text
        assert (r.json()["actor"], r.json()["id"], r.json()["from"]) == (
            "api",
            1,
            "2026-03-02T02:00:00Z",
        )
        invalidated = snapshot(influxdb, influx_db)
        async with Reporter(settings, registry, load_plan()) as reporter:
            report = await reporter.run(DAY.date(), DAY.date())
        assert report.air_left_out == [
            ("AQ-R1", "2026-03-02", "pm25_ug_m3 10:00-12:00: maintenance (mark 1 by api): "
             "analyser cleaned")
        ]  # fmt: skip
        assert "AQ-R1 2026-03-02: pm25_ug_m3 10:00-12:00: maintenance" in render(report, "table")
        assert "<li>AQ-R1 2026-03-02: pm25_ug_m3 10:00-12:00: maintenance" in render(report, "html")
        r = await c.post("/api/review/marks", json={**mark, "action": "restore"}, headers=auth)
        assert r.status_code == 201, r.text
        restored = snapshot(influxdb, influx_db)
        listed = (await c.get("/api/review/marks", params={"device_id": "AQ-R1"})).json()
        bad = await c.post("/api/review/marks", json={**mark, "reason": "bored"}, headers=auth)
        assert bad.status_code == 422 and "reason must be one of" in bad.text
        wrong = await c.post("/api/review/marks", json=mark, headers={"Authorization": "Bearer x"})
        assert wrong.status_code == 401
    store.close()

    hourly = invalidated["air_quality_hourly"]
    for h in (10, 11):
        row = hour(hourly, h)
        assert row.get("pm25_ug_m3") is None and row["valid"] is False
        assert row["left_out"] == "pm25_ug_m3: maintenance (mark 1 by api): analyser cleaned"
        assert row["so2_ug_m3"] == 8.0  # the other fields of the hour stay
    assert hour(hourly, 12)["pm25_ug_m3"] == 32.0 and hour(hourly, 12)["left_out"] == ""
    day = invalidated["air_quality_daily"][0]
    # PM2.5 hourly means 20..43 without 30 and 31: (sum 20..43 − 61) / 22 = (756 − 61) / 22.
    assert day["pm25_ug_m3_n"] == 22 and day["pm25_ug_m3"] == (756 - 61) / 22
    assert day["left_out"] == (
        "pm25_ug_m3 10:00-12:00: maintenance (mark 1 by api): analyser cleaned"
    )
    assert invalidated["city_air_daily"][0]["pm25_ug_m3_n"] == 22

    assert restored == before  # every figure back exactly, the left-out notes cleared
    assert [(m["id"], m["actor"], m["action"], m["reason"]) for m in listed] == [
        (1, "api", "invalidate", "maintenance"),
        (2, "api", "restore", "maintenance"),
    ]
    # The raw readings were never touched.
    raw = influxdb.count("air_quality", influx_db, "pm25_ug_m3")
    assert raw == 1440


async def test_only_auditors_and_admins_may_review(tmp_path: Path) -> None:
    from rollups.review import ReviewStore

    store = ReviewStore(tmp_path / "review.db")
    roles = {"ann": "auditor", "ada": "admin", "otto": "operator"}

    def session(request: Request) -> tuple[str, str] | None:
        name = request.headers.get("x-test-operator")
        return (name, roles[name]) if name else None

    app = FastAPI()
    app.include_router(router(store, None, session=session))
    mark = {
        "device_id": "AQ-R1",
        "fields": "*",
        "from": "2026-03-02T10:00:00+08:00",
        "to": "2026-03-02T11:00:00+08:00",
        "action": "invalidate",
        "reason": "power_cut",
    }
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        codes = {
            who: (await c.post("/api/review/marks", json=mark, headers={"x-test-operator": who}))
            for who in roles
        }
        anonymous = await c.post("/api/review/marks", json=mark)
        no_token = await c.post(
            "/api/review/marks", json=mark, headers={"Authorization": "Bearer x"}
        )
        listed = (await c.get("/api/review/marks")).json()
    assert {w: r.status_code for w, r in codes.items()} == {"ann": 201, "ada": 201, "otto": 403}
    assert "reviewing needs auditor or admin" in codes["otto"].text
    assert (anonymous.status_code, no_token.status_code) == (401, 401)
    assert [(m["actor"], m["fields"]) for m in listed] == [("ann", "*"), ("ada", "*")]
    store.close()


async def test_console_sessions_review_by_role_with_the_csrf_token(tmp_path: Path) -> None:
    """The composition root's wiring: a console session of an auditor records a mark under the
    auditor's name (the session's CSRF token in X-CSRF-Token); an operator gets 403."""
    from alerts.engine import AlertEngine
    from alerts.rules import parse_rules
    from alerts.store import AlertStore
    from console import build_console
    from console.auth import Operator, hash_password, save_operators

    ops = tmp_path / "operators.yaml"
    save_operators(
        ops,
        {
            "ann": Operator("ann", "审核员", hash_password("password-ann", 4), role="auditor"),
            "otto": Operator("otto", "值班员", hash_password("password-otto", 4)),
        },
    )
    settings = load_settings(
        None,
        console={"operators": ops, "session_secret_file": tmp_path / "key"},
        rollup={"review_store": str(tmp_path / "review.db")},
    )
    alerts = AlertStore(tmp_path / "alerts.db")
    engine = AlertEngine(parse_rules("rules: []\n"), alerts)
    registry = Registry([])
    console = build_console(settings, engine, registry)
    assert console is not None
    review, store = build_review(settings, registry, console)
    app = FastAPI()
    app.include_router(review)
    mark = {
        "device_id": "AQ-R1",
        "fields": ["pm25_ug_m3"],
        "from": "2026-03-02T10:00:00+08:00",
        "to": "2026-03-02T11:00:00+08:00",
        "action": "invalidate",
        "reason": "calibration",
    }
    results = {}
    for name in ("ann", "otto"):
        op = console.book.get(name)
        assert op is not None
        cookie, session = console.sessions.issue(op)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app),
            base_url="http://t",
            cookies={"envgrid_session": cookie},
        ) as c:
            without_csrf = await c.post("/api/review/marks", json=mark)
            assert without_csrf.status_code == 401  # a cookie alone cannot write
            r = await c.post("/api/review/marks", json=mark, headers={"X-CSRF-Token": session.csrf})
            results[name] = (r.status_code, r.json())
    await console.close()
    alerts.close()
    assert results["ann"][0] == 201 and results["ann"][1]["actor"] == "ann"
    assert results["otto"][0] == 403
    assert [(m.actor, m.reason) for m in store.marks()] == [("ann", "calibration")]
    store.close()
