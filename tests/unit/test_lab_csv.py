"""The lab results file (report/lab.py): what is accepted, what refuses the whole file and how."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from devices.gb3838 import ASSESSED_ITEMS_2020, TABLE1_LAB_LIMITS, item_class
from report.lab import LAB_MEASUREMENT, LabFileError, lab_lines, parse_lab_csv

TZ = ZoneInfo("Asia/Shanghai")
SECTIONS = {"城南断面": "清河区", "湖心断面": "洪泽区"}
HEADER = "section,sampled_at,item,value,dl,flag,lab,method\n"


def parse(body: str, header: str = HEADER) -> list:  # type: ignore[type-arg]
    return parse_lab_csv(header + body, "lab.csv", SECTIONS, TZ)


def test_good_rows_values_and_times() -> None:
    rows = parse(
        "城南断面,2026-11-05,cod_mg_l,25,,,市监测站,HJ 828-2017\n"
        "湖心断面,2026-11-05 10:30,hg_mg_l,0.00003,,,市监测站,\n"
    )
    assert [(r.line, r.site, r.county, r.item, r.value) for r in rows] == [
        (2, "城南断面", "清河区", "cod_mg_l", 25.0),
        (3, "湖心断面", "洪泽区", "hg_mg_l", 0.00003),
    ]
    # A date alone is local midnight; a time is local time (UTC+8 in Asia/Shanghai).
    assert rows[0].ts_ms == int(datetime(2026, 11, 5, tzinfo=TZ).timestamp() * 1000)
    assert rows[1].ts_ms == int(
        datetime(2026, 11, 5, 2, 30, tzinfo=ZoneInfo("UTC")).timestamp() * 1000
    )
    assert rows[0].lab == "市监测站" and rows[0].method == "HJ 828-2017"


@pytest.mark.parametrize(
    ("value", "dl", "flag", "expected_dl"),
    [
        ("<0.01", "", "", 0.01),
        ("0.01L", "", "", 0.01),
        ("", "0.0005", "ND", 0.0005),
        ("ND", "0.004", "", 0.004),
        ("<0.01", "0.01", "", 0.01),
    ],
)
def test_below_detection_limit_forms(value: str, dl: str, flag: str, expected_dl: float) -> None:
    (r,) = parse(f"城南断面,2026-11-05,cd_mg_l,{value},{dl},{flag},,\n")
    assert r.below_dl and r.value is None and r.dl == expected_dl
    # 环办监测函〔2020〕82号: half the detection limit enters the statistics.
    assert r.statistic() == pytest.approx(expected_dl / 2)


def test_one_bad_row_refuses_the_file_with_its_line() -> None:
    body = (
        "城南断面,2026-11-05,cod_mg_l,25,,,,\n"
        "城南断面,2026-11-06,cod_mg_l,abc,,,,\n"
        "城南断面,2026-11-07,cod_mg_l,18,,,,\n"
    )
    with pytest.raises(LabFileError) as e:
        parse(body)
    lines = str(e.value).splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("lab.csv:3: ")
    assert "'abc' is not a number" in lines[0]


def test_every_problem_is_listed() -> None:
    body = (
        "城北断面,2026-11-05,cod_mg_l,25,,,,\n"  # unknown section
        "城南断面,2026-11-05,cod_mgl,25,,,,\n"  # unknown item
        "城南断面,2026-13-05,cod_mg_l,25,,,,\n"  # bad date
        "城南断面,2026-11-05,cd_mg_l,,,ND,,\n"  # ND without dl
        "城南断面,2026-11-05,cod_mg_l,-1,,,,\n"  # negative
        "城南断面,2026-11-05,cod_mg_l,26,,,,\n"  # fine
        "城南断面,2026-11-05,cod_mg_l,27,,,,\n"  # duplicate of line 7
        "城南断面,2026-11-05,cod_mg_l\n"  # too few fields
    )
    with pytest.raises(LabFileError) as e:
        parse(body)
    lines = str(e.value).splitlines()
    assert [ln.split(":")[1] for ln in lines] == ["2", "3", "4", "5", "6", "8", "9"]
    assert "section '城北断面' is not a water station's site" in lines[0]
    assert "unknown item 'cod_mgl'" in lines[1] and "cu_mg_l" in lines[1]
    assert "is not a date or time" in lines[2]
    assert "fill in the dl column" in lines[3]
    assert "must be a number ≥ 0" in lines[4]
    assert "as line 7" in lines[5]
    assert "the header has 8" in lines[6]


def test_header_problems() -> None:
    with pytest.raises(LabFileError, match=r"lab.csv:1: missing column\(s\) item"):
        parse("城南断面,2026-11-05,25\n", header="section,sampled_at,value\n")
    with pytest.raises(LabFileError, match=r"unknown column\(s\) 'unit'"):
        parse(
            "城南断面,2026-11-05,cod_mg_l,25,mg/L\n", header="section,sampled_at,item,value,unit\n"
        )
    with pytest.raises(LabFileError, match=r"lab\.csv:1: the file is empty"):
        parse_lab_csv("", "lab.csv", SECTIONS, TZ)
    with pytest.raises(LabFileError, match="no results below the header"):
        parse("")


def test_optional_columns_may_be_left_out_and_bom_is_ignored() -> None:
    (r,) = parse_lab_csv(
        "\ufeffsection,sampled_at,item,value\n城南断面,2026-11-05,bod5_mg_l,3.2\n",
        "lab.csv",
        SECTIONS,
        TZ,
    )
    assert (r.item, r.value, r.dl, r.lab) == ("bod5_mg_l", 3.2, None, "")


def test_line_protocol_is_one_point_per_result() -> None:
    rows = parse(
        "城南断面,2026-11-05,cod_mg_l,25,,,lab a,\n湖心断面,2026-11-05,cd_mg_l,<0.001,,,,\n"
    )
    a, b = lab_lines(rows)
    assert a.startswith(f"{LAB_MEASUREMENT},county=清河区,item=cod_mg_l,site=城南断面 ")
    assert "value=25.0" in a and "below_dl=false" in a and 'lab="lab a"' in a
    assert "below_dl=true" in b and "dl=0.001" in b and "value=" not in b


def test_table1_lab_items_are_classed() -> None:
    # GB 3838-2002 Table 1: 21 assessed items (82号), Hg class III limit 0.0001, Cd class I 0.001.
    assert len(ASSESSED_ITEMS_2020) == 21
    assert set(TABLE1_LAB_LIMITS) <= set(ASSESSED_ITEMS_2020)
    assert item_class("hg_mg_l", 0.0001) == 3
    assert item_class("hg_mg_l", 0.00011) == 4
    assert item_class("cd_mg_l", 0.002) == 2
    assert item_class("pb_mg_l", 0.2) == 6
