"""Notification delivery: an outbox in the alert store, drained per target with retry and backoff.

The engine writes a notification into the outbox in the same transaction as the transition that
causes it; this module delivers it to each target and marks it delivered only once the target
took it (MQTT PUBACK, HTTP 2xx, InfluxDB 2xx). A target that is down keeps its notifications
queued, in order, and receives them once it is back. Delivery is at least once: a crash between
"taken" and "marked" sends that one notification again, with the same ``event_id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import aiohttp

from alerts.store import AlertStore, OutboxItem
from devices.lineproto import encode_line

log = logging.getLogger("envgrid.alerts.notify")

SIGNATURE_HEADER = "X-Envgrid-Signature"
# (topic, payload, qos) → resolves once the broker acknowledged (PUBACK for QoS 1).
Publish = Callable[[str, bytes, int], Awaitable[Any]]
# Line protocol body → returns when stored; raises DeliveryError when not.
InfluxWrite = Callable[[bytes], Awaitable[None]]


class DeliveryError(Exception):
    """A target did not take a notification; ``permanent`` means retrying cannot help.

    ``retry_after_s`` is the wait the target asked for (a vendor's rate limit): the next attempt
    comes no sooner than that, whatever the backoff says.
    """

    def __init__(
        self, message: str, *, permanent: bool = False, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after_s = retry_after_s


class Target(Protocol):
    """Somewhere notifications go; ``name`` keys its rows in the outbox."""

    name: str

    async def send(self, event: dict[str, Any], body: str) -> None:
        """Deliver one notification; raise DeliveryError if the target did not take it."""

    async def close(self) -> None:
        """Release connections."""


class MqttTarget:
    """Publishes to ``<prefix>/alerts/<severity>/<kind>/<device_id>`` with QoS 1."""

    name = "mqtt"

    def __init__(self, publish: Publish, prefix: str, *, timeout_s: float = 10.0) -> None:
        self._publish = publish
        self.prefix = prefix
        self.timeout_s = timeout_s

    def topic(self, event: dict[str, Any]) -> str:
        """The topic of one notification."""
        return f"{self.prefix}/alerts/{event['severity']}/{event['kind']}/{event['device_id']}"

    async def send(self, event: dict[str, Any], body: str) -> None:
        """Publish and wait for the broker's PUBACK."""
        try:
            await asyncio.wait_for(
                self._publish(self.topic(event), body.encode(), 1), timeout=self.timeout_s
            )
        except TimeoutError as e:
            raise DeliveryError(f"no PUBACK within {self.timeout_s:.0f} s") from e
        except Exception as e:
            raise DeliveryError(f"{type(e).__name__}: {e}") from e

    async def close(self) -> None:
        """Nothing to release: the service owns the MQTT connection."""


class WebhookTarget:
    """POSTs the JSON to a URL, signed with ``X-Envgrid-Signature: sha256=<hex HMAC>``."""

    name = "webhook"

    def __init__(self, url: str, secret: str | None, *, timeout_s: float = 10.0) -> None:
        self.url = url
        self._secret = secret.encode() if secret else None
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def sign(self, body: bytes) -> str | None:
        """The signature header value of a body (None without a secret)."""
        if self._secret is None:
            return None
        return "sha256=" + hmac.new(self._secret, body, hashlib.sha256).hexdigest()

    async def send(self, event: dict[str, Any], body: str) -> None:
        """POST and require a 2xx answer."""
        data = body.encode()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "envgrid-alerts",
            "X-Envgrid-Event": str(event.get("event", "")),
        }
        sig = self.sign(data)
        if sig is not None:
            headers[SIGNATURE_HEADER] = sig
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.post(self.url, data=data, headers=headers) as resp:
                if resp.status >= 300:
                    text = (await resp.text())[:200]
                    raise DeliveryError(f"HTTP {resp.status} {text}".strip())
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            raise DeliveryError(f"{type(e).__name__}: {e}".rstrip(": ")) from e

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()


class InfluxTarget:
    """Writes each notification as a point of the ``alerts`` measurement (Grafana annotations)."""

    name = "influx"

    def __init__(self, write: InfluxWrite, measurement: str = "alerts") -> None:
        self._write = write
        self.measurement = measurement

    def line(self, event: dict[str, Any]) -> str:
        """The notification as one line of line protocol."""
        tags = [
            (k, str(event.get(k) or ""))
            for k in ("rule_id", "severity", "kind", "device_id", "site", "county", "state")
        ]
        fields: list[tuple[str, float | int | bool | str]] = []
        v = event.get("value")
        # `value` stays a float field: a string value (a status) would conflict with it.
        if isinstance(v, int | float) and not isinstance(v, bool):
            fields.append(("value", float(v)))
        fields += [("message", str(event.get("message", ""))), ("alert_id", int(event["alert_id"]))]
        line = encode_line(self.measurement, tags, fields, int(event["ts_ms"]))
        assert line is not None  # message and alert_id are always storable
        return line

    async def send(self, event: dict[str, Any], body: str) -> None:
        """Write the point."""
        await self._write(self.line(event).encode())

    async def close(self) -> None:
        """Nothing to release: the service owns the writer."""


