"""``envgrid run`` as a subprocess and the bookkeeping that proves delivery. It lives in
testkit/service_proc.py so that bench/ can share it without importing tests/; the tests keep
importing it from here."""

from __future__ import annotations

from testkit.service_proc import (
    ENVGRID,
    FLEET,
    MEASUREMENT,
    Key,
    Service,
    Stream,
    assert_exact,
    clean_env,
    keys,
    readings,
    run_envgrid,
    service,
    stored,
    stored_total,
    wait_stored,
)

__all__ = [
    "ENVGRID",
    "FLEET",
    "MEASUREMENT",
    "Key",
    "Service",
    "Stream",
    "assert_exact",
    "clean_env",
    "keys",
    "readings",
    "run_envgrid",
    "service",
    "stored",
    "stored_total",
    "wait_stored",
]
