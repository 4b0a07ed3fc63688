"""GB 3838-2002 surface-water class: limit edges, section class, names.

Expected classes are read off GB 3838-2002 Table 1 (as in /work/shared/standards.md) by hand.
"""

from __future__ import annotations

import math

import pytest

from devices.gb3838 import (
    LIMITS,
    SectionType,
    WaterClass,
    class_limit,
    item_class,
    section_class,
)

BOTH: tuple[SectionType, ...] = ("river", "lake")

# (item, value, expected class) identical for river and lake sections. At a limit -> that class
# (the better one); 0.001 worse -> the next class; 0.001 better -> still that class.
# Shared limits (COD 15 for I/II, BOD5 3 for I/II) give Class I at the limit and skip II above it.
SAME_FOR_BOTH: list[tuple[str, float, int]] = [
    # DO, a minimum: >= 7.5 I, >= 6 II, >= 5 III, >= 3 IV, >= 2 V, else 劣V
    ("do_mg_l", 7.501, 1),
    ("do_mg_l", 7.5, 1),
    ("do_mg_l", 7.499, 2),
    ("do_mg_l", 6.001, 2),
    ("do_mg_l", 6.0, 2),
    ("do_mg_l", 5.999, 3),
    ("do_mg_l", 5.001, 3),
    ("do_mg_l", 5.0, 3),
    ("do_mg_l", 4.999, 4),
    ("do_mg_l", 3.001, 4),
    ("do_mg_l", 3.0, 4),
    ("do_mg_l", 2.999, 5),
    ("do_mg_l", 2.001, 5),
    ("do_mg_l", 2.0, 5),
    ("do_mg_l", 1.999, 6),
    ("do_mg_l", 0.0, 6),
    # CODMn <= 2 / 4 / 6 / 10 / 15
    ("codmn_mg_l", 0.0, 1),
    ("codmn_mg_l", 1.999, 1),
    ("codmn_mg_l", 2.0, 1),
    ("codmn_mg_l", 2.001, 2),
    ("codmn_mg_l", 3.999, 2),
    ("codmn_mg_l", 4.0, 2),
    ("codmn_mg_l", 4.001, 3),
    ("codmn_mg_l", 5.999, 3),
    ("codmn_mg_l", 6.0, 3),
    ("codmn_mg_l", 6.001, 4),
    ("codmn_mg_l", 9.999, 4),
    ("codmn_mg_l", 10.0, 4),
    ("codmn_mg_l", 10.001, 5),
    ("codmn_mg_l", 14.999, 5),
    ("codmn_mg_l", 15.0, 5),
    ("codmn_mg_l", 15.001, 6),
    # COD <= 15 / 15 / 20 / 30 / 40: 15 is Class I, just above 15 is already Class III
    ("cod_mg_l", 14.999, 1),
    ("cod_mg_l", 15.0, 1),
    ("cod_mg_l", 15.001, 3),
    ("cod_mg_l", 19.999, 3),
    ("cod_mg_l", 20.0, 3),
    ("cod_mg_l", 20.001, 4),
    ("cod_mg_l", 29.999, 4),
    ("cod_mg_l", 30.0, 4),
    ("cod_mg_l", 30.001, 5),
    ("cod_mg_l", 39.999, 5),
    ("cod_mg_l", 40.0, 5),
    ("cod_mg_l", 40.001, 6),
    # BOD5 <= 3 / 3 / 4 / 6 / 10: 3 is Class I, just above 3 is Class III
    ("bod5_mg_l", 2.999, 1),
    ("bod5_mg_l", 3.0, 1),
    ("bod5_mg_l", 3.001, 3),
    ("bod5_mg_l", 3.999, 3),
    ("bod5_mg_l", 4.0, 3),
    ("bod5_mg_l", 4.001, 4),
    ("bod5_mg_l", 5.999, 4),
    ("bod5_mg_l", 6.0, 4),
    ("bod5_mg_l", 6.001, 5),
    ("bod5_mg_l", 9.999, 5),
    ("bod5_mg_l", 10.0, 5),
    ("bod5_mg_l", 10.001, 6),
    # NH3-N <= 0.15 / 0.5 / 1.0 / 1.5 / 2.0
    ("nh3n_mg_l", 0.149, 1),
    ("nh3n_mg_l", 0.15, 1),
    ("nh3n_mg_l", 0.151, 2),
    ("nh3n_mg_l", 0.499, 2),
    ("nh3n_mg_l", 0.5, 2),
    ("nh3n_mg_l", 0.501, 3),
    ("nh3n_mg_l", 0.999, 3),
    ("nh3n_mg_l", 1.0, 3),
    ("nh3n_mg_l", 1.001, 4),
    ("nh3n_mg_l", 1.499, 4),
    ("nh3n_mg_l", 1.5, 4),
    ("nh3n_mg_l", 1.501, 5),
    ("nh3n_mg_l", 1.999, 5),
    ("nh3n_mg_l", 2.0, 5),
    ("nh3n_mg_l", 2.001, 6),
    # TN (lake row, used for rivers too) <= 0.2 / 0.5 / 1.0 / 1.5 / 2.0
    ("tn_mg_l", 0.199, 1),
    ("tn_mg_l", 0.2, 1),
    ("tn_mg_l", 0.201, 2),
    ("tn_mg_l", 0.499, 2),
    ("tn_mg_l", 0.5, 2),
    ("tn_mg_l", 0.501, 3),
    ("tn_mg_l", 0.999, 3),
    ("tn_mg_l", 1.0, 3),
    ("tn_mg_l", 1.001, 4),
    ("tn_mg_l", 1.499, 4),
    ("tn_mg_l", 1.5, 4),
    ("tn_mg_l", 1.501, 5),
    ("tn_mg_l", 1.999, 5),
    ("tn_mg_l", 2.0, 5),
    ("tn_mg_l", 2.001, 6),
    # pH 6-9 for all classes; outside is 劣V by convention
    ("ph", 5.99, 6),
    ("ph", 6.0, 1),
    ("ph", 7.0, 1),
    ("ph", 9.0, 1),
    ("ph", 9.01, 6),
]

