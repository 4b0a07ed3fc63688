"""PV daily figures per inverter after IEC 61724-1:2021 (docs/pv.md): pure, windowed, no I/O.

Every sample stands for the time until the next one, at most ``max_hold_s`` (a lost link is
not time at the last value). Energy comes from the energy register, counting resets; the
figures that need irradiance (Yr, PR, temperature-corrected PR, availability, curtailed
energy, energy lost in FAULT) are absent, not zero, when the inverter has no irradiance for the
day.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from devices.lineproto import FieldValue

PV_DAILY = "pv_daily"
PV_GRID_DAILY = "pv_grid_daily"
# IEC 61724-1: the reference irradiance G_ref of the reference yield, 1 kW/m².
G_REF_W_M2 = 1000.0
# STC module temperature of the temperature correction, 25 °C.
T_REF_C = 25.0
# SunSpec 101/103 St values in which the inverter is available: producing or held back.
PRODUCING = frozenset({"MPPT", "THROTTLED"})
THROTTLED = "THROTTLED"
FAULT = "FAULT"
# Below this drop a register is only jittering (rounding), not reset.
_RESET_EPS_KWH = 0.01

Sample = tuple[int, float]  # (epoch ms, value)

# The fields of pv_daily and pv_grid_daily with their units (the dashboards' schema reads them);
# "ratio" is a share 0–1 (shown as a percentage).
PV_DAILY_TAGS = (
    "device_id",
    "site",
    "county",
    "pilot",
    "met",
    "transformer_area",
    "feeder",
    "substation",
)
PV_DAILY_FIELDS: dict[str, str] = {
    "energy_kwh": "kWh",
    "p0_kwp": "kWp",
    "yf_kwh_kwp": "kWh/kWp",
    "h_poa_kwh_m2": "kWh/m²",
    "yr_h": "h",
    "pr": "ratio",
    "pr_temp_corrected": "ratio",
    "availability": "ratio",
    "curtailed_h": "h",
    "curtailed_kwh": "kWh",
    "fault_h": "h",
    "fault_kwh": "kWh",
    "underperforming": "",
    "shortfall": "ratio",
    "energy_lost_kwh": "kWh",
    "peer_median": "ratio",
}
PV_GRID_TAGS = ("level", "name", "county")
PV_GRID_FIELDS: dict[str, str] = {
    "inverters": "count",
    "installed_kwp": "kWp",
    "energy_kwh": "kWh",
    "peak_kw": "kW",
    "rated_kva": "kVA",
    "peak_to_rated": "ratio",
}


@dataclass(frozen=True, slots=True)
class PvOptions:
    """How the daily figures are computed; the defaults are the settings' (rollups.config)."""

    gamma_per_c: float = -0.0047  # P_max temperature coefficient, 1/°C (docs/pv.md)
    irradiance_threshold_w_m2: float = 50.0  # "the sun is up" for availability
    max_hold_s: float = 900.0  # a sample stands for at most this long
    min_temp_coverage: float = 0.9  # share of H_POA with a module temperature, for PR_temp


@dataclass(slots=True)
class Inverter:
    """One inverter's samples of a local day [start_ms, end_ms), and the register before it."""

    device_id: str
    capacity_kwp: float | None
    ac_power_w: list[Sample] = field(default_factory=list)
    energy_total_kwh: list[Sample] = field(default_factory=list)
    energy_today_kwh: list[Sample] = field(default_factory=list)
    status: list[tuple[int, str]] = field(default_factory=list)
    # The last register values before the day (None: none within reach).
    total_before: Sample | None = None
    today_before: Sample | None = None


@dataclass(slots=True)
class Met:
    """A met station's samples of the day."""

    poa_w_m2: list[Sample] = field(default_factory=list)
    module_temp_c: list[Sample] = field(default_factory=list)


def _held(ts: Sequence[int], end_ms: int, max_hold_ms: float) -> list[float]:
    """How long each sample stands, in hours: to the next sample or the day's end, capped."""
    out = []
    for i, t in enumerate(ts):
        nxt = ts[i + 1] if i + 1 < len(ts) else end_ms
        out.append(min(max(nxt - t, 0), max_hold_ms) / 3_600_000)
    return out


