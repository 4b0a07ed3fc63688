"""Receivers against local servers that check what the vendors check (issue 17).

Each vendor server below verifies the signature and its timestamp window, the keyword, the JSON
shape, and answers with the vendor's own error codes (bad signature, rate limit). The e-mail
receiver talks to a real aiosmtpd server with STARTTLS and login. Not exercised here: the
vendors' real endpoints (no network), their IP allow-lists and message rendering in their apps.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import pytest
import pytest_asyncio
import trustme
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from alerts.dispatch import Dispatcher, RouteTarget, failed_counts, notifications
from alerts.engine import AlertEngine, Observation
from alerts.notify import Outbox
from alerts.receivers import build_receiver
from alerts.receivers.sms import aliyun_signature
from alerts.routing import parse_routing
from alerts.rules import parse_rules
from alerts.store import AlertStore

DING_SECRET, FEISHU_SECRET, SMS_SECRET, WECOM_KEY = "SECding", "feishu-s", "sms-secret", "wk-1"
RULES = """
rules:
  - id: do-critical
    kind: water
    when: do_mg_l < 2
    severity: critical
    description: Dissolved oxygen below 2 mg/L
    standard: GB 3838-2002 Table 1
"""


@dataclass
class Vendors:
    """What the local vendor servers received and how they should answer next."""

    ding: list[dict[str, Any]] = field(default_factory=list)
    wecom: list[dict[str, Any]] = field(default_factory=list)
    feishu: list[dict[str, Any]] = field(default_factory=list)
    sms: list[dict[str, str]] = field(default_factory=list)
    rate_limit_next: set[str] = field(default_factory=set)
    port: int = 0


def _vendor_app(v: Vendors) -> web.Application:
    async def ding(req: web.Request) -> web.Response:
        q = req.query
        if q.get("access_token") != "tok":
            return web.json_response({"errcode": 300001, "errmsg": "token is not exist"})
        ts = int(q.get("timestamp", "0"))
        if abs(time.time() * 1000 - ts) > 3_600_000:
            return web.json_response({"errcode": 310000, "errmsg": "timestamp out of window"})
        want = base64.b64encode(
            hmac.new(DING_SECRET.encode(), f"{ts}\n{DING_SECRET}".encode(), hashlib.sha256).digest()
        ).decode()
        # aiohttp already URL-decoded the query once, as DingTalk's server does.
        if not hmac.compare_digest(q.get("sign", ""), want):
            return web.json_response({"errcode": 310000, "errmsg": "sign not match"})
        body = await req.json()
        md = body["markdown"]
        assert body["msgtype"] == "markdown" and md["title"] and md["text"]
        if "告警" not in md["text"]:  # the robot's keyword (安全设置: 自定义关键词)
            return web.json_response({"errcode": 310000, "errmsg": "keywords not in content"})
        for m in body.get("at", {}).get("atMobiles", []):
            assert f"@{m}" in md["text"]
        if "ding" in v.rate_limit_next:
            v.rate_limit_next.discard("ding")
            return web.json_response({"errcode": 130101, "errmsg": "send too fast"})
        v.ding.append(body)
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def wecom(req: web.Request) -> web.Response:
        if req.query.get("key") != WECOM_KEY:
            return web.json_response({"errcode": 93000, "errmsg": "invalid webhook url"})
        body = await req.json()
        if body["msgtype"] == "markdown":
            if len(body["markdown"]["content"].encode()) > 4096:
                return web.json_response({"errcode": 40058, "errmsg": "content exceed max length"})
        else:
            assert body["msgtype"] == "text" and isinstance(body["text"]["content"], str)
        if "wecom" in v.rate_limit_next:
            v.rate_limit_next.discard("wecom")
            return web.json_response({"errcode": 45009, "errmsg": "api freq out of limit"})
        v.wecom.append(body)
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def feishu(req: web.Request) -> web.Response:
        body = await req.json()
        ts = int(body.get("timestamp", "0"))
        key = f"{ts}\n{FEISHU_SECRET}".encode()
        want = base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
        if abs(time.time() - ts) > 3600 or body.get("sign") != want:
            return web.json_response(
                {"code": 19021, "msg": "sign match fail or timestamp is not within one hour"}
            )
        card = body["card"]
        assert body["msg_type"] == "interactive" and card["header"]["title"]["content"]
        assert card["elements"][0]["text"]["tag"] == "lark_md"
        v.feishu.append(body)
        return web.json_response({"code": 0, "msg": "success", "data": {}})

    async def sms(req: web.Request) -> web.Response:
        form = dict(parse_qsl((await req.read()).decode(), keep_blank_values=True))
        sig = form.pop("Signature", "")
        if aliyun_signature(SMS_SECRET, "POST", form) != sig:
            return web.json_response(
                {"Code": "SignatureDoesNotMatch", "Message": "Specified signature is not matched"}
            )
        assert form["Action"] == "SendSms" and form["Version"] == "2017-05-25"
        assert form["Timestamp"].endswith("Z") and json.loads(form["TemplateParam"])
        if "sms" in v.rate_limit_next:
            v.rate_limit_next.discard("sms")
            return web.json_response({"Code": "isv.BUSINESS_LIMIT_CONTROL", "Message": "limit"})
        v.sms.append(form)
        return web.json_response({"Code": "OK", "Message": "OK", "BizId": "1"})

    async def tencent(req: web.Request) -> web.Response:
        raw = await req.read()
        ts = int(req.headers["X-TC-Timestamp"])
        auth = req.headers["Authorization"]
        if abs(time.time() - ts) > 300:
            return web.json_response(
                {"Response": {"Error": {"Code": "AuthFailure.SignatureExpire", "Message": "x"}}}
            )
        # Rebuild the signature from what arrived, as Tencent Cloud does.
        cred = auth.split("Credential=")[1].split(",")[0]
        secret_id, date, service, _ = cred.split("/")
        canonical = (
            f"POST\n/\n\ncontent-type:{req.headers['Content-Type']}\nhost:{req.host}\n\n"
            f"content-type;host\n{hashlib.sha256(raw).hexdigest()}"
        )
        sts = (
            f"TC3-HMAC-SHA256\n{ts}\n{date}/{service}/tc3_request\n"
            + hashlib.sha256(canonical.encode()).hexdigest()
        )
        k = hmac.new(f"TC3{SMS_SECRET}".encode(), date.encode(), hashlib.sha256).digest()
        k = hmac.new(k, service.encode(), hashlib.sha256).digest()
        k = hmac.new(k, b"tc3_request", hashlib.sha256).digest()
        want = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
        if secret_id != "AKID-test" or not auth.endswith(f"Signature={want}"):
            err = {"Code": "AuthFailure.SignatureFailure", "Message": "signature mismatch"}
            return web.json_response({"Response": {"Error": err, "RequestId": "r"}})
        body = json.loads(raw)
        assert req.headers["X-TC-Action"] == "SendSms"
        assert req.headers["X-TC-Version"] == "2021-01-11"
        assert body["SmsSdkAppId"] == "1400000000" and body["TemplateId"] == "100"
        v.sms.append({"tencent": json.dumps(body, ensure_ascii=False)})
        status = [{"PhoneNumber": p, "Code": "Ok"} for p in body["PhoneNumberSet"]]
        return web.json_response({"Response": {"SendStatusSet": status, "RequestId": "r"}})

    app = web.Application()
    app.router.add_post("/tencent/", tencent)
    app.router.add_post("/robot/send", ding)
    app.router.add_post("/cgi-bin/webhook/send", wecom)
    app.router.add_post("/open-apis/bot/v2/hook/hook-1", feishu)
    app.router.add_post("/sms/", sms)
    return app


@pytest_asyncio.fixture
async def vendors() -> AsyncIterator[Vendors]:
    v = Vendors()
    runner = web.AppRunner(_vendor_app(v))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    v.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield v
    await runner.cleanup()


@dataclass
class Mailbox:
    port: int
    ca_file: Path
    messages: list[bytes] = field(default_factory=list)


class _Handler:
    def __init__(self, box: Mailbox) -> None:
        self.box = box

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.box.messages.append(envelope.content)
        return "250 OK"


def _auth(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and data.login == b"duty"
    ok = ok and data.password in (b"pw", b"MAIL-SECRET-4")
    return AuthResult(success=ok)


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[Mailbox]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    box = Mailbox(port, ca_file)
    ctl = Controller(
        _Handler(box),
        hostname="127.0.0.1",
        port=port,
        tls_context=ctx,
        require_starttls=True,
        authenticator=_auth,
        auth_required=True,
    )
    ctl.start()
    yield box
    ctl.stop()


def _routing(
    v: Vendors, box: Mailbox, *, ding_secret: str = DING_SECRET, repeat: str = "off"
) -> str:
    base = f"http://127.0.0.1:{v.port}"
    return f"""
