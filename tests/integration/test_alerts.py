"""Issue 4's acceptance list against real mosquitto, InfluxDB and an HTTP webhook receiver.

Readings travel the real path (MQTT → IngestService → pipeline → alert engine); notifications
leave through the real outbox to the broker, a small aiohttp receiver and InfluxDB.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from devices.kinds import KINDS
from devices.registry import load_registry
from envgrid.alerting import Alerting, build_alerting, role_settings
from envgrid.app import configure_standards
from envgrid.localstack import LocalInfluxDB, LocalMosquitto, free_port
from envgrid.roles import Role
from envgrid.settings import Settings
from ingest.http import HttpServer, create_app
from ingest.mqtt import Message
from ingest.service import IngestService
from tests.helpers import make_settings, mqtt_client, wait_for
from tests.service_proc import run_envgrid

TOKEN = "test-token-4"
SECRET = "webhook-secret"
MIN = 60_000

RULES = """
rules:
  - id: do-low
    description: DO below 3 mg/L
    kind: water
    scope: {devices: [WQ-00*]}
    when: do_mg_l < 3
    for: 5m
    clear: do_mg_l >= 3.5
    severity: major
    standard: GB 3838-2002 Table 1, DO Class IV >= 3 mg/L
  - id: pv-fault
    kind: pv
    when: status == FAULT
    severity: critical
  - id: pv-offline
    kind: pv
    scope: {devices: [PV-9*]}  # not the registry's PV-0xx, which never report here
    nodata: {interval: 1s}
    severity: warning
"""
HOVER = [5, 4, 2.9, 2.8, 2.7, 2.9, 2.8, 2.9, 3.1, 2.95, 3.2, 3.4, 2.9, 3.3, 3.6, 4]


class Webhook:
    """A real HTTP receiver that checks the HMAC signature of each notification."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.events: list[dict[str, Any]] = []
        self.bad_signatures = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        want = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        if request.headers.get("X-Envgrid-Signature") != want:
            self.bad_signatures += 1
            return web.Response(status=401)
        self.events.append(json.loads(body))
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def settings_for(
    mosquitto: LocalMosquitto,
    influxdb: LocalInfluxDB,
    db: str,
    tmp: Path,
    webhook: Webhook,
    *,
    token: str | None = TOKEN,
    registry: bool = True,
) -> Settings:
    rules = tmp / "rules.yaml"
    rules.write_text(RULES, encoding="utf-8")
    prefix = f"t{uuid.uuid4().hex[:8]}"  # the session broker is shared: topics of our own
    return make_settings(
        mosquitto,
        influxdb,
        db,
        tmp,
        mqtt={"topic_prefix": prefix},
        http={"port": 0, "token": token},
        devices={} if registry else {"registry": None},
        alerts={
            "rules": rules,
            "store": tmp / "alerts.db",
            "webhook_url": webhook.url,
            "webhook_secret": SECRET,
            "tick_interval": 0.2,
            "retry_max": 0.5,
        },
    )


class Running:
    """A service as ``envgrid run`` wires it: ingest, alert engine, HTTP API."""

    def __init__(self, service: IngestService, alerting: Alerting, url: str) -> None:
        self.service, self.alerting, self.url = service, alerting, url
        self.killed = False

    async def kill_alerts(self) -> None:
        """The engine dies: no flush, no outbox drain, no store close; the objects are dropped."""
        for t in self.alerting._tasks:
            t.cancel()
        await asyncio.gather(*self.alerting._tasks, return_exceptions=True)
        self.service.sinks.clear()
        self.killed = True


@contextlib.asynccontextmanager
async def running(settings: Settings, role: Role = Role.ALL) -> AsyncIterator[Running]:
    """Start the service in this loop; stop it afterwards."""
    configure_standards(settings)
    settings = role_settings(settings, role)
    reg = load_registry(settings.devices.registry)
    service = IngestService(settings, KINDS, reg, evaluate_only=not role.ingests)
    alerting = build_alerting(settings, service, reg, role=role)
    assert alerting is not None
    app = create_app(service.metrics, service.readiness, [alerting.router])
    http = HttpServer(app, "127.0.0.1", 0)
    await http.start()
    await service.start()
    await alerting.start()
    run = Running(service, alerting, f"http://127.0.0.1:{http.port}")
    try:
        yield run
    finally:
        await service.stop()
        if not run.killed:
            await alerting.stop()
        await http.stop()


