"""Alert evaluation cost per reading with 10 and with 1,000 rules (same stream, same run).

The stream is the simulated city fleet (120 devices, five kinds) through the real pipeline, turned
into engine observations as the service does; only ``AlertEngine.observe`` is timed. Both rule
sets contain the same 10 shipped default rules, so they see the same alert transitions; the
1,000-rule set adds 990 rules for a larger city (one per device, on that kind's fields, for
devices that are not in this stream) — the usual way rule sets grow. A third, informative line
times 1,000 rules that all apply to every reading's own device and field, the case an index
cannot help with.

Then a city of ``--devices`` devices (100,000) each seen for the first time, with the 10- and
the 1,000-rule sets: µs per first reading (learning the device, plus the ticks that record it
in the store) and the engine's memory per quiet device (tracemalloc, a separate pass).

    .venv/bin/python bench/alerts_eval.py [-n 200000] [--runs 3] [--devices 100000]
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alerts.engine import AlertEngine, Observation
from alerts.rules import Condition, Rule, RuleSet, Scope, load_rules
from alerts.store import AlertStore
from devices.kinds import KINDS
from devices.registry import load_registry
from envgrid.app import DEFAULT_REGISTRY
from envgrid.simulator import generate
from ingest.pipeline import Accepted, Pipeline
from ingest.topics import TopicMap

# Fields per kind to spread the extra rules over (numeric readings each kind carries).
FIELDS = {
    "water": ["do_mg_l", "nh3n_mg_l", "ph", "codmn_mg_l", "tp_mg_l", "turbidity_ntu"],
    "air": ["aqi", "pm25_ug_m3", "pm10_ug_m3", "o3_ug_m3", "no2_ug_m3"],
    "pv": ["ac_voltage_v", "grid_freq_hz", "temp_c", "ac_power_w"],
    "ev_charger": ["power_kw", "voltage_v", "current_a"],
    "shore_power": ["frequency_hz", "voltage_v", "power_kw"],
}
PREFIX = {"water": "WQ", "air": "AQ", "pv": "PV", "ev_charger": "EV", "shore_power": "SP"}


def observations(n: int) -> list[Observation]:
    """The fleet's readings as the service hands them to the engine."""
    reg = load_registry(DEFAULT_REGISTRY)
    msgs = generate(list(reg), n, step_ms=60_000)
    pipe = Pipeline(KINDS, reg, TopicMap("envgrid", KINDS), max_age_ms=10**13)
    out = []
    for m in msgs:
        res = pipe.process(m.topic, m.payload)
        if isinstance(res, Accepted):
            series = ",".join(
                f"{key}={v}"
                for attr, key in res.kind.payload_tags.items()
                if (v := getattr(res.reading, attr, None)) is not None
            )
            out.append(
                Observation(
                    res.kind.name,
                    res.device.id,
                    res.device.site,
                    res.device.county,
                    res.ts_ms,
                    res.kind.values(res.reading, res.device),
                    series,
                )
            )
    return out


def never(field: str) -> Condition:
    return Condition(field, ">", 1e12, lambda v: isinstance(v, float) and v > 1e12)


def rule_sets() -> dict[str, RuleSet]:
    base = list(load_rules().rules[:10])
    rnd = random.Random(4)
    city: list[Rule] = []
    for i in range(990):
        kind = rnd.choice(list(FIELDS))
        device = f"{PREFIX[kind]}-{1000 + i}"  # a device of the larger city, not in this stream
        city.append(
            Rule(
                id=f"city-{i}",
                kind=kind,
                severity="minor",
                scope=Scope(devices=(device,)),
                when=never(rnd.choice(FIELDS[kind])),
            )
        )
    dense = [
        Rule(id=f"dense-{i}", kind=kind, severity="info", when=never(field))
        for i in range(990)
        for kind, fields in [list(FIELDS.items())[i % 5]]
        for field in [fields[0]]
    ]
    return {
        "10 rules": RuleSet(tuple(base)),
        "1,000 rules": RuleSet(tuple(base + city)),
        "1,000 rules, all on each reading's device and field": RuleSet(tuple(base + dense)),
    }


def run(rules: RuleSet, obs: list[Observation], tmp: Path) -> tuple[float, int]:
    """µs per reading of ``observe`` over the stream, and the transitions it took."""
    store = AlertStore(tmp / f"{time.monotonic_ns()}.db")
    eng = AlertEngine(rules, store, targets=("mqtt",))
    for o in obs[:2000]:  # learn the devices (once per device) before timing
        eng.observe(o)
    timed = obs[2000:]
    transitions = 0
    t0 = time.perf_counter()
    for o in timed:
        transitions += len(eng.observe(o))
    dt = time.perf_counter() - t0
    store.close()
    return dt / len(timed) * 1e6, transitions


def first_readings(n: int) -> list[Observation]:
    """One reading from each of n devices the engine has never seen (no rule is breached)."""
    kinds = list(FIELDS)
    return [
        Observation(k, f"{PREFIX[k]}-{i:06d}", "unknown", "unknown", 0, {"temp_c": 20.0})
        for i in range(n)
        for k in [kinds[i % len(kinds)]]
    ]


def learn(rules: RuleSet, obs: list[Observation], tmp: Path, *, trace: bool) -> float:
    """µs per first reading (ticks every 10,000, as a busy second would), or bytes per device."""
    store = AlertStore(tmp / f"{time.monotonic_ns()}.db")
    eng = AlertEngine(rules, store, targets=("mqtt",), clock=lambda: 1_800_000_000.0)
    gc.collect()
    if trace:
        tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0] if trace else 0
    t0 = time.perf_counter()
    for i, o in enumerate(obs, 1):
        eng.observe(o)
        if i % 10_000 == 0:
            eng.tick()
    eng.tick()
    dt = time.perf_counter() - t0
    if trace:
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
    store.close()
    return used / len(obs) if trace else dt / len(obs) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("-n", type=int, default=200_000, help="readings (default 200,000)")
    ap.add_argument("--runs", type=int, default=3, help="runs per rule set; the best counts")
    ap.add_argument("--devices", type=int, default=100_000, help="new devices (100,000)")
    args = ap.parse_args()
    obs = observations(args.n)
    sets = rule_sets()
    best: dict[str, tuple[float, int]] = {}
    with tempfile.TemporaryDirectory() as d:
        for _ in range(args.runs):  # interleaved, so drift hits every set alike
            for name, rs in sets.items():
                us, tr = run(rs, obs, Path(d))
                if name not in best or us < best[name][0]:
                    best[name] = (us, tr)
    print(f"alert evaluation, {len(obs) - 2000:,} readings, best of {args.runs} runs")
    for name, (us, tr) in best.items():
        print(f"  {name:<55} {us:6.2f} µs/reading  ({tr} transitions)")
    ratio = best["1,000 rules"][0] / best["10 rules"][0]
    print(f"  ratio 1,000 / 10 rules: {ratio:.2f}")
    first = first_readings(args.devices)
    print(f"{args.devices:,} new devices, best of {args.runs} runs")
    with tempfile.TemporaryDirectory() as d:
        for name in ("10 rules", "1,000 rules"):
            us = min(learn(sets[name], first, Path(d), trace=False) for _ in range(args.runs))
            per = learn(sets[name], first, Path(d), trace=True)
            print(f"  {name:<55} {us:6.2f} µs/first reading, {per:5.0f} bytes/device")


if __name__ == "__main__":
    main()
