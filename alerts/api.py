"""The alerts HTTP API: list and inspect alerts, acknowledge them, manage silences.

Reads are open; write calls need ``Authorization: Bearer <token>`` (``ENVGRID_HTTP__TOKEN``).
Every write goes through :class:`alerts.engine.AlertEngine` (``ack``, ``add_silence``,
``delete_silence``), the same calls the operator console makes. The token belongs to a
machine, not to an operator: what it does is recorded as ``api`` or ``api:<by>`` (operator
names cannot hold ':'), so it cannot pass for an operator's own acknowledgement. Silences are
capped at :data:`MAX_SILENCE_MS`, as in the console.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, status
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, model_validator

from alerts.engine import AlertEngine
from alerts.rules import duration_ms
from alerts.store import AlertFilter, AlertRecord, HistoryEntry, Matchers, Silence

State = Literal["pending", "firing", "resolved"]
Severity = Literal["critical", "major", "minor", "warning", "info"]
FieldValue = bool | int | float | str
Name = Annotated[str, Field(min_length=1, max_length=64)]
# Who a machine says it acts for: recorded after "api:", never as an operator's own name.
Caller = Annotated[str, Field(min_length=1, max_length=60, pattern=r"^[^\x00-\x1f\x7f]+$")]
API_ACTOR = "api"
MAX_ID = 2**63 - 1  # SQLite's INTEGER: a larger id names nothing (and must not reach SQLite)
Id = Annotated[int, Path(ge=1, le=MAX_ID, description="the id as listed")]
MAX_SILENCE_MS = 30 * 86_400_000  # the console's cap too (console/web.py imports it)
Comment = Annotated[str, Field(max_length=1000)]
NO_TOKEN = (
    "write calls are disabled: no API token is configured; set ENVGRID_HTTP__TOKEN "
    "and send it as 'Authorization: Bearer <token>'"
)


class AlertOut(BaseModel):
    """One alert episode."""

    id: int
    rule_id: str
    kind: str
    device_id: str
    series: str = Field(description="sub-device subject, e.g. 'connector=2'; '' for the device")
    site: str
    county: str
    severity: Severity
    state: State
    field: str = Field(description="the field the rule tests ('' for a no-data rule)")
    value: FieldValue | None = Field(description="latest value seen (seconds silent for no-data)")
    message: str
    description: str
    standard: str = Field(description="where the rule's number comes from")
    labels: dict[str, str]
    started_at: datetime = Field(description="time of the first breaching reading")
    fired_at: datetime | None
    resolved_at: datetime | None
    updated_at: datetime
    silenced: bool = Field(description="a silence matches: no notifications")
    notified: bool = Field(description="the firing notification was sent")
    acked_by: str | None
    acked_at: datetime | None
    ack_comment: str | None

    @classmethod
    def of(cls, r: AlertRecord) -> AlertOut:
        """From the store's record."""
        return cls(
            id=r.id,
            rule_id=r.rule_id,
            kind=r.kind,
            device_id=r.device_id,
            series=r.series,
            site=r.site,
            county=r.county,
            severity=r.severity,  # type: ignore[arg-type]
            state=r.state,  # type: ignore[arg-type]
            field=r.field,
            value=r.value,
            message=r.message,
            description=r.description,
            standard=r.standard,
            labels=dict(r.labels),
            started_at=_dt(r.started_ms),
            fired_at=_opt_dt(r.fired_ms),
            resolved_at=_opt_dt(r.resolved_ms),
            updated_at=_dt(r.updated_ms),
            silenced=r.silenced,
            notified=r.notified,
            acked_by=r.acked_by,
            acked_at=_opt_dt(r.acked_ms),
            ack_comment=r.ack_comment,
        )


class HistoryOut(BaseModel):
    """One event of an alert: pending, firing, resolved, acked, silenced, unsilenced."""

    id: int
    at: datetime
    event: str
    by: str | None
    comment: str | None
    value: FieldValue | None
    message: str

    @classmethod
    def of(cls, h: HistoryEntry) -> HistoryOut:
        """From the store's entry."""
        return cls(
            id=h.id,
            at=_dt(h.ts_ms),
            event=h.event,
            by=h.by,
            comment=h.comment,
            value=h.value,
            message=h.message,
        )


class AlertDetail(AlertOut):
    """An alert with its history, oldest event first."""

    history: list[HistoryOut]


def actor(by: str | None) -> str:
    """How a write made with the API token is recorded: ``api`` or ``api:<by>``."""
    return f"{API_ACTOR}:{by}" if by else API_ACTOR


