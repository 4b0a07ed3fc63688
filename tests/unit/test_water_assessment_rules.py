"""The pure part of report/water_assessment.py: which data an item takes, months, period value,
rounding. Classes worked by hand from GB 3838-2002 Table 1."""

from __future__ import annotations

from datetime import date, timedelta

from report.sections import Period
from report.water_assessment import SectionData, WaterRules, months_of, section_stats, shares

Q4 = Period(date(2026, 10, 1), date(2026, 12, 31), "2026-Q4")


def days(first: date, n: int) -> list[date]:
    return [first + timedelta(days=i) for i in range(n)]


def test_months_are_clipped_to_the_period() -> None:
    custom = Period(date(2026, 10, 20), date(2026, 12, 5), "custom")
    assert months_of(custom) == [
        ("2026-10", date(2026, 10, 20), date(2026, 10, 31)),
        ("2026-11", date(2026, 11, 1), date(2026, 11, 30)),
        ("2026-12", date(2026, 12, 1), date(2026, 12, 5)),
    ]


def test_auto_item_short_of_days_takes_the_lab_value() -> None:
    closed = days(date(2026, 11, 1), 30)
    s = SectionData("A", "c", "river", "national")
    for d in closed[:5]:  # 5 of 30 days: under 75 %
        s.auto[d] = {"nh3n_mg_l": 0.4}  # II
    s.lab["nh3n_mg_l"] = [(date(2026, 11, 10), 1.2, False)]  # IV
    nov = Period(date(2026, 11, 1), date(2026, 11, 30), "2026-11")
    st = section_stats(s, nov, closed, WaterRules())
    assert st.period.values["nh3n_mg_l"].source == "lab"
    assert (st.period.water_class, st.period.status) == (4, "ok")
    # Without the lab value the short automatic mean stands, and the month is insufficient.
    s.lab.clear()
    st = section_stats(s, nov, closed, WaterRules())
    assert (st.period.water_class, st.period.status, st.period.short) == (
        2,
        "insufficient",
        ["nh3n_mg_l"],
    )


def test_period_is_the_mean_of_monthly_values_or_of_samples() -> None:
    closed = days(date(2026, 10, 1), 92)
    s = SectionData("A", "c", "river", "national")
    # COD from the lab: October one result 14 (I), November three results 22 (IV each),
    # December one result 14. Months: 14, 22, 14 → mean 16.67 (III). Samples: (14+66+14)/5 =
    # 18.8 (III). Hg below the limit 0.0002: half is 0.0001 (III).
    s.lab["cod_mg_l"] = [
        (date(2026, 10, 5), 14.0, False),
        *[(date(2026, 11, d), 22.0, False) for d in (3, 13, 23)],
        (date(2026, 12, 5), 14.0, False),
    ]
    s.lab["hg_mg_l"] = [(date(2026, 11, 3), 0.0002, True)]
    months = section_stats(s, Q4, closed, WaterRules())
    assert [m.water_class for m in months.months] == [1, 4, 1]
    assert abs(months.period.values["cod_mg_l"].value - 50 / 3) < 1e-9
    assert months.period.water_class == 3
    assert months.period.values["hg_mg_l"].value == 0.0001
    samples = section_stats(s, Q4, closed, WaterRules(period_value="samples"))
    assert abs(samples.period.values["cod_mg_l"].value - 18.8) < 1e-9
    assert samples.period.values["cod_mg_l"].n == 5


def test_rounding_half_even_before_classing() -> None:
    closed = days(date(2026, 11, 1), 30)
    s = SectionData("A", "c", "river", "national")
    s.lab["cod_mg_l"] = [(date(2026, 11, 2), 20.5, False)]  # IV unrounded
    nov = Period(date(2026, 11, 1), date(2026, 11, 30), "2026-11")
    assert section_stats(s, nov, closed, WaterRules()).period.water_class == 4
    # No decimals, half to even (GB/T 8170): 20.5 → 20, Class III (half up would give 21, IV).
    rounded = section_stats(s, nov, closed, WaterRules(decimals={"cod_mg_l": 0}))
    assert rounded.period.water_class == 3


def test_shares_count_sections_without_data_in_the_denominator() -> None:
    closed = days(date(2026, 11, 1), 30)
    nov = Period(date(2026, 11, 1), date(2026, 11, 30), "2026-11")
    good = SectionData("A", "x", "river", "national")
    good.lab["cod_mg_l"] = [(date(2026, 11, 2), 10.0, False)]
    empty = SectionData("B", "y", "river", "national")
    stats = [section_stats(x, nov, closed, WaterRules()) for x in (good, empty)]
    city, counties = shares(stats)
    assert (city.sections, city.good, city.share_pct) == (2, 1, 50.0)
    assert [(c.name, c.share_pct) for c in counties] == [("x", 100.0), ("y", 0.0)]