receivers:
  - name: duty-dingtalk
    type: dingtalk
    url: {base}/robot/send?access_token=tok
    secret: {ding_secret}
    keyword: 告警
    oncall: duty
  - name: duty-wecom
    type: wecom
    url: {base}/cgi-bin/webhook/send?key={WECOM_KEY}
    oncall: duty
  - name: duty-feishu
    type: feishu
    url: {base}/open-apis/bot/v2/hook/hook-1
    secret: {FEISHU_SECRET}
    language: en
  - name: duty-mail
    type: email
    url: smtp://duty@127.0.0.1:{box.port}
    secret: pw
    ca_file: {box.ca_file}
    from: envgrid@example.cn
    to: [bureau@example.cn]
  - name: chief-sms
    type: sms
    url: {base}/sms/
    access_key_id: LTAI-test
    secret: {SMS_SECRET}
    sign_name: 淮安环境
    template_code: SMS_100
    template_params: {{count: "{{count}}", device: "{{device_id}}"}}
    mobiles: ["13900000009"]
    oncall: duty
routes:
  - name: critical
    severity: critical
    receivers: [duty-dingtalk, duty-wecom, duty-feishu, duty-mail]
    group_wait: 30s
    escalate_after: 10m
    escalate_to: [chief-sms]
{"    repeat_interval: " + repeat if repeat != "off" else ""}
oncall:
  people:
    - {{id: wang, name: 王工, mobile: "13800000001", email: wang@example.cn}}
    - {{id: li, name: 李工, mobile: "13800000002"}}
  rotas:
    - name: duty
      handover: "08:30"
      weekly: {{mon: wang, tue: li, wed: wang, thu: li, fri: wang, sat: li, sun: wang}}
