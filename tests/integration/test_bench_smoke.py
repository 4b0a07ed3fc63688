"""``make bench`` in miniature: every phase runs end to end, loses nothing, prints its figures.

The benchmark itself (bench/run.py) is not part of ``make test``; this smoke run is, so the
script cannot rot. No figure is asserted against a speed (speed goes in bench/, not tests).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PHASES = ("ceiling", "burst", "preload", "workers", "latency", "queued", "devices")


@pytest.mark.bench
def test_bench_smoke_prints_every_figure_without_loss(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--smoke", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    results = json.loads(out.read_text())
    assert [r["phase"] for r in results] == list(PHASES)
    by = {r["phase"]: r for r in results}
    assert by["ceiling"]["publish_rate"] > 0
    for phase in PHASES[1:]:
        r = by[phase]
        assert r["lost"] == 0 and r["stored"] == r["n"], (phase, r)
        assert r["stop"] == "complete", (phase, r)
        assert r["cpu_us"] > 0 and r["peak_rss_mb"] > 0, (phase, r)
    assert by["burst"]["throughput"] > 0 and by["devices"]["throughput"] > 0
    for phase in ("preload", "workers", "queued"):
        assert by[phase]["drain"] > 0, phase
    lat = by["latency"]["extra"]
    assert lat["matched"] == by["latency"]["n"]
    assert 0 < lat["p50_s"] <= lat["p99_s"] <= lat["max_s"]
    assert by["workers"]["extra"]["workers"] == 2
    assert by["workers"]["extra"]["exit_code"] == 0  # the supervisor stopped cleanly

    # The table: one row per phase, each with its figures filled in.
    table = proc.stdout
    rows = {line.split("|")[1].strip().split(" ")[0]: line for line in table.splitlines()[2:]}
    rows = {k: v for k, v in rows.items() if k in PHASES}
    assert set(rows) == set(PHASES), table
    for phase, line in rows.items():
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[3] not in ("", "–"), (phase, line)  # publish msg/s
        if phase != "ceiling":
            figure = cells[4] if phase in ("burst", "devices") else cells[5]
            if phase != "latency":
                assert figure not in ("", "–"), (phase, line)
            assert cells[7] == "0" and cells[8] != "–" and cells[9] != "–", (phase, line)
    assert "/" in rows["latency"].split("|")[11]  # p50 / p99