# TP differs: rivers <= 0.02 / 0.1 / 0.2 / 0.3 / 0.4, lakes <= 0.01 / 0.025 / 0.05 / 0.1 / 0.2.
TP_CASES: list[tuple[SectionType, float, int]] = [
    ("river", 0.019, 1),
    ("river", 0.02, 1),
    ("river", 0.021, 2),
    ("river", 0.099, 2),
    ("river", 0.1, 2),
    ("river", 0.101, 3),
    ("river", 0.199, 3),
    ("river", 0.2, 3),
    ("river", 0.201, 4),
    ("river", 0.299, 4),
    ("river", 0.3, 4),
    ("river", 0.301, 5),
    ("river", 0.399, 5),
    ("river", 0.4, 5),
    ("river", 0.401, 6),
    ("lake", 0.009, 1),
    ("lake", 0.01, 1),
    ("lake", 0.011, 2),
    ("lake", 0.024, 2),
    ("lake", 0.025, 2),
    ("lake", 0.026, 3),
    ("lake", 0.049, 3),
    ("lake", 0.05, 3),
    ("lake", 0.051, 4),
    ("lake", 0.099, 4),
    ("lake", 0.1, 4),
    ("lake", 0.101, 5),
    ("lake", 0.199, 5),
    ("lake", 0.2, 5),
    ("lake", 0.201, 6),
]


@pytest.mark.parametrize("section_type", BOTH)
@pytest.mark.parametrize(("item", "value", "expected"), SAME_FOR_BOTH)
def test_item_class_edges(
    item: str, value: float, expected: int, section_type: SectionType
) -> None:
    assert item_class(item, value, section_type) == expected


@pytest.mark.parametrize(("section_type", "value", "expected"), TP_CASES)
def test_tp_edges(section_type: SectionType, value: float, expected: int) -> None:
    assert item_class("tp_mg_l", value, section_type) == expected


