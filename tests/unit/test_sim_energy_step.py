"""The EV and shore-power simulators advance their energy registers by the time since the
previous reading, so a fleet simulated every 5 minutes reports energy that matches its power."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devices import ev_charger, shore_power
from devices.registry import Device

T0 = datetime(2026, 11, 3, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize("minutes", [1, 5, 15])
def test_shore_power_energy_follows_the_reading_interval(minutes: int) -> None:
    dev = Device(id="berth-1", kind="shore_power", facts={"berth": "B1"})
    state: dict[str, Any] = {
        "connected": True,
        "until": T0 + timedelta(days=1),
        "vessel": "CN123456",
        "load": 200.0,
    }
    rnd = random.Random(3)
    first = shore_power.simulate(dev, T0, rnd, state)
    second = shore_power.simulate(dev, T0 + timedelta(minutes=minutes), rnd, state)
    delta = second["energy_kwh"] - first["energy_kwh"]
    assert delta == pytest.approx(second["power_kw"] * minutes / 60, abs=0.02)


@pytest.mark.parametrize("minutes", [1, 5, 15])
def test_ev_charger_energy_follows_the_reading_interval(minutes: int) -> None:
    dev = Device(id="ev-1", kind="ev_charger", facts={"rated_kw": 60})
    state: dict[str, Any] = {"status": "Charging", "soc": 20.0}
    rnd = random.Random(5)
    first = ev_charger.simulate(dev, T0, rnd, state)
    second = ev_charger.simulate(dev, T0 + timedelta(minutes=minutes), rnd, state)
    assert second["status"] == "Charging"
    delta = second["energy_kwh"] - first["energy_kwh"]
    assert delta == pytest.approx(second["power_kw"] * minutes / 60, abs=0.01)
