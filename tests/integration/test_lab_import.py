"""``envgrid lab import`` against a real InfluxDB: a good file imported twice stores each result
once; a file with one bad row is refused with its line and stores nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from envgrid.cli.main import app
from envgrid.localstack import LocalInfluxDB

REGISTRY = {
    "devices": [
        {"id": "W-1", "kind": "water", "site": "城南断面", "county": "清河区",
         "section_type": "river", "assessment": "national"},
        {"id": "W-2", "kind": "water", "site": "湖心断面", "county": "洪泽区",
         "section_type": "lake", "assessment": "provincial"},
    ]
}  # fmt: skip

GOOD = """section,sampled_at,item,value,dl,flag,lab,method
城南断面,2026-11-05,cod_mg_l,25,,,市监测站,HJ 828-2017
城南断面,2026-11-05,bod5_mg_l,4.5,,,市监测站,HJ 505-2009
城南断面,2026-11-05,hg_mg_l,<0.00004,,,市监测站,HJ 694-2014
湖心断面,2026-11-06 09:30,cd_mg_l,,0.0005,ND,市监测站,
"""

BAD = """section,sampled_at,item,value,dl,flag,lab,method
城南断面,2026-11-12,cod_mg_l,18,,,市监测站,
城南断面,2026-11-12,zinc,0.2,,,市监测站,
城南断面,2026-11-12,bod5_mg_l,3,,,市监测站,
"""


def _setup(tmp_path: Path, influxdb: LocalInfluxDB, db: str) -> Path:
    reg = tmp_path / "registry.yaml"
    reg.write_text(yaml.safe_dump(REGISTRY, allow_unicode=True), encoding="utf-8")
    config = tmp_path / "envgrid.toml"
    config.write_text(
        f'[influx]\nurl = "{influxdb.url}"\ndatabase = "{db}"\n\n[devices]\nregistry = "{reg}"\n'
        '\n[standards]\ntimezone = "Asia/Shanghai"\n',
        encoding="utf-8",
    )
    return config


def _rows(influxdb: LocalInfluxDB, db: str) -> list[dict[str, Any]]:
    answer = influxdb.query('SELECT * FROM "water_lab" GROUP BY *', db=db)
    out = []
    for s in answer["results"][0].get("series", []):
        for values in s["values"]:
            out.append({**s.get("tags", {}), **dict(zip(s["columns"], values, strict=True))})
    return out


def _import(config: Path, file: Path) -> Any:
    return CliRunner().invoke(app, ["lab", "import", str(file), "--config", str(config)])


def test_good_file_imported_twice_stores_once(
    tmp_path: Path, influxdb: LocalInfluxDB, influx_db: str
) -> None:
    config = _setup(tmp_path, influxdb, influx_db)
    lab = tmp_path / "lab.csv"
    lab.write_text(GOOD, encoding="utf-8")
    first = _import(config, lab)
    assert first.exit_code == 0, first.output
    assert "4 lab results of 2 sections stored in water_lab" in first.stdout
    rows = _rows(influxdb, influx_db)
    assert len(rows) == 4
    second = _import(config, lab)
    assert second.exit_code == 0, second.output
    again = _rows(influxdb, influx_db)
    assert len(again) == 4
    by_item = {r["item"]: r for r in again}
    assert by_item["cod_mg_l"]["value"] == 25 and by_item["cod_mg_l"]["county"] == "清河区"
    assert by_item["cod_mg_l"]["below_dl"] is False
    assert by_item["hg_mg_l"]["below_dl"] is True and by_item["hg_mg_l"]["dl"] == 0.00004
    assert by_item["hg_mg_l"]["value"] is None
    assert by_item["cd_mg_l"]["site"] == "湖心断面" and by_item["cd_mg_l"]["dl"] == 0.0005
    # 2026-11-06 09:30 in Asia/Shanghai is 01:30 UTC.
    assert by_item["cd_mg_l"]["time"] == 1_793_928_600_000


def test_bad_file_imports_nothing(tmp_path: Path, influxdb: LocalInfluxDB, influx_db: str) -> None:
    config = _setup(tmp_path, influxdb, influx_db)
    lab = tmp_path / "bad.csv"
    lab.write_text(BAD, encoding="utf-8")
    result = _import(config, lab)
    assert result.exit_code == 2
    assert f"{lab}:3: item: unknown item 'zinc'" in result.stderr
    assert "nothing imported" in result.stderr
    assert "Traceback" not in result.output
    assert _rows(influxdb, influx_db) == []
