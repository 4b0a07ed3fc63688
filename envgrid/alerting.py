"""The alert engine inside the service: reading sink, timer, notification outbox, API router.

The process's :class:`~envgrid.roles.Role` decides whether the engine runs here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
from fastapi import APIRouter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from alerts.api import create_router
from alerts.dispatch import Dispatcher, RouteTarget, failed_counts
from alerts.engine import AlertEngine, Observation
from alerts.notify import DeliveryError, InfluxTarget, MqttTarget, Outbox, Target, WebhookTarget
from alerts.notify_api import create_notify_router
from alerts.receivers import build_receiver
from alerts.routing import RoutingError, load_routing
from alerts.rules import RuleError, RuleSet, load_rules
from alerts.store import AlertStore, KnownDevice, StoreError
from alerts.store_pg import PgAlertStore
from devices.registry import Registry
from envgrid.cluster.leader import Lease
from envgrid.roles import Role
from envgrid.settings import Settings
from ingest.pipeline import Accepted
from ingest.service import IngestService
from ingest.writer import Outcome

log = logging.getLogger("envgrid.alerting")


class AlertSetupError(RuntimeError):
    """The alert engine cannot start (bad rules, unusable store); one line per problem."""


def role_settings(settings: Settings, role: Role) -> Settings:
    """Settings adjusted for a role: the alerts role has its own client id, spool and no $share."""
    if role.ingests:
        return settings
    if not settings.alerts.enabled:
        raise AlertSetupError(
            "--role alerts with alerts disabled: set ENVGRID_ALERTS__ENABLED=true"
        )
    m, ing = settings.mqtt, settings.ingest
    # Its own persistent session (so it never takes the ingest workers' messages) and its own
    # spool folder (it writes no readings; the ingest role owns the main spool).
    mqtt = m.model_copy(
        update={"client_id": m.effective_client_id() + "-alerts", "shared_group": ""}
    )
    ingest = ing.model_copy(update={"spool_dir": ing.spool_dir / "alerts-role"})
    return settings.model_copy(update={"mqtt": mqtt, "ingest": ingest})


@dataclass
class Alerting:
    """The engine, its store and outbox, and the tasks that drive them."""

    settings: Settings
    engine: AlertEngine
    store: AlertStore
    outbox: Outbox
    router: APIRouter
    dispatcher: Dispatcher | None = None
    # With a cluster database: the engine acts only while it holds this lease (docs/deploy.md).
    leader: Leadership | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def sink(self, res: Accepted) -> None:
        """IngestService sink: evaluate one validated reading."""
        if self.leader is not None and not self.leader.leading:
            return  # a standby: the leader evaluates this reading (it subscribes unshared too)
        kind, reading, device = res.kind, res.reading, res.device
        series = ""
        for attr, key in kind.payload_tags.items():
            v = getattr(reading, attr, None)
            if v is not None:
                series = f"{series},{key}={v}" if series else f"{key}={v}"
        self.engine.observe(
            Observation(
                kind.name,
                device.id,
                device.site,
                device.county,
                res.ts_ms,
                kind.values(reading, device),
                series,
            )
        )

    async def start(self) -> None:
        """Start the timer and the outbox (a cluster standby: wait to become the leader)."""
        if self.leader is not None:
            self.leader.task = asyncio.get_running_loop().create_task(self._lead())
            return
        self._start_engine()

    def _start_engine(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._tick_loop()),
            loop.create_task(self.outbox.run()),
        ]
        log.info(
            "alerts: %d rules (%s), store %s, targets %s",
            len(self.engine.rules),
            ", ".join(self.engine.rules.sources) or "defaults",
            self.store.path,
            ", ".join(self.outbox.names) or "none",
        )

    async def _tick_loop(self) -> None:
        interval = self.settings.alerts.tick_interval.total_seconds()
        while True:
            await asyncio.sleep(interval)
            try:
                self.engine.tick()
            except Exception:  # keep ticking: the next tick retries what failed
                log.exception("alert tick failed")
            if self.dispatcher is not None:
                try:
                    self.dispatcher.tick()
                except Exception:  # the next tick retries: groups stay pending in the store
                    log.exception("notification grouping tick failed")

    async def _lead(self) -> None:
        """Standby until the lease is ours; lead while we renew it; step down when we cannot."""
        g = self.leader
        assert g is not None
        c = self.settings.cluster
        renew, step_down_after = c.renew.total_seconds(), (c.failover - c.renew).total_seconds()
        last_ok = time.monotonic()
        while True:
            try:
                if g.lease is None:
                    g.lease = await Lease.connect(
                        c.database_url(), "alerts", c.member(), c.failover
                    )
                held = await g.lease.acquire()
                last_ok = time.monotonic()
            except psycopg.Error as e:
                held = g.leading and time.monotonic() - last_ok < step_down_after
                log.warning("alerts: cluster database: %s", str(e).strip().splitlines()[0])
                if g.lease is not None:
                    with contextlib.suppress(Exception):
                        await g.lease.close()
                    g.lease = None
            if held and not g.leading:
                # Take over from the store: open episodes (pending ones fire on our timer),
                # silences, grouping and escalation state, the outbox.
                self.engine.__init__(**g.engine_args)  # type: ignore[misc]
                g.leading = True
                self._start_engine()
                log.warning("alerts: this process is the leader now (member %s)", c.member())
            elif not held and g.leading:
                log.error("alerts: lost the leader lease: standing by")
                g.leading = False
                await self._stop_engine()
            await asyncio.sleep(renew)

    async def _stop_engine(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def stop(self, grace_s: float = 3.0) -> None:
        """Stop the timer, persist, deliver what is due within the grace, close the store."""
        g = self.leader
        if g is not None:
            if g.task is not None:
                g.task.cancel()
                await asyncio.gather(g.task, return_exceptions=True)
            if not g.leading:
                await self.outbox.close()
                self.store.close()
                if g.lease is not None:
                    await g.lease.close()
                return
        tick = self._tasks[0] if self._tasks else None
        if tick is not None:
            tick.cancel()
            await asyncio.gather(tick, return_exceptions=True)
        self.engine.flush()
        if self.dispatcher is not None:
            with contextlib.suppress(Exception):  # a group not flushed now is flushed next run
                self.dispatcher.tick()
        for t in self._tasks[1:]:
            t.cancel()
        await asyncio.gather(*self._tasks[1:], return_exceptions=True)
        if not await self.outbox.drain(grace_s):
            log.info("alerts: undelivered notifications stay queued for the next run")
        await self.outbox.close()
        self.store.close()
        if g is not None and g.lease is not None:
            with contextlib.suppress(psycopg.Error):
                await g.lease.release()  # a standby takes over at its next try
            await g.lease.close()


@dataclass
class Leadership:
    """The leader lease of a cluster's alert engines, and how to rebuild ours on taking over."""

    engine_args: dict[str, Any]
    leading: bool = False
    lease: Lease | None = None
    task: asyncio.Task[None] | None = None