class Collected:
    """Alert notifications from the three targets."""

    def __init__(self, influxdb: LocalInfluxDB, db: str, webhook: Webhook) -> None:
        self.mqtt: list[Message] = []
        self.influxdb, self.db, self.webhook = influxdb, db, webhook

    def mqtt_events(self) -> list[tuple[str, str, str]]:
        out = []
        for m in self.mqtt:
            body = json.loads(m.payload)
            out.append((m.topic, body["event"], body["rule_id"]))
        return out

    def influx_rows(self) -> list[dict[str, Any]]:
        return self.influxdb.points('SELECT * FROM "alerts" GROUP BY *', self.db)

    def counts(self) -> tuple[int, int, int]:
        return len(self.mqtt), len(self.webhook.events), len(self.influx_rows())


async def publish(
    pub: Any, prefix: str, kind: str, device: str, payloads: list[dict[str, Any]]
) -> None:
    for p in payloads:  # one at a time: the order of a device's readings matters
        await pub.publish(f"{prefix}/{kind}/{device}", json.dumps(p).encode(), qos=1)


def do_series(values: list[float], start_ms: int) -> list[dict[str, Any]]:
    return [{"ts": start_ms + i * MIN, "do_mg_l": v} for i, v in enumerate(values)]


async def api(method: str, url: str, token: str | None = None, body: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as s,
        s.request(method, url, json=body, headers=headers) as r,
    ):
        return r.status, await r.json()


# ----------------------------------------------------------------------------- acceptance


async def test_do_series_fires_once_and_resolves_once_on_every_target(
    mosquitto: LocalMosquitto, influxdb: LocalInfluxDB, influx_db: str, tmp_path: Path
) -> None:
    webhook = Webhook()
    await webhook.start()
    settings = settings_for(mosquitto, influxdb, influx_db, tmp_path, webhook)
    prefix = settings.mqtt.topic_prefix
    got = Collected(influxdb, influx_db, webhook)
    start = int(time.time() * 1000) - 30 * MIN
    try:
        async with (
            mqtt_client(mosquitto, [f"{prefix}/alerts/#"], got.mqtt.append, f"col-{prefix}"),
            running(settings) as run,
            mqtt_client(mosquitto, client_id=f"pub-{prefix}") as pub,
        ):
            await publish(pub, prefix, "water", "WQ-001", do_series(HOVER, start))
            await wait_for(lambda: got.counts() == (2, 2, 2), 15, "firing + resolved everywhere")
            await asyncio.sleep(1.0)  # five ticks more: nothing repeats
            assert got.counts() == (2, 2, 2)
            await wait_for(
                lambda: influxdb.count("water_quality", influx_db) == len(HOVER), 10, "readings"
            )

            status, alerts = await api("GET", f"{run.url}/api/alerts?state=resolved&kind=water")
            assert status == 200 and len(alerts) == 1
            (a,) = alerts
            status, detail = await api("GET", f"{run.url}/api/alerts/{a['id']}")
            assert [h["event"] for h in detail["history"]] == ["pending", "firing", "resolved"]
            status, spec = await api("GET", f"{run.url}/openapi.json")
            assert {"/api/alerts", "/api/alerts/{alert_id}", "/api/alerts/{alert_id}/ack"} <= set(
                spec["paths"]
            )
            assert {"/api/silences", "/api/silences/{silence_id}"} <= set(spec["paths"])
    finally:
        await webhook.stop()

    topic = f"{prefix}/alerts/major/water/WQ-001"
    assert got.mqtt_events() == [(topic, "firing", "do-low"), (topic, "resolved", "do-low")]
    assert [e["event"] for e in webhook.events] == ["firing", "resolved"]
    assert webhook.bad_signatures == 0
    firing = webhook.events[0]
    # The breach began at the third reading and fired five minutes of readings later.
    assert firing["started_at"].startswith(time.strftime("%Y-%m-%dT", time.gmtime(start / 1000)))
    assert firing["value"] < 3 and firing["site"] == "淮河入海水道清江浦区断面"
    assert firing["standard"].startswith("GB 3838-2002")
    assert webhook.events[1]["value"] == 3.6
    rows = got.influx_rows()
    assert sorted(r["state"] for r in rows) == ["firing", "resolved"]
    for r in rows:
        assert (r["rule_id"], r["severity"], r["kind"], r["device_id"]) == (
            "do-low",
            "major",
            "water",
            "WQ-001",
        )
        assert r["county"] == "清江浦区" and r["alert_id"] == a["id"] and r["message"]