@pytest.mark.parametrize(
    ("tp", "river", "lake"),
    [
        # 0.08: river 0.02 < 0.08 <= 0.1 -> II; lake 0.05 < 0.08 <= 0.1 -> IV
        (0.08, 2, 4),
        # 0.15: river 0.1 < 0.15 <= 0.2 -> III; lake 0.1 < 0.15 <= 0.2 -> V
        (0.15, 3, 5),
    ],
)
def test_same_tp_river_vs_lake_section(tp: float, river: int, lake: int) -> None:
    values = {"ph": 7.5, "do_mg_l": 8.0, "codmn_mg_l": 1.5, "nh3n_mg_l": 0.1, "tp_mg_l": tp}
    river_class = section_class(values, "river")
    lake_class = section_class(values, "lake")
    assert river_class is not None and lake_class is not None
    assert river_class.water_class == river
    assert lake_class.water_class == lake
    # every other item is Class I, so TP alone sets the class
    assert river_class.limiting_items == ("tp_mg_l",)
    assert lake_class.limiting_items == ("tp_mg_l",)


def test_default_section_type_is_river() -> None:
    assert item_class("tp_mg_l", 0.08) == 2


@pytest.mark.parametrize("item", ["temp_c", "conductivity_us_cm", "turbidity_ntu", "nope"])
def test_unclassed_items_have_no_class(item: str) -> None:
    assert item_class(item, 12.0) is None


@pytest.mark.parametrize("value", [-0.01, math.nan, math.inf])
def test_invalid_values_rejected(value: float) -> None:
    with pytest.raises(ValueError):
        item_class("nh3n_mg_l", value)


def test_bad_section_type_rejected() -> None:
    with pytest.raises(ValueError):
        item_class("tp_mg_l", 0.1, "sea")  # type: ignore[arg-type]


# class_limit: GB 3838-2002 Table 1 read row by row.
@pytest.mark.parametrize(
    ("item", "water_class", "section_type", "expected"),
    [
        ("do_mg_l", 1, "river", 7.5),
        ("do_mg_l", 3, "river", 5.0),
        ("do_mg_l", 5, "lake", 2.0),
        ("codmn_mg_l", 3, "river", 6.0),
        ("cod_mg_l", 1, "river", 15.0),
        ("cod_mg_l", 2, "river", 15.0),
        ("cod_mg_l", 3, "river", 20.0),
        ("bod5_mg_l", 3, "river", 4.0),
        ("nh3n_mg_l", 3, "river", 1.0),
        ("tp_mg_l", 3, "river", 0.2),
        ("tp_mg_l", 3, "lake", 0.05),
        ("tp_mg_l", 2, "lake", 0.025),
        ("tn_mg_l", 3, "lake", 1.0),
        ("tn_mg_l", 3, "river", 1.0),
    ],
)
def test_class_limit(
    item: str, water_class: int, section_type: SectionType, expected: float
) -> None:
    assert class_limit(item, water_class, section_type) == expected


def test_class_iii_row_for_dashboards() -> None:
    class_iii = {item: limits[2] for item, limits in LIMITS.items()}
    assert class_iii == {
        "do_mg_l": 5.0,
        "codmn_mg_l": 6.0,
        "cod_mg_l": 20.0,
        "bod5_mg_l": 4.0,
        "nh3n_mg_l": 1.0,
        "tp_mg_l": 0.2,
        "tn_mg_l": 1.0,
    }


@pytest.mark.parametrize(
    ("item", "water_class"),
    [("ph", 3), ("temp_c", 3), ("tp_mg_l", 0), ("tp_mg_l", 6)],
)
def test_class_limit_rejects(item: str, water_class: int) -> None:
    with pytest.raises(ValueError):
        class_limit(item, water_class)


