"""Surface-water automatic station (地表水自动监测站): the nine basic indicators plus lab items.

Ranges are physical plausibility, not standards: a value outside them is a sensor or
transmission fault and is rejected. Water class per GB 3838-2002 is derived per reading.
"""

from __future__ import annotations

import functools
import math
import random
from bisect import bisect_left
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Annotated, Any, ClassVar, Literal

from devices.base import DeviceKind, Glance, Label, Reading, flag_text, rng
from devices.gb3838 import (
    ASSESSED_ITEMS,
    LAKE_LIMITS,
    LIMITS,
    PH_RANGE,
    WORST_CLASS,
    SectionType,
)
from devices.lineproto import FieldValue
from devices.registry import Assessment, Device, Facts


class WaterReading(Reading):
    """One water-quality reading; any subset of the items, at least one."""

    ph: Annotated[float, rng(0, 14, "pH")] | None = None
    do_mg_l: Annotated[float, rng(0, 25, "mg/L")] | None = (
        None  # supersaturation tops out near 20 mg/L
    )
    codmn_mg_l: Annotated[float, rng(0, 100, "mg/L")] | None = None
    cod_mg_l: Annotated[float, rng(0, 1000, "mg/L")] | None = None
    bod5_mg_l: Annotated[float, rng(0, 500, "mg/L")] | None = None
    nh3n_mg_l: Annotated[float, rng(0, 100, "mg/L")] | None = None
    tp_mg_l: Annotated[float, rng(0, 50, "mg/L")] | None = None
    tn_mg_l: Annotated[float, rng(0, 100, "mg/L")] | None = None
    temp_c: Annotated[float, rng(-5, 45, "°C")] | None = None
    conductivity_us_cm: Annotated[float, rng(0, 100_000, "µS/cm")] | None = None
    turbidity_ntu: Annotated[float, rng(0, 4000, "NTU")] | None = None

    MEASURED: ClassVar[tuple[str, ...]] = (
        "ph",
        "do_mg_l",
        "codmn_mg_l",
        "cod_mg_l",
        "bod5_mg_l",
        "nh3n_mg_l",
        "tp_mg_l",
        "tn_mg_l",
        "temp_c",
        "conductivity_us_cm",
        "turbidity_ntu",
    )


_ASSESSED = ("ph", "do_mg_l", "codmn_mg_l", "cod_mg_l", "bod5_mg_l", "nh3n_mg_l", "tp_mg_l")

# The GB 3838-2002 Table 1 rows of devices.gb3838 arranged for bisect: per assessed item (pH
# aside) its attribute, its sign, and its Class I..V limits for a river and for a lake section
# (only TP differs). Pollutant limits ascend and a value takes the first class whose limit it
# does not exceed: bisect_left. DO is the one "≥" item: its limits descend, so it is searched
# negated. Shared limits (COD 15, BOD5 3) give the better class, as bisect_left finds the first.
_ROWS = tuple(
    (
        item,
        -1.0 if item == "do_mg_l" else 1.0,
        tuple(-x for x in LIMITS[item]) if item == "do_mg_l" else LIMITS[item],
        tuple(-x for x in LAKE_LIMITS.get(item, LIMITS[item]))
        if item == "do_mg_l"
        else LAKE_LIMITS.get(item, LIMITS[item]),
    )
    for item in ASSESSED_ITEMS
    if item != "ph"
)
_PH_LOW, _PH_HIGH = PH_RANGE


def reading_class(r: WaterReading, lake: bool) -> tuple[int, str] | None:
    """(class 1..6, comma-joined limiting items) of one reading, or None if nothing is assessed.

    The same result as ``gb3838.section_class`` (single-factor method, 环办[2011]22号) without
    its dicts and dataclass, since it runs for every reading (the timing against section_class
    is in docs/performance.md, "Why the code is shaped this way"). The model's bounds guarantee
    finite, non-negative values. tests/unit/test_ingest_fast_paths.py checks it against
    section_class.
    """
    worst = 0
    limiting: list[str] = []
    ph = r.ph
    if ph is not None:
        worst = 1 if _PH_LOW <= ph <= _PH_HIGH else WORST_CLASS
        limiting.append("ph")
    for item, sign, river, lake_row in _ROWS:
        v = getattr(r, item)
        if v is None:
            continue
        c = bisect_left(lake_row if lake else river, sign * v) + 1  # 6 past Class V: 劣Ⅴ
        if c > worst:
            worst = c
            limiting = [item]
        elif c == worst:
            limiting.append(item)
    if not worst:
        return None
    # Class I has nothing to blame: limiting items are named only for sections worse than I.
    return worst, ",".join(limiting) if worst > 1 else ""


class WaterFacts(Facts):
    """A station's registry facts: its section's type (a lake section is judged by the lake TP
    row) and the level that assesses the section (None: not an assessed section)."""

    section_type: Literal["river", "lake"] | None = None
    assessment: Assessment | None = None

    @property
    def section(self) -> SectionType:
        """The GB 3838 row the section is judged by (river unless registered as a lake)."""
        return "lake" if self.section_type == "lake" else "river"