"""


class Rig:
    """Engine, store, outbox and dispatcher on one clock that the test moves."""

    def __init__(self, path: Path, routing_text: str, now: float) -> None:
        self.now = now
        self.path = path
        self.routing_text = routing_text
        self.open()

    def clock(self) -> float:
        return self.now

    def open(self) -> None:
        routing, errors = parse_routing(self.routing_text, "routing.yaml")
        assert errors == []
        self.store = AlertStore(self.path)
        self.receivers = {n: build_receiver(c) for n, c in routing.receivers.items()}
        self.dispatcher = Dispatcher(
            self.store,
            routing,
            self.receivers,
            clock=self.clock,
            console_url="https://console.example",
        )
        route = RouteTarget(self.dispatcher)
        self.outbox = Outbox(
            self.store,
            [route, *self.receivers.values()],
            clock=self.clock,
            backoff_initial_s=1,
            backoff_max_s=5,
        )
        self.engine = AlertEngine(
            parse_rules(RULES), self.store, targets=["route"], clock=self.clock
        )

    async def close(self) -> None:
        await self.outbox.close()
        self.store.close()

    def breach(self, device: str, value: float = 1.0) -> None:
        self.engine.observe(
            Observation(
                "water",
                device,
                f"{device} 断面",
                "清江浦区",
                int(self.now * 1000),
                {"do_mg_l": value},
            )
        )

    async def run(self, seconds: float = 0.0) -> None:
        """Advance the clock, deliver what is due, flush due groups, deliver again."""
        self.now += seconds
        await self.outbox.drain(10)
        self.dispatcher.tick()
        await self.outbox.drain(10)


# Tuesday 2026-12-01 10:00 in Shanghai: li is on duty (handover 08:30).
TUESDAY_10 = 1_796_090_400.0


async def test_critical_breach_reaches_every_receiver_once(
    tmp_path: Path, vendors: Vendors, smtp: Mailbox
) -> None:
    rig = Rig(tmp_path / "a.db", _routing(vendors, smtp), TUESDAY_10)
    rig.breach("WQ-001")
    await rig.run()
    assert not vendors.ding, "sent before group_wait"
    await rig.run(31)
    assert len(vendors.ding) == 1 and len(vendors.feishu) == 1 and len(smtp.messages) == 1
    assert [m["msgtype"] for m in vendors.wecom] == ["markdown", "text"]
    # The person on duty (li) is the one @-mentioned, in DingTalk and WeCom.
    assert vendors.ding[0]["at"]["atMobiles"] == ["13800000002"]
    assert vendors.wecom[1]["text"]["mentioned_mobile_list"] == ["13800000002"]
    text = vendors.ding[0]["markdown"]["text"]
    for part in ("WQ-001", "WQ-001 断面", "清江浦区", "GB 3838-2002", "console.example/alerts/1"):
        assert part in text
    mail = message_from_bytes(smtp.messages[0])
    assert "bureau@example.cn" in mail["To"] and mail.is_multipart()
    await rig.run(60)  # nothing more
    assert len(vendors.ding) == 1 and len(smtp.messages) == 1
    await rig.close()


async def test_wrong_secret_is_a_permanent_error(
    tmp_path: Path, vendors: Vendors, smtp: Mailbox
) -> None:
    rig = Rig(tmp_path / "a.db", _routing(vendors, smtp, ding_secret="SECwrong"), TUESDAY_10)
    rig.breach("WQ-001")
    await rig.run()
    await rig.run(31)
    await rig.run(60)
    assert vendors.ding == [] and len(vendors.feishu) == 1
    assert failed_counts(rig.store) == {"duty-dingtalk": 1}
    assert rig.store.outbox_backlog() == {}  # given up, not retried forever
    page = {s.target: s for s in notifications(rig.store, 1)}
    assert page["duty-dingtalk"].result == "failed"
    assert "310000" in (page["duty-dingtalk"].last_error or "")
    assert page["duty-feishu"].result == "delivered"
    await rig.close()


async def test_rate_limit_is_retried_after_its_wait(
    tmp_path: Path, vendors: Vendors, smtp: Mailbox
) -> None:
    rig = Rig(tmp_path / "a.db", _routing(vendors, smtp), TUESDAY_10)
    vendors.rate_limit_next |= {"ding", "wecom"}
    rig.breach("WQ-001")
    await rig.run()
    await rig.run(31)
    assert vendors.ding == []
    await rig.run(30)  # DingTalk's wait (rate_limit_wait, 60 s) not over
    assert vendors.ding == []
    await rig.run(31)
    assert len(vendors.ding) == 1
    assert [m["msgtype"] for m in vendors.wecom] == ["markdown", "text"]
    await rig.close()


async def test_storm_of_50_is_at_most_two_messages_per_receiver(
    tmp_path: Path, vendors: Vendors, smtp: Mailbox
) -> None:
    rig = Rig(tmp_path / "a.db", _routing(vendors, smtp), TUESDAY_10)
    for i in range(50):
        rig.breach(f"WQ-{i:03d}")
        await rig.run(0.5)
    await rig.run(31)
    wecom_md = [m["markdown"]["content"] for m in vendors.wecom if m["msgtype"] == "markdown"]
    for name, texts in {
        "dingtalk": [m["markdown"]["text"] for m in vendors.ding],
        "wecom": wecom_md,
        "feishu": [m["card"]["elements"][0]["text"]["content"] for m in vendors.feishu],
        "email": [
            message_from_bytes(m).get_payload()[0].get_payload(decode=True).decode()
            for m in smtp.messages
        ],
    }.items():
        assert 1 <= len(texts) <= 2, name
        everything = "\n".join(texts)
        assert all(f"WQ-{i:03d}" in everything for i in range(50)), name
    await rig.close()


async def test_escalation_only_for_the_unacknowledged(
    tmp_path: Path, vendors: Vendors, smtp: Mailbox
) -> None:
    rig = Rig(tmp_path / "a.db", _routing(vendors, smtp), TUESDAY_10)
    rig.breach("WQ-001")
    rig.breach("WQ-002")
    await rig.run()
    await rig.run(31)
    acked = next(a for a in rig.engine.alerts() if a.device_id == "WQ-002")
    rig.engine.ack(acked.id, "李工", "crew sent")
    await rig.run(9 * 60)
    assert vendors.sms == []
    await rig.run(61)  # 10 min after firing: escalation, then its group_wait
    await rig.run(31)
    assert len(vendors.sms) == 1
    params = json.loads(vendors.sms[0]["TemplateParam"])
    assert params == {"count": "1", "device": "WQ-001"}
    # The chief, and whoever is on duty (li on Tuesdays) is texted too.
    assert vendors.sms[0]["PhoneNumbers"] == "13900000009,13800000002"
    await rig.run(3600)
    assert len(vendors.sms) == 1
    await rig.close()


async def test_rota_handover_changes_who_is_mentioned(
    tmp_path: Path, vendors: Vendors, smtp: Mailbox
) -> None:
    rig = Rig(tmp_path / "a.db", _routing(vendors, smtp), TUESDAY_10 + 22 * 3600)  # Wed 08:00
    rig.breach("WQ-001")
    await rig.run()
    await rig.run(31)
    assert vendors.ding[-1]["at"]["atMobiles"] == ["13800000002"]  # li until 08:30
    rig.now += 3600  # Wednesday 09:00: wang
    rig.breach("WQ-002")
    await rig.run()
    await rig.run(31)
    assert vendors.ding[-1]["at"]["atMobiles"] == ["13800000001"]
    await rig.close()


async def test_restart_in_group_wait_and_escalation_loses_and_repeats_nothing(
    tmp_path: Path, vendors: Vendors, smtp: Mailbox
) -> None:
    rig = Rig(tmp_path / "a.db", _routing(vendors, smtp), TUESDAY_10)
    rig.breach("WQ-001")
    await rig.run()
    await rig.run(10)  # routed, waiting in its group
    # The outbox delivers at least once: the same engine notification routed again is kept once.
    rig.dispatcher.accept(
        json.loads(
            rig.store.db.execute("SELECT payload FROM outbox WHERE target = 'route'").fetchone()[0]
        )
    )
    await rig.close()
    rig.open()  # restart in the middle of group_wait
    await rig.run(21)
    assert len(vendors.ding) == 1 and len(vendors.feishu) == 1 and len(smtp.messages) == 1
    await rig.run(5 * 60)
    await rig.close()
    rig.open()  # restart in the middle of escalate_after
    await rig.run(5 * 60)
    await rig.run(31)
    assert len(vendors.sms) == 1
    await rig.close()
    rig.open()
    await rig.run(3600)
    assert len(vendors.sms) == 1 and len(vendors.ding) == 1
    await rig.close()


async def test_secrets_stay_out_of_logs_and_the_store(
    tmp_path: Path, vendors: Vendors, smtp: Mailbox, caplog: pytest.LogCaptureFixture
) -> None:
    from envgrid.localstack import free_port

    dead = free_port()  # nothing listens there: a connection error quoting the URL
    text = f"""
