"""``envgrid run --workers N``: N ingest processes on one host, one alert engine, one HTTP port.

Each worker is ``envgrid run --role ingest`` in a process of its own: its own MQTT persistent
session (client id ``<id>-w<i>``), its own spool folder (``<spool>/worker-<i>``), subscribed
through the shared subscription ``$share/<group>/…`` so the broker splits the stream between
the workers (MQTT v5; Mosquitto, EMQX and HiveMQ support it). Delivery is each worker's own
(acks after InfluxDB or the spool took a batch), so the zero-loss rule holds per worker; a
worker that dies leaves its unacknowledged messages in its session, and the supervisor
restarts it under the same client id, which takes them over. The alert engine needs every
reading of a device in one place, so when alerts are enabled one more process runs
``--role alerts`` (subscribed without sharing, writing no readings).

This process only supervises, and serves the HTTP port: /healthz, /readyz (ready when every
child is), /metrics (every child's metrics with a ``worker`` label: "0", "1", …, "alerts", plus
the supervisor's restarts), and every other path (the alert API, the console) proxied to the
alerts process. One scrape target and one URL for operators, whatever N is; the children
listen on 127.0.0.1 only, on ports this process picks.

Restart policy: a child that exits while we are not stopping is started again after a back-off
(1 s doubling to 30 s; back to 1 s once it ran 60 s). SIGTERM/SIGINT are forwarded; the exit
code is 0 when every child exited with 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector, CollectorRegistry

from envgrid.cluster.member import ClusterMember
from envgrid.ports import free_port
from envgrid.roles import Role
from envgrid.settings import Settings
from ingest.http import client_address

log = logging.getLogger("envgrid.workers")

BACKOFF_MIN_S = 1.0
BACKOFF_MAX_S = 30.0
STABLE_S = 60.0  # a child that ran this long starts the back-off from the minimum again
DEFAULT_GROUP = "envgrid"
# Request headers not forwarded by the proxy (hop-by-hop, or set by aiohttp itself).
_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "upgrade", "host", "content-length"}
)


@dataclass
class Child:
    """One supervised process: an ingest worker or the alerts process."""

    label: str  # "0", "1", … or "alerts": the metrics label and the log name
    role: Role
    worker: int | None
    proc: asyncio.subprocess.Process | None = None
    port: int = 0
    started: float = 0.0
    restarts: int = 0
    backoff: float = BACKOFF_MIN_S
    exit_codes: list[int] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    @property
    def name(self) -> str:
        return "alerts process" if self.role is Role.ALERTS else f"worker {self.label}"


def shared_group(settings: Settings) -> str:
    """The $share group the workers subscribe through (the configured one, else 'envgrid')."""
    return settings.mqtt.shared_group or DEFAULT_GROUP


class Supervisor:
    """Starts, watches and stops the children; serves the aggregated HTTP API."""

    def __init__(
        self, settings: Settings, workers: int, config: Path | None, log_level: str
    ) -> None:
        self.settings = settings
        self.config = config
        self.log_level = log_level
        self.group = shared_group(settings)
        self.children = [Child(str(i), Role.INGEST, i) for i in range(workers)]
        if settings.alerts.enabled:
            self.children.append(Child("alerts", Role.ALERTS, None))
        self._stopping = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self._scraped: dict[str, str] = {}  # label -> the child's last /metrics text
        self.port = settings.http.port
        self.metrics = CollectorRegistry()
        self.metrics.register(_Merged(self))
        # With a cluster database: this host is one member (docs/deploy.md).
        self.cluster = (
            ClusterMember(settings, workers, self.group, config, log_level, _die_with_parent)
            if settings.cluster.enabled
            else None
        )

    # ------------------------------------------------------------------ children
    def _command(self, child: Child) -> list[str]:
        cmd = [sys.executable, "-m", "envgrid.workers", "run", "--role", child.role]
        cmd += ["--log-level", self.log_level]
        if child.worker is not None:
            cmd += ["--worker", str(child.worker)]
        if self.config is not None:
            cmd += ["--config", str(self.config)]
        return cmd

    def _environment(self, child: Child) -> dict[str, str]:
        env = dict(os.environ)
        env["ENVGRID_HTTP__HOST"] = "127.0.0.1"
        env["ENVGRID_HTTP__PORT"] = str(child.port)
        # Console and API requests reach the child through _proxy, which names the client in
        # X-Forwarded-For: the supervisor is the one proxy the child believes.
        env["ENVGRID_HTTP__TRUSTED_PROXIES"] = '["127.0.0.1"]'
        if child.role is Role.INGEST:
            env["ENVGRID_MQTT__SHARED_GROUP"] = self.group
        if self.cluster is not None:
            env["ENVGRID_MQTT__CLIENT_ID"] = self.cluster.client_id_base()
        return env

    async def _spawn(self, child: Child) -> None:
        child.port = free_port()  # a fresh port per start: the old one may linger in TIME_WAIT
        child.proc = await asyncio.create_subprocess_exec(
            *self._command(child),
            env=self._environment(child),
            stdin=asyncio.subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        child.started = time.monotonic()
        log.info("%s started (pid %d, HTTP 127.0.0.1:%d)", child.name, child.proc.pid, child.port)

    async def _watch(self, child: Child) -> None:
        """Keep one child running until we stop."""
        while True:
            assert child.proc is not None
            code = await child.proc.wait()
            child.exit_codes.append(code)
            if self._stopping.is_set():
                return
            ran = time.monotonic() - child.started
            if ran >= STABLE_S:
                child.backoff = BACKOFF_MIN_S
            log.error(
                "%s (pid %d) exited with %s after %.0f s: restarting in %.0f s",
                child.name,
                child.proc.pid,
                _describe_exit(code),
                ran,
                child.backoff,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), child.backoff)
            if self._stopping.is_set():
                return
            child.backoff = min(child.backoff * 2, BACKOFF_MAX_S)
            child.restarts += 1
            if self.cluster is not None and child.role is Role.INGEST:
                # Fenced (our lease lost): restart only once we hold our sessions again.
                await _first(self.cluster.joined.wait(), self._stopping.wait())
                if self._stopping.is_set():
                    return
            await self._spawn(child)

    async def run(self) -> int:
        """Run until SIGTERM/SIGINT; the exit code is 0 when every child exited cleanly."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopping.set)
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        try:
            await self._serve()
            cluster_tasks: list[asyncio.Task[None]] = []
            if self.cluster is not None:
                if not await self.cluster.join(self._stopping):
                    return 0
                cluster_tasks = [
                    asyncio.create_task(self.cluster.run(self._stopping)),
                    asyncio.create_task(self._fence_loop(self.cluster)),
                ]
            for child in self.children:
                await self._spawn(child)
            log.info(
                "%d ingest workers sharing $share/%s/…%s; HTTP on http://%s:%d",
                sum(c.role is Role.INGEST for c in self.children),
                self.group,
                ", one alerts process" if self.settings.alerts.enabled else "",
                self.settings.http.host,
                self.port,
            )
            watchers = [asyncio.create_task(self._watch(c)) for c in self.children]
            await self._stopping.wait()
            log.info("signal received: stopping %d processes", len(self.children))
            await self._stop_children()
            await asyncio.gather(*watchers, return_exceptions=True)
            if self.cluster is not None:
                await asyncio.gather(*cluster_tasks, return_exceptions=True)
                await self.cluster.leave()
        finally:
            if self._runner is not None:
                await self._runner.cleanup()
            await self._session.close()
        last = [c.exit_codes[-1] if c.exit_codes else None for c in self.children]
        return 0 if all(code == 0 for code in last) else 1

    async def _fence_loop(self, cluster: ClusterMember) -> None:
        """Our lease is lost: kill the ingest workers at once (before anyone may adopt their
        sessions; what they had not acked is redelivered), then wait to join again."""
        while not self._stopping.is_set():
            await _first(cluster.fenced.wait(), self._stopping.wait())
            if self._stopping.is_set():
                return
            for c in self.children:
                if c.role is Role.INGEST and c.running and c.proc is not None:
                    with contextlib.suppress(ProcessLookupError):
                        c.proc.kill()
            if not await cluster.join(self._stopping):
                return

    async def _stop_children(self) -> None:
        running = [c for c in self.children if c.running]
        for c in running:
            with contextlib.suppress(ProcessLookupError):
                assert c.proc is not None
                c.proc.send_signal(signal.SIGTERM)
        # Each child has its own grace period for making its batches durable; then some slack.
        grace = self.settings.ingest.shutdown_grace.total_seconds() + 10
        waits = [c.proc.wait() for c in running if c.proc is not None]
        _done, pending = await asyncio.wait(
            [asyncio.ensure_future(w) for w in waits], timeout=grace
        )
        if pending:
            for c in running:
                if c.running and c.proc is not None:
                    log.error("%s did not stop within %.0f s: killing it", c.name, grace)
                    with contextlib.suppress(ProcessLookupError):
                        c.proc.kill()
            await asyncio.wait(pending, timeout=10)

    # ------------------------------------------------------------------ HTTP
    async def _serve(self) -> None:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_route("*", "/{tail:.*}", self._proxy)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.http.host, self.settings.http.port)
        try:
            await site.start()
        except OSError as e:
            raise OSError(
                f"cannot serve HTTP on {self.settings.http.host}:{self.settings.http.port} "
                f"({e.strerror}); set ENVGRID_HTTP__PORT"
            ) from None
        self.port = int(self._runner.addresses[0][1])  # the bound one, also for port 0

    async def _get(self, child: Child, path: str) -> tuple[int, bytes]:
        """A child's answer, or (0, b"") when it does not answer."""
        if not child.running or self._session is None:
            return 0, b""
        try:
            async with self._session.get(f"http://127.0.0.1:{child.port}{path}") as r:
                return r.status, await r.read()
        except (aiohttp.ClientError, TimeoutError):
            return 0, b""

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "status": "ok",
                "processes": {
                    c.label: {
                        "role": c.role,
                        "state": "running" if c.running else "restarting",
                        "pid": c.proc.pid if c.proc is not None and c.running else None,
                        "restarts": c.restarts,
                    }
                    for c in self
                },
            }
        )

    async def _readyz(self, request: web.Request) -> web.Response:
        answers = await asyncio.gather(*(self._get(c, "/readyz") for c in self))
        reasons: list[str] = []
        for child, (status, body) in zip(self, answers, strict=True):
            if status == 0:
                reasons.append(f"{child.name}: not answering (starting or restarting)")
                continue
            why: list[str] = []
            with contextlib.suppress(ValueError, AttributeError):
                why = [f"{child.name}: {r}" for r in json.loads(body).get("reasons", [])]
            if status != 200:
                reasons += why or [f"{child.name}: not ready (HTTP {status})"]
        ok = not reasons
        return web.json_response({"ready": ok, "reasons": reasons}, status=200 if ok else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        answers = await asyncio.gather(*(self._get(c, "/metrics") for c in self))
        for child, (status, body) in zip(self, answers, strict=True):
            child_metrics = body.decode("utf-8", "replace") if status == 200 else ""
            self._scraped[child.label] = child_metrics
        body = generate_latest(self.metrics)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _proxy(self, request: web.Request) -> web.StreamResponse:
        """Everything but health and metrics goes to the alerts process (alert API, console)."""
        target = next((c for c in self if c.role is Role.ALERTS), None)
        if target is None or self._session is None:
            return web.json_response({"detail": "Not Found"}, status=404)
        if not target.running:
            return web.json_response({"detail": "alerts process restarting"}, status=503)
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in _HOP and k.lower() != "x-forwarded-for"
        }
        # The client as ENVGRID_HTTP__TRUSTED_PROXIES lets us find it: a client's own
        # X-Forwarded-For must not reach the child, which believes ours (sign-in throttling).
        headers["X-Forwarded-For"] = client_address(
            request.remote,
            request.headers.get("X-Forwarded-For"),
            self.settings.http.trusted_proxies,
        )
        url = f"http://127.0.0.1:{target.port}{request.rel_url}"
        try:
            async with self._session.request(
                request.method,
                url,
                headers=headers,
                data=await request.read() if request.can_read_body else None,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=None, sock_read=300),
            ) as upstream:
                resp = web.StreamResponse(status=upstream.status, reason=upstream.reason)
                for k, v in upstream.headers.items():
                    if k.lower() not in _HOP and k.lower() != "content-encoding":
                        resp.headers.add(k, v)
                await resp.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await resp.write(chunk)
                await resp.write_eof()
                return resp
        except (aiohttp.ClientError, TimeoutError) as e:
            return web.json_response({"detail": f"alerts process: {e}"}, status=502)

    def __iter__(self) -> Iterator[Child]:
        return iter(self.children)


