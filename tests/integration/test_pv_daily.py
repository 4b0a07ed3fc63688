"""PV daily figures (issue 18) through the real broker and InfluxDB: a seeded day with one met
station and three inverters (healthy, dirty −25 %, throttled for two hours), and one inverter
whose register is reset by a replacement at noon and one whose daily register resets at midnight.

Expected numbers are worked by hand below from the seeded values (IEC 61724-1 formulas as in
docs/pv.md), never by calling the code under test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from typer.testing import CliRunner

from dashboards import queries as Q
from dashboards.build import build_all
from devices.kinds import KINDS
from devices.registry import load_registry
from envgrid.alerting import build_alerting
from envgrid.app import configure_standards
from envgrid.cli.main import app
from envgrid.localstack import LocalInfluxDB, LocalMosquitto
from envgrid.settings import Settings
from envgrid.simulator import SimMessage, publish_all
from ingest.mqtt import Message
from ingest.service import IngestService
from report.figures import Reporter, load_plan
from report.render import render
from rollups.runner import Rollup
from tests.helpers import make_settings, mqtt_client, wait_for
from tests.integration.test_dashboard_queries import Grafana

pytestmark = pytest.mark.slow

TZ = ZoneInfo("Asia/Shanghai")
DAY = datetime(2026, 6, 21, tzinfo=TZ)
NOW = DAY + timedelta(days=1, hours=1)
STEP_MIN = 5
STEP_H = STEP_MIN / 60
P0 = 10.0  # kWp of every inverter
PR_OK = 0.85
DIRTY = 0.75  # a dirty array: 25 % less
CAP_KW = 6.0  # the throttled inverter's limit, 11:00-12:59
GAMMA = -0.0047

REGISTRY = {
    "devices": [
        {"id": "MET-1", "kind": "met", "site": "屋顶A", "county": "洪泽区"},
        *(
            {
                "id": i,
                "kind": "pv",
                "site": "屋顶A",
                "county": "洪泽区",
                "capacity_kwp": P0,
                "irradiance_from": "MET-1",
                "substation": "洪泽变",
                "feeder": "洪10线",
                "transformer_area": "台区1",
                "rated_kva": 50,
                "pilot": True,
            }
            for i in ("PV-OK", "PV-DIRTY", "PV-THR")
        ),
        {
            "id": "PV-NEW",
            "kind": "pv",
            "site": "屋顶B",
            "county": "洪泽区",
            "capacity_kwp": P0,
            "substation": "洪泽变",
            "feeder": "洪11线",
            "transformer_area": "台区2",
        },
        {"id": "PV-DAYREG", "kind": "pv", "site": "屋顶C", "county": "洪泽区", "capacity_kwp": P0},
    ]
}


def times() -> Iterator[datetime]:
    for i in range(24 * 60 // STEP_MIN):
        yield DAY + timedelta(minutes=i * STEP_MIN)


def poa(t: datetime) -> float:
    hour = t.hour + t.minute / 60
    return round(max(0.0, 1000 * math.sin((hour - 6) / 12 * math.pi)), 3)


def module_temp(g: float) -> float:
    return 25 + 0.03 * g


def throttled(t: datetime) -> bool:
    return 11 <= t.hour < 13


def power_kw(device: str, t: datetime) -> float:
    g = poa(t)
    kw = P0 * g / 1000 * PR_OK
    if device == "PV-DIRTY":
        kw *= DIRTY
    if device == "PV-THR" and throttled(t):
        kw = min(kw, CAP_KW)
    return kw


def ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def messages(prefix: str) -> list[SimMessage]:
    out = []

    def msg(kind: str, dev: str, t: datetime, body: dict[str, Any]) -> None:
        out.append(SimMessage(f"{prefix}/{kind}/{dev}", json.dumps({"ts": ms(t), **body}).encode()))

    before = DAY - timedelta(minutes=STEP_MIN)
    for dev in ("PV-OK", "PV-DIRTY", "PV-THR", "PV-NEW"):
        msg("pv", dev, before, {"energy_total_kwh": 1000.0, "status": "SLEEPING"})
    msg("pv", "PV-DAYREG", before, {"energy_today_kwh": 40.0, "status": "SLEEPING"})
    totals = {d: 1000.0 for d in ("PV-OK", "PV-DIRTY", "PV-THR", "PV-NEW")}
    today = 0.0
    for t in times():
        g = poa(t)
        msg("met", "MET-1", t, {"poa_w_m2": g, "module_temp_c": module_temp(g)})
        for dev in totals:
            kw = power_kw(dev, t)
            if dev == "PV-NEW" and t == DAY + timedelta(hours=12):
                totals[dev] = 0.0  # replaced at noon: the new inverter's register starts at 0
            status = (
                "THROTTLED"
                if dev == "PV-THR" and throttled(t) and g > 0
                else ("MPPT" if kw > 0 else "SLEEPING")
            )
            # The register at t counts the energy up to t; this sample's power runs to t + 5 min.
            msg(
                "pv",
                dev,
                t,
                {"ac_power_w": kw * 1000, "energy_total_kwh": totals[dev], "status": status},
            )
            totals[dev] += kw * STEP_H
        kw = power_kw("PV-OK", t)
        msg("pv", "PV-DAYREG", t, {"ac_power_w": kw * 1000, "energy_today_kwh": today})
        today += kw * STEP_H
    return out


@contextlib.asynccontextmanager
async def running_with_alerts(settings: Settings) -> AsyncIterator[IngestService]:
    """The ingest service with the alert engine attached, as ``envgrid run`` wires them."""
    configure_standards(settings)
    service = IngestService(settings, KINDS, load_registry(settings.devices.registry))
    alerting = build_alerting(settings, service, load_registry(settings.devices.registry))
    assert alerting is not None
    await service.start()
    await alerting.start()
    try:
        yield service
    finally:
        await service.stop()
        await alerting.stop()


async def test_seeded_day(
    mosquitto: LocalMosquitto, influxdb: LocalInfluxDB, influx_db: str, tmp_path: Path
) -> None:
    reg = tmp_path / "registry.yaml"
    reg.write_text(yaml.safe_dump(REGISTRY, allow_unicode=True), encoding="utf-8")
    prefix = f"t{uuid.uuid4().hex[:8]}"  # the session broker is shared: topics of our own
    settings = make_settings(
        mosquitto,
        influxdb,
        influx_db,
        tmp_path,
        mqtt={"topic_prefix": prefix},
        devices={"registry": reg},
        rollup={"enabled": False},
        ingest={"max_age": "3650d"},  # a fixed day in the past
        alerts={"store": tmp_path / "alerts.db", "tick_interval": 0.2},  # the shipped rules
    )
    msgs = messages(prefix)
    alerts: list[Message] = []
    async with (
        running_with_alerts(settings) as service,
        mqtt_client(mosquitto, [f"{prefix}/alerts/#"], alerts.append, "alerts") as _,
        mqtt_client(mosquitto, client_id="pub") as pub,
    ):
        # The inverters but PV-THR are alive now: a verdict goes only to an inverter that
        # reports (any reading would end an offline episode of its device).
        now_ms = int(time.time() * 1000)
        alive = [
            SimMessage(
                f"{prefix}/pv/{d}", json.dumps({"ts": now_ms, "status": "SLEEPING"}).encode()
            )
            for d in ("PV-OK", "PV-DIRTY", "PV-NEW", "PV-DAYREG")
        ]
        await publish_all(pub, iter(msgs + alive), window=500)
        await wait_for(
            lambda: service.stats.acked >= len(msgs) + len(alive), 60, "every reading stored"
        )

        async with Rollup(settings, load_registry(reg), kinds=["pv"]) as rollup:
            await rollup.run_range(DAY, DAY + timedelta(days=1), now=NOW)
            first = influxdb.points('SELECT * FROM "pv_daily" GROUP BY *', influx_db)
            await rollup.run_range(DAY, DAY + timedelta(days=1), now=NOW)  # idempotent
            assert influxdb.points('SELECT * FROM "pv_daily" GROUP BY *', influx_db) == first

        # The verdicts travel as PV readings to the shipped rule pv-underperforming: one alert,
        # for the dirty inverter only, though the day was computed (and sent) twice.
        def fired() -> list[tuple[str, str]]:
            out = []
            for m in alerts:
                body = json.loads(m.payload)
                if body["rule_id"] == "pv-underperforming":
                    out.append((body["event"], body["device_id"]))
            return out

        await wait_for(lambda: fired() != [], 20, "the underperformer alert")
        await asyncio.sleep(1.0)  # a second alert would have come by now
        verdicts = influxdb.points(
            'SELECT "underperforming" FROM "pv_inverter" WHERE "underperforming" = true OR '
            '"underperforming" = false GROUP BY "device_id"',
            influx_db,
        )
        assert sorted(r["device_id"] for r in verdicts) == ["PV-DIRTY", "PV-OK"]
        assert fired() == [("firing", "PV-DIRTY")]
        assert alerts[0].topic == f"{prefix}/alerts/minor/pv/PV-DIRTY"
    rows = {r["device_id"]: r for r in first}
    assert set(rows) == {"PV-OK", "PV-DIRTY", "PV-THR", "PV-NEW", "PV-DAYREG"}
    assert all(r["time"] == ms(DAY) for r in first)

    # --- hand calculation ---------------------------------------------------------------------
    g = [poa(t) for t in times()]
    h_poa = sum(g) * STEP_H / 1000  # kWh/m²: each 5-minute sample holds until the next
    energy = {
        d: sum(power_kw(d, t) for t in times()) * STEP_H for d in ("PV-OK", "PV-DIRTY", "PV-THR")
    }
    expected_c = sum(x * (1 + GAMMA * (module_temp(x) - 25)) for x in g) * STEP_H / 1000
    for dev, e in energy.items():
        r = rows[dev]
        assert r["energy_kwh"] == pytest.approx(e, rel=0.01)
        assert r["yf_kwh_kwp"] == pytest.approx(e / P0, rel=0.01)
        assert r["h_poa_kwh_m2"] == pytest.approx(h_poa, rel=0.01)
        assert r["yr_h"] == pytest.approx(h_poa, rel=0.01)  # G_ref = 1 kW/m²
        assert r["pr"] == pytest.approx(e / P0 / h_poa, rel=0.01)
        assert r["pr_temp_corrected"] == pytest.approx(e / (P0 * expected_c), rel=0.01)
    assert rows["PV-OK"]["pr"] == pytest.approx(PR_OK, rel=0.01)
    assert rows["PV-DIRTY"]["pr"] == pytest.approx(PR_OK * DIRTY, rel=0.01)
    # Availability: producing (MPPT) or held back (THROTTLED) whenever G > 50 W/m².
    for dev in ("PV-OK", "PV-DIRTY", "PV-THR"):
        assert rows[dev]["availability"] == pytest.approx(1.0, abs=1e-9)
        assert rows[dev]["fault_h"] == 0
    thr = rows["PV-THR"]
    assert thr["curtailed_h"] == pytest.approx(2.0, rel=0.01)
    lost = sum(P0 * poa(t) / 1000 * PR_OK - CAP_KW for t in times() if throttled(t)) * STEP_H
    assert thr["curtailed_kwh"] == pytest.approx(lost, rel=0.01)
    assert rows["PV-OK"]["curtailed_h"] == 0 and rows["PV-OK"]["curtailed_kwh"] == 0

    # Underperformers: PR against the median of the three on MET-1 (the throttled one's).
    median = energy["PV-THR"] / P0 / h_poa
    assert 1 - PR_OK * DIRTY / median > 0.15
    assert [d for d, r in rows.items() if r.get("underperforming")] == ["PV-DIRTY"]
    assert rows["PV-DIRTY"]["shortfall"] == pytest.approx(1 - PR_OK * DIRTY / median, rel=0.01)
    assert rows["PV-DIRTY"]["energy_lost_kwh"] == pytest.approx(
        (median - PR_OK * DIRTY) * P0 * h_poa, rel=0.01
    )

    # Register reset by a replacement at noon, and a daily register reset at midnight.
    # The old inverter's last 5 minutes (11:55-12:00) were never on a register that was read.
    unread = power_kw("PV-NEW", DAY + timedelta(hours=11, minutes=55)) * STEP_H
    assert rows["PV-NEW"]["energy_kwh"] == pytest.approx(energy["PV-OK"] - unread, rel=0.001)
    assert rows["PV-DAYREG"]["energy_kwh"] == pytest.approx(energy["PV-OK"], rel=0.01)
    # Without irradiance the figures that need it are absent, not zero.
    for dev in ("PV-NEW", "PV-DAYREG"):
        for name in ("pr", "yr_h", "h_poa_kwh_m2", "availability", "pr_temp_corrected"):
            assert rows[dev].get(name) is None, (dev, name)

    # Grid view: 台区1 holds three inverters of 10 kWp, rated 50 kVA.
    grid = {
        (r["level"], r["name"]): r
        for r in influxdb.points('SELECT * FROM "pv_grid_daily" GROUP BY *', influx_db)
    }
    area = grid[("transformer_area", "台区1")]
    assert area["installed_kwp"] == 30 and area["rated_kva"] == 50
    assert area["energy_kwh"] == pytest.approx(sum(energy.values()), rel=0.01)
    peak = max(sum(power_kw(d, t) for d in energy) for t in times())
    assert area["peak_kw"] == pytest.approx(peak, rel=0.01)
    assert area["peak_to_rated"] == pytest.approx(peak / 50, rel=0.01)
    assert grid[("county", "洪泽区")]["installed_kwp"] == 50
    assert ("feeder", "洪11线") in grid and ("substation", "洪泽变") in grid

    # Every panel of the PV dashboard's performance row (and the met panel) returns rows for the
    # seeded day, with All selected and with the dirty inverter alone, as Grafana would ask.
    registry = load_registry(reg)
    (built,) = [b for b in build_all(registry) if b.uid == "envgrid-pv"]
    grafana = Grafana(built, influxdb, influx_db, NOW)
    new = [
        q
        for q in Q.queries(built.model)
        if q.origin == "panel"
        and ("pv_daily" in q.query or "pv_grid_daily" in q.query or "pv_met" in q.query)
    ]
    assert len(new) == 7
    for selection in ({}, {"county": "洪泽区", "site": "屋顶A", "device": "PV-DIRTY"}):
        texts, problems = grafana.resolve(selection)
        assert not problems
        for q in new:
            got = influxdb.points(grafana.prepare(q, texts), influx_db)
            assert got, (q.title, selection)
    (under,) = [q for q in new if q.title.startswith("Underperformers")]
    texts, _ = grafana.resolve({})
    listed = influxdb.points(grafana.prepare(under, texts), influx_db)
    assert [r["device_id"] for r in listed] == ["PV-DIRTY"]

    # The list ranked by energy lost, on the command line.
    r = await asyncio.to_thread(  # the command runs its own event loop
        CliRunner().invoke,
        app,
        ["pv", "underperformers", "--from", DAY.date().isoformat(), "--json"],
        env={"ENVGRID_INFLUX__URL": influxdb.url, "ENVGRID_INFLUX__DATABASE": influx_db},
    )
    assert r.exit_code == 0, r.output
    (only,) = [json.loads(line) for line in r.output.splitlines()]
    assert only["device_id"] == "PV-DIRTY" and only["days"] == 1
    assert only["energy_lost_kwh"] == pytest.approx(rows["PV-DIRTY"]["energy_lost_kwh"])

    # The plan report's PV section: fleet PR from summed quantities, the pilot county's specific
    # yield, energy lost to faults (none) and curtailment.
    async with Reporter(settings, registry, load_plan()) as reporter:
        report = await reporter.run(DAY.date(), DAY.date())
    perf = report.pv_performance
    assert perf is not None
    with_pr = ("PV-OK", "PV-DIRTY", "PV-THR")
    assert perf.fleet_pr == pytest.approx(sum(energy.values()) / (3 * P0 * h_poa), rel=0.01)
    assert perf.inverter_days == len(with_pr)
    (pilot,) = perf.pilots  # 洪泽区: the three pilot inverters are registered pilot
    assert (pilot.county, pilot.kwp) == ("洪泽区", 50.0)
    assert pilot.kwh_per_kwp == pytest.approx(
        sum(rows[d]["energy_kwh"] for d in rows) / 50.0, rel=1e-9
    )
    assert perf.curtailed_kwh == pytest.approx(lost, rel=0.01) and perf.fault_kwh == 0
    html = render(report, "html")
    assert 'id="pv-performance"' in html and 'id="pv-pilot-yield"' in html
    assert "IEC 61724-1 fleet PR" in render(report, "table") and "pv_performance" in render(
        report, "json"
    )

    # Over two days (rollup.pv_underperformance_days = 2), with a clean day before, the dirty
    # array's summed PR is 0.85 × (1 + 0.75) / 2, within 15 % of the median: not flagged.
    before = DAY - timedelta(days=1)
    influxdb.write(
        "\n".join(
            f"pv_daily,device_id={d} energy_kwh={e},h_poa_kwh_m2={h_poa} {ms(before)}"
            for d, e in (("PV-OK", energy["PV-OK"]), ("PV-DIRTY", energy["PV-OK"]),
                         ("PV-THR", energy["PV-THR"]))
        ),
        influx_db,
    )  # fmt: skip
    two_days = settings.model_copy(
        update={"rollup": settings.rollup.model_copy(update={"pv_underperformance_days": 2})}
    )
    async with Rollup(two_days, registry, kinds=["pv"]) as rollup:
        await rollup.run_range(DAY, DAY + timedelta(days=1), now=NOW)
    again = {
        r["device_id"]: r
        for r in influxdb.points(f'SELECT * FROM "pv_daily" WHERE time = {ms(DAY)}ms', influx_db)
    }
    assert 1 - PR_OK * (1 + DIRTY) / 2 / median < 0.15
    assert not any(r.get("underperforming") for r in again.values())
