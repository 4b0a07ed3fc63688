"""``envgrid report`` against the real InfluxDB: a year of synthetic data with known figures goes
in (water and air through the real rollups), and every format gives exactly those figures.

The data and the hand-worked answers are in ``tests/plan_seed.py``. The HTML report is opened
in Debian's headless Chromium and its screenshot checked for the charts.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from devices.registry import load_registry
from envgrid.cli.main import app
from envgrid.localstack import LocalInfluxDB, free_port
from envgrid.settings import load_settings
from report.figures import DEFAULT_PLAN, Reporter, interpolate_time, panel_queries
from report.plan import parse_plan
from rollups.runner import Rollup
from tests import plan_seed as S

CHROMIUM = "/usr/bin/chromium"
SW = S.shore_expect()
EV = S.ev_expect()
PV_KWH = S.pv_expect()["kwh"]
PV_TOTAL = sum(PV_KWH.values())
PV_OK = [i for i in S.INVERTERS if i.days == 365]
PV_HOURS = sum(PV_KWH[i.device_id] for i in PV_OK) / sum(i.capacity_kw for i in PV_OK)

# Every figure of the report, worked from the seed (plan_seed.py) by hand.
EXPECTED: dict[str, float] = {
    "sections_iii_ratio": 25 / 30 * 100,
    "good_days_ratio": 296 / 357 * 100,
    "pv_pilot_counties": 5,
    "pv_kwh": PV_TOTAL,  # 180,755 kWh
    "pv_pilot_kwh": PV_TOTAL - PV_KWH["PV-T08"],
    "pv_equivalent_hours": PV_HOURS,  # 177,755 kWh ÷ 173 kWp
    "pv_capacity_factor": PV_HOURS / 8760 * 100,
    "pv_co2_avoided_t": PV_TOTAL * 0.5306 / 1000,
    "calls_ratio": SW["calls_ratio_pct"],  # 34 / 40 = 85 %
    "hours_ratio": SW["hours_ratio_pct"],  # 172 h / 250 h
    "shore_sessions": SW["sessions"],
    "shore_hours": SW["connection_hours"],
    "shore_kwh": SW["kwh"],
    "ev_kwh": EV["kwh"],
    "ev_sessions": EV["sessions"],
    "ev_availability": EV["availability_pct"],
    "ev_utilisation": EV["utilisation_pct"],
}
MET = {
    "sections_iii_ratio": True,  # 83.33 ≥ 81.8
    "good_days_ratio": True,  # 82.91 ≥ 81
    "calls_ratio": False,  # 85 < 90
    "pv_pilot_counties": True,
    "ev_availability": False,
}
AIR_GOOD = {kind: category <= 2 for kind, (category, _, _) in S.AIR_KINDS.items()}
MISSING_SECTION = "测试30断面"
THIN_SECTION = "测试29断面"


@dataclass(frozen=True)
class Seeded:
    db: str
    config: Path
    plan: Path
    registry: Path


def _test_plan(path: Path) -> Path:
    """The shipped plan with hourly buckets: the seeded shore and EV readings are hourly."""
    text = DEFAULT_PLAN.read_text(encoding="utf-8")
    text = text.replace('step = "5m"', 'step = "1h"').replace('max_gap = "15m"', 'max_gap = "2h"')
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def seeded(influxdb: LocalInfluxDB, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    """A database holding 2025 as seeded, rolled up by the real rollups."""
    tmp = tmp_path_factory.mktemp("report")
    db = f"test_{uuid.uuid4().hex[:12]}"
    influxdb.create_database(db)
    lines = list(S.all_lines())
    for i in range(0, len(lines), 20_000):
        influxdb.write("\n".join(lines[i : i + 20_000]), db)
    registry = S.write_registry(tmp / "registry.yaml")
    config = tmp / "envgrid.toml"
    config.write_text(
        f'[influx]\nurl = "{influxdb.url}"\ndatabase = "{db}"\n\n'
        f'[devices]\nregistry = "{registry}"\n',
        encoding="utf-8",
    )
    settings = load_settings(config)

    async def rollup() -> None:
        async with Rollup(settings, load_registry(registry)) as r:
            await r.run_range(
                S.at(S.YEAR_START), S.at(date(2026, 1, 1)), now=S.at(date(2026, 1, 2))
            )

    asyncio.run(rollup())
    yield Seeded(db, config, _test_plan(tmp / "plan.toml"), registry)
    if influxdb.is_running():
        influxdb.drop_database(db)


def run_report(seeded: Seeded, *args: str) -> str:
    result = CliRunner().invoke(
        app,
        [
            "report",
            "--from",
            "2025-01-01",
            "--to",
            "2025-12-31",
            "--plan",
            str(seeded.plan),
            "--config",
            str(seeded.config),
            *args,
        ],
    )
    assert result.exit_code == 0, result.output
    return result.stdout


def _approx(v: float) -> Any:
    return pytest.approx(v, rel=1e-9, abs=1e-9)


# ------------------------------------------------------------------------------- formats


def test_json_report_gives_the_seeded_figures(seeded: Seeded, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    run_report(seeded, "--format", "json", "--output", str(out))
    data = json.loads(out.read_text(encoding="utf-8"))
    figures = {f["formula"]: f for f in data["figures"]}
    assert {k: f["value"] for k, f in figures.items()} == {
        k: _approx(v) for k, v in EXPECTED.items()
    }
    assert {k: f["met"] for k, f in figures.items() if f["met"] is not None} == MET
    assert figures["sections_iii_ratio"]["note"] == "25 / 30"
    assert figures["good_days_ratio"]["note"] == "296 / 357"
    assert figures["sections_iii_ratio"]["threshold"] == 81.8

    # Water: the missing and the thin section are named and not counted as good.
    water = figures["sections_iii_ratio"]["coverage"]
    assert (water["covered"], water["expected"]) == (28, 30)
    assert (water["missing"], water["insufficient"]) == ([MISSING_SECTION], [THIN_SECTION])
    sections = {s["site"]: s for s in data["sections"]}
    assert len(sections) == 30  # the station without an assessment is not a section
    for sec in S.ASSESSED:
        got = sections[sec.site]
        assert got["status"] == sec.expect_status, sec.site
        assert got["water_class"] == sec.expect_class, sec.site
        assert tuple(got["limiting_items"]) == sec.expect_limiting, sec.site
    assert not sections[THIN_SECTION]["counted_good"]  # Class II values, too little data
    assert sum(s["counted_good"] for s in sections.values()) == 25
    # NH3-N alternating 0.6 / 1.3: daily class III / IV, period mean (183 × 0.6 + 182 × 1.3) / 365
    # = 0.949 → III.
    alternating = next(s for s in S.ASSESSED if s.alternate_nh3n)
    mean = (183 * 0.6 + 182 * 1.3) / 365
    assert sections[alternating.site]["means"]["nh3n_mg_l"] == pytest.approx(mean, abs=1e-6)
    assert sections[alternating.site]["days_meeting_iii"] == 183

    # Air: categories, primary pollutants of the non-good days, named missing/invalid days.
    air = figures["good_days_ratio"]["coverage"]
    assert air["missing"] == [d.isoformat() for d in S.EXPECT_AIR["missing"]]
    assert air["insufficient"] == [d.isoformat() for d in S.EXPECT_AIR["invalid"]]
    assert data["air"]["categories"] == {str(k): v for k, v in S.EXPECT_AIR["categories"].items()}
    assert data["air"]["primary"] == S.EXPECT_AIR["primary"]
    assert data["air"]["editions"] == {"2012": 360}
    days = {d["day"]: d for d in data["air_days"]}
    short = S.EXPECT_AIR["invalid"][0].isoformat()
    assert (days[short]["status"], days[short]["aqi"]) == ("invalid", 40)  # 优 AQI, not counted

    # PV: per inverter, lowest yield first, the thin inverter named and not ranked.
    inverters = {i["device_id"]: i for i in data["inverters"]}
    assert {k: i["kwh"] for k, i in inverters.items()} == {k: _approx(v) for k, v in PV_KWH.items()}
    # PV-T06 547.5 h, PV-T08 912.5 h, then the 1095 h inverters by id (5 listed).
    assert [i["device_id"] for i in data["lowest"]] == [
        "PV-T06",
        "PV-T08",
        "PV-T01",
        "PV-T02",
        "PV-T03",
    ]
    assert inverters["PV-T06"]["equivalent_hours"] == _approx(547.5)
    assert figures["pv_kwh"]["coverage"]["insufficient"] == ["PV-T07"]
    assert figures["pv_pilot_counties"]["note"] == ", ".join(sorted(S.PILOTS))

    # Shore power per berth; the silent berth named.
    berths = {b["device_id"]: b for b in data["berths"]}
    assert {k: b["kwh"] for k, b in berths.items()} == {
        **{k: _approx(v) for k, v in SW["by_device_kwh"].items()},
        "SP-T03": 0.0,
    }
    assert (berths["SP-T01"]["obliged_calls"], berths["SP-T01"]["obliged_using"]) == (30, 24)
    assert (berths["SP-T01"]["calls"], berths["SP-T01"]["sessions"]) == (40, 26)
    assert figures["calls_ratio"]["coverage"]["missing"] == ["SP-T03"]
    ports = {p["port"]: p for p in data["ports"]}
    assert (ports["淮阴港区"]["berths"], ports["淮阴港区"]["kwh"]) == (2, _approx(5000.0))

    # EV: the January-only charger and the silent one named.
    ev = figures["ev_availability"]["coverage"]
    assert (ev["missing"], ev["insufficient"]) == (["EV-T03"], ["EV-T02#1"])
    connectors = {c["device_id"]: c for c in data["connectors"]}
    assert connectors["EV-T01"]["unavailable_hours"] == 48.0
    assert connectors["EV-T02"]["observed_hours"] == 31 * 24


def test_csv_report_gives_the_seeded_figures(seeded: Seeded) -> None:
    rows = list(csv.DictReader(io.StringIO(run_report(seeded, "--format", "csv"))))
    assert {r["formula"]: float(r["value"]) for r in rows} == {
        k: _approx(v) for k, v in EXPECTED.items()
    }
    by = {r["formula"]: r for r in rows}
    assert {k: r["met"] == "true" for k, r in by.items() if r["met"]} == MET
    assert by["sections_iii_ratio"]["no_data"] == MISSING_SECTION
    assert by["sections_iii_ratio"]["too_little_data"] == THIN_SECTION
    assert by["good_days_ratio"]["no_data"].split(";") == [
        d.isoformat() for d in S.EXPECT_AIR["missing"]
    ]
    assert (by["good_days_ratio"]["covered"], by["good_days_ratio"]["expected"]) == ("357", "365")
    assert by["calls_ratio"]["target_id"] == "shore_power_use"


def test_table_report_gives_the_seeded_figures(seeded: Seeded, tmp_path: Path) -> None:
    out = tmp_path / "report.txt"
    run_report(seeded, "--output", str(out))
    text = out.read_text(encoding="utf-8")
    for shown in (
        "83.33 % (25 / 30)",
        "≥ 81.80 %",
        "82.91 % (296 / 357)",
        "85.00 % (34 / 40 calls > 2 h)",
        f"{PV_TOTAL:,.1f} kWh",
        f"{EXPECTED['ev_availability']:.2f} %",
        f"no data: {MISSING_SECTION}",
        f"too little data: {THIN_SECTION}",
        "no data: 2025-02-10, 2025-02-11, 2025-02-12, 2025-07-20, 2025-07-21",
        "PM2.5 51",
        "O3 (8 h) 10",
        "HJ 633-2012: 360",
        "未达标 not met",
    ):
        assert shown in text, shown
    assert text.count("达标 met") >= 3


def _html_figures(text: str) -> dict[str, float]:
    found = re.findall(r'data-formula="([a-z0-9_]+)" data-value="([^"]*)"', text)
    return {k: float(v) for k, v in found}


def test_html_report_gives_the_seeded_figures(seeded: Seeded, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    run_report(seeded, "--format", "html", "--output", str(out))
    text = out.read_text(encoding="utf-8")
    assert _html_figures(text) == {k: _approx(v) for k, v in EXPECTED.items()}
    assert f'data-site="{MISSING_SECTION}" data-status="no_data"' in text
    assert f'data-site="{THIN_SECTION}" data-status="insufficient"' in text
    # Self-contained: no script, stylesheet link, image or font fetched from anywhere.
    assert not re.search(r"<script|<link|<img|@import|url\(http|src=", text)
    assert text.count("<svg") == 7


# -------------------------------------------------------------------------------- browser


@pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="Debian chromium not installed")
def test_html_report_renders_its_charts_in_chromium(seeded: Seeded, tmp_path: Path) -> None:
    from PIL import Image
    from playwright.sync_api import sync_playwright

    page_file = tmp_path / "report.html"
    run_report(seeded, "--format", "html", "--output", str(page_file))
    shot = tmp_path / "report.png"
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--headless",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_file.as_uri())
            titles = page.locator("h2").all_inner_texts()
            svgs = page.locator("svg")
            boxes = [svgs.nth(i).bounding_box() for i in range(svgs.count())]
            calendar_cells = page.locator("#air svg rect title").count()
            figure_rows = page.locator("#figures tbody tr").count()
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert titles == [
        "目标总览 / Targets at a glance",
        "水环境 · 优Ⅲ比例 / Water: sections at Class III or better",
        "空气质量 · 优良天数比率 / Air quality: good days",
        "屋顶光伏 / Rooftop PV",
        "岸电 / Shore power",
        "充电设施 / EV charging",
    ]
    assert len(boxes) == 7 and all(b and b["width"] > 300 and b["height"] > 40 for b in boxes)
    assert calendar_cells >= 365  # one cell per day, plus the category bars
    assert figure_rows == len(EXPECTED)
    assert requests == [page_file.as_uri()]  # nothing fetched but the file itself
    with Image.open(shot) as img:
        rgb = img.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 20) or []
        # The charts' colours are painted: AQI green and yellow, the class III green.
        painted = {c for _, c in colours}
        assert {(0, 228, 0), (255, 255, 0), (55, 135, 45)} <= painted
        assert len(colours) > 50
        extrema = rgb.convert("L").getextrema()
        assert extrema[0] < 60 and extrema[1] > 240  # not a blank page


# ------------------------------------------------------------------ store and dashboard


def test_stored_figures_answer_the_dashboard_panel_queries(
    seeded: Seeded, influxdb: LocalInfluxDB
) -> None:
    result = CliRunner().invoke(
        app,
        [
            "report",
            "--plan",
            str(seeded.plan),
            "--config",
            str(seeded.config),
            "--format",
            "csv",
            "--store",
        ],
    )  # the plan's own period: 2025
    assert result.exit_code == 0, result.output
    assert f"stored {len(EXPECTED)} figures in plan_progress" in result.stderr
    plan = parse_plan(seeded.plan.read_text(encoding="utf-8"), str(seeded.plan))
    start = int(S.at(date(2025, 1, 1)).timestamp() * 1000)
    end = int(S.at(date(2026, 1, 1)).timestamp() * 1000)
    panels = panel_queries(plan)
    assert len(panels) == len(plan.targets) + 1
    got = {}
    for p in panels:
        rows = influxdb.points(interpolate_time(p.query, start, end), seeded.db)
        assert len(rows) == 1, p.query
        got[p.title] = next(v for k, v in rows[0].items() if k != "time")
    by_formula = {t.formula: f"{t.description_zh} / {t.description_en}" for t in plan.targets}
    for formula, title in by_formula.items():
        assert got[title] == _approx(EXPECTED[formula]), formula
    live = next(p for p in panels if "live" in p.title)
    assert got[live.title] == _approx(EXPECTED["good_days_ratio"])
    # Stored again (same period): the points are overwritten, not doubled.
    again = CliRunner().invoke(
        app, ["report", "--plan", str(seeded.plan), "--config", str(seeded.config), "--store"]
    )
    assert again.exit_code == 0, again.output
    count = influxdb.points('SELECT count("value") FROM "plan_progress"', seeded.db)
    assert count[0]["count"] == len(EXPECTED)


def test_county_report_keeps_to_the_county(seeded: Seeded) -> None:
    county = "金湖县"
    data = json.loads(run_report(seeded, "--county", county, "--format", "json"))
    assert data["county"] == county
    assert {s["county"] for s in data["sections"]} == {county}
    assert {i["device_id"] for i in data["inverters"]} == {"PV-T05", "PV-T06"}
    figures = {f["formula"]: f for f in data["figures"]}
    assert figures["pv_kwh"]["value"] == _approx(PV_KWH["PV-T05"] + PV_KWH["PV-T06"])
    assert data["berths"] == [] and data["connectors"] == []
    # Air quality is assessed for the city: the county report says so and shows the city's.
    assert figures["good_days_ratio"]["value"] == _approx(EXPECTED["good_days_ratio"])
    assert any("good-days ratio is the city's" in n for n in data["notes"])
    expected_sections = [s for s in S.ASSESSED if s.county == county]
    assert len(data["sections"]) == len(expected_sections)
    page = run_report(seeded, "--county", county, "--format", "html")
    assert f"县区 County: <b>{county}</b>" in page and page.count("<svg") == 7


def test_a_month_is_reported_against_yearly_targets_with_a_note(seeded: Seeded) -> None:
    args = ["report", "--config", str(seeded.config), "--plan", str(seeded.plan)]
    r = CliRunner().invoke(app, [*args, "--from", "2025-02-01", "--to", "2025-02-28", "-f", "json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    figures = {f["formula"]: f for f in data["figures"]}
    # February: days 31..58 of the year; 10-12 February have no data.
    feb = [d for d in S.DAYS if d.month == 2]
    good = sum(
        1
        for d in feb
        if d in S.AIR_SCHEDULE and AIR_GOOD[S.AIR_SCHEDULE[d]] and d not in S.SHORT_DAYS
    )
    valid = sum(1 for d in feb if d in S.AIR_SCHEDULE)
    assert figures["good_days_ratio"]["value"] == _approx(good / valid * 100)
    assert figures["good_days_ratio"]["coverage"]["missing"] == [
        "2025-02-10",
        "2025-02-11",
        "2025-02-12",
    ]
    assert data["notes"] == [
        "Targets water_iii_ratio, air_good_days, shore_power_use, pv_pilot_counties, "
        "ev_availability apply to 2025-01-01..2025-12-31; this report covers "
        "2025-02-01..2025-02-28."
    ]


def test_progress_ticks_once_per_step(seeded: Seeded) -> None:
    settings = load_settings(seeded.config)
    plan = parse_plan(seeded.plan.read_text(encoding="utf-8"), str(seeded.plan))
    ticks: list[str] = []

    async def run() -> int:
        registry = load_registry(seeded.registry)
        async with Reporter(settings, registry, plan) as rep:
            await rep.run(date(2025, 1, 1), date(2025, 12, 31), None, ticks.append)
            return rep.steps(date(2025, 1, 1), date(2025, 12, 31))

    steps = asyncio.run(run())
    # Water 2, air 1, PV 2, shore power and EV by month (31-day chunks: 12 each).
    assert len(ticks) == steps == 2 + 1 + 2 + 12 + 12
    assert ticks[-1] == "ev 12/12"


def test_report_errors_are_one_clear_line(seeded: Seeded, tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["report", "--config", str(seeded.config), "--plan", str(seeded.plan)]
    r = runner.invoke(app, [*base, "--county", "火星县"])
    assert r.exit_code == 2
    assert "--county '火星县' is not in the device registry" in r.stderr
    assert "Traceback" not in r.output
    r = runner.invoke(app, [*base, "--from", "2025-12-31", "--to", "2025-01-01"])
    assert r.exit_code == 2 and "is before --from" in r.stderr
    r = runner.invoke(app, [*base, "--format", "pdf"])
    assert r.exit_code == 2 and "--format 'pdf' is not a format" in r.stderr
    bad = tmp_path / "plan.toml"
    bad.write_text(
        seeded.plan.read_text(encoding="utf-8").replace('direction = ">="', 'direction = "=>"', 1)
    )
    r = runner.invoke(app, [*base[:3], "--plan", str(bad)])  # before InfluxDB is asked
    line = next(
        i for i, t in enumerate(bad.read_text().splitlines(), 1) if t.startswith("direction")
    )
    assert r.exit_code == 2
    assert r.stderr.startswith(f"envgrid: {bad}:{line}: targets[0].direction: ")
    down = tmp_path / "down.toml"
    down.write_text(f'[influx]\nurl = "http://127.0.0.1:{free_port()}"\ndatabase = "x"\n')
    r = runner.invoke(app, ["report", "--config", str(down), "--plan", str(seeded.plan)])
    assert r.exit_code == 1
    assert "did not answer" in r.stderr and len(r.stderr.strip().splitlines()) == 1