receivers:
  - name: gone
    type: dingtalk
    url: http://127.0.0.1:{dead}/robot/send?access_token=AT-SECRET-1
    secret: SEC-SECRET-2
  - name: refused
    type: feishu
    url: http://127.0.0.1:{vendors.port}/open-apis/bot/v2/hook/hook-1
    secret: FS-SECRET-3
  - name: mail
    type: email
    url: smtp://duty:MAIL-SECRET-4@127.0.0.1:{smtp.port}
    ca_file: {smtp.ca_file}
    from: envgrid@example.cn
    to: [x@example.cn]
routes:
  - {{name: all, receivers: [gone, refused, mail], group_wait: 0s}}
"""
    rig = Rig(tmp_path / "a.db", text, TUESDAY_10)
    caplog.set_level("DEBUG")
    rig.breach("WQ-001")
    await rig.run()
    await rig.run(1)
    await rig.run(10)
    errors = [r[0] for r in rig.store.db.execute("SELECT last_error FROM outbox").fetchall()]
    assert any(e and "ClientConnectorError" in e for e in errors)  # the failures were recorded
    assert any(e and "19021" in e for e in errors)
    assert len(smtp.messages) == 1  # the password from the URL logged in
    seen = caplog.text + "\n".join(e or "" for e in errors)
    for secret in ("AT-SECRET-1", "SEC-SECRET-2", "FS-SECRET-3", "MAIL-SECRET-4"):
        assert secret not in seen
    await rig.close()


@pytest.mark.slow
async def test_service_path_breach_to_dingtalk_and_a_wrong_secret_on_the_page_and_metrics(
    mosquitto: Any, influxdb: Any, influx_db: str, tmp_path: Path, vendors: Vendors
) -> None:
    """The real wiring: MQTT reading → engine → route → group → DingTalk; Feishu refuses."""
    from tests.helpers import make_settings, mqtt_client, wait_for
    from tests.integration.test_alerts import api, publish, running

    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES, encoding="utf-8")
    base = f"http://127.0.0.1:{vendors.port}"
    routing = tmp_path / "routing.yaml"
    routing.write_text(
        f"""
