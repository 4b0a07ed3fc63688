"""EV charge point connector: OCPP 1.6 status and error code, meter values in SI units.

Statuses and error codes are OCPP 1.6's (standards.md, "EV chargers"). ``connector_id`` is a
tag (``connector``) because two connectors of one charge point report at the same instant.
"""

from __future__ import annotations

import random
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

import msgspec

from devices.base import DeviceKind, Glance, Label, Reading, rng
from devices.registry import Device, Facts

# OCPP 1.6 ChargePointStatus.
Status = Literal[
    "Available",
    "Preparing",
    "Charging",
    "SuspendedEVSE",
    "SuspendedEV",
    "Finishing",
    "Reserved",
    "Unavailable",
    "Faulted",
]
# OCPP 1.6 ChargePointErrorCode.
ErrorCode = Literal[
    "ConnectorLockFailure",
    "EVCommunicationError",
    "GroundFailure",
    "HighTemperature",
    "InternalError",
    "LocalListConflict",
    "NoError",
    "OtherError",
    "OverCurrentFailure",
    "PowerMeterFailure",
    "PowerSwitchFailure",
    "ReaderFailure",
    "ResetFailure",
    "UnderVoltage",
    "OverVoltage",
    "WeakSignal",
]
# OCPP 1.6: connector 0 (the whole charge point) only reports these.
_CONNECTOR0 = frozenset({"Available", "Unavailable", "Faulted"})


class EvChargerReading(Reading):
    """One connector reading."""

    connector_id: Annotated[int, msgspec.Meta(ge=0, le=64)] | None = None
    status: Status | None = None
    power_kw: Annotated[float, rng(0, 1000, "kW")] | None = None
    energy_kwh: Annotated[float, rng(0, None, "kWh")] | None = (
        None  # meter register (OCPP Energy.Active.Import.Register)
    )
    current_a: Annotated[float, rng(0, 1000, "A")] | None = None
    voltage_v: Annotated[float, rng(0, 1500, "V")] | None = None
    soc_pct: Annotated[float, rng(0, 100, "%")] | None = None
    error_code: ErrorCode | None = None

    MEASURED: ClassVar[tuple[str, ...]] = (
        "status",
        "power_kw",
        "energy_kwh",
        "current_a",
        "voltage_v",
        "soc_pct",
        "error_code",
    )

    def check(self) -> None:
        if self.connector_id == 0 and self.status is not None and self.status not in _CONNECTOR0:
            raise ValueError(
                f"connector 0 cannot be {self.status} (OCPP 1.6: only "
                "Available, Unavailable, Faulted)"
            )


class EvChargerFacts(Facts):
    """A charge point's registry facts: its rated power (kW)."""

    rated_kw: float | None = None


def facts(device: Device) -> EvChargerFacts:
    """The charge point's typed registry facts."""
    return EvChargerFacts.of(device)


STATUS_LABEL = Label("充电桩状态", "Charger status")


def summary(g: Glance) -> list[str]:
    """Each connector's OCPP status, with its error code when it has one."""
    out = []
    for series, vals in g.series():
        status = vals.get("status")
        if status is None:
            continue
        label = g.series_label(series) or STATUS_LABEL.pick(g.lang)
        err = vals.get("error_code")
        extra = f" ({err})" if err and err != "NoError" else ""
        out.append(f"{label}: {status}{extra}")
    return out


def simulate(
    device: Device, now: datetime, rnd: random.Random, state: dict[str, Any]
) -> dict[str, Any]:
    """Charging sessions: Available → Preparing → Charging (SoC rises) → Finishing, rare faults."""
    rated_kw = facts(device).rated_kw
    rated = 60.0 if rated_kw is None else rated_kw
    energy = state.setdefault("energy", rnd.uniform(100, 30_000))
    st = state.get("status", "Available")
    if st == "Available" and rnd.random() < 0.05:
        st, state["soc"] = "Preparing", rnd.uniform(10, 50)
    elif st == "Preparing":
        st = "Charging"
    elif st == "Charging" and state.get("soc", 0) >= 95:
        st = "Finishing"
    elif st in ("Finishing", "Faulted") and rnd.random() < 0.5:
        st = "Available"
    if st != "Faulted" and rnd.random() < 0.001:
        st = "Faulted"
    state["status"] = st
    power = rated * rnd.uniform(0.85, 0.98) if st == "Charging" else 0.0
    # The register counts the power over the time since the previous reading (a minute for the
    # first), so energy matches power whatever the simulator's step (as devices/pv.py does).
    last, state["at"] = state.get("at"), now
    gap_h = (now - last).total_seconds() / 3600 if isinstance(last, datetime) else 0.0
    dt_h = gap_h if 0 < gap_h <= 1 else state.get("dt_h", 1 / 60)
    if power:
        energy += power * dt_h
        state["soc"] = min(100.0, state["soc"] + power * dt_h / 0.6)
    state["energy"] = energy
    voltage = 400.0 + rnd.gauss(0, 2)
    out: dict[str, Any] = {
        "connector_id": 1,
        "status": st,
        "power_kw": round(power, 2),
        "energy_kwh": round(energy, 3),
        "current_a": round(power * 1000 / voltage, 1),
        "voltage_v": round(voltage, 1),
        "error_code": "GroundFailure" if st == "Faulted" else "NoError",
    }
    if st in ("Charging", "Finishing"):
        out["soc_pct"] = round(state["soc"], 1)
    return out


KIND = DeviceKind(
    name="ev_charger",
    measurement="ev_charger",
    model=EvChargerReading,
    description="EV charge point connector",
    payload_tags={"connector_id": "connector"},
    label=Label("充电桩", "EV charger"),
    facts_model=EvChargerFacts,
    fact_labels={"rated_kw": Label("额定功率 kW", "Rated kW")},
    key_fields=("status", "error_code", "power_kw", "energy_kwh"),
    summary=summary,
    dashboard="envgrid-ev",
    simulate=simulate,
    bad_sample={"status": "Sleeping"},
)