def register_energy(
    samples: Sequence[Sample], before: Sample | None, capacity_kwp: float | None
) -> float | None:
    """Energy counted by a register over the samples (kWh), across resets.

    A drop is a reset (the daily register at midnight, a replaced inverter or meter): the value
    after it is energy since the reset, when the inverter could have made that much in the time
    since the previous value (capacity × hours; unknown capacity: always), else it is a new
    starting point (a replacement delivered with energy on its register)."""
    seq = sorted(samples)
    if before is not None:
        seq = [before, *seq]
    if len(seq) < 2:
        return None if not seq or before is None else 0.0
    total = 0.0
    t0, v0 = seq[0]
    for t1, v1 in seq[1:]:
        d = v1 - v0
        if d >= 0:
            total += d
        elif -d <= _RESET_EPS_KWH:
            continue  # jitter: the higher value stays the baseline
        else:
            hours = max(t1 - t0, 0) / 3_600_000
            if capacity_kwp is None or v1 <= capacity_kwp * max(hours, 1 / 60) * 1.2:
                total += v1
        t0, v0 = t1, v1
    return total


def _at(ts: Sequence[int], values: Sequence[float], t: int, max_hold_ms: float) -> float | None:
    """The value standing at time t (the last sample at or before it, within max_hold)."""
    i = bisect.bisect_right(ts, t) - 1
    if i < 0 or t - ts[i] >= max_hold_ms:
        return None
    return values[i]


def _status_at(ts: Sequence[int], values: Sequence[str], t: int, max_hold_ms: float) -> str | None:
    i = bisect.bisect_right(ts, t) - 1
    if i < 0 or t - ts[i] >= max_hold_ms:
        return None
    return values[i]


def daily_figures(
    inv: Inverter, met: Met | None, end_ms: int, opts: PvOptions
) -> dict[str, FieldValue]:
    """The ``pv_daily`` fields of one inverter and day (fields that cannot be known left out)."""
    hold_ms = opts.max_hold_s * 1000
    out: dict[str, FieldValue] = {}
    energy = register_energy(inv.energy_total_kwh, inv.total_before, inv.capacity_kwp)
    if energy is None:
        energy = register_energy(inv.energy_today_kwh, inv.today_before, inv.capacity_kwp)
    if energy is not None:
        out["energy_kwh"] = energy
    p0 = inv.capacity_kwp
    if p0:
        out["p0_kwp"] = p0
    if energy is not None and p0:
        out["yf_kwh_kwp"] = energy / p0  # final yield Yf = E / P0

    st = sorted(inv.status)
    st_ts = [t for t, _ in st]
    st_v = [v for _, v in st]
    st_h = _held(st_ts, end_ms, hold_ms)
    curtailed_h = math.fsum(h for h, v in zip(st_h, st_v, strict=True) if v == THROTTLED)
    out["curtailed_h"] = curtailed_h
    out["fault_h"] = math.fsum(h for h, v in zip(st_h, st_v, strict=True) if v == FAULT)

    poa = sorted(met.poa_w_m2) if met else []
    if not poa:
        return out
    g_ts = [t for t, _ in poa]
    g_v = [max(0.0, v) for _, v in poa]  # a pyranometer's night offset is not irradiance
    g_h = _held(g_ts, end_ms, hold_ms)
    h_poa = math.fsum(g * h for g, h in zip(g_v, g_h, strict=True)) / 1000  # kWh/m²
    out["h_poa_kwh_m2"] = h_poa
    yr = h_poa / (G_REF_W_M2 / 1000)  # reference yield Yr = H_POA / G_ref, hours
    out["yr_h"] = yr
    yf = out.get("yf_kwh_kwp")
    if isinstance(yf, float) and yr > 0:
        out["pr"] = yf / yr

    temps = sorted(met.module_temp_c) if met else []
    t_ts = [t for t, _ in temps]
    t_v = [v for _, v in temps]
    p_ts = [t for t, _ in sorted(inv.ac_power_w)]
    p_v = [v for _, v in sorted(inv.ac_power_w)]

    sunny_h = avail_h = 0.0
    corrected = covered = 0.0  # Σ G·C·τ over samples with a module temperature; Σ G·τ of those
    free_e = free_g = 0.0  # energy and irradiation while producing unconstrained (own PR)
    throttled: list[tuple[float, float, float]] = []  # (G, hours, actual kW) while THROTTLED
    faulted: list[tuple[float, float, float]] = []  # the same while in FAULT
    for t, g, h in zip(g_ts, g_v, g_h, strict=True):
        status = _status_at(st_ts, st_v, t, hold_ms)
        p = _at(p_ts, p_v, t, hold_ms)
        if g > opts.irradiance_threshold_w_m2:
            sunny_h += h
            producing = status in PRODUCING if status is not None else (p or 0.0) > 0
            if producing:
                avail_h += h
        tm = _at(t_ts, t_v, t, hold_ms)
        if tm is not None:
            corrected += g * h * (1 + opts.gamma_per_c * (tm - T_REF_C))
            covered += g * h
        kw = (p or 0.0) / 1000
        if status == THROTTLED:
            throttled.append((g, h, kw))
        elif status == FAULT:
            faulted.append((g, h, kw))
        elif status == "MPPT" or (status is None and kw > 0):
            free_e += kw * h
            free_g += g * h / 1000
    if sunny_h > 0:
        out["availability"] = avail_h / sunny_h
    if (
        energy is not None
        and p0
        and covered > 0
        and covered >= opts.min_temp_coverage * g_sum(g_v, g_h)
    ):
        # Temperature-corrected PR: E / Σ (P0 · G/G_ref · C · τ), C = 1 + γ (T_mod − 25 °C).
        expected = p0 * corrected / G_REF_W_M2 * (g_sum(g_v, g_h) / covered)
        if expected > 0:
            out["pr_temp_corrected"] = energy / expected
    if p0 and free_g > 0:
        own_pr = free_e / (p0 * free_g)  # the inverter's PR while unconstrained
        for name, held in (("curtailed_kwh", throttled), ("fault_kwh", faulted)):
            out[name] = math.fsum(
                max(0.0, p0 * g / G_REF_W_M2 * own_pr - kw) * h for g, h, kw in held
            )
    else:
        if curtailed_h == 0:
            out["curtailed_kwh"] = 0.0
        if out["fault_h"] == 0:
            out["fault_kwh"] = 0.0
    return out


