"""The period report's pure parts: naming a period, the last closed one, the marks the rollups
skip, and every format rendering any section from its interface alone."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest

from report import plan as P
from report.figures import PlanReport, load_plan
from report.period import (
    PeriodError,
    PeriodReport,
    custom,
    kind_of,
    last_closed,
    parse_at,
    resolve,
)
from report.render import render
from report.sections import Period, Table
from rollups.review import EXCEPTIONAL_EVENT, REASONS, Mark, Marks, check, rollup_marks


@pytest.mark.parametrize(
    ("kind", "at", "first", "last", "label"),
    [
        ("month", "2026-11", date(2026, 11, 1), date(2026, 11, 30), "2026-11"),
        ("month", "2024-2", date(2024, 2, 1), date(2024, 2, 29), "2024-02"),
        ("quarter", "2026-Q4", date(2026, 10, 1), date(2026, 12, 31), "2026-Q4"),
        ("quarter", "2026q1", date(2026, 1, 1), date(2026, 3, 31), "2026-Q1"),
        ("year", "2026", date(2026, 1, 1), date(2026, 12, 31), "2026"),
    ],
)
def test_at_names_a_period(kind: Any, at: str, first: date, last: date, label: str) -> None:
    p = parse_at(kind, at)
    assert (p.first, p.last, p.label) == (first, last, label)
    assert kind_of(p) == kind


@pytest.mark.parametrize(
    ("kind", "today", "label"),
    [
        ("month", date(2026, 12, 3), "2026-11"),
        ("month", date(2027, 1, 1), "2026-12"),
        ("quarter", date(2026, 12, 3), "2026-Q3"),
        ("quarter", date(2026, 2, 10), "2025-Q4"),
        ("year", date(2026, 12, 3), "2025"),
    ],
)
def test_default_is_the_last_closed_period(kind: Any, today: date, label: str) -> None:
    assert last_closed(kind, today).label == label


def test_custom_and_errors() -> None:
    p = resolve("custom", None, date(2026, 2, 15), date(2026, 3, 14), date(2026, 12, 3))
    assert p == custom(date(2026, 2, 15), date(2026, 3, 14))
    assert p is not None and (p.label, kind_of(p), p.days) == (
        "2026-02-15..2026-03-14",
        "custom",
        28,
    )
    assert resolve(None, None, date(2026, 1, 1), None, date(2026, 12, 3)) is None  # plan report
    Args = tuple[str | None, str | None, date | None, date | None]
    cases: list[tuple[Args, str]] = [
        (
            ("month", "2026-Q4", None, None),
            "--at '2026-Q4' is not a month: write e.g. --at 2026-11",
        ),
        (("month", None, date(2026, 1, 1), None), "--period month takes --at, not --from/--to"),
        (("custom", None, date(2026, 2, 1), None), "--period custom needs --from and --to"),
        (("custom", "2026", date(2026, 2, 1), date(2026, 2, 2)), "not --at"),
        ((None, "2026-11", None, None), "--at needs --period"),
        (("fortnight", None, None, None), "--period 'fortnight' is not a period"),
    ]
    for (kind, at, first, last), text in cases:
        with pytest.raises(PeriodError, match=re.escape(text)):
            resolve(kind, at, first, last, date(2026, 12, 3))


def test_exceptional_event_marks_stay_out_of_the_rollups() -> None:
    assert EXCEPTIONAL_EVENT in REASONS
    event = Mark("AQ-1", ("*",), 0, 1000, "invalidate", EXCEPTIONAL_EVENT, "alice", "dust")
    check(event)  # an auditor may record it
    maintenance = Mark("AQ-1", ("pm25_ug_m3",), 500, 800, "invalidate", "maintenance", "bob", id=2)
    marks = Marks(rollup_marks([Mark(**{**_fields(event), "id": 1}), maintenance]))
    assert marks.verdict("AQ-1", "pm10_ug_m3", 100) is None  # the event leaves the data valid
    assert marks.verdict("AQ-1", "pm25_ug_m3", 600) == maintenance  # other reasons still apply


def _fields(m: Mark) -> dict[str, Any]:
    return {f: getattr(m, f) for f in Mark.__dataclass_fields__}


# ------------------------------------------------------------------ rendering any section


@dataclass
class Sample:
    """A section as a future builder would return it: only the interface."""

    key: str = "sample_stats"

    def to_json(self) -> dict[str, Any]:
        return {"rows": 2, "when": "2026-11"}

    def tables(self) -> Sequence[Table]:
        return [
            Table("样表 Sample table", ["名称 Name", "值 Value"], [["甲 <b>", 1.5], ["乙", None]])
        ]

    def points(self) -> Sequence[str]:
        return []

    def notes(self) -> Sequence[str]:
        return ["one station had no data"]


def _empty_plan() -> PlanReport:
    plan = load_plan()
    figures = [
        P.water_figure([], plan),
        P.air_figure([], plan),
        *P.pv_figures([], 720.0, plan),
        *P.shore_figures([], plan),
        *P.ev_figures([], plan),
    ]
    return PlanReport(
        plan_zh="测试",
        plan_en="Test",
        city="C",
        start=date(2026, 11, 1),
        end=date(2026, 11, 30),
        covered_to=date(2026, 11, 30),
        county=None,
        timezone="Asia/Shanghai",
        generated_at="2026-12-03T00:00:00+08:00",
        emission_factor=0.5306,
        emission_source="test",
        shore_obliged_hours=2.0,
        figures=figures,
        sections=[],
        air_days=[],
        air=P.air_summary([]),
        inverters=[],
        counties=[],
        lowest=[],
        berths=[],
        ports=[],
        connectors=[],
    )


def test_every_format_renders_a_section_from_its_interface() -> None:
    period = Period(date(2026, 11, 1), date(2026, 11, 30), "2026-11")
    report = PeriodReport(_empty_plan(), period, [Sample()])
    data = json.loads(render(report, "json"))
    assert data["sample_stats"] == {"rows": 2, "when": "2026-11"}
    assert data["period"] == {
        "first": "2026-11-01",
        "last": "2026-11-30",
        "label": "2026-11",
        "kind": "month",
    }
    text = render(report, "csv")
    rows = [r for r in csv.reader(io.StringIO(text)) if r]
    assert ["section", "table", "名称 Name", "值 Value"] in rows
    assert ["sample_stats", "样表 Sample table", "甲 <b>", "1.5"] in rows
    assert ["sample_stats", "样表 Sample table", "乙", ""] in rows
    assert ["sample_stats", "one station had no data"] in rows
    table = render(report, "table")
    assert "样表 Sample table" in table and "甲 <b>" in table and "one station had no data" in table
    html = render(report, "html")
    assert (
        'id="sample_stats"' in html and "甲 &lt;b&gt;" in html and '<td class="n">1.5</td>' in html
    )


def test_a_section_key_may_not_shadow_the_plan_report() -> None:
    report = PeriodReport(
        _empty_plan(), Period(date(2026, 11, 1), date(2026, 11, 30), "2026-11"), [Sample("air")]
    )
    with pytest.raises(ValueError, match="section key 'air' is already a key"):
        render(report, "json")