async def test_short_breach_silence_ack_and_the_token(
    mosquitto: LocalMosquitto, influxdb: LocalInfluxDB, influx_db: str, tmp_path: Path
) -> None:
    webhook = Webhook()
    await webhook.start()
    settings = settings_for(mosquitto, influxdb, influx_db, tmp_path, webhook)
    prefix = settings.mqtt.topic_prefix
    got = Collected(influxdb, influx_db, webhook)
    start = int(time.time() * 1000) - 30 * MIN
    silence = {
        "matchers": {"devices": ["WQ-003"]},
        "duration": "1h",
        "created_by": "李工",
        "comment": "sensor cleaning",
    }
    try:
        async with (
            mqtt_client(mosquitto, [f"{prefix}/alerts/#"], got.mqtt.append, f"col-{prefix}"),
            running(settings) as run,
            mqtt_client(mosquitto, client_id=f"pub-{prefix}") as pub,
        ):
            # Write calls need the token.
            status, body = await api("POST", f"{run.url}/api/silences", None, silence)
            assert status == 401 and "Bearer" in body["detail"]
            status, body = await api("POST", f"{run.url}/api/silences", "wrong", silence)
            assert status == 401
            status, created = await api("POST", f"{run.url}/api/silences", TOKEN, silence)
            assert status == 201 and created["active"] and created["created_by"] == "api:李工"

            # A breach shorter than `for` (WQ-002), a silenced breach (WQ-003), then a real one
            # (WQ-001). Outbox order per target is kept, so once WQ-001's notification is in,
            # anything the others had sent would be in too.
            short = [5, 2.5, 2.6, 2.7, 2.8, 4.0, 5, 5, 5]
            await publish(pub, prefix, "water", "WQ-002", do_series(short, start))
            await publish(pub, prefix, "water", "WQ-003", do_series([2.0] * 8, start))
            await publish(pub, prefix, "water", "WQ-001", do_series([2.0] * 8, start))
            await wait_for(lambda: got.counts() == (1, 1, 1), 15, "WQ-001's firing")
            await asyncio.sleep(0.6)
            assert got.counts() == (1, 1, 1)
            assert got.mqtt_events() == [
                (f"{prefix}/alerts/major/water/WQ-001", "firing", "do-low")
            ]

            status, listed = await api("GET", f"{run.url}/api/alerts?state=firing")
            by_device = {a["device_id"]: a for a in listed}
            assert set(by_device) == {"WQ-001", "WQ-003"}  # WQ-002 never fired
            assert by_device["WQ-003"]["silenced"] is True and not by_device["WQ-003"]["notified"]
            assert by_device["WQ-001"]["silenced"] is False
            status, only = await api("GET", f"{run.url}/api/alerts?state=firing&site=x")
            assert only == []

            alert_id = by_device["WQ-001"]["id"]
            ack = {"by": "王工", "comment": "aerator on"}
            status, _ = await api("POST", f"{run.url}/api/alerts/{alert_id}/ack", None, ack)
            assert status == 401
            status, acked = await api("POST", f"{run.url}/api/alerts/{alert_id}/ack", TOKEN, ack)
            assert status == 200 and acked["acked_by"] == "api:王工" and acked["acked_at"]
            status, detail = await api("GET", f"{run.url}/api/alerts/{alert_id}")
            assert detail["acked_by"] == "api:王工" and detail["ack_comment"] == "aerator on"
            last = detail["history"][-1]
            assert last["event"] == "acked" and last["by"] == "api:王工"
            status, _ = await api("POST", f"{run.url}/api/alerts/99999/ack", TOKEN, ack)
            assert status == 404

            # Deleting the silence while WQ-003 still breaches: it notifies now, once.
            sid = created["id"]
            status, deleted = await api("DELETE", f"{run.url}/api/silences/{sid}?by=李工", TOKEN)
            assert status == 200 and not deleted["active"] and deleted["deleted_by"] == "api:李工"
            await wait_for(lambda: got.counts() == (2, 2, 2), 10, "WQ-003's late firing")
            status, current = await api("GET", f"{run.url}/api/silences")
            assert current == []
    finally:
        await webhook.stop()


