"""The HTTP API of HJ 212 commands and station state.

``POST /api/hj212/commands`` (``{"mn", "cn", "params"}``, bearer token) queues a command;
``GET /api/hj212/commands?mn=&status=`` lists them newest first; ``GET /api/hj212/stations``
gives each station's state. Served by the process that runs the gateway, and with a shared
store (gateways on several hosts, docs/deploy.md) by any process of any host: commands and
station state are then read from PostgreSQL, and a command queued there is sent by whichever
gateway holds its station (docs/hj212.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated
from zoneinfo import ZoneInfo

import psycopg
from fastapi import APIRouter, Body, Depends, HTTPException, Query, status
from pydantic import BaseModel, Field

from alerts.api import bearer_guard
from hj212.commands import COMMANDS, STATUSES, Command, CommandError, new_command
from hj212.config import Hj212Settings
from hj212.dispatch import Dispatcher
from hj212.intake import Station
from hj212.store_pg import PgCommandStore, SharedStation

__all__ = ["CommandIn", "CommandOut", "SharedApi", "StationOut", "create_router"]

log = logging.getLogger("envgrid.hj212.commands")


@dataclass
class SharedApi:
    """The shared store as the API uses it: every host's commands and stations."""

    store: PgCommandStore
    stations: Mapping[str, Station]  # the registry's
    cfg: Hj212Settings
    tz: ZoneInfo
    # Publishes the command on <prefix>/hj212cmd/<MN>, so the gateway holding the station
    # sends it at once rather than at its next look at the store.
    nudge: Callable[[Command], Awaitable[None]] | None = None

    def queue(self, mn: str, cn: str, params: dict[str, str], requested_by: str) -> Command:
        """Create and store a command for a station, wherever it is connected (or not)."""
        cmd = new_command(
            mn, cn, params, requested_by, self.tz, self.cfg.command_expiry.total_seconds()
        )
        waiting = self.store.open_commands(mn)
        if len(waiting) >= self.cfg.max_queued_commands:
            raise CommandError(
                f"MN {mn} already has {len(waiting)} open commands "
                "([hj212] max_queued_commands): wait for them to finish or expire"
            )
        self.store.add(cmd)
        return cmd


class CommandIn(BaseModel):
    """A command to queue for a station."""

    mn: str = Field(description="the station's MN", max_length=24)
    cn: str = Field(description=f"command code: {', '.join(sorted(COMMANDS))}", max_length=4)
    params: dict[str, str] = Field(default_factory=dict, description="CP keys, e.g. BeginTime")


class CommandOut(BaseModel):
    """A tracked command."""

    qn: str
    mn: str
    cn: str
    name: str
    params: dict[str, str]
    requested_by: str
    status: str
    qn_rtn: int | None
    exe_rtn: int | None
    packets: int
    attempts: int
    created_at: datetime
    updated_at: datetime
    expires_at: datetime
    result: dict[str, str]
    detail: str

    @classmethod
    def of(cls, c: Command) -> CommandOut:
        """From the store's command."""
        spec = COMMANDS.get(c.cn)
        return cls(
            qn=c.qn, mn=c.mn, cn=c.cn, name=spec.name if spec else "", params=c.params,
            requested_by=c.requested_by, status=c.status, qn_rtn=c.qn_rtn, exe_rtn=c.exe_rtn,
            packets=c.packets, attempts=c.attempts, created_at=_dt(c.created),
            updated_at=_dt(c.updated), expires_at=_dt(c.expires), result=c.result,
            detail=c.detail,
        )  # fmt: skip


class StationOut(BaseModel):
    """What the platform knows of one station."""

    mn: str
    device_id: str
    online: bool
    edition: str
    last_packet_at: datetime | None
    packets: int
    last_command: str
    last_result: str
    clock_offset_s: float | None
    gaps: int
    member: str | None = Field(
        default=None, description="cluster member whose gateway holds the connection"
    )
    peer: str | None = Field(default=None, description="the connection's source address")
    connected_at: datetime | None = None

    @classmethod
    def shared(cls, station: Station, row: SharedStation | None) -> StationOut:
        """From the shared table (a station no gateway has seen yet: not connected)."""
        if row is None:
            return cls(
                mn=station.mn, device_id=station.device.id, online=False, edition="",
                last_packet_at=None, packets=0, last_command="", last_result="",
                clock_offset_s=None, gaps=0,
            )  # fmt: skip
        return cls(
            mn=row.mn, device_id=station.device.id, online=row.online, edition=row.edition,
            last_packet_at=_dt(row.last_packet) if row.last_packet else None,
            packets=row.packets, last_command=row.last_command, last_result=row.last_result,
            clock_offset_s=row.clock_offset_s, gaps=row.gaps,
            member=row.member if row.online else None, peer=row.peer if row.online else None,
            connected_at=_dt(row.connected_at) if row.online and row.connected_at else None,
        )  # fmt: skip