def build_alerting(
    settings: Settings, service: IngestService, registry: Registry, *, role: Role = Role.ALL
) -> Alerting | None:
    """The alert engine wired into ``service`` (None for the ingest role or when disabled)."""
    a = settings.alerts
    if not role.evaluates or not a.enabled:
        return None
    try:
        rules = load_rules(a.rules)
    except RuleError as e:
        raise AlertSetupError("\n".join(e.errors)) from None
    try:
        routing = load_routing(a.routing)
    except RoutingError as e:
        raise AlertSetupError("\n".join(e.errors)) from None
    c = settings.cluster
    try:
        store = (
            PgAlertStore(
                c.database_url(),
                claimer=c.member(),
                claim_ms=int(c.failover.total_seconds() * 1000),
            )
            if c.enabled
            else AlertStore(a.store)
        )
    except StoreError as e:
        raise AlertSetupError(str(e)) from None
    targets: list[Target] = []
    if a.mqtt:
        targets.append(MqttTarget(service.mqtt.publish, settings.mqtt.topic_prefix))
    if a.webhook_url:
        secret = a.webhook_secret.get_secret_value() if a.webhook_secret else None
        if secret is None:
            log.warning("alerts: webhook without ENVGRID_ALERTS__WEBHOOK_SECRET: unsigned")
        targets.append(WebhookTarget(a.webhook_url, secret))
    if a.influx:

        async def write(body: bytes) -> None:
            res = await service.writer.write(body, 1)
            if res.outcome is not Outcome.OK:
                permanent = res.outcome is Outcome.REJECT  # InfluxDB refuses this line for good
                raise DeliveryError(f"InfluxDB {res.status}: {res.message}", permanent=permanent)

        targets.append(InfluxTarget(write))
    receivers = {name: build_receiver(conf) for name, conf in routing.receivers.items()}
    dispatcher: Dispatcher | None = None
    if routing.receivers:
        dispatcher = Dispatcher(
            store, routing, receivers, console_url=a.console_url, enrich=_enricher(rules)
        )
        if routing.routes:
            targets.append(RouteTarget(dispatcher))
    engine_targets = [t.name for t in targets]
    outbox = Outbox(
        store, [*targets, *receivers.values()], backoff_max_s=a.retry_max.total_seconds()
    )
    if dispatcher is not None:
        dispatcher.on_enqueue = outbox.wake
    expected = [KnownDevice(d.kind, d.id, d.site, d.county) for d in registry if d.kind is not None]
    engine_args: dict[str, Any] = {
        "rules": rules,
        "store": store,
        "targets": engine_targets,
        "expected": expected,
        "on_enqueue": outbox.wake,
    }
    engine = AlertEngine(**engine_args)
    token = settings.http.token.get_secret_value() if settings.http.token else None
    router = APIRouter()
    router.include_router(create_router(engine, token))
    router.include_router(create_notify_router(store, dispatcher, token))
    alerting = Alerting(settings, engine, store, outbox, router, dispatcher)
    if c.enabled:
        alerting.leader = Leadership(engine_args)
    service.sinks.append(alerting.sink)
    service.metrics.register(_AlertMetrics(alerting))
    return alerting


