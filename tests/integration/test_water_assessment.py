"""The ``water_assessment`` section against a real InfluxDB: November 2026 of automatic daily
values for three assessed sections and one unassessed station, lab results imported with
``envgrid lab import``; classes, limiting items and 优Ⅲ比例 worked by hand from the seed.

Seed (GB 3838-2002 Table 1 classes worked by hand, river TP row unless noted):
- 城南断面 (river, 清河区, national), 30 days: pH 7.5 (I), DO 6.5 (II: ≥ 6, < 7.5),
  CODMn 3.5 (II), NH3-N 0.4 (II), TP 0.08 (II). Lab: COD 25 on 11-05 (IV: 20 < 25 ≤ 30),
  Hg "<0.00004" (half the limit 0.00002: I). COD only from the lab → the month is IV, COD
  limiting.
- 湖心断面 (lake, 洪泽区, provincial), 30 days: as above but TP 0.04 (lake row: III, 0.025 <
  0.04 ≤ 0.05). Lab NH3-N 1.8 (V) — NH3-N comes from automatic data (环办监测函〔2020〕82号), so
  the lab value is not used: III, TP limiting.
- 城北断面 (river, 清河区, national), 10 days only: class II values, but 10 < 23 days (75 % of
  30): insufficient, not counted as Class III or better.
- 外河 (no assessment): class V values, not an assessed section.
"""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from typer.testing import CliRunner

from devices.registry import load_registry
from envgrid.cli.main import app
from envgrid.localstack import LocalInfluxDB
from envgrid.settings import load_settings
from ingest.influxql import InfluxQLClient
from report.sections import Period, SectionContext
from report.water_assessment import WaterAssessment, build

TZ = ZoneInfo("Asia/Shanghai")
NOV = Period(date(2026, 11, 1), date(2026, 11, 30), "2026-11")
NOW = datetime(2026, 12, 1, 2, 0, tzinfo=TZ)

REGISTRY = {
    "devices": [
        {"id": "W-1", "kind": "water", "site": "城南断面", "county": "清河区",
         "section_type": "river", "assessment": "national"},
        {"id": "W-2", "kind": "water", "site": "湖心断面", "county": "洪泽区",
         "section_type": "lake", "assessment": "provincial"},
        {"id": "W-3", "kind": "water", "site": "城北断面", "county": "清河区",
         "section_type": "river", "assessment": "national"},
        {"id": "W-4", "kind": "water", "site": "外河", "county": "清河区",
         "section_type": "river"},
    ]
}  # fmt: skip

CLASS_II = {"ph": 7.5, "do_mg_l": 6.5, "codmn_mg_l": 3.5, "nh3n_mg_l": 0.4, "tp_mg_l": 0.08}
SEED: dict[str, tuple[str, str, str, dict[str, float], int]] = {
    "W-1": ("城南断面", "清河区", "river", CLASS_II, 30),
    "W-2": ("湖心断面", "洪泽区", "lake", {**CLASS_II, "tp_mg_l": 0.04}, 30),
    "W-3": ("城北断面", "清河区", "river", CLASS_II, 10),
    "W-4": ("外河", "清河区", "river", {**CLASS_II, "nh3n_mg_l": 1.9}, 30),
}
LAB = """section,sampled_at,item,value,dl,flag,lab,method
城南断面,2026-11-05 10:00,cod_mg_l,25,,,市监测站,HJ 828-2017
城南断面,2026-11-05 10:00,hg_mg_l,<0.00004,,,市监测站,HJ 694-2014
湖心断面,2026-11-05,nh3n_mg_l,1.8,,,市监测站,HJ 535-2009
"""
# Hand-worked: (period class, limiting items, counted as Class III or better).
EXPECTED = {
    "城南断面": (4, ["cod_mg_l"], False),
    "湖心断面": (3, ["tp_mg_l"], True),
    "城北断面": (2, ["do_mg_l", "codmn_mg_l", "nh3n_mg_l", "tp_mg_l"], False),
}


def _daily_lines() -> list[str]:
    lines = []
    for device, (site, county, stype, values, days) in SEED.items():
        fields = ",".join(f"{k}={v}" for k, v in values.items())
        for i in range(days):
            ts = int(datetime(2026, 11, 1 + i, tzinfo=TZ).timestamp() * 1000)
            lines.append(
                f"water_quality_daily,county={county},device_id={device},section_type={stype},"
                f"site={site} {fields},valid=true {ts}"
            )
    return lines


def _assess(config: Path, period: Period = NOV) -> WaterAssessment:
    settings = load_settings(config)
    registry = load_registry(settings.devices.registry)

    async def run() -> WaterAssessment:
        async with InfluxQLClient(settings.influx) as client:
            ctx = SectionContext(client, registry, settings, period, TZ, NOW.astimezone(UTC))
            return await build(ctx)

    return asyncio.run(run())


