"""The vessel register and berthing-record CSV files: a bad row refuses the whole file with
its line number; a good file gives one deterministic point per row."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from envgrid.cli.main import app
from report.shore_calls import VesselFacts, judge
from report.shore_csv import ShoreCsvError, parse_calls, parse_vessels

TZ = ZoneInfo("Asia/Shanghai")
BERTHS = {"金湖港1号泊位": "金湖港1号泊位", "SP-01": "金湖港1号泊位"}


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


VESSELS = """vessel,name,mmsi,equipped,liquid_cargo,exemption
413000001,苏货1,413000001,yes,no,
413000002,苏油2,,是,是,
SUHUO-3,,,no,no,
"""

CALLS = """vessel,berth,arrival,departure,exemption
413000001,金湖港1号泊位,2026-11-03 08:00,2026-11-03 14:00,
413000002,SP-01,2026-11-04T08:00+08:00,2026-11-04T20:00+08:00,
SUHUO-3,金湖港1号泊位,2026-11-05 08:00,2026-11-05 09:30,故障
"""


def test_a_good_register_gives_one_point_per_vessel() -> None:
    vessels = parse_vessels(VESSELS, "v.csv")
    assert [(v.vessel, v.equipped, v.liquid_cargo) for v in vessels] == [
        ("413000001", True, False),
        ("413000002", True, True),
        ("SUHUO-3", False, False),
    ]
    lines = [v.line(TZ) for v in vessels]
    # Without valid_from a row holds from the Measures' entry into force (2020-02-01 local).
    assert lines[0].startswith("shore_vessels,vessel=413000001 ")
    assert lines[0].endswith(f" {_ms(datetime(2020, 2, 1, tzinfo=TZ))}")
    assert 'exemption=""' in lines[0]  # always written: a re-import clears an old exemption
    assert lines == [v.line(TZ) for v in parse_vessels(VESSELS, "v.csv")]


def test_good_calls_resolve_the_berth_and_the_local_time() -> None:
    calls = parse_calls(CALLS, "c.csv", BERTHS, TZ)
    assert [c.berth for c in calls] == ["金湖港1号泊位"] * 3
    assert calls[0].arrival_ms == _ms(datetime(2026, 11, 3, 8, tzinfo=TZ))
    assert calls[0].departure_ms - calls[0].arrival_ms == 6 * 3_600_000
    assert calls[1].arrival_ms == _ms(datetime(2026, 11, 4, 8, tzinfo=TZ))
    assert calls[2].exemption == "fault"
    line = calls[0].line()
    assert line.startswith("shore_calls,site=金湖港1号泊位,vessel=413000001 ")
    assert line.endswith(f" {calls[0].arrival_ms}")


@pytest.mark.parametrize(
    ("bad", "line", "words"),
    [
        ("413000009,金湖港1号泊位,2026-11-06 08:00,2026-11-06 07:00,", 4, "departure is not after"),
        ("413000009,码头X,2026-11-06 08:00,2026-11-06 12:00,", 4, "berth '码头X'"),
        ("413000009,SP-01,6 Nov 08:00,2026-11-06 12:00,", 4, "arrival '6 Nov 08:00'"),
        ("413000009,SP-01,2026-11-06 08:00,2026-11-06 12:00,strike", 4, "exemption 'strike'"),
        (",SP-01,2026-11-06 08:00,2026-11-06 12:00,", 4, "vessel is empty"),
        ("413000001,SP-01,2026-11-03 08:00,2026-11-03 15:00,", 4, "already at line 2"),
    ],
)
def test_one_bad_call_refuses_the_file_with_its_line(bad: str, line: int, words: str) -> None:
    text = CALLS.replace("SUHUO-3,金湖港1号泊位,2026-11-05 08:00,2026-11-05 09:30,故障\n", "")
    text = text.replace("413000001,金湖港1号泊位", "413000001,SP-01") + bad + "\n"
    with pytest.raises(ShoreCsvError) as e:
        parse_calls(text, "calls.csv", BERTHS, TZ)
    first = str(e.value).splitlines()[0]
    assert first.startswith(f"calls.csv:{line}: "), first
    assert words in first
    assert str(e.value).splitlines()[-1].startswith("calls.csv: nothing imported")


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        ("413000009,,,maybe,no,", "equipped: 'maybe' is not yes or no"),
        ("413000009,,12345,yes,no,", "mmsi '12345' is not 9 digits"),
        ("413000001,,,yes,no,", "already at line 2"),
        ("413000009,,,yes,no,,extra", "more cells than the header"),
    ],
)
def test_one_bad_vessel_refuses_the_register_with_its_line(bad: str, words: str) -> None:
    with pytest.raises(ShoreCsvError) as e:
        parse_vessels(VESSELS + bad + "\n", "vessels.csv")
    first = str(e.value).splitlines()[0]
    assert first.startswith("vessels.csv:5: "), first
    assert words in first


def test_a_header_without_a_required_column_is_refused() -> None:
    with pytest.raises(ShoreCsvError, match=r"^v\.csv:1: missing column\(s\) liquid_cargo"):
        parse_vessels("vessel,equipped\nA,yes\n", "v.csv")


def test_art_11_decides_which_calls_are_obliged() -> None:
    ship = VesselFacts("", equipped=True, liquid_cargo=False, exemption="")
    assert judge(ship, 2.5, 2.0, "") == ("obliged", "")
    assert judge(ship, 2.0, 2.0, "")[0] == "short"  # "超过2小时": exactly 2 h is not over
    assert judge(ship, 2.5, 3.0, "")[0] == "short"  # coastal threshold
    assert judge(ship, 8.0, 2.0, "bad_weather") == ("exempt", "bad_weather")
    tanker = VesselFacts("", equipped=True, liquid_cargo=True, exemption="")
    assert judge(tanker, 8.0, 2.0, "")[0] == "liquid_cargo"
    assert judge(VesselFacts("", False, False, ""), 8.0, 2.0, "")[0] == "not_equipped"
    assert judge(None, 8.0, 2.0, "")[0] == "unregistered"


def test_cli_refuses_a_bad_file_in_one_line_per_problem(tmp_path: Path) -> None:
    path = tmp_path / "vessels.csv"
    path.write_text(VESSELS + "413000009,,,maybe,no,\n", encoding="utf-8")
    config = tmp_path / "envgrid.toml"
    # No InfluxDB at this port: a refused file never reaches the write.
    config.write_text('[influx]\nurl = "http://127.0.0.1:9"\n', encoding="utf-8")
    result = CliRunner().invoke(app, ["shore", "vessels", "import", str(path), "-c", str(config)])
    assert result.exit_code == 2
    assert f"envgrid: {path}:5: equipped: 'maybe' is not yes or no" in result.output
    assert "Traceback" not in result.output