def _enricher(rules: RuleSet) -> Callable[[dict[str, Any]], None]:
    """Adds what people read but the event lacks: the rule's limit as written."""

    def enrich(event: dict[str, Any]) -> None:
        rule = rules.by_id.get(str(event.get("rule_id")))
        if rule is None:
            return
        if rule.when is not None:
            event.setdefault("limit", rule.when.text)
        elif rule.nodata_ms:
            event.setdefault("limit", f"nodata {rule.nodata_ms // 60_000} min")
        zh = getattr(rule, "description_zh", "")
        if zh:
            event.setdefault("description_zh", zh)

    return enrich


class _AlertMetrics(Collector):
    """Prometheus gauges: open alerts by state, outbox backlog and deliveries by target."""

    def __init__(self, alerting: Alerting) -> None:
        self.a = alerting

    def collect(self) -> Iterator[GaugeMetricFamily]:
        open_ = GaugeMetricFamily("envgrid_alerts_open", "Open alerts by state", labels=["state"])
        for state, n in self.a.engine.open_count().items():
            open_.add_metric([state], n)
        yield open_
        backlog = GaugeMetricFamily(
            "envgrid_alert_outbox_backlog", "Notifications not yet delivered", labels=["target"]
        )
        with contextlib.suppress(Exception):  # the store may be closed during shutdown
            queued = self.a.store.outbox_backlog()
            for name in self.a.outbox.names:
                backlog.add_metric([name], queued.get(name, 0))
        yield backlog
        sent = GaugeMetricFamily(
            "envgrid_alert_notifications_delivered",
            "Notifications delivered since start",
            labels=["target"],
        )
        for name, n in self.a.outbox.delivered.items():
            sent.add_metric([name], n)
        yield sent
        failed = GaugeMetricFamily(
            "envgrid_alert_notifications_failed",
            "Notifications a target refused for good (bad signature, token, address)",
            labels=["target"],
        )
        with contextlib.suppress(Exception):
            counts = failed_counts(self.a.store)
            for name in self.a.outbox.names:
                failed.add_metric([name], counts.get(name, 0))
        yield failed
        if self.a.leader is not None:
            leader = GaugeMetricFamily(
                "envgrid_alerts_leader", "1 while this alert engine is the cluster's leader"
            )
            leader.add_metric([], 1 if self.a.leader.leading else 0)
            yield leader
