"""The registered device kinds. A new kind is one module plus one line here."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from random import Random
from typing import Any

from devices import air, ev_charger, pv, shore_power, water
from devices.base import DeviceKind
from devices.registry import Device

Simulate = Callable[[Device, datetime, Random, dict[str, Any]], dict[str, Any]]

_MODULES = (water, air, shore_power, pv, ev_charger)

KINDS: dict[str, DeviceKind] = {m.KIND.name: m.KIND for m in _MODULES}
SIMULATORS: dict[str, Simulate] = {m.KIND.name: m.simulate for m in _MODULES}