receivers:
  - name: duty-dingtalk
    type: dingtalk
    url: {base}/robot/send?access_token=tok
    secret: {DING_SECRET}
    keyword: 告警
    oncall: duty
  - name: duty-feishu
    type: feishu
    url: {base}/open-apis/bot/v2/hook/hook-1
    secret: not-the-secret
routes:
  - {{name: critical, severity: critical, receivers: [duty-dingtalk, duty-feishu], group_wait: 1s}}
oncall:
  people: [{{id: wang, name: 王工, mobile: "13800000001"}}]
  rotas:
    - {{name: duty, weekly: {{mon: wang, tue: wang, wed: wang, thu: wang, fri: wang,
                             sat: wang, sun: wang}}}}
""",
        encoding="utf-8",
    )
    prefix = f"n{int(time.time() * 1000) % 10**8}"
    settings = make_settings(
        mosquitto,
        influxdb,
        influx_db,
        tmp_path,
        mqtt={"topic_prefix": prefix},
        http={"port": 0, "token": "t"},
        alerts={
            "rules": rules,
            "store": tmp_path / "alerts.db",
            "routing": routing,
            "console_url": "https://console.example",
            "tick_interval": 0.2,
            "retry_max": 0.5,
        },
    )
    async with running(settings) as run, mqtt_client(mosquitto, client_id=f"p-{prefix}") as pub:
        now = int(time.time() * 1000)
        await publish(pub, prefix, "water", "WQ-001", [{"ts": now, "do_mg_l": 1.2}])
        await wait_for(lambda: len(vendors.ding) == 1, 15, "the DingTalk message")
        assert vendors.ding[0]["at"]["atMobiles"] == ["13800000001"]
        status, alerts = await api("GET", f"{run.url}/api/alerts?state=firing")
        assert status == 200 and len(alerts) == 1
        page_url = f"{run.url}/api/alerts/{alerts[0]['id']}/notifications"

        async def page() -> dict[str, str]:
            _, rows = await api("GET", page_url)
            return {r["receiver"]: r["result"] for r in rows}

        for _ in range(50):
            if (await page()).get("duty-feishu") == "failed":
                break
            await asyncio.sleep(0.2)
        got = await page()
        assert got["duty-dingtalk"] == "delivered" and got["duty-feishu"] == "failed"
        async with aiohttp.ClientSession() as s, s.get(f"{run.url}/metrics") as r:
            metrics = await r.text()
        assert 'envgrid_alert_notifications_failed{target="duty-feishu"} 1.0' in metrics
        assert 'envgrid_alert_notifications_failed{target="duty-dingtalk"} 0.0' in metrics
        status, oncall = await api("GET", f"{run.url}/api/oncall")
        assert oncall[0]["rota"] == "duty" and oncall[0]["name"] == "王工"
        status, _ = await api("POST", f"{run.url}/api/receivers/duty-dingtalk/test", "t")
        assert status == 202
        await wait_for(lambda: len(vendors.ding) == 2, 10, "the test message")
        assert "测试消息" in vendors.ding[1]["markdown"]["text"]
        await asyncio.sleep(0.3)  # marked delivered after the vendor's answer
        status, rx = await api("GET", f"{run.url}/api/receivers")
        assert status == 200, rx
        by = {r["name"]: r for r in rx}
        assert by["duty-dingtalk"]["last_test"] == "delivered"
        assert by["duty-dingtalk"]["delivered"] == 2 and by["duty-feishu"]["failed"] == 1
        assert "19021" in by["duty-feishu"]["last_error"]
        assert "not-the-secret" not in json.dumps(rx)


async def test_reminders_while_unacknowledged_stop_on_ack(
    tmp_path: Path, vendors: Vendors, smtp: Mailbox
) -> None:
    rig = Rig(tmp_path / "a.db", _routing(vendors, smtp, repeat="1h"), TUESDAY_10)
    rig.breach("WQ-001")
    await rig.run()
    await rig.run(31)
    assert len(vendors.ding) == 1
    await rig.run(3600)  # an hour after firing: the reminder, then its group's wait
    await rig.run(31)
    assert len(vendors.ding) == 2
    assert "提醒" in vendors.ding[1]["markdown"]["title"]
    (alert,) = rig.engine.alerts()
    rig.engine.ack(alert.id, "王工", "on site")
    await rig.run(3600)
    await rig.run(31)
    assert len(vendors.ding) == 2  # acknowledged: no more reminders
    reasons = {s.reason for s in notifications(rig.store, alert.id)}
    assert {"notify", "reminder", "escalation"} <= reasons  # escalated at 10 min, before the ack
    await rig.close()


async def test_tencent_sms_signed_and_a_wrong_key_refused(
    tmp_path: Path, vendors: Vendors, smtp: Mailbox
) -> None:
    base = f"http://127.0.0.1:{vendors.port}"

    def rx(name: str, secret: str) -> str:
        return f"""
  - name: {name}
    type: sms
    provider: tencent
    url: {base}/tencent/
    access_key_id: AKID-test
    secret: {secret}
    sdk_app_id: "1400000000"
    sign_name: 淮安环境
    template_code: "100"
    template_params: {{device: "{{device_id}}", count: "{{count}}"}}
    oncall: duty
"""

    text = (
        "receivers:"
        + rx("tc-good", SMS_SECRET)
        + rx("tc-bad", "wrong")
        + "routes:\n  - {name: all, receivers: [tc-good, tc-bad], group_wait: 0s}\n"
        + "oncall:\n  people: [{id: li, mobile: '13800000002'}]\n"
        + "  rotas: [{name: duty, weekly: {mon: li, tue: li, wed: li, thu: li, fri: li,"
        + " sat: li, sun: li}}]\n"
    )
    rig = Rig(tmp_path / "a.db", text, TUESDAY_10)
    rig.breach("WQ-007")
    await rig.run()
    await rig.run(1)
    assert len(vendors.sms) == 1
    body = json.loads(vendors.sms[0]["tencent"])
    assert body["PhoneNumberSet"] == ["+8613800000002"]
    assert body["TemplateParamSet"] == ["WQ-007", "1"]  # in the order written
    assert failed_counts(rig.store) == {"tc-bad": 1}
    await rig.close()
