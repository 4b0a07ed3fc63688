"""A short coverage-guided fuzz run of each parser (issue 20); ``make fuzz`` runs long ones.

The targets run under atheris in one subprocess for 4 s (libFuzzer owns the process), from the
seeds in tests/fuzz/targets.py. Inputs the fuzzer once found are kept below
and replayed in-process on every run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hj212 import codec
from tests.fuzz.targets import TARGETS, _frame

ROOT = Path(__file__).resolve().parents[2]

# Found by tests/fuzz (2026-12-02): the CP parser took a value holding '=' ("aTCime=20P="),
# a packet build() refuses to write; now a FieldError like any other bad field.
FOUND: list[tuple[str, bytes]] = [
    (
        "hj212_frame",
        b"QN=20260601120000001;ST=22;CN=2011;PW=123456;MN=NVGRIDAIR0000000g5000001;Flag=5;"
        b"CP=&&DatQN=2026E;aTCime=20P=&&",
    ),
]


@pytest.mark.parametrize(("target", "data"), FOUND)
def test_findings_stay_fixed(target: str, data: bytes) -> None:
    TARGETS[target](data)


def test_cp_value_with_a_separator_is_a_field_error() -> None:
    with pytest.raises(codec.FieldError, match="printable ASCII"):
        codec.parse(_frame(FOUND[0][1]))


def test_short_fuzz_run(tmp_path: Path) -> None:
    """Every target, 4 s in all, in one atheris process."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.fuzz.run",
            "all",
            "-max_total_time=4",
            "-seed=20",
            f"-artifact_prefix={tmp_path}/",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    tail = proc.stderr[-3000:]
    assert proc.returncode == 0, tail
    assert "Done " in proc.stderr, tail
    assert not list(tmp_path.glob("crash-*")), tail
