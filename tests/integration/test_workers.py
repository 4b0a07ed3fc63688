"""``envgrid run --workers 2``: two ingest processes split the stream through a shared
subscription, one alerts process sees all of it, the supervisor restarts a killed worker
without losing a reading and serves one HTTP API for all of them."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from envgrid.localstack import LocalInfluxDB, LocalMosquitto
from tests.helpers import mqtt_client
from tests.service_proc import (
    ENVGRID,
    Service,
    Stream,
    assert_exact,
    clean_env,
    keys,
    readings,
    wait_stored,
)


class Workers(Service):
    """``envgrid run --workers 2`` instead of ``envgrid run``."""

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [ENVGRID, "run", "--workers", "2"],
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    async def labelled(self, name: str) -> dict[str, float]:
        """Samples of ``name`` summed per ``worker`` label."""
        text = (await self.http.get("/metrics", timeout=10)).text
        out: dict[str, float] = defaultdict(float)
        for line in text.splitlines():
            if line.startswith(name + "{"):
                labels, value = line.rsplit(" ", 1)
                worker = labels.split('worker="', 1)[1].split('"', 1)[0]
                out[worker] += float(value)
        return dict(out)

    async def processes(self) -> dict[str, dict[str, object]]:
        body = (await self.http.get("/healthz", timeout=5)).json()
        return body["processes"]  # type: ignore[no-any-return]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
async def test_two_workers_share_the_stream_and_survive_a_killed_worker(
    fresh_mosquitto: LocalMosquitto, influxdb: LocalInfluxDB, influx_db: str, tmp_path: Path
) -> None:
    svc = Workers(tmp_path, fresh_mosquitto, influxdb.url, influx_db)
    svc.start()
    try:
        await svc.ready(timeout=40)
        procs = await svc.processes()
        assert {k: v["role"] for k, v in procs.items()} == {
            "0": "ingest",
            "1": "ingest",
            "alerts": "alerts",
        }
        both = readings(6000, seed=11)
        first, second = both[:3000], both[3000:]
        async with mqtt_client(fresh_mosquitto, client_id="workers-pub") as pub:
            stream = Stream(pub, first, rate=None)
            await stream.done(60)
            await wait_stored(svc, influxdb, influx_db, keys(first), 60)

            # Both workers took a share; the alert engine saw every reading once.
            written = await svc.labelled("envgrid_points_written_total")
            assert set(written) == {"0", "1", "alerts"}
            assert written["0"] > 0 and written["1"] > 0 and written["alerts"] == 0
            assert written["0"] + written["1"] == len(first)
            await svc.until(
                lambda: _received_by_alerts(svc, len(first)), 30, "alerts saw every reading"
            )

            # The alert API and the console are served through the same port.
            r = await svc.http.get("/api/alerts", timeout=10)
            assert r.status_code == 200 and isinstance(r.json(), list)

            # Kill worker 1 mid-stream: its session keeps what it had not acked, and the
            # supervisor brings it back under the same client id.
            victim = procs["1"]["pid"]
            assert isinstance(victim, int)
            stream = Stream(pub, second, rate=1500)
            await svc.until(lambda: len(stream.acked) > 500, 20, "publishing under way")
            os.kill(victim, signal.SIGKILL)
            await stream.done(60)
            await wait_stored(svc, influxdb, influx_db, keys(first) | keys(second), 90)
        assert_exact(influxdb, influx_db, keys(first) | keys(second))
        procs = await svc.processes()
        assert procs["1"]["restarts"] == 1 and procs["1"]["pid"] != victim
        restarts = await svc.labelled("envgrid_worker_restarts")
        assert restarts == {"0": 0, "1": 1, "alerts": 0}

        # SIGTERM reaches every child; all exit cleanly, so the supervisor exits 0.
        pids = [int(p["pid"]) for p in procs.values()]  # type: ignore[call-overload]
        code, took = await svc.terminate(60)
        assert code == 0, svc.tail()
        assert not [p for p in pids if _alive(p)]
        assert took < 30
    finally:
        await svc.close()


async def _received_by_alerts(svc: Workers, n: int) -> bool:
    got = await svc.labelled("envgrid_messages_received_total")
    return got.get("alerts", 0) >= n


def test_workers_refuses_a_role(tmp_path: Path) -> None:
    out = subprocess.run(
        [ENVGRID, "run", "--workers", "2", "--role", "ingest"],
        env=clean_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "--workers starts its own ingest and alerts processes: drop --role" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.slow
async def test_workers_stop_when_the_supervisor_is_killed(
    fresh_mosquitto: LocalMosquitto, influxdb: LocalInfluxDB, influx_db: str, tmp_path: Path
) -> None:
    svc = Workers(tmp_path, fresh_mosquitto, influxdb.url, influx_db, alerts__enabled="false")
    svc.start()
    try:
        await svc.ready(timeout=40)
        procs = await svc.processes()
        assert set(procs) == {"0", "1"}  # no alerts process when alerts are disabled
        pids = [int(p["pid"]) for p in procs.values()]  # type: ignore[call-overload]
        svc.kill()  # SIGKILL: the supervisor cannot forward anything
        deadline = 30.0
        while deadline > 0 and any(_alive(p) for p in pids):
            await asyncio.sleep(0.2)
            deadline -= 0.2
        assert not [p for p in pids if _alive(p)], "workers outlived their supervisor"
        log = svc.tail(200)
        assert log.count("stopped: ") == 2, log  # each shut down cleanly, on its own
    finally:
        await svc.close()
