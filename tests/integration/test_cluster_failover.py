"""Two envgrid hosts share one stream; one is killed whole and stays down (issue 21).

Hosts here are separate process groups on loopback (``envgrid run --workers 2`` each, with its
own member id, spool folder and HTTP port). Killing a host is SIGKILL to its whole process
group: the supervisor and every worker die at once, no shutdown code runs, and the broker sees
their connections drop. The survivor must adopt the dead member's sessions: every reading is
stored exactly once within 60 s of the kill, without waiting for the dead host.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from envgrid.localstack import LocalInfluxDB, LocalMosquitto
from tests.cluster_support import pg_url, postgres
from tests.helpers import mqtt_client
from tests.service_proc import (
    ENVGRID,
    Service,
    Stream,
    assert_exact,
    keys,
    readings,
    stored_total,
)

__all__ = ["pg_url", "postgres"]  # fixtures


class Host(Service):
    """One cluster member: ``envgrid run --workers 2`` in a process group of its own."""

    def __init__(self, tmp: Path, broker: LocalMosquitto, influx: str, db: str, **env: str):
        tmp.mkdir(parents=True, exist_ok=True)
        super().__init__(tmp, broker, influx, db, **env)
        self.env["ENVGRID_MQTT__CLIENT_ID"] = "envgrid"  # workers: envgrid-<member>-w<i>

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

    def kill_host(self) -> None:
        """Every process of the host at once (SIGKILL to the process group)."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


def _cluster_env(pg: str, member: str) -> dict[str, str]:
    return {
        "cluster__database": pg,
        "cluster__member_id": member,
        "cluster__failover": "6s",
        "cluster__renew": "1s",
        "alerts__enabled": "false",
    }


@pytest.mark.slow
async def test_a_host_killed_mid_stream_loses_nothing_and_rejoins(
    fresh_mosquitto: LocalMosquitto,
    influxdb: LocalInfluxDB,
    influx_db: str,
    pg_url: str,
    tmp_path: Path,
) -> None:
    a = Host(tmp_path / "a", fresh_mosquitto, influxdb.url, influx_db, **_cluster_env(pg_url, "a"))
    b = Host(tmp_path / "b", fresh_mosquitto, influxdb.url, influx_db, **_cluster_env(pg_url, "b"))
    a.start()
    b.start()
    try:
        await a.ready(40)
        await b.ready(40)
        msgs = readings(20_000, seed=21)
        async with mqtt_client(fresh_mosquitto, client_id="cluster-pub") as pub:
            stream = Stream(pub, msgs, rate=2000)
            await a.until(lambda: len(stream.acked) > 5000, 30, "publishing under way")
            a.kill_host()
            killed_at = time.monotonic()
            await stream.done(60)
            want = keys(msgs)
            await b.until(
                lambda: stored_total(influxdb, influx_db) >= len(want),
                60 - (time.monotonic() - killed_at),
                f"{len(want)} readings stored within 60 s of the kill",
            )
        assert_exact(influxdb, influx_db, want)
        log = b.tail(400)
        assert "member a is gone (lease expired): adopting its 2 sessions" in log, log
        await b.until(
            lambda: "member a: all sessions drained and ended; ids released" in b.tail(400),
            30,
            "a's sessions released",
        )

        # The dead host returns: its ids are free, it joins without a session fight and
        # takes its share of new readings.
        a.start()
        await a.ready(40)
        assert "cluster member a joined" in a.tail(200)
        more = readings(2000, seed=22)
        async with mqtt_client(fresh_mosquitto, client_id="cluster-pub2") as pub:
            await Stream(pub, more, rate=None).done(60)
        await b.until(
            lambda: stored_total(influxdb, influx_db) >= len(want | keys(more)), 60, "rejoined"
        )
        assert_exact(influxdb, influx_db, want | keys(more))
        assert "session taken over" not in a.tail(400) + b.tail(400)
        code, _ = await a.terminate(60)
        assert code == 0, a.tail()
    finally:
        for h in (a, b):
            if h.running():
                assert h.proc is not None
                os.killpg(h.proc.pid, signal.SIGKILL)
                h.proc.wait(10)
            await h.close()
        await asyncio.sleep(0)
