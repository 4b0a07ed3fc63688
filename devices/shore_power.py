"""Shore-power berth meter (岸电) at canal ports: connection state and a cumulative register.

Inland ships take 380 V / 50 Hz; sea-going ships 440 V / 60 Hz through a converter; high-voltage
systems 6.6 / 11 kV (standards.md, "Shore power"). Frequency is therefore accepted near 50 or 60 Hz.
"""

from __future__ import annotations

import random
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

import msgspec

from devices.base import DeviceKind, Glance, Label, Reading, flag_text, rng
from devices.registry import Device, Facts

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class ShorePowerReading(Reading):
    """One berth-meter reading."""

    berth: Name | None = None
    vessel_id: Name | None = None
    connected: bool | None = None
    voltage_v: Annotated[float, rng(0, 12_000, "V")] | None = (
        None  # up to 11 kV high-voltage shore power
    )
    current_a: Annotated[float, rng(0, 5000, "A")] | None = None
    power_kw: Annotated[float, rng(0, 20_000, "kW")] | None = None
    energy_kwh: Annotated[float, rng(0, None, "kWh")] | None = (
        None  # cumulative register: never negative
    )
    frequency_hz: Annotated[float, rng(45, 65, "Hz")] | None = None
    power_factor: Annotated[float, rng(-1, 1, "")] | None = None

    MEASURED: ClassVar[tuple[str, ...]] = (
        "connected",
        "voltage_v",
        "current_a",
        "power_kw",
        "energy_kwh",
        "frequency_hz",
        "power_factor",
    )

    def check(self) -> None:
        f = self.frequency_hz
        # A ship runs at 50 or 60 Hz; anything between is a meter fault, not a grid deviation.
        if f is not None and not (47.5 <= f <= 52.5 or 57.5 <= f <= 62.5):
            raise ValueError(f"frequency_hz {f} is neither near 50 Hz nor near 60 Hz")


class ShorePowerFacts(Facts):
    """A berth meter's registry facts: its berth, port and supply (e.g. 380V/50Hz)."""

    berth: str | None = None
    port: str | None = None
    voltage: str | None = None
    # 港口和船舶岸电管理办法 Art. 11 obliges a ship after 2 h at an inland port, 3 h at a coastal
    # one; unset: the report's configured default (report/shore_calls.py).
    waters: Literal["inland", "coastal"] | None = None


def facts(device: Device) -> ShorePowerFacts:
    """The berth meter's typed registry facts."""
    return ShorePowerFacts.of(device)


VESSEL_LABEL = Label("船舶", "Vessel")


def summary(g: Glance) -> list[str]:
    """Connected or not; for a connected ship its id and the power it draws."""
    out = []
    c = g.value("connected")
    if c is not None:
        out.append(g.show("connected", c))
    if c and g.value("vessel_id"):
        out.append(f"{VESSEL_LABEL.pick(g.lang)} {g.value('vessel_id')}")
    p = g.value("power_kw")
    if c and isinstance(p, int | float) and not isinstance(p, bool):
        out.append(f"{g.number(float(p))} kW")
    return out


def simulate(
    device: Device, now: datetime, rnd: random.Random, state: dict[str, Any]
) -> dict[str, Any]:
    """A berth with vessel calls of 2–10 h; a connected ship draws 50–400 kW three-phase."""
    energy = state.setdefault("energy", rnd.uniform(1000, 50_000))
    if state.get("until") is None or now >= state["until"]:
        connected = not state.get("connected", False) if state.get("until") else rnd.random() < 0.5
        state["connected"] = connected
        state["until"] = now.fromtimestamp(now.timestamp() + rnd.uniform(2, 10) * 3600, now.tzinfo)
        state["vessel"] = f"CN{rnd.randrange(100000, 999999)}" if connected else None
        state["load"] = rnd.uniform(50, 400)
    # The register counts the power over the time since the previous reading (a minute for the
    # first), so energy matches power whatever the simulator's step (as devices/pv.py does).
    last, state["at"] = state.get("at"), now
    gap_h = (now - last).total_seconds() / 3600 if isinstance(last, datetime) else 0.0
    dt_h = gap_h if 0 < gap_h <= 1 else state.get("dt_h", 1 / 60)
    berth = facts(device).berth or "B1"
    out: dict[str, Any] = {"berth": berth, "connected": state["connected"]}
    if state["connected"]:
        power = max(5.0, state["load"] + rnd.gauss(0, 5))
        voltage = 380 + rnd.gauss(0, 3)
        energy += power * dt_h
        state["energy"] = energy
        out.update(
            vessel_id=state["vessel"],
            voltage_v=round(voltage, 1),
            current_a=round(power * 1000 / (1.732 * voltage * 0.9), 1),
            power_kw=round(power, 1),
            frequency_hz=round(50 + rnd.gauss(0, 0.02), 2),
            power_factor=0.9,
        )
    else:
        out.update(
            voltage_v=round(380 + rnd.gauss(0, 3), 1),
            current_a=0.0,
            power_kw=0.0,
            frequency_hz=round(50 + rnd.gauss(0, 0.02), 2),
        )
    out["energy_kwh"] = round(energy, 2)
    return out


KIND = DeviceKind(
    name="shore_power",
    measurement="shore_power",
    model=ShorePowerReading,
    description="Shore-power berth meter",
    payload_tags={"berth": "berth"},
    tag_only=frozenset({"berth"}),
    label=Label("岸电", "Shore power"),
    facts_model=ShorePowerFacts,
    fact_labels={
        "berth": Label("泊位", "Berth"),
        "port": Label("港区", "Port"),
        "voltage": Label("供电制式", "Supply"),
        "waters": Label("水域", "Waters"),
    },
    key_fields=("connected", "vessel_id", "power_kw", "energy_kwh"),
    summary=summary,
    value_texts={
        "connected": flag_text(Label("已连接", "connected"), Label("未连接", "not connected"))
    },
    dashboard="envgrid-shore",
    simulate=simulate,
    bad_sample={"energy_kwh": -12.5},
)
