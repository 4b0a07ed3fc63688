"""The alert leader's host dies while one alert is pending and another firing (issue 21).

Two alert engines (``envgrid run --role alerts``, one per "host": a process group each, on
loopback) share their state in PostgreSQL; one holds the leader lease. It is killed whole
(SIGKILL) with one alert pending and one firing and unacknowledged. Within the failover time
the standby fires the pending one once and escalates the other once, and no notification is
sent twice; the console's API on the survivor shows the same alerts. The killed host then
returns as a standby and sends nothing. The WeCom receiver is a
local server that answers as WeCom does (``errcode`` 0).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from aiohttp import web

from envgrid.localstack import LocalInfluxDB, LocalMosquitto
from tests.cluster_support import pg_url, postgres
from tests.helpers import mqtt_client
from tests.service_proc import ENVGRID, Service

__all__ = ["pg_url", "postgres"]  # fixtures

RULES = """
rules:
  - id: do-critical
    kind: water
    when: do_mg_l < 2
    severity: critical
    description: Dissolved oxygen below 2 mg/L
  - id: ph-high
    kind: water
    when: ph > 9
    for: 8s
    severity: critical
    description: pH above 9
"""


def _routing(port: int) -> str:
    return f"""
receivers:
  - name: duty
    type: wecom
    url: http://127.0.0.1:{port}/cgi-bin/webhook/send?key=duty
  - name: chief
    type: wecom
    url: http://127.0.0.1:{port}/cgi-bin/webhook/send?key=chief
routes:
  - name: all
    severity: critical
    receivers: [duty]
    group_wait: 0s
    group_interval: 1s
    escalate_after: 6s
    escalate_to: [chief]
"""


class Engine(Service):
    """``envgrid run --role alerts`` in a process group of its own (one host's engine)."""

    def __init__(self, tmp: Path, broker: LocalMosquitto, influx: str, db: str, **env: str):
        tmp.mkdir(parents=True, exist_ok=True)
        super().__init__(tmp, broker, influx, db, **env)

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [ENVGRID, "run", "--role", "alerts"],
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    async def leading(self) -> bool:
        return await self.metric("envgrid_alerts_leader") == 1.0


@pytest.mark.slow
async def test_the_standby_fires_and_escalates_once_when_the_leader_dies(
    fresh_mosquitto: LocalMosquitto,
    influxdb: LocalInfluxDB,
    influx_db: str,
    pg_url: str,
    tmp_path: Path,
) -> None:
    posts: dict[str, list[str]] = {"duty": [], "chief": []}

    async def wecom(request: web.Request) -> web.Response:
        body = await request.json()
        posts[request.query["key"]].append(json.dumps(body, ensure_ascii=False))
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    app = web.Application()
    app.router.add_post("/cgi-bin/webhook/send", wecom)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    (tmp_path / "rules.yaml").write_text(RULES, encoding="utf-8")
    (tmp_path / "routing.yaml").write_text(_routing(port), encoding="utf-8")
    env = {
        "cluster__database": pg_url,
        "cluster__failover": "4s",
        "cluster__renew": "1s",
        "alerts__rules": str(tmp_path / "rules.yaml"),
        "alerts__routing": str(tmp_path / "routing.yaml"),
        "alerts__influx": "false",
        "alerts__tick_interval": "200ms",
    }
    a = Engine(
        tmp_path / "a", fresh_mosquitto, influxdb.url, influx_db, **env, cluster__member_id="a"
    )
    b = Engine(
        tmp_path / "b", fresh_mosquitto, influxdb.url, influx_db, **env, cluster__member_id="b"
    )
    fired: list[dict[str, object]] = []
    try:
        a.start()
        await a.ready(40)
        await a.until(a.leading, 20, "a leads")
        b.start()
        await b.ready(40)
        assert not await b.leading()
        async with (
            mqtt_client(
                fresh_mosquitto,
                ["envgrid/alerts/#"],
                lambda m: fired.append(json.loads(m.payload)),
                "cluster-alerts-sub",
            ),  # fmt: skip
            mqtt_client(fresh_mosquitto, client_id="cluster-alerts-pub") as pub,
        ):
            now = int(time.time() * 1000)
            await pub.publish("envgrid/water/W1", json.dumps({"ts": now, "do_mg_l": 1.0}).encode())
            await a.until(lambda: len(posts["duty"]) == 1, 20, "W1 notified by the leader")
            await pub.publish("envgrid/water/W2", json.dumps({"ts": now, "ph": 9.5}).encode())
            await a.until(
                lambda: _states(a, {"W1": "firing", "W2": "pending"}), 20, "W2 pending in the store"
            )
            os.killpg(a.proc.pid, signal.SIGKILL)  # type: ignore[union-attr]
            a.proc.wait(10)  # type: ignore[union-attr]
            killed = time.monotonic()
            await b.until(b.leading, 4 + 2, "the standby leads within the failover time")
            await b.until(lambda: len(posts["duty"]) == 2, 20, "W2 fired by the new leader")
            await b.until(lambda: any("W1" in p for p in posts["chief"]), 20, "W1 escalated")
            took = time.monotonic() - killed
            await asyncio.sleep(3)  # anything repeated would arrive now
        assert "W2" in posts["duty"][1] and "W1" in posts["duty"][0]
        assert sum("W1" in p for p in posts["chief"]) == 1, posts["chief"]
        firing = [(e["device_id"], e["event"]) for e in fired if e.get("event") == "firing"]
        assert sorted(firing) == [("W1", "firing"), ("W2", "firing")], fired
        assert await _states(b, {"W1": "firing", "W2": "firing"})
        assert took < 20

        # The dead host returns: it stands by (b keeps the lease), repeats nothing, and its
        # console shows the same alerts.
        a.start()
        await a.ready(40)
        assert await _states(a, {"W1": "firing", "W2": "firing"})
        await asyncio.sleep(3)
        assert not await a.leading() and await b.leading()
        # Only W2's own escalation (due 6 s after it fired) may have been added meanwhile.
        assert len(posts["duty"]) == 2
        assert sum("W1" in p for p in posts["chief"]) == 1
        assert sum("W2" in p for p in posts["chief"]) <= 1
        assert len(posts["chief"]) <= 2
    finally:
        for h in (a, b):
            if h.running():
                os.killpg(h.proc.pid, signal.SIGKILL)  # type: ignore[union-attr]
                h.proc.wait(10)  # type: ignore[union-attr]
            await h.close()
        await runner.cleanup()


async def _states(svc: Service, want: dict[str, str]) -> bool:
    r = await svc.http.get("/api/alerts", timeout=5)
    got = {x["device_id"]: x["state"] for x in r.json()}
    return got == want
