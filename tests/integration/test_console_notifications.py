"""Issue 17 on the console: an alert's notifications, and receivers' test messages for admins.

The receivers talk to the local vendor servers of test_notifications.py (DingTalk checks the
signed URL and keyword, Feishu the body signature and answers 19021 to a wrong secret); the
engine, dispatcher, outbox and alert store are the real ones; the console's router runs on a
FastAPI app driven in-process through httpx's ASGI transport.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest_asyncio
from fastapi import FastAPI

from alerts.dispatch import Dispatcher, RouteTarget
from alerts.engine import AlertEngine, Observation
from alerts.notify import Outbox
from alerts.receivers import build_receiver
from alerts.routing import parse_routing
from alerts.rules import parse_rules
from alerts.store import AlertStore
from console import build_console
from console.auth import Operator, hash_password, save_operators
from devices.registry import FLEET, load_registry
from envgrid.settings import load_settings
from tests.integration.test_notifications import DING_SECRET, RULES, Vendors, vendors

__all__ = ["vendors"]  # the local vendor servers' fixture


class Room:
    """Engine → route → dispatcher → outbox → vendor servers, and the console over them."""

    def __init__(self, tmp: Path, v: Vendors) -> None:
        base = f"http://127.0.0.1:{v.port}"
        routing, errors = parse_routing(
            f"""
receivers:
  - name: duty-dingtalk
    type: dingtalk
    url: {base}/robot/send?access_token=tok
    secret: {DING_SECRET}
    keyword: 告警
  - name: duty-feishu
    type: feishu
    url: {base}/open-apis/bot/v2/hook/hook-1
    secret: not-the-secret
routes:
  - {{name: critical, severity: critical, receivers: [duty-dingtalk, duty-feishu], group_wait: 0s}}
""",
            "routing.yaml",
        )
        assert errors == []
        self.store = AlertStore(tmp / "alerts.db")
        receivers = {n: build_receiver(c) for n, c in routing.receivers.items()}
        self.dispatcher = Dispatcher(self.store, routing, receivers)
        self.outbox = Outbox(
            self.store,
            [RouteTarget(self.dispatcher), *receivers.values()],
            backoff_initial_s=1,
            backoff_max_s=5,
        )
        self.engine = AlertEngine(parse_rules(RULES), self.store, targets=["route"])
        ops = tmp / "operators.yaml"
        save_operators(
            ops,
            {
                "boss": Operator("boss", "站长", hash_password("password-boss", 4), admin=True),
                "duty": Operator("duty", "值班员", hash_password("password-duty", 4)),
            },
        )
        settings = load_settings(
            None, console={"operators": ops, "session_secret_file": tmp / "key"}
        )
        console = build_console(settings, self.engine, load_registry(FLEET), notify=self.dispatcher)
        assert console is not None
        self.console = console
        self.app = FastAPI()
        self.app.include_router(console.router)

    async def deliver(self) -> None:
        """Hand what is due to the dispatcher, flush its groups, deliver to the vendors."""
        await self.outbox.drain(10)
        self.dispatcher.tick()
        await self.outbox.drain(10)

    def client(self, operator: str) -> tuple[httpx.AsyncClient, str]:
        op = self.console.book.get(operator)
        assert op is not None
        cookie, session = self.console.sessions.issue(op)
        c = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url="http://console.test",
            cookies={"envgrid_session": cookie, "envgrid_lang": "zh"},
        )
        return c, session.csrf

    async def close(self) -> None:
        await self.outbox.close()
        self.store.close()


@pytest_asyncio.fixture
async def room(tmp_path: Path, vendors: Vendors) -> AsyncIterator[Room]:
    r = Room(tmp_path, vendors)
    yield r
    await r.close()


async def test_alert_page_shows_delivered_and_the_vendors_permanent_error(
    room: Room, vendors: Vendors
) -> None:
    now = int(time.time() * 1000)
    room.engine.observe(Observation("water", "WQ-001", "断面", "清江浦区", now, {"do_mg_l": 1.0}))
    await room.deliver()
    assert len(vendors.ding) == 1 and vendors.feishu == []
    c, _ = room.client("duty")
    async with c:
        page = (await c.get("/alerts/1")).text
    rows = dict(re.findall(r'data-receiver="([\w-]+)" data-result="(\w+)"', page))
    assert rows == {"duty-dingtalk": "delivered", "duty-feishu": "failed"}
    section = page[page.index('id="notifications"') :]
    assert "已送达" in section and "永久失败" in section
    # Feishu's own answer, as the receiver recorded it: its code and message.
    assert "19021" in section and "sign match fail" in section
    assert "not-the-secret" not in page


async def test_test_message_refused_for_a_duty_operator_and_sent_for_an_admin(
    room: Room, vendors: Vendors
) -> None:
    c, csrf = room.client("duty")
    async with c:
        r = await c.post("/receivers/duty-dingtalk/test", data={"csrf": csrf})
        assert r.status_code == 403
    await room.deliver()
    assert vendors.ding == []  # nothing was queued
    c, csrf = room.client("boss")
    async with c:
        r = await c.post("/receivers/duty-dingtalk/test", data={"csrf": csrf})
        assert r.status_code == 303
        await room.deliver()
        assert len(vendors.ding) == 1 and "测试消息" in vendors.ding[0]["markdown"]["text"]
        page = (await c.get("/receivers")).text
    cell = page[page.index('id="rx-duty-dingtalk"') :]
    cell = cell[cell.index('class="last-test"') : cell.index("</tr>")]
    assert "已送达" in cell