async def test_restart_while_firing_no_repeat_then_resolves(
    mosquitto: LocalMosquitto, influxdb: LocalInfluxDB, influx_db: str, tmp_path: Path
) -> None:
    webhook = Webhook()
    await webhook.start()
    settings = settings_for(mosquitto, influxdb, influx_db, tmp_path, webhook)
    prefix = settings.mqtt.topic_prefix
    got = Collected(influxdb, influx_db, webhook)
    start = int(time.time() * 1000) - 30 * MIN
    try:
        async with (
            mqtt_client(mosquitto, [f"{prefix}/alerts/#"], got.mqtt.append, f"col-{prefix}"),
            mqtt_client(mosquitto, client_id=f"pub-{prefix}") as pub,
        ):
            async with running(settings) as run:
                await publish(pub, prefix, "water", "WQ-001", do_series([5] + [2.0] * 7, start))
                await wait_for(lambda: got.counts() == (1, 1, 1), 15, "firing")
                await run.kill_alerts()
            async with running(settings) as run:
                assert run.alerting.engine.open_count() == {"pending": 0, "firing": 1}
                more = [2.0, 2.5, 3.1, 3.4]  # still firing (hysteresis): no repeat
                await publish(pub, prefix, "water", "WQ-001", do_series(more, start + 8 * MIN))
                await asyncio.sleep(0.8)
                assert got.counts() == (1, 1, 1)
                await publish(pub, prefix, "water", "WQ-001", do_series([3.7], start + 12 * MIN))
                await wait_for(lambda: got.counts() == (2, 2, 2), 15, "resolved")
                await asyncio.sleep(0.6)
                assert got.counts() == (2, 2, 2)
    finally:
        await webhook.stop()
    assert [e[1] for e in got.mqtt_events()] == ["firing", "resolved"]
    assert [e["event"] for e in webhook.events] == ["firing", "resolved"]
    assert webhook.events[0]["alert_id"] == webhook.events[1]["alert_id"]


async def test_webhook_down_for_a_while_receives_once_back(
    mosquitto: LocalMosquitto, influxdb: LocalInfluxDB, influx_db: str, tmp_path: Path
) -> None:
    webhook = Webhook()  # not started yet: its port refuses connections
    settings = settings_for(mosquitto, influxdb, influx_db, tmp_path, webhook)
    prefix = settings.mqtt.topic_prefix
    got = Collected(influxdb, influx_db, webhook)
    now = int(time.time() * 1000)
    try:
        async with (
            mqtt_client(mosquitto, [f"{prefix}/alerts/#"], got.mqtt.append, f"col-{prefix}"),
            running(settings) as run,
            mqtt_client(mosquitto, client_id=f"pub-{prefix}") as pub,
        ):
            await publish(pub, prefix, "pv", "PV-101", [{"ts": now, "status": "FAULT"}])
            await wait_for(lambda: len(got.mqtt) == 1, 10, "MQTT notification")

            def attempts() -> int:
                item = run.alerting.store.next_for("webhook")
                return item.attempts if item else 0

            await wait_for(lambda: attempts() >= 2, 10, "failed webhook attempts")
            assert webhook.events == []
            await webhook.start()
            await wait_for(lambda: len(webhook.events) == 1, 10, "webhook delivery once back")
            await asyncio.sleep(1.0)
            assert len(webhook.events) == 1 and len(got.mqtt) == 1
            assert run.alerting.store.outbox_backlog() == {}
    finally:
        await webhook.stop()
    assert webhook.events[0]["rule_id"] == "pv-fault"
    assert webhook.events[0]["event"] == "firing" and webhook.bad_signatures == 0