class ErrorOut(BaseModel):
    """An error the API explains in one sentence."""

    detail: str


ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorOut, "description": "missing or wrong bearer token"},
    403: {"model": ErrorOut, "description": "write calls are disabled (no token configured)"},
}
NOT_FOUND: dict[int | str, dict[str, object]] = {
    404: {"model": ErrorOut, "description": "no such id"}
}


class AckIn(BaseModel):
    """Who acknowledges (recorded as ``api:<by>``), and why."""

    by: Caller | None = None
    comment: Comment = ""


class MatchersIn(BaseModel):
    """What a silence covers: fnmatch globs per dimension; give at least one."""

    model_config = ConfigDict(json_schema_extra={"minProperties": 1})

    rules: list[Name] = []
    kinds: list[Name] = []
    devices: list[Name] = []
    sites: list[Annotated[str, Field(min_length=1, max_length=128)]] = []
    counties: list[Annotated[str, Field(min_length=1, max_length=128)]] = []
    severities: list[Severity] = []

    @model_validator(mode="after")
    def _some(self) -> MatchersIn:
        if not any(
            (self.rules, self.kinds, self.devices, self.sites, self.counties, self.severities)
        ):
            raise ValueError("a silence needs at least one matcher (e.g. devices: ['WQ-001'])")
        return self

    def to_matchers(self) -> Matchers:
        """The store's form."""
        return Matchers(
            tuple(self.rules),
            tuple(self.kinds),
            tuple(self.devices),
            tuple(self.sites),
            tuple(self.counties),
            tuple(self.severities),
        )


class SilenceIn(BaseModel):
    """A new silence: matchers, and an end (``ends_at``, or ``duration`` such as "2h")."""

    matchers: MatchersIn
    ends_at: datetime | None = None
    duration: str | None = Field(default=None, examples=["2h"])
    starts_at: datetime | None = None
    created_by: Caller | None = Field(default=None, description="recorded as api:<created_by>")
    comment: Comment = ""

    @model_validator(mode="after")
    def _one_end(self) -> SilenceIn:
        if (self.ends_at is None) == (self.duration is None):
            raise ValueError("give either ends_at (ISO 8601 with offset) or duration (e.g. '2h')")
        for t in (self.ends_at, self.starts_at):
            if t is not None and t.tzinfo is None:
                raise ValueError("times need a UTC offset, e.g. 2026-05-01T18:00:00+08:00")
        if self.duration is not None:
            if len(self.duration) > 32:
                raise ValueError("duration is too long: write e.g. '2h' or '1d12h'")
            duration_ms(self.duration)  # raises ValueError with the fix
        return self

    def window_ms(self, now_ms: int) -> tuple[int, int]:
        """(starts_ms, ends_ms) of this silence; ValueError beyond the cap."""
        start = int(self.starts_at.timestamp() * 1000) if self.starts_at else now_ms
        if self.ends_at is not None:
            end = int(self.ends_at.timestamp() * 1000)
        else:
            end = start + duration_ms(self.duration or "0")
        days = MAX_SILENCE_MS // 86_400_000
        if end - max(start, now_ms) > MAX_SILENCE_MS or start - now_ms > MAX_SILENCE_MS:
            raise ValueError(
                f"a silence may last at most {days} days from now (the console's limit too); "
                "make a shorter one and renew it"
            )
        return start, end


class MatchersOut(BaseModel):
    """What a silence covers."""

    rules: list[str]
    kinds: list[str]
    devices: list[str]
    sites: list[str]
    counties: list[str]
    severities: list[str]


class SilenceOut(BaseModel):
    """A silence, in force between starts_at and ends_at unless deleted."""

    id: int
    matchers: MatchersOut
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str
    created_at: datetime
    deleted_at: datetime | None
    deleted_by: str | None
    active: bool

    @classmethod
    def of(cls, s: Silence, now_ms: int) -> SilenceOut:
        """From the store's silence."""
        m = s.matchers
        return cls(
            id=s.id,
            matchers=MatchersOut(
                rules=list(m.rules),
                kinds=list(m.kinds),
                devices=list(m.devices),
                sites=list(m.sites),
                counties=list(m.counties),
                severities=list(m.severities),
            ),
            starts_at=_dt(s.starts_ms),
            ends_at=_dt(s.ends_ms),
            created_by=s.created_by,
            comment=s.comment,
            created_at=_dt(s.created_ms),
            deleted_at=_opt_dt(s.deleted_ms),
            deleted_by=s.deleted_by,
            active=s.active(now_ms),
        )


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _opt_dt(ms: int | None) -> datetime | None:
    return None if ms is None else _dt(ms)


