"""Rooftop PV inverter: AC/DC power, grid voltage and frequency, energy registers, SunSpec state.

Status names follow SunSpec model 101/103 ``St`` (standards.md, "Rooftop PV").
"""

from __future__ import annotations

import math
import random
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from devices.base import DeviceKind, Glance, Label, Reading, rng
from devices.registry import Device, Facts

# SunSpec 101/103 St enumeration: 1 OFF … 8 STANDBY.
Status = Literal[
    "OFF", "SLEEPING", "STARTING", "MPPT", "THROTTLED", "SHUTTING_DOWN", "FAULT", "STANDBY"
]


class PvReading(Reading):
    """One inverter reading."""

    ac_power_w: Annotated[float, rng(-5000, 5_000_000, "W")] | None = (
        None  # small negative: night-time self-consumption
    )
    dc_power_w: Annotated[float, rng(0, 5_000_000, "W")] | None = None
    dc_voltage_v: Annotated[float, rng(0, 1500, "V")] | None = None
    dc_current_a: Annotated[float, rng(0, 5000, "A")] | None = None
    ac_voltage_v: Annotated[float, rng(0, 1000, "V")] | None = None
    ac_current_a: Annotated[float, rng(0, 5000, "A")] | None = None
    grid_freq_hz: Annotated[float, rng(45, 55, "Hz")] | None = (
        None  # a 50 Hz grid; 90 Hz is a meter fault
    )
    energy_today_kwh: Annotated[float, rng(0, 100_000, "kWh")] | None = None
    energy_total_kwh: Annotated[float, rng(0, None, "kWh")] | None = None
    temp_c: Annotated[float, rng(-40, 125, "°C")] | None = None
    status: Status | None = None

    MEASURED: ClassVar[tuple[str, ...]] = (
        "ac_power_w",
        "dc_power_w",
        "dc_voltage_v",
        "dc_current_a",
        "ac_voltage_v",
        "ac_current_a",
        "grid_freq_hz",
        "energy_today_kwh",
        "energy_total_kwh",
        "temp_c",
        "status",
    )


class PvFacts(Facts):
    """An inverter's registry facts: installed capacity (kWp, for equivalent hours and the
    capacity factor) and whether it is in a whole-county rooftop PV pilot (整县试点)."""

    capacity_kw: float | None = None
    pilot: bool = False


def facts(device: Device) -> PvFacts:
    """The inverter's typed registry facts."""
    return PvFacts.of(device)


POWER_LABEL = Label("光伏功率", "PV power")


def summary(g: Glance) -> list[str]:
    """AC power in kW and the SunSpec state."""
    out = []
    p = g.value("ac_power_w")
    if isinstance(p, int | float) and not isinstance(p, bool):
        out.append(f"{POWER_LABEL.pick(g.lang)} {p / 1000:.2f} kW")
    if status := g.value("status"):
        out.append(str(status))
    return out


def simulate(
    device: Device, now: datetime, rnd: random.Random, state: dict[str, Any]
) -> dict[str, Any]:
    """Clear-sky sine from 06:00 to 18:00 local time, passing clouds, rare faults."""
    capacity = facts(device).capacity_kw
    kw = 10.0 if capacity is None else capacity
    hour = now.hour + now.minute / 60
    sun = max(0.0, math.sin((hour - 6) / 12 * math.pi))
    cloud = state["cloud"] = min(1.0, max(0.3, state.get("cloud", 0.9) + rnd.gauss(0, 0.03)))
    day = now.date().isoformat()
    if state.get("day") != day:
        state["day"], state["today"] = day, 0.0
    total = state.setdefault("total", rnd.uniform(500, 20_000) * kw / 10)
    fault = rnd.random() < 0.0005 or (state.get("fault", 0) > 0)
    state["fault"] = (state.get("fault", 0) or 20) - 1 if fault else 0
    dc = 0.0 if fault else kw * 1000 * sun * cloud * rnd.uniform(0.97, 1.0)
    ac = dc * 0.965
    dt_h = state.get("dt_h", 1 / 60)
    state["today"] += ac / 1000 * dt_h
    state["total"] = total + ac / 1000 * dt_h
    status = "FAULT" if fault else ("MPPT" if dc > 0 else "SLEEPING")
    v_dc = 600.0 if dc > 0 else 0.0
    v_ac = 220 + rnd.gauss(3, 2)
    return {
        "ac_power_w": round(ac, 1),
        "dc_power_w": round(dc, 1),
        "dc_voltage_v": v_dc,
        "dc_current_a": round(dc / v_dc, 2) if v_dc else 0.0,
        "ac_voltage_v": round(v_ac, 1),
        "ac_current_a": round(ac / v_ac / 3, 2),
        "grid_freq_hz": round(50 + rnd.gauss(0, 0.02), 3),
        "energy_today_kwh": round(state["today"], 3),
        "energy_total_kwh": round(state["total"], 3),
        "temp_c": round(15 + 30 * sun + rnd.gauss(0, 0.5), 1),
        "status": status,
    }


KIND = DeviceKind(
    name="pv",
    measurement="pv_inverter",
    model=PvReading,
    description="Rooftop PV inverter",
    registry_tags=("pilot",),
    label=Label("屋顶光伏", "Rooftop PV"),
    facts_model=PvFacts,
    fact_labels={
        "capacity_kw": Label("装机容量 kW", "Capacity kW"),
        "pilot": Label("试点", "Pilot"),
    },
    key_fields=("ac_power_w", "status", "energy_today_kwh"),
    summary=summary,
    dashboard="envgrid-pv",
    simulate=simulate,
    bad_sample={"grid_freq_hz": 90.0},
)