async def test_silent_device_goes_offline_within_interval_plus_one_tick(
    mosquitto: LocalMosquitto, influxdb: LocalInfluxDB, influx_db: str, tmp_path: Path
) -> None:
    webhook = Webhook()
    await webhook.start()
    settings = settings_for(mosquitto, influxdb, influx_db, tmp_path, webhook, registry=False)
    prefix = settings.mqtt.topic_prefix
    got = Collected(influxdb, influx_db, webhook)
    try:
        async with (
            mqtt_client(mosquitto, [f"{prefix}/alerts/#"], got.mqtt.append, f"col-{prefix}"),
            running(settings) as run,
            mqtt_client(mosquitto, client_id=f"pub-{prefix}") as pub,
        ):
            reading = {"ts": int(time.time() * 1000), "ac_power_w": 1200.0}
            await publish(pub, prefix, "pv", "PV-907", [reading])
            engine = run.alerting.engine
            await wait_for(lambda: engine.last_seen_ms("pv", "PV-907"), 5, "reading seen")
            seen = engine.last_seen_ms("pv", "PV-907")
            assert seen is not None
            await wait_for(lambda: len(got.mqtt) == 1, 5, "device offline")
            _, (a,) = await api("GET", f"{run.url}/api/alerts?rule_id=pv-offline")
            assert a["state"] == "firing" and a["message"].startswith("device offline")
            fired = int(
                __import__("datetime").datetime.fromisoformat(a["fired_at"]).timestamp() * 1000
            )
            # interval (1 s) + one tick (0.2 s); 0.3 s for a busy test machine's event loop.
            assert 1000 < fired - seen <= 1000 + 200 + 300, fired - seen
            await publish(pub, prefix, "pv", "PV-907", [{**reading, "ts": reading["ts"] + 1500}])
            await wait_for(lambda: len(got.mqtt) == 2, 5, "back online")
    finally:
        await webhook.stop()
    events = [json.loads(m.payload) for m in got.mqtt]
    assert [(e["event"], e["rule_id"], e["device_id"]) for e in events] == [
        ("firing", "pv-offline", "PV-907"),
        ("resolved", "pv-offline", "PV-907"),
    ]
    assert got.mqtt[0].topic == f"{prefix}/alerts/warning/pv/PV-907"


async def test_alerts_role_evaluates_without_writing(
    mosquitto: LocalMosquitto, influxdb: LocalInfluxDB, influx_db: str, tmp_path: Path
) -> None:
    webhook = Webhook()
    await webhook.start()
    settings = settings_for(mosquitto, influxdb, influx_db, tmp_path, webhook)
    prefix = settings.mqtt.topic_prefix
    got = Collected(influxdb, influx_db, webhook)
    letters: list[Message] = []
    now = int(time.time() * 1000)
    try:
        async with (
            mqtt_client(mosquitto, [f"{prefix}/alerts/#"], got.mqtt.append, f"col-{prefix}"),
            mqtt_client(mosquitto, [f"{prefix}/deadletter/#"], letters.append, f"dl-{prefix}"),
            running(settings, role=Role.ALERTS) as run,
            mqtt_client(mosquitto, client_id=f"pub-{prefix}") as pub,
        ):
            assert run.service.settings.mqtt.client_id.endswith("-alerts")
            await publish(pub, prefix, "pv", "PV-101", [{"ts": now, "status": "FAULT"}])
            await pub.publish(f"{prefix}/pv/PV-101", b"not json", qos=1)
            await wait_for(lambda: got.counts() == (1, 1, 1), 10, "notifications")
            await wait_for(lambda: run.service.stats.acked >= 2, 5, "both messages acked")
    finally:
        await webhook.stop()
    assert influxdb.count("pv_inverter", influx_db) == 0  # the ingest role writes readings
    assert letters == []  # …and dead-letters bad ones


async def test_write_calls_refused_without_a_configured_token(
    mosquitto: LocalMosquitto, influxdb: LocalInfluxDB, influx_db: str, tmp_path: Path
) -> None:
    settings = settings_for(mosquitto, influxdb, influx_db, tmp_path, Webhook(), token=None)
    async with running(settings) as run:
        status, body = await api("POST", f"{run.url}/api/alerts/1/ack", "anything", {"by": "x"})
        assert status == 403 and "ENVGRID_HTTP__TOKEN" in body["detail"]
        status, body = await api("GET", f"{run.url}/api/alerts")
        assert status == 200 and body == []


def test_rules_check_command_names_the_line(tmp_path: Path) -> None:
    broken = tmp_path / "rules.yaml"
    broken.write_text(RULES.replace("when: do_mg_l < 3", "when: do_mg_l => 3"), encoding="utf-8")
    res = run_envgrid("rules", "check", str(broken))
    assert res.returncode == 1
    assert (
        f"{broken}:7: rule 'do-low': unknown operator '=>' — use one of "
        ">, >=, <, <=, ==, !=, outside, in"
    ) in res.stderr
    assert "Traceback" not in res.stderr
