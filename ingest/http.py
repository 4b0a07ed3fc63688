"""The service's HTTP server: health, readiness and Prometheus metrics (more routers plug in).

Runs uvicorn inside the service's own event loop, so the handlers read live state directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import uvicorn
from fastapi import APIRouter, FastAPI, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry
from pydantic import BaseModel

log = logging.getLogger("envgrid.http")

Readiness = Callable[[], tuple[bool, list[str]]]


class Readyz(BaseModel):
    """Whether the service takes readings now, and if not, why."""

    ready: bool
    reasons: list[str]


def create_app(
    metrics: CollectorRegistry, readiness: Readiness, routers: list[APIRouter] | None = None
) -> FastAPI:
    """The FastAPI app with /healthz, /readyz, /metrics and any extra routers."""
    app = FastAPI(
        title="envgrid",
        version="0.1.0",
        description="Ingestion of environment and energy readings: health, metrics, "
        "alerts and devices. The schema is at /openapi.json; open it in any OpenAPI viewer.",
        # No /docs or /redoc: FastAPI's pages load Swagger UI and ReDoc from a CDN, scripts
        # from a third party on the console's origin. Nothing here serves them locally.
        docs_url=None,
        redoc_url=None,
    )

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["health"],
        response_model=Readyz,
        responses={503: {"model": Readyz, "description": "not ready: the reasons say why"}},
    )
    async def readyz() -> JSONResponse:
        """Readiness: connected to the broker and the spool below its high-water mark."""
        ok, why = readiness()
        return JSONResponse({"ready": ok, "reasons": why}, status_code=200 if ok else 503)

    @app.get(
        "/metrics",
        tags=["health"],
        response_class=PlainTextResponse,
        responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}}},
    )
    async def metrics_endpoint() -> Response:
        """Prometheus metrics."""
        return Response(generate_latest(metrics), media_type=CONTENT_TYPE_LATEST)

    for r in routers or []:
        app.include_router(r)
    return app


def client_address(peer: str | None, forwarded_for: str | None, trusted: Sequence[str]) -> str:
    """The client's address as uvicorn finds it: walking X-Forwarded-For from the right while
    the hop is a trusted proxy; the connecting ``peer`` itself when it is not one."""
    nets = [ipaddress.ip_network(t, strict=False) for t in trusted]

    def is_trusted(addr: str) -> bool:
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        return any(ip in n for n in nets)

    hop = peer or "?"
    if not forwarded_for or not is_trusted(hop):
        return hop
    for entry in reversed([e.strip() for e in forwarded_for.split(",") if e.strip()]):
        hop = entry
        if not is_trusted(hop):
            break
    return hop


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the service owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def install_signal_handlers(self) -> None:  # uvicorn < 0.29
        return


class HttpServer:
    """Serves an ASGI app on host:port as a task of the running loop."""

    def __init__(self, app: Any, host: str, port: int, trusted_proxies: Sequence[str] = ()) -> None:
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            loop="none",
            # uvicorn believes X-Forwarded-For from 127.0.0.1 unless told otherwise: a local
            # client could then claim any address (and a fresh sign-in allowance with it).
            # Only the configured proxies are believed (ENVGRID_HTTP__TRUSTED_PROXIES).
            proxy_headers=bool(trusted_proxies),
            forwarded_allow_ips=list(trusted_proxies) or [],
            server_header=False,
        )
        self.server = _Server(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start serving; raises if the port cannot be bound."""
        self._task = asyncio.get_running_loop().create_task(self.server.serve())
        while not self.server.started:
            if self._task.done():
                cfg = self.server.config
                with contextlib.suppress(SystemExit):  # uvicorn exits when it cannot bind
                    self._task.result()
                raise OSError(
                    f"cannot serve HTTP on {cfg.host}:{cfg.port} (port in use?); "
                    "set ENVGRID_HTTP__PORT"
                )
            await asyncio.sleep(0.02)

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        for s in self.server.servers:
            for sock in s.sockets:
                return int(sock.getsockname()[1])
        return int(self.server.config.port)

    async def stop(self) -> None:
        """Stop serving."""
        self.server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, timeout=5)
