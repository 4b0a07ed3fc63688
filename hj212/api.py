"""The HTTP API of HJ 212 commands and station state.

``POST /api/hj212/commands`` (``{"mn", "cn", "params"}``, bearer token) queues a command;
``GET /api/hj212/commands?mn=&status=`` lists them newest first; ``GET /api/hj212/stations``
gives each station's state. Served by the process that runs the gateway (docs/hj212.md).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Body, Depends, HTTPException, Query, status
from pydantic import BaseModel, Field

from alerts.api import bearer_guard
from hj212.commands import COMMANDS, STATUSES, Command, CommandError
from hj212.dispatch import Dispatcher

__all__ = ["CommandIn", "CommandOut", "StationOut", "create_router"]


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


def _dt(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def create_router(dispatcher: Callable[[], Dispatcher | None], token: str | None) -> APIRouter:
    """The /api/hj212 routes; ``dispatcher()`` is None until the gateway runs."""
    router = APIRouter(prefix="/api/hj212", tags=["hj212"])
    write = [Depends(bearer_guard(token))]

    def need() -> Dispatcher:
        d = dispatcher()
        if d is None:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                "the HJ 212 gateway does not run in this process: set ENVGRID_HJ212__PORT",
            )
        return d

    @router.post(
        "/commands", response_model=CommandOut, status_code=201, dependencies=write,
        responses={400: {"description": "unknown MN, CN or parameters"}},
    )  # fmt: skip
    async def post_command(body: Annotated[CommandIn, Body()]) -> CommandOut:
        d = need()
        if body.mn not in d.stations:
            raise HTTPException(400, f"unknown MN {body.mn!r}: no station in the registry has it")
        try:
            cmd = d.command(body.mn, body.cn, body.params, "api")
        except CommandError as e:
            raise HTTPException(400, str(e)) from None
        return CommandOut.of(cmd)

    @router.get("/commands", response_model=list[CommandOut])
    async def list_commands(
        mn: Annotated[str | None, Query(max_length=24)] = None,
        status_: Annotated[
            str | None, Query(alias="status", description=", ".join(STATUSES))
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[CommandOut]:
        d = need()
        return [CommandOut.of(c) for c in d.store.find(mn=mn, status=status_, limit=limit)]

    @router.get("/stations", response_model=list[StationOut])
    async def list_stations() -> list[StationOut]:
        d = need()
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
