"""``envgrid run`` as a subprocess, configured only through ``ENVGRID_*`` variables, and the
bookkeeping that proves delivery: every published reading stored exactly once.

Used by the fault tests (tests/integration/test_faults.py, through tests/service_proc.py), the
spool command tests, bench/outage.py, bench/cluster.py and bench/hj212_load.py.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from devices.kinds import KINDS
from devices.registry import Device, load_registry
from envgrid.app import DEFAULT_REGISTRY
from envgrid.localstack import LocalInfluxDB, LocalMosquitto, free_port
from envgrid.simulator import SimMessage, generate, publish_all
from ingest.mqtt import MqttClient

ENVGRID = str(Path(sys.executable).with_name("envgrid"))
FLEET: list[Device] = list(load_registry(DEFAULT_REGISTRY))
MEASUREMENT = {k.name: k.measurement for k in KINDS.values()}

Key = tuple[str, str, int]  # (measurement, device_id, time in ms)


def clean_env(**env: str) -> dict[str, str]:
    """This environment without the caller's ENVGRID_* settings, plus ``env``."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("ENVGRID_")}, **env}


def run_envgrid(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """One ``envgrid`` command to its end, output captured as text."""
    return subprocess.run(
        [ENVGRID, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_env(**(env or {})),
        cwd=cwd,
    )


class Service:
    """``envgrid run`` as a subprocess; same client id and spool dir on every start."""

    def __init__(self, tmp: Path, broker: LocalMosquitto, influx_url: str, db: str, **env: str):
        self.port = free_port()
        self.log = tmp / "service.log"
        self.spool_dir = tmp / "spool"
        self.env = {
            **clean_env(),
            "ENVGRID_MQTT__URL": broker.url,
            "ENVGRID_MQTT__CLIENT_ID": f"envgrid-fault-{tmp.name}",
            "ENVGRID_INFLUX__URL": influx_url,
            "ENVGRID_INFLUX__DATABASE": db,
            "ENVGRID_INFLUX__TIMEOUT_S": "3",
            "ENVGRID_HTTP__PORT": str(self.port),
            "ENVGRID_INGEST__SPOOL_DIR": str(self.spool_dir),
            "ENVGRID_INGEST__FLUSH_INTERVAL": "200ms",
            "ENVGRID_INGEST__REPLAY_BACKOFF_MAX": "2s",
            "ENVGRID_DEVICES__REGISTRY": str(DEFAULT_REGISTRY),
            **{f"ENVGRID_{k.upper()}": v for k, v in env.items()},
        }
        self.cwd = tmp  # relative paths of other parts (var/…) stay inside the test's folder
        self.proc: subprocess.Popen[bytes] | None = None
        self.http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}", trust_env=False)

    def start(self) -> None:
        """Start ``envgrid run``; its output goes to service.log."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [ENVGRID, "run"],
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def running(self) -> bool:
        """Whether the process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs at all."""
        assert self.proc is not None and self.running()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    async def terminate(self, timeout: float = 30) -> tuple[int, float]:
        """SIGTERM; the exit code and how long the exit took."""
        assert self.proc is not None and self.running()
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(self.proc.wait, timeout)
        return code, time.monotonic() - t0

    def cli(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """Run another ``envgrid`` command with this service's settings (``env`` overrides)."""
        extra = {f"ENVGRID_{k.upper()}": v for k, v in env.items()}
        return subprocess.run(
            [ENVGRID, *args],
            env={**self.env, **extra},
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def tail(self, n: int = 40) -> str:
        """The last lines of the service's log."""
        lines = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return "\n".join(lines[-n:])

    async def readyz(self) -> tuple[int, dict[str, Any]]:
        """Status and JSON body of /readyz."""
        r = await self.http.get("/readyz", timeout=5)
        return r.status_code, r.json()

    async def metrics(self) -> dict[str, float]:
        """Unlabelled samples of /metrics, by name."""
        r = await self.http.get("/metrics", timeout=5)
        out: dict[str, float] = {}
        for line in r.text.splitlines():
            if line and not line.startswith("#") and "{" not in line:
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    async def metric(self, name: str) -> float:
        """One unlabelled sample of /metrics."""
        metrics = await self.metrics()
        assert name in metrics, f"no {name} in /metrics"
        return metrics[name]

    async def metric_reaches(self, name: str, value: float, timeout: float) -> None:
        """Wait until the metric ``name`` is at least ``value``."""

        async def reached() -> bool:
            return await self.metric(name) >= value

        await self.until(reached, timeout, f"{name} >= {value}")

    async def received(self) -> float:
        """Messages taken from the broker so far (all kinds)."""
        r = await self.http.get("/metrics", timeout=5)
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in r.text.splitlines()
            if line.startswith("envgrid_messages_received_total{")
        )

    async def until(
        self, check: Callable[[], Any], timeout: float, what: str, interval: float = 0.2
    ) -> None:
        """Poll ``await check()`` (or a plain value) until true; fail with the service log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"service exited ({self.proc.returncode}):\n{self.tail()}")
            try:
                got = check()
                if asyncio.iscoroutine(got):
                    got = await got
            except httpx.TransportError:
                got = False  # the HTTP server is not up yet
            if got:
                return
            await asyncio.sleep(interval)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{self.tail()}")

    async def ready(self, timeout: float = 20) -> None:
        """Wait until /readyz answers 200 (connected and subscribed)."""

        async def ok() -> bool:
            return (await self.readyz())[0] == 200

        await self.until(ok, timeout, "/readyz 200")

    async def close(self) -> None:
        """Kill the process if it still runs; close the HTTP client."""
        if self.running():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        await self.http.aclose()


@asynccontextmanager
async def service(
    tmp: Path, broker: LocalMosquitto, influx_url: str, db: str, **env: str
) -> AsyncIterator[Service]:
    """A started, ready service; killed at the end if the test left it running."""
    svc = Service(tmp, broker, influx_url, db, **env)
    svc.start()
    try:
        await svc.ready()
        yield svc
    finally:
        await svc.close()


# ------------------------------------------------------------------------- readings


def readings(
    n: int, devices: Sequence[Device] = FLEET, seed: int = 3, bad_fraction: float = 0.0
) -> list[SimMessage]:
    """``n`` readings (valid unless ``bad_fraction``), round-robin, one second apart per device,
    ending about now."""
    rounds = -(-n // len(devices))
    start = (int(time.time()) - rounds - 60) * 1000
    return list(
        generate(devices, n, start_ms=start, step_ms=1000, seed=seed, bad_fraction=bad_fraction)
    )


def keys(msgs: Iterable[SimMessage]) -> set[Key]:
    """What each valid message must become in InfluxDB."""
    return {
        (MEASUREMENT[m.topic.split("/")[1]], m.device_id, m.ts_ms) for m in msgs if not m.expect
    }


def stored(influx: LocalInfluxDB, db: str) -> Counter[Key]:
    """Every stored reading as (measurement, device_id, time), with how often it occurs."""
    got: Counter[Key] = Counter()
    for m in MEASUREMENT.values():
        # GROUP BY * gives one series per tag set: a reading stored under two tag sets
        # would be a duplicate, and shows up here twice.
        for row in influx.points(f'SELECT * FROM "{m}" GROUP BY *', db):
            got[(m, str(row["device_id"]), int(row["time"]))] += 1
    return got


def stored_total(influx: LocalInfluxDB, db: str) -> int:
    """Readings stored across the reading measurements."""
    return sum(influx.count(m, db) for m in MEASUREMENT.values())


def assert_exact(influx: LocalInfluxDB, db: str, want: set[Key]) -> None:
    """InfluxDB holds exactly ``want``, each reading once."""
    got = stored(influx, db)
    dupes = [k for k, n in got.items() if n > 1]
    assert not dupes, f"{len(dupes)} readings stored twice, e.g. {dupes[:3]}"
    missing, extra = want - set(got), set(got) - want
    assert not missing and not extra, (
        f"{len(missing)} missing (e.g. {sorted(missing)[:3]}), "
        f"{len(extra)} unexpected (e.g. {sorted(extra)[:3]})"
    )


class Stream:
    """A publisher task at a steady rate; ``acked`` holds what the broker PUBACKed."""

    def __init__(self, client: MqttClient, msgs: list[SimMessage], rate: float | None) -> None:
        self.msgs = msgs
        self.acked: list[SimMessage] = []
        self.task = asyncio.create_task(
            publish_all(client, iter(msgs), window=500, rate=rate, on_sent=self.acked.append)
        )

    async def done(self, timeout: float) -> None:
        """Wait for the publisher; every message must have had its PUBACK."""
        await asyncio.wait_for(asyncio.shield(self.task), timeout)
        assert len(self.acked) == len(self.msgs)


async def wait_stored(
    svc: Service, influx: LocalInfluxDB, db: str, want: set[Key], timeout: float
) -> None:
    """Wait until InfluxDB holds as many readings as ``want``."""
    await svc.until(
        lambda: stored_total(influx, db) >= len(want), timeout, f"{len(want)} readings stored"
    )
