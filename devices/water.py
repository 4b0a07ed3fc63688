"""Surface-water automatic station (地表水自动监测站): the nine basic indicators plus lab items.

Ranges are physical plausibility, not standards: a value outside them is a sensor or
transmission fault and is rejected. Water class per GB 3838-2002 is derived per reading.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any, ClassVar

from devices.base import DeviceKind, Reading, rng
from devices.gb3838 import (
    ASSESSED_ITEMS,
    LAKE_LIMITS,
    LIMITS,
    PH_RANGE,
    WORST_CLASS,
)
from devices.lineproto import FieldValue
from devices.registry import Device


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

# The GB 3838-2002 Table 1 rows of devices.gb3838 flattened for the per-reading class: per
# assessed item (pH aside) its attribute, whether the limit is a minimum (DO), and its limits
# for Classes I..V on a river and on a lake (only TP differs).
_ROWS = tuple(
    # DO is the one "≥" item of Table 1.
    (item, item == "do_mg_l", LIMITS[item], LAKE_LIMITS.get(item, LIMITS[item]))
    for item in ASSESSED_ITEMS
    if item != "ph"
)
_PH_LOW, _PH_HIGH = PH_RANGE


def reading_class(r: WaterReading, lake: bool) -> tuple[int, str] | None:
    """(class 1..6, comma-joined limiting items) of one reading, or None if nothing is assessed.

    The same result as ``gb3838.section_class`` (single-factor method, 环办[2011]22号) without
    its dicts and dataclass: it runs for every reading (bench/run.py: water's derive went from
    ~8 µs to ~2 µs). The model's bounds guarantee finite, non-negative values.
    tests/unit/test_ingest_fast_paths.py checks it against section_class.
    """
    classes: list[tuple[str, int]] = []
    ph = r.ph
    if ph is not None:
        classes.append(("ph", 1 if _PH_LOW <= ph <= _PH_HIGH else WORST_CLASS))
    for item, minimum, river, lake_row in _ROWS:
        v = getattr(r, item)
        if v is None:
            continue
        c = WORST_CLASS
        # From Class I upward, the first limit met: a value on a limit takes the better class,
        # and limits shared by two classes (COD 15, BOD5 3) give the better of them.
        for k, limit in enumerate(lake_row if lake else river, 1):
            if (v >= limit) if minimum else (v <= limit):
                c = k
                break
        classes.append((item, c))
    if not classes:
        return None
    worst = max(c for _, c in classes)
    # Class I has nothing to blame: limiting items are named only for sections worse than I.
    limiting = ",".join(item for item, c in classes if c == worst) if worst > 1 else ""
    return worst, limiting


def derive(r: WaterReading, device: Device) -> Iterator[tuple[str, FieldValue]]:
    """GB 3838-2002 class of this reading, by the single-factor method."""
    result = reading_class(r, device.facts.get("section_type") == "lake")
    if result is not None:
        yield "water_class", result[0]
        yield "meets_iii", result[0] <= 3
        if result[1]:
            yield "limiting_items", result[1]


KIND = DeviceKind(
    name="water",
    measurement="water_quality",
    model=WaterReading,
    description="Surface-water automatic station",
    registry_tags=("section_type",),
    derive=derive,
    derived_fields={"water_class": "GB 3838 class 1–6", "meets_iii": "", "limiting_items": ""},
)


def simulate(
    device: Device, now: datetime, rnd: random.Random, state: dict[str, Any]
) -> dict[str, Any]:
    """A plausible reading: DO follows daylight photosynthesis, each station has its own load."""
    load = state.setdefault("load", rnd.uniform(0.2, 1.3))  # 1.0 ≈ the Class III boundary
    hour = now.hour + now.minute / 60
    day = math.sin((hour - 8) / 24 * 2 * math.pi)
    temp = 12 + 10 * math.sin((now.timetuple().tm_yday - 110) / 365 * 2 * math.pi) + 1.5 * day
    lake = device.facts.get("section_type") == "lake"
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
