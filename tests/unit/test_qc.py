"""Automatic QC (issue 16): QARTOD-style tests on one field's samples, and the QC file."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from rollups.qc import (
    FAIL,
    SUSPECT,
    FieldQc,
    Flag,
    QcConfigError,
    load_qc,
    parse_qc,
    run_tests,
)

M = 60_000
PM25 = load_qc(None).for_device("air", "any")["pm25_ug_m3"]


def natural(n: int = 1440, seed: int = 7) -> list[tuple[int, float]]:
    """A day of 1-minute PM2.5: a daily swing, slow drift and sensor noise, 0.1 resolution."""
    rnd = random.Random(seed)
    out, drift = [], 0.0
    for i in range(n):
        drift += rnd.gauss(0, 0.3)
        v = 45 + 15 * math.sin(i / 1440 * 2 * math.pi) + drift + rnd.gauss(0, 3)
        out.append((i * M, round(max(v, 0.0), 1)))
    return out


def test_natural_data_passes_every_test() -> None:
    assert run_tests(natural(), PM25) == {}


def test_six_hours_of_one_value_are_flagged_as_a_stuck_analyser() -> None:
    data = natural()
    stuck = [(ts, 35.0) if 600 <= i < 960 else (ts, v) for i, (ts, v) in enumerate(data)]
    flags = run_tests(stuck, PM25)
    # 6 h ≥ flat_suspect (4 h), < flat_fail (8 h): every value of the run is suspect.
    assert set(flags) == {ts for ts, _ in stuck[600:960]}
    assert {f.flag for f in flags.values()} == {SUSPECT} and flags[600 * M].test == "flat_line"
    longer = [(ts, 35.0) if 600 <= i < 1100 else (ts, v) for i, (ts, v) in enumerate(data)]
    assert run_tests(longer, PM25)[700 * M] == Flag(FAIL, "flat_line")  # 8 h 20 min


def test_a_lone_spike_fails_and_its_neighbours_do_not() -> None:
    data = natural()
    data[500] = (data[500][0], 900.0)  # one reading of 900 between values near 40
    assert run_tests(data, PM25) == {500 * M: Flag(FAIL, "spike")}


def test_rate_of_change_and_gross_range() -> None:
    cfg = FieldQc(rate_suspect=20, suspect_max=100)
    flags = run_tests([(0, 10.0), (M, 50.0), (2 * M, 55.0), (3 * M, 120.0)], cfg)
    assert flags == {
        M: Flag(SUSPECT, "rate_of_change"),
        3 * M: Flag(SUSPECT, "gross_range"),  # over 100, and a jump too: the first test named
    }
    assert run_tests([(0, 101.0)], cfg) == {0: Flag(SUSPECT, "gross_range")}


def test_device_overrides_start_from_the_kind_and_errors_name_the_key(tmp_path: Path) -> None:
    cfg = parse_qc(
        "kinds:\n  air:\n    pm25_ug_m3: {spike_fail: 300, flat_suspect: 4h}\n"
        "devices:\n  AQ-9:\n    pm25_ug_m3: {flat_suspect: 2h, spike_fail: null}\n",
        "qc.yaml",
    )
    mine = cfg.for_device("air", "AQ-9")["pm25_ug_m3"]
    assert (mine.flat_suspect_ms, mine.spike_fail) == (2 * 60 * M, None)
    assert cfg.for_device("air", "AQ-1")["pm25_ug_m3"].spike_fail == 300
    with pytest.raises(QcConfigError, match=r"qc.yaml: kinds.air.pm25_ug_m3: unknown key 'spik'"):
        parse_qc("kinds:\n  air:\n    pm25_ug_m3: {spik: 3}\n", "qc.yaml")
    with pytest.raises(QcConfigError, match=r"flat_suspect: 'soon' is not a duration"):
        parse_qc("kinds:\n  air:\n    pm25_ug_m3: {flat_suspect: soon}\n", "qc.yaml")
    with pytest.raises(QcConfigError, match=r"kinds.water.ph.flat_suspect: 24h is never reached"):
        parse_qc("kinds:\n  water:\n    ph: {flat_suspect: 24h}\n", "qc.yaml")
    with pytest.raises(QcConfigError, match="cannot read the QC file"):
        load_qc(tmp_path / "missing.yaml")
