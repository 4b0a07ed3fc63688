"""The pure PV daily figures (rollups.pv): register resets, absent figures, underperformers."""

from __future__ import annotations

from pathlib import Path

import pytest

from devices import pv
from devices.registry import Device, Registry, RegistryError
from rollups.pv import Inverter, Met, PvOptions, daily_figures, register_energy, underperformers

H = 3_600_000


def test_register_counts_across_a_midnight_reset() -> None:
    # Daily register: 40 kWh at 23:55, reset to 0 at midnight, then 0 → 30.
    before = (-5 * 60_000, 40.0)
    samples = [(0, 0.0), (6 * H, 0.0), (12 * H, 20.0), (18 * H, 30.0)]
    assert register_energy(samples, before, 10.0) == pytest.approx(30.0)


def test_register_after_a_replacement_counts_what_the_new_one_made() -> None:
    # Lifetime register 1000 → 1010; replaced; the new one reads 0.5 five minutes later → 5.
    samples = [(0, 1000.0), (H, 1010.0), (H + 300_000, 0.5), (2 * H, 5.0)]
    assert register_energy(samples, None, 10.0) == pytest.approx(10.0 + 0.5 + 4.5)


def test_a_replacement_delivered_with_energy_on_its_register_is_a_new_start() -> None:
    # 10 kWp cannot make 800 kWh in 5 minutes: 800 is the new register's starting point.
    samples = [(0, 1000.0), (H, 1010.0), (H + 300_000, 800.0), (2 * H, 805.0)]
    assert register_energy(samples, None, 10.0) == pytest.approx(15.0)


def test_rounding_jitter_is_not_a_reset() -> None:
    assert register_energy([(0, 5.0), (H, 4.995), (2 * H, 6.0)], None, 10.0) == pytest.approx(1.0)


def test_without_irradiance_the_figures_that_need_it_are_absent() -> None:
    inv = Inverter("X", 10.0, energy_total_kwh=[(0, 0.0), (12 * H, 40.0)], status=[(0, "MPPT")])
    out = daily_figures(inv, None, 24 * H, PvOptions())
    assert out["energy_kwh"] == 40.0 and out["yf_kwh_kwp"] == 4.0
    for name in ("h_poa_kwh_m2", "yr_h", "pr", "pr_temp_corrected", "availability"):
        assert name not in out
    # A station without module temperature: PR, but no temperature-corrected PR.
    met = Met(poa_w_m2=[(i * H, 500.0) for i in range(6, 18)])
    out = daily_figures(inv, met, 24 * H, PvOptions(max_hold_s=3600))
    assert out["pr"] == pytest.approx(4.0 / 6.0) and "pr_temp_corrected" not in out


def test_fault_time_and_a_silent_inverter_is_not_available() -> None:
    q = 900_000  # a status every 15 minutes: MPPT 06-08, FAULT 08-10, one MPPT at 10:00
    status = [(6 * H + i * q, "MPPT") for i in range(8)]
    status += [(8 * H + i * q, "FAULT") for i in range(8)] + [(10 * H, "MPPT")]
    power = [(t, 4800.0 if s == "MPPT" else 0.0) for t, s in status]  # PR 0.8 while MPPT
    inv = Inverter("X", 10.0, status=status, ac_power_w=power)  # then silent (15 min hold)
    met = Met(poa_w_m2=[(6 * H + i * q, 600.0) for i in range(24)])  # sunny 06:00-12:00
    out = daily_figures(inv, met, 24 * H, PvOptions())
    assert out["fault_h"] == pytest.approx(2.0)
    # Lost in FAULT: what it would have made at its own PR, 10 kWp × 0.6 × 0.8 × 2 h.
    assert out["fault_kwh"] == pytest.approx(9.6)
    # Producing 06-08 and 10:00-10:15 of 6 sunny hours.
    assert out["availability"] == pytest.approx(2.25 / 6)


