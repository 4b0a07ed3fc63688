"""Shared pytest fixtures for envgrid.

Tests run against real servers, never mocks (docs/architecture.md): the
fixtures below start the Debian-packaged mosquitto, influxd and victoria-metrics on
free 127.0.0.1 ports with their data in pytest's temporary folders (see
``envgrid.localstack``), and stop them afterwards.

Sections:

* Real servers (session scope): ``mosquitto``, ``influxdb``, ``victoria``. Shared by
  the whole run; a test must not stop, restart or reconfigure them.
* Per-test isolation (function scope): ``influx_db`` (a fresh database on the shared
  InfluxDB) and ``fresh_mosquitto`` (a broker of its own, for tests that restart,
  kill or pause it).

Add new fixtures to the section they belong to, or start a new section below.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from envgrid.localstack import LocalInfluxDB, LocalMosquitto, LocalVictoriaMetrics

# ----------------------------------------------------------------- real servers (session)


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalMosquitto]:
    """A mosquitto broker shared by the session (persistence on, unlimited queue)."""
    with LocalMosquitto(tmp_path_factory.mktemp("mosquitto")) as server:
        yield server


@pytest.fixture(scope="session")
def influxdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalInfluxDB]:
    """An InfluxDB 1.x server shared by the session; use ``influx_db`` for a database."""
    with LocalInfluxDB(tmp_path_factory.mktemp("influxdb")) as server:
        yield server


@pytest.fixture(scope="session")
def victoria(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalVictoriaMetrics]:
    """A single-node VictoriaMetrics shared by the session."""
    with LocalVictoriaMetrics(tmp_path_factory.mktemp("victoria")) as server:
        yield server


# --------------------------------------------------------------- per-test isolation


@pytest.fixture
def influx_db(influxdb: LocalInfluxDB) -> Iterator[str]:
    """The name of a new, empty database on the session InfluxDB; dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    influxdb.create_database(name)
    yield name
    if influxdb.is_running():
        influxdb.drop_database(name)


@pytest.fixture
def fresh_mosquitto(tmp_path: Path) -> Iterator[LocalMosquitto]:
    """A broker of this test's own, free to stop, restart, kill or pause."""
    with LocalMosquitto(tmp_path / "mosquitto") as server:
        yield server