class _Merged(Collector):
    """The children's last scraped metrics, each sample labelled with its worker."""

    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup

    def collect(self) -> Iterator[Metric]:
        merged: dict[str, Metric] = {}
        for label, text in self.sup._scraped.items():
            try:
                families = list(text_string_to_metric_families(text))
            except ValueError as e:
                log.warning("metrics of worker %s unreadable: %s", label, e)
                continue
            for fam in families:
                m = merged.get(fam.name)
                if m is None:
                    m = merged[fam.name] = Metric(fam.name, fam.documentation, fam.type, fam.unit)
                for s in fam.samples:
                    m.add_sample(s.name, {**s.labels, "worker": label}, s.value, s.timestamp)
        yield from merged.values()
        up = GaugeMetricFamily(
            "envgrid_worker_up", "1 while the supervised process runs", labels=["worker"]
        )
        restarts = GaugeMetricFamily(
            "envgrid_worker_restarts",
            "Times the supervisor restarted the process",
            labels=["worker"],
        )
        for c in self.sup:
            up.add_metric([c.label], 1 if c.running else 0)
            restarts.add_metric([c.label], c.restarts)
        yield up
        yield restarts


async def _first(*aws: Coroutine[Any, Any, Any]) -> None:
    """Wait until the first of ``aws`` completes; cancel the rest."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the supervisor dies (even by SIGKILL), so no
    worker is left running unsupervised; it then shuts down cleanly, its session keeping what
    it had not acknowledged. Linux only (prctl PR_SET_PDEATHSIG); elsewhere a no-op."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


def _describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
    return f"code {code}"


def check_startup(settings: Settings) -> None:
    """What would stop every child at start-up, checked once here with the usual clear error:
    the device registry, the HJ 212 stations in it and the alert rules."""
    from alerts.rules import RuleError, load_rules
    from devices.registry import load_registry
    from envgrid.alerting import AlertSetupError
    from hj212.gateway import ServiceGateway

    ServiceGateway(settings, load_registry(settings.devices.registry))
    if settings.alerts.enabled:
        try:
            load_rules(settings.alerts.rules)
        except RuleError as e:
            raise AlertSetupError("\n".join(e.errors)) from None


async def run_workers(settings: Settings, workers: int, config: Path | None, log_level: str) -> int:
    """Supervise ``workers`` ingest processes (and the alerts process) until a signal."""
    return await Supervisor(settings, workers, config, log_level).run()


if __name__ == "__main__":  # the children: python -m envgrid.workers run --role … --worker …
    from envgrid.cli.main import main

    main()
