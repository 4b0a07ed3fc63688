"""PV meteorological station (光伏气象站): plane-of-array and global horizontal irradiance,
module and ambient temperature, wind speed.

The irradiance a PV inverter's figures are judged by (IEC 61724-1:2021, reference yield) comes
from the met station its registry entry names in ``irradiance_from``. The simulator's weather
(:func:`weather`) is shared with the PV simulator, so a simulated inverter and the station next
to it see the same clouds and the simulated performance ratio is plausible.

Ranges are physical plausibility, not a standard's figures: irradiance from a small negative
night-time offset of a thermopile pyranometer up to 2,000 W/m² (cloud enhancement briefly exceeds
the 1,361 W/m² solar constant), module temperature −40…100 °C, air −50…60 °C, wind 0…75 m/s (as
the air kind).
"""

from __future__ import annotations

import hashlib
import math
import random
from datetime import datetime
from typing import Annotated, Any, ClassVar

from devices.base import DeviceKind, Glance, Label, Reading, rng
from devices.registry import Device, Facts


class MetReading(Reading):
    """One met-station reading."""

    poa_w_m2: Annotated[float, rng(-50, 2000, "W/m²")] | None = None
    ghi_w_m2: Annotated[float, rng(-50, 2000, "W/m²")] | None = None
    module_temp_c: Annotated[float, rng(-40, 100, "°C")] | None = None
    ambient_temp_c: Annotated[float, rng(-50, 60, "°C")] | None = None
    wind_speed_m_s: Annotated[float, rng(0, 75, "m/s")] | None = None

    MEASURED: ClassVar[tuple[str, ...]] = (
        "poa_w_m2",
        "ghi_w_m2",
        "module_temp_c",
        "ambient_temp_c",
        "wind_speed_m_s",
    )


class MetFacts(Facts):
    """A met station's registry facts: the plane of its POA sensor (for the record)."""

    tilt_deg: float | None = None
    azimuth_deg: float | None = None


POA_LABEL = Label("组件面辐照度", "POA irradiance")


def summary(g: Glance) -> list[str]:
    """POA irradiance and module temperature."""
    out = []
    for name, label in (("poa_w_m2", POA_LABEL), ("module_temp_c", None)):
        v = g.value(name)
        if v is not None:
            out.append(f"{label.pick(g.lang) if label else name} {g.show(name, v)}")
    return out


def _phase(place: str) -> float:
    """A stable number in [0, 1) per place: clouds differ between counties, not between calls."""
    return int(hashlib.sha256(place.encode()).hexdigest()[:8], 16) / 2**32


def weather(place: str, now: datetime) -> tuple[float, float, float]:
    """(POA W/m², ambient °C, wind m/s) at a place and local time: a clear-sky sine from 06:00
    to 18:00 dimmed by slow clouds that depend only on the place and the time, so a met station
    and the inverters beside it (same place) see the same sky."""
    hour = now.hour + now.minute / 60 + now.second / 3600
    sun = max(0.0, math.sin((hour - 6) / 12 * math.pi))
    p = _phase(place) * 2 * math.pi
    t = now.timestamp() / 3600
    cloud = 0.8 + 0.12 * math.sin(t * 0.9 + p) + 0.08 * math.sin(t * 2.3 + 2 * p)
    poa = 1000.0 * sun * min(1.0, max(0.3, cloud))
    ambient = 12 + 10 * sun + 2 * math.sin(p)
    wind = 2.0 + 1.5 * (0.5 + 0.5 * math.sin(t * 0.5 + p))
    return poa, ambient, wind


def module_temp(poa: float, ambient: float, wind: float) -> float:
    """Module temperature by the Faiman model with typical open-rack coefficients (U0 = 25,
    U1 = 6.84; IEC 61853-2 names this model); the simulator's use only."""
    return ambient + poa / (25.0 + 6.84 * wind)


def place_of(device: Device) -> str:
    """The place whose weather a device sees: its county (the demo fleet puts one met station
    in each county with PV)."""
    return device.county


def simulate(
    device: Device, now: datetime, rnd: random.Random, state: dict[str, Any]
) -> dict[str, Any]:
    """The shared weather at the device's place, with sensor noise."""
    poa, ambient, wind = weather(place_of(device), now)
    poa = max(0.0, poa * rnd.uniform(0.99, 1.01))
    return {
        "poa_w_m2": round(poa, 1),
        "ghi_w_m2": round(poa * 0.9, 1),
        "module_temp_c": round(module_temp(poa, ambient, wind), 1),
        "ambient_temp_c": round(ambient + rnd.gauss(0, 0.2), 1),
        "wind_speed_m_s": round(max(0.0, wind + rnd.gauss(0, 0.3)), 1),
    }


KIND = DeviceKind(
    name="met",
    measurement="pv_met",
    model=MetReading,
    description="PV meteorological station",
    label=Label("光伏气象站", "PV met station"),
    facts_model=MetFacts,
    fact_labels={
        "tilt_deg": Label("倾角 °", "Tilt °"),
        "azimuth_deg": Label("方位角 °", "Azimuth °"),
    },
    key_fields=("poa_w_m2", "module_temp_c", "ambient_temp_c"),
    summary=summary,
    dashboard="envgrid-pv",
    simulate=simulate,
    bad_sample={"poa_w_m2": 5000.0},
)