def _dt(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


@contextlib.contextmanager
def _database() -> Iterator[None]:
    """A shared store that cannot be reached is a 503 with the reason, not a stack trace."""
    try:
        yield
    except psycopg.Error as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"the cluster database (HJ 212 commands and stations) is unreachable: {first[:200]}",
        ) from None


def create_router(
    dispatcher: Callable[[], Dispatcher | None],
    token: str | None,
    shared: Callable[[], SharedApi | None] = lambda: None,
) -> APIRouter:
    """The /api/hj212 routes; ``dispatcher()`` is None until the gateway runs here,
    ``shared()`` None without a shared store."""
    router = APIRouter(prefix="/api/hj212", tags=["hj212"])
    write = [Depends(bearer_guard(token))]

    def unavailable() -> HTTPException:
        return HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "the HJ 212 gateway does not run in this process: set ENVGRID_HJ212__PORT",
        )

    @router.post(
        "/commands", response_model=CommandOut, status_code=201, dependencies=write,
        responses={400: {"description": "unknown MN, CN or parameters"}},
    )  # fmt: skip
    async def post_command(body: Annotated[CommandIn, Body()]) -> CommandOut:
        d, v = dispatcher(), shared()
        stations = d.stations if d is not None else v.stations if v is not None else None
        if stations is None:
            raise unavailable()
        if body.mn not in stations:
            raise HTTPException(400, f"unknown MN {body.mn!r}: no station in the registry has it")
        try:
            with _database():
                if d is not None:
                    cmd = d.command(body.mn, body.cn, body.params, "api")
                else:
                    assert v is not None
                    cmd = await asyncio.to_thread(v.queue, body.mn, body.cn, body.params, "api")
        except CommandError as e:
            raise HTTPException(400, str(e)) from None
        if v is not None and v.nudge is not None and (d is None or not d.online(body.mn)):
            try:
                async with asyncio.timeout(5):
                    await v.nudge(cmd)
            except Exception as e:  # stored: the holding gateway finds it at its next look
                log.warning("HJ 212 command %s not routed through the broker: %s", cmd.qn, e)
        return CommandOut.of(cmd)

    @router.get("/commands", response_model=list[CommandOut])
    async def list_commands(
        mn: Annotated[str | None, Query(max_length=24)] = None,
        status_: Annotated[
            str | None, Query(alias="status", description=", ".join(STATUSES))
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[CommandOut]:
        d, v = dispatcher(), shared()
        if v is not None:
            with _database():
                found = await asyncio.to_thread(v.store.find, mn, status_, None, None, limit)
        elif d is not None:
            found = d.store.find(mn=mn, status=status_, limit=limit)
        else:
            raise unavailable()
        return [CommandOut.of(c) for c in found]

    @router.get("/stations", response_model=list[StationOut])
    async def list_stations() -> list[StationOut]:
        d, v = dispatcher(), shared()
        if v is not None:
            with _database():
                rows = {r.mn: r for r in await asyncio.to_thread(v.store.stations)}
            return [StationOut.shared(s, rows.get(mn)) for mn, s in v.stations.items()]
        if d is None:
            raise unavailable()
        return [
            StationOut(
                mn=s.mn,
                device_id=s.device_id,
                online=s.online,
                edition=s.edition,
                last_packet_at=_dt(s.last_packet) if s.last_packet else None,
                packets=s.packets,
                last_command=s.last_command,
                last_result=s.last_result,
                clock_offset_s=s.clock_offset_s,
                gaps=s.gaps,
            )
            for s in d.states.values()
        ]

    return router
