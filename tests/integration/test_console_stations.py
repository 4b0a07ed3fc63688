"""Issue 15 on the console: a station's page queues a command that reaches the data logger.

The real gateway (TCP), mosquitto and InfluxDB, a simulated data logger on a real connection,
and the console's router with the gateway's /api/hj212 routes on one FastAPI app, driven
in-process: the operator's "sync clock" goes through the dispatcher like an API command, is sent
to the station, tracked to ``succeeded``, and listed by GET /api/hj212/commands.
"""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from pathlib import Path

import httpx
from fastapi import FastAPI
from pydantic import SecretStr

from alerts.engine import AlertEngine
from alerts.rules import load_rules
from alerts.store import AlertStore
from console import build_console
from console.auth import Operator, hash_password, save_operators
from devices.registry import load_registry
from envgrid.localstack import LocalInfluxDB, LocalMosquitto
from hj212.station import DataLogger
from tests.helpers import make_settings, wait_for
from tests.hj212_support import logger_state, rtd_factors, service_with_commands
from tests.integration.test_hj212_gateway import AIR, AQ

AQ_MN = str(AQ.facts["mn"])


async def test_sync_clock_from_the_station_page_reaches_the_logger_and_is_tracked(
    mosquitto: LocalMosquitto, influxdb: LocalInfluxDB, influx_db: str, tmp_path: Path
) -> None:
    ops = tmp_path / "operators.yaml"
    save_operators(ops, {"duty": Operator("duty", "值班员", hash_password("password-duty", 4))})
    settings = make_settings(
        mosquitto,
        influxdb,
        influx_db,
        tmp_path,
        # The clock watch would fix a 5-minute offset by itself: here only the operator does.
        hj212={
            "port": 0,
            "host": "127.0.0.1",
            "command_store": tmp_path / "commands.db",
            "backfill": False,
            "clock_tolerance": "1h",
        },
        console={"operators": ops, "session_secret_file": tmp_path / "key"},
    )
    async with service_with_commands(settings) as hj:
        assert hj.gateway is not None and hj.commands is not None
        dispatcher = hj.commands.dispatcher
        engine = AlertEngine(load_rules(None), AlertStore(tmp_path / "alerts.db"))
        console = build_console(
            settings,
            engine,
            load_registry(settings.devices.registry),
            hj212=lambda: dispatcher,
        )
        assert console is not None
        app = FastAPI()
        app.include_router(console.router)
        app.include_router(hj.router(SecretStr("tok")))
        op = console.book.get("duty")
        assert op is not None
        cookie, session = console.sessions.issue(op)

        state = logger_state(settings, AQ)
        state.clock_offset = timedelta(minutes=5)
        logger = DataLogger(state)
        await logger.connect("127.0.0.1", hj.gateway.port)
        await logger.upload("2011", state.now(), rtd_factors(AIR))
        await wait_for(lambda: dispatcher.online(AQ_MN), 10, "the station online")
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://console.test",
            cookies={"envgrid_session": cookie, "envgrid_lang": "zh"},
        ) as c:
            listing = (await c.get("/stations")).text
            row = listing[listing.index(f'id="st-{AQ_MN}"') :]
            assert 'data-status="online"' in row[:80] and "已连接" in row
            r = await c.post(f"/stations/{AQ_MN}/sync-clock", data={"csrf": session.csrf})
            assert r.status_code == 303 and "done=queued" in r.headers["location"]

            async def statuses() -> list[tuple[str, str, str]]:
                got = (await c.get("/api/hj212/commands", params={"mn": AQ_MN})).json()
                return [(x["cn"], x["status"], x["requested_by"]) for x in got]

            for _ in range(100):
                if await statuses() == [("1012", "succeeded", "operator:duty")]:
                    break
                await asyncio.sleep(0.1)
            assert await statuses() == [("1012", "succeeded", "operator:duty")]
            page = (await c.get(f"/stations/{AQ_MN}")).text
        assert abs(state.clock_offset.total_seconds()) < 10  # the logger took the platform's time
        assert re.search(r'data-status="succeeded"', page) and "值班员 (duty)" in page
        assert "QnRtn 1" in page and "ExeRtn 1" in page
        await logger.close()