def test_underperformers_against_the_median_ranked_by_energy_lost() -> None:
    rows = {
        "A": {"pr": 0.85, "yr_h": 5.0},
        "B": {"pr": 0.80, "yr_h": 5.0},
        "C": {"pr": 0.60, "yr_h": 5.0},
        "D": {"pr": 0.50, "yr_h": 5.0},
        "E": {"yf_kwh_kwp": 4.0},
    }
    cap = {"A": 10.0, "B": 10.0, "C": 10.0, "D": 5.0, "E": 10.0}
    got = underperformers(rows, {"met:M": ["A", "B", "C", "D", "E"]}, cap, 0.15)
    # Median 0.70: C is 14 % below (not flagged), D 29 % below.
    assert [u.device_id for u in got] == ["D"]
    assert got[0].energy_lost_kwh == pytest.approx((0.70 - 0.50) * 5.0 * 5.0)
    # Fewer than three peers: no judgement.
    assert underperformers(rows, {"area:x": ["A", "D"]}, cap, 0.15) == []
    got = underperformers(rows, {"met:M": ["A", "B", "C", "D"]}, cap, 0.10)
    assert [u.device_id for u in got] == ["C", "D"]  # C loses 10 × 5 × 0.125, D 5 × 5 × 0.225


def test_pv_registry_facts_are_typed_and_checked() -> None:
    text = """
devices:
  - {id: MET-1, kind: met, site: A, county: C}
  - {id: PV-1, kind: pv, site: A, county: C, capacity_kw: 8, commissioned: 2024-05-01,
     irradiance_from: MET-1, transformer_area: T1, rated_kva: 100, customer_number: 3208001}
  - {id: PV-2, kind: pv, site: A, county: C, irradiance_from: PV-1, transformer_area: T1,
     rated_kva: 200}
"""
    from devices.kinds import KINDS

    reg = Registry.parse(text, "reg.yaml", KINDS)
    f = pv.facts(reg.get("PV-1"))  # type: ignore[arg-type]
    assert (f.capacity_kwp, f.capacity_kw, str(f.commissioned), f.customer_number) == (
        8.0,
        8.0,
        "2024-05-01",
        "3208001",
    )
    problems = pv.fleet_problems(reg, {d.id: d.kind or "" for d in reg})
    assert problems == [
        "device PV-2: capacity_kwp is missing; add the DC capacity in kWp",
        "device PV-2: irradiance_from 'PV-1' is not a met station of this registry; "
        "name a device of kind met",
        "device PV-2: transformer area 'T1' rated 200 kVA here but 100 kVA at PV-1; "
        "give one rating",
    ]
    with pytest.raises(RegistryError, match=r"reg.yaml:4: device 'PV-1': capacity_kwp"):
        Registry.parse(text.replace("capacity_kw: 8", "capacity_kwp: -1"), "reg.yaml", KINDS)
    assert pv.facts(Device("PV-9", kind="pv")).capacity_kwp is None


def test_devices_check_reports_pv_problems(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from envgrid.cli.main import app

    reg = tmp_path / "r.yaml"
    reg.write_text("devices:\n  - {id: PV-1, kind: pv, site: a, county: b}\n", encoding="utf-8")
    r = CliRunner().invoke(app, ["devices", "check", str(reg)])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert f"{reg}: device PV-1: capacity_kwp is missing" in r.output


def test_the_registry_example_in_docs_pv_md_is_valid() -> None:
    from devices.kinds import KINDS

    text = (Path(__file__).parents[2] / "docs" / "pv.md").read_text(encoding="utf-8")
    block = text.split("```yaml\ndevices:", 1)[1].split("```", 1)[0]
    reg = Registry.parse("devices:" + block, "docs/pv.md", KINDS)
    assert pv.fleet_problems(reg, {d.id: d.kind or "" for d in reg}) == []
    f = pv.facts(reg.get("PV-001"))  # type: ignore[arg-type]
    assert (f.capacity_kwp, f.irradiance_from, f.rated_kva) == (8.0, "MET-001", 200.0)
