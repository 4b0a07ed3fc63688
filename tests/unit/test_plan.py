"""The plan file and the pure plan figures (report.plan): worked examples, edge cases, errors.

Expected numbers are worked by hand (GB 3838-2002 limits, 港口和船舶岸电管理办法's 2 h rule,
OCPP 1.6 statuses as in /work/shared/standards.md), never by calling the code under test.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path

import pytest

from report import plan as P
from report.figures import DEFAULT_PLAN, load_plan

H = P.HOUR_MS
DOCS = Path(__file__).resolve().parents[2] / "docs" / "report.md"


def shipped_text() -> str:
    return DEFAULT_PLAN.read_text(encoding="utf-8")


def test_shipped_plan_is_valid_and_every_target_cites_its_source() -> None:
    plan = load_plan()
    assert {t.id: (t.formula, t.threshold, t.direction) for t in plan.targets} == {
        "water_iii_ratio": ("sections_iii_ratio", 81.8, ">="),
        "air_good_days": ("good_days_ratio", 81.0, ">="),
        "shore_power_use": ("calls_ratio", 90.0, ">="),
        "pv_pilot_counties": ("pv_pilot_counties", 5.0, ">="),
        "ev_availability": ("ev_availability", 95.0, ">="),
    }
    assert plan.grid.emission_factor_kg_per_kwh == 0.5306
    assert "2023年电力二氧化碳排放因子" in plan.grid.source
    assert (plan.plan.start, plan.plan.end) == (date(2025, 1, 1), date(2025, 12, 31))
    # A comment right above each [[targets]] header says where the number comes from.
    lines = shipped_text().splitlines()
    for i, line in enumerate(lines):
        if line.strip() == "[[targets]]":
            assert lines[i + 1].startswith("#"), f"line {i + 2}: target without its source"
    assert "emission_factor_kg_per_kwh" in shipped_text()
    assert re.search(r"#.*0\.5306 kgCO2/kWh is the 2023 national average", shipped_text())


def test_every_formula_is_documented() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for name in P.FORMULAS:
        assert f"`{name}`" in text, name


def _line(text: str, needle: str, occurrence: int = 1) -> int:
    hits = [i for i, t in enumerate(text.splitlines(), 1) if t.startswith(needle)]
    return hits[occurrence - 1]


@pytest.mark.parametrize(
    ("old", "new", "needle", "occurrence", "message"),
    [
        (
            'formula = "good_days_ratio"',
            'formula = "good_day_ratio"',
            "formula",
            2,
            "targets[1].formula: unknown formula 'good_day_ratio'",
        ),
        (
            'period = "2025"',
            'period = "2025-13-01/2025-12-31"',
            "period",
            1,
            "targets[0].period: period '2025-13-01/2025-12-31': write a year",
        ),
        ("threshold = 81.0", 'threshold = "high"', "threshold", 2, "targets[1].threshold:"),
        ("lowest = 5", "lowst = 5", "lowst", 1, "pv.lowst: unknown key"),
        (
            'step = "5m"',
            'step = "5 minutes"',
            "step",
            1,
            "shore_power.step: '5 minutes' is not a duration",
        ),
        (
            "water_min_day_share = 0.75",
            "water_min_day_share = 1.5",
            "water_min_day_share",
            1,
            "coverage.water_min_day_share: Input should be less than or equal to 1",
        ),
    ],
)
def test_plan_errors_name_the_line(
    old: str, new: str, needle: str, occurrence: int, message: str
) -> None:
    text = shipped_text().replace(old, new, 1)
    with pytest.raises(P.PlanError) as e:
        P.parse_plan(text, "city-plan.toml")
    line = _line(text, needle, occurrence)
    assert str(e.value).startswith(f"city-plan.toml:{line}: {message}"), str(e.value)
    assert "\n" not in str(e.value)


def test_plan_errors_for_whole_tables_and_bad_toml() -> None:
    text = shipped_text().replace('id = "air_good_days"', 'id = "water_iii_ratio"')
    with pytest.raises(P.PlanError, match="target id 'water_iii_ratio' is used twice"):
        P.parse_plan(text, "p.toml")
    no_grid = re.sub(r"\[grid\].*?(?=\n\[coverage\])", "", shipped_text(), flags=re.S)
    with pytest.raises(P.PlanError, match=r"^p\.toml: grid: missing: add it$"):
        P.parse_plan(no_grid, "p.toml")
    with pytest.raises(P.PlanError, match=r"^p\.toml: not valid TOML: .*line 1"):
        P.parse_plan("[plan\n", "p.toml")
    backwards = shipped_text().replace("to = 2025-12-31", "to = 2024-12-31")
    with pytest.raises(P.PlanError, match=r"p\.toml:\d+: plan: .*'to' is before 'from'"):
        P.parse_plan(backwards, "p.toml")
    with pytest.raises(P.PlanError, match=r"nowhere\.toml: cannot read the plan file"):
        load_plan(Path("nowhere.toml"))


def test_target_direction_and_periods() -> None:
    t = P.TargetSpec(
        id="pm25",
        description_zh="PM2.5",
        description_en="PM2.5",
        formula="ev_utilisation",
        period="2025-04-01/2025-06-30",
        threshold=35,
        direction="<=",
    )
    assert (t.met(35.0), t.met(35.01), t.met(None)) == (True, False, None)
    assert t.bounds == (date(2025, 4, 1), date(2025, 6, 30))
    assert P.parse_period("2024") == (date(2024, 1, 1), date(2024, 12, 31))
    with pytest.raises(ValueError, match="ends before it starts"):
        P.parse_period("2025-02-01/2025-01-01")


# ------------------------------------------------------------------------------------ water


def _section(
    values: dict[str, float], days: int, section_type: P.SectionType = "river"
) -> P.SectionInput:
    s = P.SectionInput("S", "C", section_type, "national")
    for i in range(days):
        s.days[date(2025, 1, 1) + timedelta(days=i)] = dict(values)
    return s


GOOD = {"ph": 7.2, "do_mg_l": 7.0, "codmn_mg_l": 3.0, "nh3n_mg_l": 0.3, "tp_mg_l": 0.04}


def test_section_period_class_from_item_means_and_coverage() -> None:
    # TP 0.04: river Class II (≤ 0.1), lake Class III (≤ 0.05): the lake row is used.
    river = P.section_period(_section(GOOD, 300, "river"), 365, 0.75)
    lake = P.section_period(_section(GOOD, 300, "lake"), 365, 0.75)
    assert (river.water_class, river.roman, river.status, river.counted_good) == (
        2,
        "II",
        "ok",
        True,
    )
    assert (lake.water_class, lake.limiting_items) == (3, ["tp_mg_l"])
    # 273 of 365 days (74.8 %) is under 75 %: named, class still shown, not counted as good.
    thin = P.section_period(_section(GOOD, 273, "river"), 365, 0.75)
    assert (thin.status, thin.water_class, thin.counted_good) == ("insufficient", 2, False)
    assert P.section_period(_section(GOOD, 274, "river"), 365, 0.75).status == "ok"
    empty = P.section_period(_section(GOOD, 0), 365, 0.75)
    assert (empty.status, empty.water_class, empty.counted_good) == ("no_data", None, False)


def test_water_figure_counts_missing_sections_as_not_good() -> None:
    plan = load_plan()
    ok = P.section_period(_section(GOOD, 365), 365, 0.75)
    bad = P.section_period(_section({**GOOD, "nh3n_mg_l": 1.2}, 365), 365, 0.75)  # IV
    missing = P.section_period(_section(GOOD, 0), 365, 0.75)
    f = P.water_figure([ok, ok, ok, bad, missing], plan)
    assert (f.value, f.note, f.met, f.threshold) == (60.0, "3 / 5", False, 81.8)
    assert (f.coverage.covered, f.coverage.expected, f.coverage.missing) == (4, 5, ["S"])


# -------------------------------------------------------------------------------------- air


def test_air_days_invalid_and_missing_are_never_good() -> None:
    plan = load_plan()
    d = date(2025, 6, 1)
    rows = [
        {"aqi": 40, "aqi_category": 1, "good_day": True, "valid": True, "aqi_edition": "2012"},
        {
            "aqi": 120,
            "aqi_category": 3,
            "good_day": False,
            "valid": True,
            "primary_pollutant": "pm25_ug_m3,o3_8h_ug_m3",
            "aqi_edition": "2012",
        },
        # Good AQI from 12 hours: not valid (GB 3095 needs 20), not counted.
        {"aqi": 30, "aqi_category": 1, "good_day": True, "valid": False, "aqi_edition": "2012"},
        None,
    ]
    days = [P.air_day(d + timedelta(days=i), r) for i, r in enumerate(rows)]
    assert [x.status for x in days] == ["good", "not_good", "invalid", "missing"]
    s = P.air_summary(days)
    assert (s.good, s.valid, s.categories[1], s.categories[3]) == (1, 2, 1, 1)
    assert s.primary == {"o3_8h_ug_m3": 1, "pm25_ug_m3": 1}  # ties: both primary
    assert s.editions == {"2012": 3}
    f = P.air_figure(days, plan)
    assert (f.value, f.note, f.met) == (50.0, "1 / 2", False)
    assert f.coverage.missing == ["2025-06-04"] and f.coverage.insufficient == ["2025-06-03"]


# ------------------------------------------------------------------------------------- energy


def test_register_delta_counts_increases_and_skips_resets() -> None:
    # 100 → 110 → 125, meter replaced (reads 3), → 10: 10 + 15 + 7 = 32 kWh, one reset.
    d = P.register_delta([110.0, 125.0, 3.0, None, 10.0], baseline=100.0)
    assert (d.kwh, d.resets) == (32.0, 1)
    assert P.register_delta([5.0, 7.0]).kwh == 2.0  # no baseline: from the first reading


def test_inverter_hours_and_capacity_factor() -> None:
    days = [(100.0 + 20 * i, 100.0 + 20 * (i + 1)) for i in range(10)]  # 20 kWh a day
    r = P.inverter_result("PV-1", "s", "c", True, 10.0, days, None, 10, 240.0, 0.8)
    # 200 kWh ÷ 10 kWp = 20 h; 200 ÷ (10 × 240) = 8.33 %.
    assert (r.kwh, r.equivalent_hours, r.status) == (200.0, 20.0, "ok")
    assert r.capacity_factor_pct == pytest.approx(200 / 2400 * 100)
    unknown = P.inverter_result("PV-2", "s", "c", True, None, days, None, 10, 240.0, 0.8)
    assert (unknown.kwh, unknown.equivalent_hours) == (200.0, None)
    none = P.inverter_result("PV-3", "s", "c", True, 10.0, [], 50.0, 10, 240.0, 0.8)
    assert (none.kwh, none.status) == (None, "no_data")


# --------------------------------------------------------------------------- state series


def test_hold_durations_bridge_short_gaps_only() -> None:
    # Samples each 5 min, then a 1 h hole: the sample before the hole holds its bucket only.
    m = 60_000
    ts = [0, 5 * m, 10 * m, 70 * m]
    assert P.hold_durations(ts, 0, 75 * m, 5 * m, 15 * m) == [5 * m, 5 * m, 5 * m, 5 * m]
    # The period ends at 72 min: the last sample holds 2 min; a sample before the start counts
    # from the start.
    assert P.hold_durations([-2 * m, 70 * m], 0, 72 * m, 5 * m, 15 * m) == [3 * m, 2 * m]


def _shore(states: list[tuple[str | None, bool]], energy_step: float = 10.0) -> list[P.Sample]:
    out, e = [], 0.0
    for i, (vessel, connected) in enumerate(states):
        out.append(P.Sample(i * H, connected=connected, vessel=vessel, energy=e))
        if connected:
            e += energy_step
    return out


def test_berth_calls_obliged_after_two_hours_and_sessions() -> None:
    spec = P.ShoreSpec(step=timedelta(hours=1), max_gap=timedelta(hours=2), obliged_min_hours=2)
    states = (
        [("A", False), ("A", True), ("A", True)]  # 3 h call, connected 2 h: obliged, used
        + [(None, False)]
        + [("B", False), ("B", False)]  # exactly 2 h: not obliged (more than 2 h is)
        + [(None, False)]
        + [("C", False)] * 4  # 4 h, never connected: obliged, not used
        + [(None, True)]  # connected, no vessel id: a call of an unknown ship
        + [(None, False)]
    )
    samples = _shore(states)
    r = P.berth_result("SP", "port", "B1", "c", samples, 0, len(states) * H, spec, 0.8)
    assert (r.calls, r.obliged_calls, r.obliged_using) == (4, 2, 1)
    assert (r.sessions, r.connection_hours, r.kwh) == (2, 3.0, 30.0)
    assert (r.berthing_hours, r.call_connection_hours) == (10.0, 3.0)
    assert (r.observed_hours, r.status) == (len(states), "ok")


def test_connector_availability_and_sessions() -> None:
    spec = P.SeriesSpec(step=timedelta(hours=1), max_gap=timedelta(hours=2))
    statuses = ["Available", "Charging", "Charging", "Faulted", "Available", "Preparing",
                "Charging", "Finishing", "Unavailable", "Available"]  # fmt: skip
    samples = [P.Sample(i * H, state=s, energy=float(i)) for i, s in enumerate(statuses)]
    samples.append(P.Sample(20 * H, state="Charging", energy=12.0))  # after a 10 h hole
    r = P.connector_result("EV", "1", "s", "c", 60.0, samples, 0, 24 * H, spec, 0.5)
    # Hours: 11 observed; Faulted 1 + Unavailable 1 → 9 available; occupied 2 + 3 + 1 = 6.
    assert (r.observed_hours, r.available_hours, r.unavailable_hours) == (11.0, 9.0, 2.0)
    assert (r.occupied_hours, r.sessions, r.kwh) == (6.0, 3, 12.0)
    assert r.availability_pct == pytest.approx(9 / 24 * 100)
    assert r.status == "insufficient"  # 11 of 24 h < 50 %