def test_section_class_worst_item_and_exclusions() -> None:
    values: dict[str, float | None] = {
        "temp_c": 21.0,
        "ph": 7.2,  # I
        "do_mg_l": 6.5,  # 6 <= 6.5 < 7.5 -> II
        "conductivity_us_cm": 450.0,
        "turbidity_ntu": 30.0,
        "codmn_mg_l": 4.5,  # 4 < 4.5 <= 6 -> III
        "nh3n_mg_l": 0.6,  # 0.5 < 0.6 <= 1.0 -> III
        "tp_mg_l": 0.12,  # river 0.1 < 0.12 <= 0.2 -> III
        "tn_mg_l": 3.0,  # 劣V, but TN is not assessed
        "bod5_mg_l": None,  # missing, ignored
    }
    result = section_class(values, "river")
    assert result == WaterClass(
        water_class=3,
        limiting_items=("codmn_mg_l", "nh3n_mg_l", "tp_mg_l"),
        item_classes={"ph": 1, "do_mg_l": 2, "codmn_mg_l": 3, "nh3n_mg_l": 3, "tp_mg_l": 3},
    )
    assert result.roman == "III"
    assert result.name_zh == "良"
    assert result.name_en == "good"
    assert result.meets_iii

    # the same water in a lake: TP 0.1 < 0.12 <= 0.2 on the lake row -> V
    lake = section_class(values, "lake")
    assert lake is not None
    assert lake.water_class == 5
    assert lake.limiting_items == ("tp_mg_l",)
    assert lake.name_zh == "中度污染"
    assert not lake.meets_iii


def test_limiting_items_follow_table_order_not_input_order() -> None:
    # NH3-N 1.6 -> V (1.5 < 1.6 <= 2.0), DO 2.5 -> V (2 <= 2.5 < 3), COD 35 -> V (30 < 35 <= 40)
    values = {"nh3n_mg_l": 1.6, "cod_mg_l": 35.0, "do_mg_l": 2.5}
    result = section_class(values)
    assert result is not None
    assert result.water_class == 5
    assert result.limiting_items == ("do_mg_l", "cod_mg_l", "nh3n_mg_l")


def test_class_i_has_no_limiting_items() -> None:
    result = section_class({"ph": 7.0, "do_mg_l": 8.0, "codmn_mg_l": 1.0, "tp_mg_l": 0.01})
    assert result is not None
    assert result.water_class == 1
    assert result.limiting_items == ()
    assert result.roman == "I"
    assert result.name_zh == "优"


def test_ph_outside_range_makes_section_worse_than_v() -> None:
    result = section_class({"ph": 9.5, "do_mg_l": 8.0, "nh3n_mg_l": 0.1})
    assert result is not None
    assert result.water_class == 6
    assert result.limiting_items == ("ph",)
    assert result.roman == "劣V"
    assert result.name_zh == "重度污染"
    assert result.name_en == "heavily polluted"


@pytest.mark.parametrize(
    "values",
    [{}, {"tn_mg_l": 0.3}, {"temp_c": 20.0, "turbidity_ntu": 4.0}, {"do_mg_l": None}],
)
def test_no_assessed_item_gives_none(values: dict[str, float | None]) -> None:
    assert section_class(values) is None


def test_none_values_are_ignored() -> None:
    # CODMn 3 -> II (2 < 3 <= 4)
    result = section_class({"do_mg_l": None, "codmn_mg_l": 3.0})
    assert result is not None
    assert result.water_class == 2
    assert result.limiting_items == ("codmn_mg_l",)
    assert result.item_classes == {"codmn_mg_l": 2}


@pytest.mark.parametrize(
    ("water_class", "roman", "name_zh", "name_en", "meets_iii"),
    [
        (1, "I", "优", "excellent", True),
        (2, "II", "优", "excellent", True),
        (3, "III", "良", "good", True),
        (4, "IV", "轻度污染", "lightly polluted", False),
        (5, "V", "中度污染", "moderately polluted", False),
        (6, "劣V", "重度污染", "heavily polluted", False),
    ],
)
def test_water_class_names(
    water_class: int, roman: str, name_zh: str, name_en: str, meets_iii: bool
) -> None:
    wc = WaterClass(water_class=water_class, limiting_items=(), item_classes={})
    assert wc.roman == roman
    assert wc.name_zh == name_zh
    assert wc.name_en == name_en
    assert wc.meets_iii is meets_iii
