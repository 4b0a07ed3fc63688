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
from devices.gb3838 import SectionType, section_class
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


def derive(r: WaterReading, device: Device) -> Iterator[tuple[str, FieldValue]]:
    """GB 3838-2002 class of this reading, by the single-factor method."""
    section: SectionType = "lake" if device.facts.get("section_type") == "lake" else "river"
    result = section_class({k: getattr(r, k) for k in _ASSESSED}, section)
    if result is not None:
        yield "water_class", result.water_class
        yield "meets_iii", result.meets_iii
        if result.limiting_items:
            yield "limiting_items", ",".join(result.limiting_items)


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