def g_sum(g: Sequence[float], h: Sequence[float]) -> float:
    """Σ G·τ (W·h/m²)."""
    return math.fsum(a * b for a, b in zip(g, h, strict=True))


@dataclass(frozen=True, slots=True)
class Underperformer:
    """An inverter below its peers' median."""

    device_id: str
    peers: str  # "met:<id>" or "area:<transformer area>"
    metric: str  # "pr" or "yf_kwh_kwp"
    value: float
    median: float
    shortfall: float  # 1 − value / median
    energy_lost_kwh: float  # (median − value) × P0 × (Yr for PR, 1 for Yf)


def underperformers(
    rows: Mapping[str, Mapping[str, FieldValue]],
    groups: Mapping[str, Iterable[str]],
    capacity: Mapping[str, float | None],
    margin: float,
) -> list[Underperformer]:
    """Inverters whose PR (or, without irradiance, Yf) is below their group's median by more
    than ``margin`` (0.15 = 15 %); each group needs three or more members with the metric.
    Ranked by energy lost, the largest first. ``rows`` hold the window's figures per inverter
    (summed energy and irradiation: see :func:`window_figures`)."""
    out: dict[str, Underperformer] = {}
    for peers, members in groups.items():
        members = [m for m in members if m in rows]
        for metric in ("pr", "yf_kwh_kwp"):
            vals = {
                m: float(v)
                for m in members
                if isinstance(v := rows[m].get(metric), int | float) and not isinstance(v, bool)
            }
            if metric == "yf_kwh_kwp":
                # Specific yield only for inverters without irradiance (PR judges the rest).
                vals = {m: v for m, v in vals.items() if "pr" not in rows[m]}
            if len(vals) < 3:
                continue
            median = statistics.median(vals.values())
            if median <= 0:
                continue
            for m, v in vals.items():
                short = 1 - v / median
                if short <= margin or m in out:
                    continue
                p0 = capacity.get(m) or 0.0
                yr = rows[m].get("yr_h")
                scale = float(yr) if metric == "pr" and isinstance(yr, int | float) else 1.0
                out[m] = Underperformer(
                    m, peers, metric, v, median, short, (median - v) * p0 * scale
                )
    return sorted(out.values(), key=lambda u: (-u.energy_lost_kwh, u.device_id))


def window_figures(days: Sequence[Mapping[str, FieldValue]], p0: float | None) -> dict[str, float]:
    """An inverter's figures over several days: energy and irradiation summed, PR and Yf of
    the sums (IEC 61724-1 aggregates ratios from the summed quantities, not as a mean)."""
    e = [float(v) for d in days if isinstance(v := d.get("energy_kwh"), int | float)]
    h = [float(v) for d in days if isinstance(v := d.get("h_poa_kwh_m2"), int | float)]
    out: dict[str, float] = {}
    if e and p0:
        out["energy_kwh"] = math.fsum(e)
        out["yf_kwh_kwp"] = out["energy_kwh"] / p0
    if h and len(h) == len(days) and "yf_kwh_kwp" in out and math.fsum(h) > 0:
        out["yr_h"] = math.fsum(h) / (G_REF_W_M2 / 1000)
        out["pr"] = out["yf_kwh_kwp"] / out["yr_h"]
    return out