def facts(device: Device) -> WaterFacts:
    """The station's typed registry facts."""
    return WaterFacts.of(device)


def derive(r: WaterReading, device: Device) -> Iterator[tuple[str, FieldValue]]:
    """GB 3838-2002 class of this reading, by the single-factor method."""
    result = reading_class(r, facts(device).section_type == "lake")
    if result is not None:
        yield "water_class", result[0]
        yield "meets_iii", result[0] <= 3
        if result[1]:
            yield "limiting_items", result[1]


# GB 3838-2002 classes as the standard writes them (class 6 is 劣Ⅴ, "worse than V").
CLASS_NAMES = {1: "Ⅰ", 2: "Ⅱ", 3: "Ⅲ", 4: "Ⅳ", 5: "Ⅴ", 6: "劣Ⅴ"}
CLASS_LABEL = Label("水质类别", "Water class")


def class_text(v: FieldValue, lang: str) -> str:
    """GB 3838 class as written in the standard (Ⅰ … Ⅴ, 劣Ⅴ)."""
    if isinstance(v, int | float) and not isinstance(v, bool) and int(v) in CLASS_NAMES:
        return CLASS_NAMES[int(v)]
    return str(v)


def summary(g: Glance) -> list[str]:
    """The class of the latest reading and whether it meets Class III."""
    out = []
    if (c := g.value("water_class")) is not None:
        out.append(f"{CLASS_LABEL.pick(g.lang)} {g.show('water_class', c)}")
    if (m := g.value("meets_iii")) is not None:
        out.append(g.show("meets_iii", m))
    return out


def simulate(
    device: Device, now: datetime, rnd: random.Random, state: dict[str, Any]
) -> dict[str, Any]:
    """A plausible reading: DO follows daylight photosynthesis, each station has its own load."""
    load = state.setdefault("load", rnd.uniform(0.2, 1.3))  # 1.0 ≈ the Class III boundary
    hour = now.hour + now.minute / 60
    day = math.sin((hour - 8) / 24 * 2 * math.pi)
    temp = 12 + 10 * math.sin((now.timetuple().tm_yday - 110) / 365 * 2 * math.pi) + 1.5 * day
    lake = facts(device).section_type == "lake"
    return {
        "ph": round(7.6 + 0.4 * day + rnd.gauss(0, 0.05), 2),
        "do_mg_l": round(max(0.5, 9.5 - 3.5 * load + 1.2 * day + rnd.gauss(0, 0.2)), 2),
        "codmn_mg_l": round(max(0.5, 5.2 * load + rnd.gauss(0, 0.2)), 2),
        "nh3n_mg_l": round(max(0.02, 0.8 * load + rnd.gauss(0, 0.04)), 3),
        "tp_mg_l": round(max(0.005, (0.04 if lake else 0.16) * load + rnd.gauss(0, 0.005)), 3),
        "tn_mg_l": round(max(0.1, 1.2 * load + rnd.gauss(0, 0.05)), 2),
        "temp_c": round(temp + rnd.gauss(0, 0.1), 1),
        "conductivity_us_cm": round(450 + 250 * load + rnd.gauss(0, 10), 0),
        "turbidity_ntu": round(max(0.5, 12 * load + rnd.gauss(0, 2)), 1),
    }


@functools.lru_cache(maxsize=512)
def _runoff(day: date) -> float:
    """How much rain washed into the city's waters on a day (0: dry), the same for every section;
    a function of the date, so a history written twice is the same history."""
    rnd = random.Random(day.toordinal() * 7 + 3)
    return rnd.uniform(0.15, 0.45) if rnd.random() < 0.2 else 0.0


def history(
    device: Device, now: datetime, rnd: random.Random, state: dict[str, Any], step: timedelta
) -> dict[str, Any]:
    """Readings of the past: each section's own load, raised for a day or two after rain (runoff
    carries nutrients and organic matter), so a section near the Class III limit falls to
    Class IV on some days only."""
    base = state.setdefault("base_load", rnd.uniform(0.2, 1.15))
    day = now.date()
    rain = _runoff(day) + 0.5 * _runoff(day - timedelta(days=1))
    state["load"] = base * (1 + rain)
    return simulate(device, now, rnd, state)


KIND = DeviceKind(
    name="water",
    measurement="water_quality",
    model=WaterReading,
    description="Surface-water automatic station",
    registry_tags=("section_type",),
    derive=derive,
    derived_fields={"water_class": "GB 3838 class 1–6", "meets_iii": "", "limiting_items": ""},
    label=Label("水质自动站", "Water station"),
    facts_model=WaterFacts,
    fact_labels={
        "section_type": Label("断面类型", "Section type"),
        "assessment": Label("考核级别", "Assessment"),
    },
    key_fields=("water_class", "meets_iii", "temp_c", "ph"),
    summary=summary,
    value_texts={
        "water_class": class_text,
        "meets_iii": flag_text(
            Label("达到Ⅲ类", "meets Class III"), Label("未达Ⅲ类", "misses Class III")
        ),
    },
    dashboard="envgrid-water",
    simulate=simulate,
    bad_sample={"ph": 15.0},
    history=history,
)