class Outbox:
    """Delivers queued notifications to each target in order, retrying with backoff."""

    def __init__(
        self,
        store: AlertStore,
        targets: Sequence[Target],
        *,
        clock: Callable[[], float] = time.time,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 60.0,
    ) -> None:
        self.store = store
        self.targets = list(targets)
        self._clock = clock
        self._initial = backoff_initial_s
        self._max = backoff_max_s
        self._events = {t.name: asyncio.Event() for t in self.targets}
        self._down: dict[str, str] = {}  # target → first error of the current outage
        self.delivered = {t.name: 0 for t in self.targets}
        self.failed: dict[str, int] = {}  # refused for good since start, by target

    @property
    def names(self) -> list[str]:
        """Target names, as the engine writes them into the outbox."""
        return [t.name for t in self.targets]

    def wake(self) -> None:
        """New notifications were queued: deliver them now."""
        for ev in self._events.values():
            ev.set()

    async def run(self) -> None:
        """Deliver forever (one loop per target, so a dead webhook does not hold up MQTT)."""
        stale = {t: n for t, n in self.store.outbox_backlog().items() if t not in self._events}
        for t, n in stale.items():
            log.warning("%d notifications queued for target %r, which is not configured now", n, t)
        await asyncio.gather(*(self._loop(t) for t in self.targets))

    async def close(self) -> None:
        """Close the targets' connections."""
        for t in self.targets:
            with contextlib.suppress(Exception):
                await t.close()

    async def _loop(self, target: Target) -> None:
        event = self._events[target.name]
        while True:
            item = self.store.next_for(target.name)
            if item is None:
                event.clear()
                await event.wait()
                continue
            wait = item.next_ms / 1000 - self._clock()
            if wait > 0:
                # Retry time not reached; order is kept, so later items wait too.
                await asyncio.sleep(wait)
                continue
            await self.deliver_one(target, item)

    async def deliver_one(self, target: Target, item: OutboxItem) -> bool:
        """Try one notification once; record the outcome. Whether it was delivered."""
        try:
            await target.send(json.loads(item.payload), item.payload)
        except DeliveryError as e:
            return self._failed(
                target, item, str(e), permanent=e.permanent, retry_after_s=e.retry_after_s
            )
        except Exception as e:  # a bug in a target must not stop delivery to the others
            log.exception("alert target %s failed unexpectedly", target.name)
            return self._failed(target, item, f"{type(e).__name__}: {e}", permanent=False)
        now = int(self._clock() * 1000)
        with self.store.transaction():
            self.store.delivered(item.id, now)
        self.delivered[target.name] += 1
        if target.name in self._down:
            log.info(
                "alert target %s is back (down since: %s): delivering the queue",
                target.name,
                self._down.pop(target.name),
            )
        return True

    def _failed(
        self,
        target: Target,
        item: OutboxItem,
        error: str,
        *,
        permanent: bool,
        retry_after_s: float | None = None,
    ) -> bool:
        now = int(self._clock() * 1000)
        with self.store.transaction():
            if permanent:
                self.store.give_up(item.id, now, error)
            else:
                attempts = item.attempts + 1
                delay = min(self._max, self._initial * 2 ** (attempts - 1))
                delay *= random.uniform(0.8, 1.0)  # spread retries of many processes
                if retry_after_s is not None:
                    delay = max(delay, retry_after_s)
                self.store.retry_later(item.id, attempts, now + int(delay * 1000), error)
        if permanent:
            self.failed[target.name] = self.failed.get(target.name, 0) + 1
            log.error(
                "alert target %s refused notification %d for good: %s", target.name, item.id, error
            )
        elif target.name not in self._down:
            self._down[target.name] = error
            log.warning(
                "alert target %s unavailable (%s): notifications stay queued and are retried",
                target.name,
                error,
            )
        return False

    async def drain(self, timeout_s: float) -> bool:
        """Deliver what is due now, for up to ``timeout_s`` (on shutdown); whether all went."""
        deadline = time.monotonic() + timeout_s
        for target in self.targets:
            while time.monotonic() < deadline:
                item = self.store.next_for(target.name)
                if item is None or item.next_ms > self._clock() * 1000:
                    break
                try:
                    ok = await asyncio.wait_for(
                        self.deliver_one(target, item), max(0.01, deadline - time.monotonic())
                    )
                except TimeoutError:
                    break
                if not ok:
                    break
        return not self.store.outbox_backlog()