def test_month_with_lab_cod_and_share_iii(
    tmp_path: Path, influxdb: LocalInfluxDB, influx_db: str
) -> None:
    reg = tmp_path / "registry.yaml"
    reg.write_text(yaml.safe_dump(REGISTRY, allow_unicode=True), encoding="utf-8")
    config = tmp_path / "envgrid.toml"
    config.write_text(
        f'[influx]\nurl = "{influxdb.url}"\ndatabase = "{influx_db}"\n\n'
        f'[devices]\nregistry = "{reg}"\n\n[standards]\ntimezone = "Asia/Shanghai"\n',
        encoding="utf-8",
    )
    influxdb.write("\n".join(_daily_lines()), influx_db)
    lab = tmp_path / "lab.csv"
    lab.write_text(LAB, encoding="utf-8")
    imported = CliRunner().invoke(app, ["lab", "import", str(lab), "--config", str(config)])
    assert imported.exit_code == 0, imported.output

    result = _assess(config)
    doc = result.to_json()
    sections = {s["site"]: s for s in doc["sections"]}
    assert set(sections) == set(EXPECTED)  # 外河 is not assessed
    for site, (cls, limiting, good) in EXPECTED.items():
        s = sections[site]
        assert (s["class"], s["limiting_items"], s["meets_iii"]) == (cls, limiting, good), site
        assert [m["label"] for m in s["months"]] == ["2026-11"]
    nan = sections["城南断面"]["values"]
    assert nan["cod_mg_l"] == {"value": 25.0, "source": "lab", "n": 1, "below_dl": 0}
    assert nan["hg_mg_l"]["value"] == 0.00002 and nan["hg_mg_l"]["below_dl"] == 1
    assert nan["nh3n_mg_l"]["source"] == "auto" and nan["nh3n_mg_l"]["n"] == 30
    assert sections["湖心断面"]["values"]["nh3n_mg_l"]["value"] == 0.4  # automatic, not lab 1.8
    assert sections["城北断面"]["status"] == "insufficient"
    assert any("城北断面" in n and "10/30 days" in n for n in result.notes())

    # 优Ⅲ比例, independently: sections with ≥ 23 days and class ≤ 3, over assessed sections.
    days = {"城南断面": 30, "湖心断面": 30, "城北断面": 10}
    good = {s for s, (c, _, _) in EXPECTED.items() if c <= 3 and days[s] >= math.ceil(0.75 * 30)}
    assert good == {"湖心断面"}
    city = doc["city"]
    assert city["sections"] == 3 and city["sections_iii"] == len(good)
    assert city["share_iii"] == round(len(good) / 3 * 100, 2)
    counties = {c["name"]: c for c in doc["counties"]}
    assert counties["清河区"]["share_iii"] == 0.0 and counties["洪泽区"]["share_iii"] == 100.0

    # The stored assessment: InfluxDB takes every point and Grafana can read the city share.
    influxdb.write("\n".join(result.points()), influx_db)
    answer = influxdb.query(
        'SELECT "share_iii", "sections" FROM "water_assessment" WHERE "level" = \'city\'',
        db=influx_db,
    )
    (row,) = answer["results"][0]["series"][0]["values"]
    assert row[0] == int(datetime(2026, 11, 1, tzinfo=TZ).timestamp() * 1000)
    assert row[1] == pytest.approx(len(good) / 3 * 100) and row[2] == 3
    answer = influxdb.query(
        'SELECT "class" FROM "water_assessment" WHERE "site" = \'城南断面\'', db=influx_db
    )
    assert answer["results"][0]["series"][0]["values"][0][1] == 4

    titles = [t.title for t in result.tables()]
    assert len(titles) == 2


def test_quarter_months_and_period(tmp_path: Path, influxdb: LocalInfluxDB, influx_db: str) -> None:
    """A quarter up to 1 December: October (no data) and November; the period is short."""
    reg = tmp_path / "registry.yaml"
    reg.write_text(yaml.safe_dump(REGISTRY, allow_unicode=True), encoding="utf-8")
    config = tmp_path / "envgrid.toml"
    config.write_text(
        f'[influx]\nurl = "{influxdb.url}"\ndatabase = "{influx_db}"\n\n'
        f'[devices]\nregistry = "{reg}"\n\n[standards]\ntimezone = "Asia/Shanghai"\n',
        encoding="utf-8",
    )
    influxdb.write("\n".join(_daily_lines()), influx_db)
    q4 = Period(date(2026, 10, 1), date(2026, 12, 31), "2026-Q4")
    doc: dict[str, Any] = _assess(config, q4).to_json()
    s = next(s for s in doc["sections"] if s["site"] == "湖心断面")
    assert [(m["label"], m["status"]) for m in s["months"]] == [
        ("2026-10", "no_data"),
        ("2026-11", "ok"),
    ]
    # December has no closed day yet; the period is the months' mean, short of October's data.
    assert s["class"] == 3 and s["status"] == "insufficient" and s["meets_iii"] is False
    assert doc["city"]["sections_iii"] == 0
