"""GB 3838-2002 surface-water environmental quality class (pure functions, no I/O).

Item names are envgrid payload field names. Classes are ints 1..6, where 6 is 劣Ⅴ
(worse than Class V). The section class follows the single-factor method of 环办[2011]22号.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

SectionType = Literal["river", "lake"]

# Class 6 is 劣Ⅴ: "worse than V". It has no upper limit, so the tables below stop at V.
WORST_CLASS = 6

# GB 3838-2002 Table 1 (basic items), upper limits for Classes I..V in mg/L; for DO the values
# are lower limits (a class needs DO >= limit). TP is the river row; TN is the lake and
# reservoir row, the only TN row the standard has.
LIMITS: dict[str, tuple[float, float, float, float, float]] = {
    "do_mg_l": (7.5, 6.0, 5.0, 3.0, 2.0),
    "codmn_mg_l": (2.0, 4.0, 6.0, 10.0, 15.0),
    "cod_mg_l": (15.0, 15.0, 20.0, 30.0, 40.0),
    "bod5_mg_l": (3.0, 3.0, 4.0, 6.0, 10.0),
    "nh3n_mg_l": (0.15, 0.5, 1.0, 1.5, 2.0),
    "tp_mg_l": (0.02, 0.1, 0.2, 0.3, 0.4),
    "tn_mg_l": (0.2, 0.5, 1.0, 1.5, 2.0),
}

# GB 3838-2002 Table 1, items 10-23 (mg/L, upper limits for Classes I..V): the metals and the
# other basic items a surface-water automatic station does not measure, analysed by a lab and
# imported with ``envgrid lab import``. Kept apart from LIMITS, whose rows the dashboards and
# the per-reading class use. Fecal coliform (item 24) is not assessed (环办监测函〔2020〕82号).
TABLE1_LAB_LIMITS: dict[str, tuple[float, float, float, float, float]] = {
    "cu_mg_l": (0.01, 1.0, 1.0, 1.0, 1.0),  # 10 铜
    "zn_mg_l": (0.05, 1.0, 1.0, 2.0, 2.0),  # 11 锌
    "f_mg_l": (1.0, 1.0, 1.0, 1.5, 1.5),  # 12 氟化物 (as F-)
    "se_mg_l": (0.01, 0.01, 0.01, 0.02, 0.02),  # 13 硒
    "as_mg_l": (0.05, 0.05, 0.05, 0.1, 0.1),  # 14 砷
    "hg_mg_l": (0.00005, 0.00005, 0.0001, 0.001, 0.001),  # 15 汞
    "cd_mg_l": (0.001, 0.005, 0.005, 0.005, 0.01),  # 16 镉
    "cr6_mg_l": (0.01, 0.05, 0.05, 0.05, 0.1),  # 17 铬（六价）
    "pb_mg_l": (0.01, 0.01, 0.05, 0.05, 0.1),  # 18 铅
    "cn_mg_l": (0.005, 0.05, 0.2, 0.2, 0.2),  # 19 氰化物
    "phenol_mg_l": (0.002, 0.002, 0.005, 0.01, 0.1),  # 20 挥发酚
    "oil_mg_l": (0.05, 0.05, 0.05, 0.5, 1.0),  # 21 石油类
    "las_mg_l": (0.2, 0.2, 0.2, 0.3, 0.3),  # 22 阴离子表面活性剂
    "sulfide_mg_l": (0.05, 0.1, 0.2, 0.5, 1.0),  # 23 硫化物
}

# GB 3838-2002 Table 1, TP row for lakes and reservoirs (湖、库): replaces the river TP row
# when the section is on a lake or reservoir.
LAKE_LIMITS: dict[str, tuple[float, float, float, float, float]] = {
    "tp_mg_l": (0.01, 0.025, 0.05, 0.1, 0.2),
}

# GB 3838-2002 Table 1: pH 6-9 (dimensionless) for every class, so pH is either fine (I) or,
# by the assessment convention, 劣Ⅴ.
PH_RANGE: tuple[float, float] = (6.0, 9.0)

# Items whose limit is a minimum rather than a maximum (GB 3838-2002 Table 1, DO "≥").
_LOWER_BOUND_ITEMS = frozenset({"do_mg_l"})

# Items that decide the section class, in GB 3838-2002 Table 1 order (which is also the order
# of `WaterClass.limiting_items`). TN is classed for reporting on lakes but is not assessed
# (环办[2011]22号); temperature, conductivity and turbidity have no class at all.
ASSESSED_ITEMS: tuple[str, ...] = (
    "ph",
    "do_mg_l",
    "codmn_mg_l",
    "cod_mg_l",
    "bod5_mg_l",
    "nh3n_mg_l",
    "tp_mg_l",
)

# The 21 items that decide a section's class in the official statistics: GB 3838-2002 Table 1
# except water temperature, fecal coliform and TN (环办监测函〔2020〕82号, 地表水环境质量监测数据
# 统计技术规定（试行）, 评价指标), in Table 1 order.
ASSESSED_ITEMS_2020: tuple[str, ...] = (*ASSESSED_ITEMS, *TABLE1_LAB_LIMITS)

# Every item `item_class` can class.
CLASSED_ITEMS: tuple[str, ...] = (*ASSESSED_ITEMS, "tn_mg_l", *TABLE1_LAB_LIMITS)

_ROMAN = ("I", "II", "III", "IV", "V", "劣V")
# Qualitative names used in bulletins (水质状况): I and II are both 优.
_NAME_ZH = ("优", "优", "良", "轻度污染", "中度污染", "重度污染")
_NAME_EN = (
    "excellent",
    "excellent",
    "good",
    "lightly polluted",
    "moderately polluted",
    "heavily polluted",
)


def _check_section_type(section_type: str) -> None:
    if section_type not in ("river", "lake"):
        raise ValueError(f"section_type must be 'river' or 'lake', not {section_type!r}")


def _limits(item: str, section_type: SectionType) -> tuple[float, float, float, float, float]:
    if section_type == "lake" and item in LAKE_LIMITS:
        return LAKE_LIMITS[item]
    return LIMITS[item] if item in LIMITS else TABLE1_LAB_LIMITS[item]


def class_limit(item: str, water_class: int, section_type: SectionType = "river") -> float:
    """Return the GB 3838-2002 limit of `item` for Class 1..5 (a minimum for DO, else a maximum).

    pH has a range, not a single limit (see PH_RANGE); it and unknown items raise ValueError.
    """
    _check_section_type(section_type)
    if item not in LIMITS and item not in TABLE1_LAB_LIMITS:
        raise ValueError(f"no single GB 3838-2002 limit for item {item!r}")
    if not 1 <= water_class <= 5:
        # 劣Ⅴ is "worse than V": it has no limit of its own.
        raise ValueError(f"water_class must be 1..5, not {water_class!r}")
    return _limits(item, section_type)[water_class - 1]


def item_class(item: str, value: float, section_type: SectionType = "river") -> int | None:
    """Return the GB 3838-2002 class 1..6 (6 = 劣Ⅴ) of one item, or None if the item has none.

    A value on a limit takes the better class; TP uses the lake row for lake sections.
    """
    _check_section_type(section_type)
    if item not in CLASSED_ITEMS:
        return None
    if not math.isfinite(value) or value < 0:
        # Flagged or garbage readings must be filtered before classing, not silently classed.
        raise ValueError(f"{item} value must be finite and >= 0, not {value!r}")
    if item == "ph":
        low, high = PH_RANGE
        return 1 if low <= value <= high else WORST_CLASS
    limits = _limits(item, section_type)
    # Scanning from Class I upward and stopping at the first limit met gives boundary values,
    # and limits shared by several classes (COD 15, BOD5 3), the best class.
    for water_class, limit in enumerate(limits, start=1):
        met = value >= limit if item in _LOWER_BOUND_ITEMS else value <= limit
        if met:
            return water_class
    return WORST_CLASS


@dataclass(frozen=True)
class WaterClass:
    """Class of a monitoring section and the items that set it."""

    water_class: int
    limiting_items: tuple[str, ...]
    item_classes: dict[str, int]

    @property
    def roman(self) -> str:
        """Class as a Roman numeral: "I".."V", or "劣V" for class 6."""
        return _ROMAN[self.water_class - 1]

    @property
    def name_zh(self) -> str:
        """Chinese qualitative name (优, 良, 轻度污染, 中度污染, 重度污染)."""
        return _NAME_ZH[self.water_class - 1]

    @property
    def name_en(self) -> str:
        """English qualitative name (excellent .. heavily polluted)."""
        return _NAME_EN[self.water_class - 1]

    @property
    def meets_iii(self) -> bool:
        """True for Class I-III, the sections counted in 优Ⅲ比例."""
        return self.water_class <= 3


def section_class(
    values: Mapping[str, float | None],
    section_type: SectionType = "river",
    items: tuple[str, ...] = ASSESSED_ITEMS,
) -> WaterClass | None:
    """Return the single-factor class of a section (worst assessed item), or None if none present.

    None values, TN and unclassed items are ignored; `item_classes` holds the assessed items only.
    ``items`` are the assessed items: the automatic station's by default, ASSESSED_ITEMS_2020 for
    the official statistics with lab results.
    """
    _check_section_type(section_type)
    item_classes: dict[str, int] = {}
    for item in items:
        value = values.get(item)
        if value is None:
            continue
        water_class = item_class(item, value, section_type)
        # Every assessed item has a class; the check only narrows the type.
        if water_class is not None:
            item_classes[item] = water_class
    if not item_classes:
        return None
    worst = max(item_classes.values())
    # Class I has nothing to blame: bulletins name limiting items only for sections worse than I.
    limiting = tuple(item for item, c in item_classes.items() if c == worst) if worst > 1 else ()
    return WaterClass(water_class=worst, limiting_items=limiting, item_classes=item_classes)