def _now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


_BEARER = HTTPBearer(
    auto_error=False, description="ENVGRID_HTTP__TOKEN, sent as 'Authorization: Bearer …'"
)


def bearer_guard(token: str | None) -> Callable[..., None]:
    """A FastAPI dependency that admits write calls carrying the configured bearer token."""
    expected = token.encode() if token else None

    def guard(cred: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]) -> None:
        if expected is None:
            raise HTTPException(status.HTTP_403_FORBIDDEN, NO_TOKEN)
        if cred is None or not hmac.compare_digest(cred.credentials.encode(), expected):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing or wrong bearer token: send 'Authorization: Bearer <ENVGRID_HTTP__TOKEN>'",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return guard


def create_router(engine: AlertEngine, token: str | None) -> APIRouter:
    """The /api/alerts and /api/silences routes over one engine."""
    router = APIRouter(prefix="/api", tags=["alerts"])
    write = [Depends(bearer_guard(token))]

    @router.get("/alerts", response_model=list[AlertOut])
    async def list_alerts(
        state: State | None = None,
        severity: Severity | None = None,
        kind: str | None = None,
        site: str | None = None,
        county: str | None = None,
        device_id: str | None = None,
        rule_id: str | None = None,
        silenced: bool | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    ) -> list[AlertOut]:
        """Alerts, newest first, filtered by any of the parameters."""
        f = AlertFilter(
            state, severity, kind, site, county, device_id, rule_id, silenced, limit, offset
        )
        return [AlertOut.of(r) for r in engine.alerts(f)]

    @router.get("/alerts/{alert_id}", response_model=AlertDetail, responses=NOT_FOUND)
    async def get_alert(alert_id: Id) -> AlertDetail:
        """One alert with its history."""
        found = engine.alert(alert_id)
        if found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no alert {alert_id}")
        rec, history = found
        return AlertDetail(
            **AlertOut.of(rec).model_dump(), history=[HistoryOut.of(h) for h in history]
        )

    @router.post(
        "/alerts/{alert_id}/ack",
        response_model=AlertOut,
        dependencies=write,
        responses={**ERRORS, **NOT_FOUND},
    )
    async def ack_alert(alert_id: Id, body: AckIn) -> AlertOut:
        """Acknowledge an alert: records ``api:<by>``, when and the comment."""
        rec = engine.ack(alert_id, actor(body.by), body.comment)
        if rec is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no alert {alert_id}")
        return AlertOut.of(rec)

    @router.get("/silences", response_model=list[SilenceOut], tags=["silences"])
    async def list_silences(
        include_ended: Annotated[bool, Query(alias="all")] = False,
    ) -> list[SilenceOut]:
        """Silences not yet ended (``?all=true``: every silence ever made)."""
        now = _now_ms()
        return [SilenceOut.of(s, now) for s in engine.silences(current=not include_ended)]

    @router.post(
        "/silences",
        response_model=SilenceOut,
        status_code=status.HTTP_201_CREATED,
        dependencies=write,
        tags=["silences"],
        responses=ERRORS,
    )
    async def create_silence(body: SilenceIn) -> SilenceOut:
        """Mute notifications of matching alerts until the end time (alerts stay visible)."""
        now = _now_ms()
        try:
            starts, ends = body.window_ms(now)
            s = engine.add_silence(
                body.matchers.to_matchers(), ends, actor(body.created_by), body.comment, starts
            )
        except (ValueError, OverflowError) as e:
            # The same shape as every other 422, as the schema says.
            raise RequestValidationError(
                [{"loc": ("body",), "msg": str(e), "type": "value_error"}]
            ) from None
        return SilenceOut.of(s, now)

    @router.delete(
        "/silences/{silence_id}",
        response_model=SilenceOut,
        dependencies=write,
        tags=["silences"],
        responses={**ERRORS, **NOT_FOUND},
    )
    async def delete_silence(
        silence_id: Id,
        by: Annotated[
            str | None,
            Query(min_length=1, max_length=60, pattern=r"^[^\x00-\x1f\x7f]+$"),
        ] = None,
    ) -> SilenceOut:
        """End a silence now (recorded as ``api:<by>``); alerts still firing under it notify."""
        s = engine.delete_silence(silence_id, actor(by))
        if s is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no active silence {silence_id}")
        return SilenceOut.of(s, _now_ms())

    return router
