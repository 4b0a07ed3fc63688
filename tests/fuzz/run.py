"""Coverage-guided fuzzing of one target with atheris.

    python -m tests.fuzz.run TARGET [libFuzzer flags, e.g. -max_total_time=600 -runs=N]

TARGET is one of tests/fuzz/targets.py's TARGETS, or ``all`` (every target in one process,
chosen by the input's first byte: the short run of make test).

``make fuzz`` runs every target for FUZZ_SECONDS each. A crash prints the input and writes it
to crash-<sha1> in the current folder; add it to SEEDS in tests/fuzz/targets.py once fixed.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["hj212", "ingest", "devices"]):
    from tests.fuzz.targets import SEEDS
    from tests.fuzz.targets import TARGETS_AND_ALL as TARGETS


def main() -> None:
    # The MQTT client logs each protocol error with its traceback: expected here, and slow.
    logging.getLogger("envgrid").setLevel(logging.CRITICAL)
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: python -m tests.fuzz.run {{{','.join(TARGETS)}}} [libFuzzer flags]")
    name = sys.argv[1]
    corpus = Path(tempfile.mkdtemp(prefix=f"fuzz-{name}-"))
    for i, seed in enumerate(SEEDS[name]):
        (corpus / f"seed-{i}").write_bytes(seed)
    target = TARGETS[name]
    atheris.Setup([sys.argv[0], *sys.argv[2:], str(corpus)], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
