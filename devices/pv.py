"""Rooftop PV inverter: AC/DC power, grid voltage and frequency, energy registers, SunSpec state.

Status names follow SunSpec model 101/103 ``St`` (standards.md, "Rooftop PV").
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, model_validator

from devices import met
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
    # Set by the PV daily job (rollups/pv_job.py), not by inverters: the day's verdict against
    # the inverter's peers, so the alert rules can use it (docs/pv.md).
    underperforming: bool | None = None
    pr_shortfall: Annotated[float, rng(-100, 1, "ratio")] | None = None

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
        "underperforming",
        "pr_shortfall",
    )


class PvFacts(Facts):
    """An inverter's registry facts: installed capacity (kWp, for equivalent hours and the
    capacity factor) and whether it is in a whole-county rooftop PV pilot (整县试点); for the
    IEC 61724-1 figures and the grid view (docs/pv.md): AC rating, the met station whose
    irradiance applies, commissioning date and the grid location.

    ``capacity_kwp`` is the DC capacity P0; ``capacity_kw``, its older name, is still read (and
    mirrors it), so registries written before stay valid. ``envgrid devices check`` requires
    one of them (:func:`fleet_problems`)."""

    capacity_kwp: float | None = Field(default=None, gt=0)
    capacity_kw: float | None = Field(default=None, gt=0)
    pilot: bool = False
    ac_rating_kw: float | None = Field(default=None, gt=0)
    irradiance_from: str | None = None
    commissioned: date | None = None
    substation: str | None = None
    feeder: str | None = None
    transformer_area: str | None = None
    customer_number: str | None = None
    # The rating of the entry's transformer area (台区); every entry of an area that gives it
    # must give the same (fleet_problems).
    rated_kva: float | None = Field(default=None, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _older_name(cls, data: Any) -> Any:
        if isinstance(data, dict):
            kwp, kw = data.get("capacity_kwp"), data.get("capacity_kw")
            if kwp is None and kw is not None:
                data = {**data, "capacity_kwp": kw}
            elif kw is None and kwp is not None:
                data = {**data, "capacity_kw": kwp}
        return data


def fleet_problems(devices: Iterable[Device], kind_of: Mapping[str, str]) -> list[str]:
    """What ``envgrid devices check`` reports of the PV entries as a whole: an inverter without
    ``capacity_kwp``, an ``irradiance_from`` that names no met station, a transformer area
    given two ratings. ``kind_of`` maps every registered id to its kind."""
    out: list[str] = []
    ratings: dict[str, tuple[float, str]] = {}
    for d in devices:
        if d.kind != "pv":
            continue
        f = facts(d)
        if f.capacity_kwp is None:
            out.append(f"device {d.id}: capacity_kwp is missing; add the DC capacity in kWp")
        if f.irradiance_from is not None and kind_of.get(f.irradiance_from) != "met":
            out.append(
                f"device {d.id}: irradiance_from {f.irradiance_from!r} is not a met station "
                "of this registry; name a device of kind met"
            )
        if f.rated_kva is not None:
            if f.transformer_area is None:
                out.append(f"device {d.id}: rated_kva without transformer_area; add the area")
                continue
            first = ratings.setdefault(f.transformer_area, (f.rated_kva, d.id))
            if first[0] != f.rated_kva:
                out.append(
                    f"device {d.id}: transformer area {f.transformer_area!r} rated "
                    f"{f.rated_kva:g} kVA here but {first[0]:g} kVA at {first[1]}; give one rating"
                )
    return out


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
    """The shared weather of the place (clear-sky sine from 06:00 to 18:00, passing clouds),
    rare faults."""
    capacity = facts(device).capacity_kwp
    kw = 10.0 if capacity is None else capacity
    # The met station of the same place sees the same sky (devices.met.weather).
    poa, ambient, wind = met.weather(met.place_of(device), now)
    sun = poa / 1000
    losses = 0.87  # the array's output against its kWp at the sun it has (plausible PR)
    day = now.date().isoformat()
    if state.get("day") != day:
        state["day"], state["today"] = day, 0.0
    total = state.setdefault("total", rnd.uniform(500, 20_000) * kw / 10)
    fault = rnd.random() < 0.0005 or (state.get("fault", 0) > 0)
    state["fault"] = (state.get("fault", 0) or 20) - 1 if fault else 0
    dc = 0.0 if fault else kw * 1000 * sun * losses * rnd.uniform(0.97, 1.0)
    ac = dc * 0.965
    # The registers count the power over the time since the previous reading (a minute for the
    # first), so energy matches power whatever the simulator's step.
    last, state["at"] = state.get("at"), now
    gap_h = (now - last).total_seconds() / 3600 if isinstance(last, datetime) else 0.0
    dt_h = gap_h if 0 < gap_h <= 1 else state.get("dt_h", 1 / 60)
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
        "temp_c": round(met.module_temp(poa, ambient, wind) + rnd.gauss(0, 0.5), 1),
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
        "ac_rating_kw": Label("交流额定功率 kW", "AC rating kW"),
        "irradiance_from": Label("辐照度来源", "Irradiance from"),
        "commissioned": Label("并网日期", "Commissioned"),
        "substation": Label("变电站", "Substation"),
        "feeder": Label("10 kV 线路", "Feeder"),
        "transformer_area": Label("台区", "Transformer area"),
        "customer_number": Label("户号", "Customer number"),
        "rated_kva": Label("台区容量 kVA", "Area rating kVA"),
    },
    key_fields=("ac_power_w", "status", "energy_today_kwh"),
    summary=summary,
    dashboard="envgrid-pv",
    simulate=simulate,
    bad_sample={"grid_freq_hz": 90.0},
)
