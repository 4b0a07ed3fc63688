"""The benchmark workload: a fleet of five device kinds publishing envgrid JSON readings.

Mirrors the shared harness's ``--scheme envgrid`` (../shared/bench/README.md, "The workload"):
device *k* is kind *k mod 5* with id ``<PREFIX>-<k+1:05d>``, reading *i* comes from device
*i mod devices*, every value is physically valid and drifts along a bounded random walk, energy
registers only grow, and ``ts`` = base + *i* (unique per reading). Average payload ≈ 143 bytes.
Kept here so ``make bench`` runs on a fresh clone without the shared folder.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

KINDS = ("water", "air", "pv", "ev_charger", "shore_power")
ID_PREFIX = {"water": "WQ", "air": "AQ", "pv": "PV", "ev_charger": "EV", "shore_power": "SP"}
MEASUREMENTS = {
    "water": "water_quality",
    "air": "air_quality",
    "pv": "pv_inverter",
    "ev_charger": "ev_charger",
    "shore_power": "shore_power",
}
PREFIX = "envgrid"


class _Walk:
    """Per-device bounded random walk: readings drift like a sensor's instead of jumping."""

    def __init__(self, rnd: random.Random) -> None:
        self.rnd = rnd
        self.state: dict[str, float] = {}

    def __call__(
        self, key: str, lo: float, hi: float, dec: int | None = None, step: float = 0.02
    ) -> float:
        v = self.state.get(key)
        if v is None:
            v = self.rnd.uniform(lo, hi)
        else:
            v += self.rnd.gauss(0.0, step * (hi - lo))
            v = 2 * lo - v if v < lo else v
            v = 2 * hi - v if v > hi else v
            v = min(max(v, lo), hi)
        self.state[key] = v
        return v if dec is None else float(round(v, dec))

    def counter(self, key: str, lo: float, hi: float, add: float) -> float:
        v = self.state.get(key)
        v = self.rnd.uniform(lo, hi) if v is None else v + add
        self.state[key] = v
        return float(round(v, 2))


def _reading(kind: str, w: _Walk, k: int) -> dict[str, object]:
    if kind == "water":
        return {
            "ph": w("ph", 6.5, 8.5, 2),
            "do_mg_l": w("do", 3.0, 10.0, 2),
            "nh3n_mg_l": w("nh3n", 0.05, 1.8, 3),
            "codmn_mg_l": w("codmn", 1.0, 10.0, 2),
            "tp_mg_l": w("tp", 0.01, 0.4, 3),
            "turbidity_ntu": w("turb", 0.5, 80.0, 1),
            "temp_c": w("temp", 2.0, 32.0, 1, step=0.005),
        }
    if kind == "air":
        pm25 = w("pm25", 3.0, 150.0, 1)
        return {
            "pm25_ug_m3": pm25,
            "pm10_ug_m3": float(round(pm25 * w("ratio", 1.1, 2.0), 1)),
            "no2_ug_m3": w("no2", 5.0, 120.0, 1),
            "so2_ug_m3": w("so2", 1.0, 40.0, 1),
            "o3_ug_m3": w("o3", 10.0, 220.0, 1),
            "co_mg_m3": w("co", 0.2, 3.0, 2),
        }
    if kind == "pv":
        dc = w("dc", 0.0, 10000.0)
        ac = dc * w("eff", 0.94, 0.98)
        return {
            "ac_power_w": float(round(ac, 1)),
            "dc_power_w": float(round(dc, 1)),
            "dc_voltage_v": w("dcv", 180.0, 820.0, 1),
            "energy_total_kwh": w.counter("e", 100.0, 60000.0, ac / 60000.0),
            "ac_voltage_v": w("acv", 216.0, 234.0, 1),
            "grid_freq_hz": w("f", 49.9, 50.1, 3),
            "temp_c": w("temp", -5.0, 75.0, 1, step=0.005),
        }
    if kind == "ev_charger":
        p = w("p", 1.0, 120.0)
        u = w("u", 300.0, 800.0)
        return {
            "connector_id": 1,
            "status": "Charging",
            "power_kw": float(round(p, 2)),
            "energy_kwh": w.counter("e", 0.0, 90000.0, p / 60.0),
            "current_a": float(round(p * 1000.0 / u, 1)),
            "voltage_v": float(round(u, 1)),
            "soc_pct": w("soc", 5.0, 100.0, 1),
        }
    u = w("u", 380.0, 420.0)
    i = w("i", 10.0, 400.0)
    p = 1.7320508 * u * i * 0.9 / 1000.0  # three-phase, power factor 0.9
    return {
        "berth": f"B{1 + (k // len(KINDS)) % 9}",
        "connected": True,
        "voltage_v": float(round(u, 1)),
        "current_a": float(round(i, 1)),
        "power_kw": float(round(p, 2)),
        "energy_kwh": w.counter("e", 0.0, 500000.0, p / 60.0),
        "frequency_hz": w("f", 49.9, 50.1, 3),
    }


def device(k: int) -> tuple[str, str]:
    """(kind, id) of device number k."""
    kind = KINDS[k % len(KINDS)]
    return kind, f"{ID_PREFIX[kind]}-{k + 1:05d}"


@dataclass
class Workload:
    """Readings as (topic, body without ts); ``payload(i, ts)`` adds the timestamp."""

    topics: list[str]
    bodies: list[bytes]  # JSON object text without its closing brace: ``{"ph":7.1,...``

    def __len__(self) -> int:
        return len(self.bodies)

    def payload(self, i: int, ts_ms: int) -> bytes:
        """Message i with its ``ts``."""
        return self.bodies[i] + b',"ts":%d}' % ts_ms


def make(n: int, devices: int = 1000, seed: int = 42) -> Workload:
    """n readings from ``devices`` devices (kinds interleaved), deterministic for a seed."""
    rnd = random.Random(seed)
    fleet = [device(k) for k in range(devices)]
    topic_of = [f"{PREFIX}/{kind}/{dev}" for kind, dev in fleet]
    walks: dict[int, _Walk] = {}
    topics: list[str] = []
    bodies: list[bytes] = []
    for i in range(n):
        k = i % devices
        w = walks.get(k)
        if w is None:
            w = walks[k] = _Walk(rnd)
        body = json.dumps(_reading(fleet[k][0], w, k), separators=(",", ":"))
        topics.append(topic_of[k])
        bodies.append(body[:-1].encode())
    if devices > 10_000:
        walks.clear()
    return Workload(topics, bodies)


def base_ms(age_s: float = 3600.0) -> int:
    """A recent timestamp base, one hour ago on a whole second (inside envgrid's 7-day window)."""
    return int(time.time() - age_s) * 1000


def messages(w: Workload, base: int) -> list[tuple[str, bytes]]:
    """Every reading with ts = base + i."""
    pay: Callable[[int, int], bytes] = w.payload
    return [(w.topics[i], pay(i, base + i)) for i in range(len(w))]
