"""The HJ 212 gateway's settings section (``[hj212]``)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Protocol

from pydantic import (
    Field,
)

from alerts.config import AlertsSettings
from devices.config import Duration, PositiveDuration, Section
from ingest.config import DevicesSettings, InfluxSettings, MqttSettings, StandardsSettings


class Hj212Settings(Section):
    """The HJ 212-2017 TCP gateway that station data loggers connect to (docs/hj212.md)."""

    port: int | None = Field(
        default=None,
        ge=0,
        le=65_535,
        description="TCP port for station data loggers; set it to run the gateway in `envgrid run`",
    )
    # Stations connect from the field over the network, and the gateway only listens when a port
    # is set, so the default listens on every interface.
    host: str = Field(default="0.0.0.0", description="address the gateway listens on")
    idle_timeout: PositiveDuration = Field(
        default=timedelta(minutes=10), description="close a connection silent this long"
    )
    max_connections: int = Field(
        default=2000, ge=1, le=100_000, description="concurrent station connections accepted"
    )
    # At least two maximum frames (2 × 1036 bytes), so a frame split across reads always fits.
    buffer_limit: int = Field(
        default=16_384,
        ge=2_072,
        le=1 << 20,
        description="bytes one connection may hold unparsed; oversize garbage is dropped",
    )

    # Hostile peers (issue 20): a six-digit PW falls to guessing unless wrong tries cost a
    # connection and then time; one address must not hold every connection slot.
    max_connections_per_source: int = Field(
        default=256,
        ge=1,
        le=100_000,
        description="concurrent connections accepted from one source address (stations behind "
        "one NAT or a private APN share it: raise it for them)",
    )
    max_wrong_pw: int = Field(
        default=3,
        ge=1,
        le=1000,
        description="wrong PWs on one connection before it is closed and its source backs off",
    )
    wrong_pw_backoff: PositiveDuration = Field(
        default=timedelta(minutes=1),
        description="a source closed for wrong PWs is refused this long, doubled for each "
        "repeat up to wrong_pw_backoff_max",
    )
    wrong_pw_backoff_max: PositiveDuration = Field(
        default=timedelta(hours=1), description="longest back-off of a PW-guessing source"
    )
    max_rejects_in_a_row: int = Field(
        default=20,
        ge=1,
        le=100_000,
        description="refused packets or garbage runs in a row (none taken between) before a "
        "connection is closed as a flood",
    )
    max_deadletters_per_connection: int = Field(
        default=100,
        ge=0,
        le=1_000_000,
        description="dead letters one connection may cause; beyond it refusals are only counted "
        "(envgrid_hj212_deadletters_suppressed)",
    )

    # Commands to stations (issue 15, docs/hj212.md "Commands").
    command_store: Path | None = Field(
        default=None,
        description="SQLite file of HJ 212 commands; unset: the alerts store file ([alerts] store)",
    )
    command_timeout: PositiveDuration = Field(
        default=timedelta(seconds=5),
        description="wait this long for a station's 9011 before sending again (the station's "
        "1000 OverTime; per station: hj212.overtime)",
    )
    command_retries: int = Field(
        default=3,
        ge=0,
        le=20,
        description="times a command is sent again without a 9011 (the station's 1000 ReCount; "
        "per station: hj212.recount)",
    )
    execute_timeout: PositiveDuration = Field(
        default=timedelta(minutes=10),
        description="after 9011, wait this long for 9012 (each data packet restarts the wait)",
    )
    command_expiry: PositiveDuration = Field(
        default=timedelta(hours=24),
        description="a command for a station that does not connect ends 'expired' after this",
    )
    max_queued_commands: int = Field(
        default=100,
        ge=1,
        le=100_000,
        description="open commands one station may have; more are refused until some finish",
    )
    backfill: bool = Field(
        default=True, description="re-request missing hourly data (2061) from connected stations"
    )
    backfill_lookback: PositiveDuration = Field(
        default=timedelta(days=7), description="how far back missing hours are looked for"
    )
    backfill_interval: PositiveDuration = Field(
        default=timedelta(minutes=5), description="how often each station's gaps are looked for"
    )
    backfill_backoff: Duration = Field(
        default=timedelta(days=1),
        description="hours a station answered 'no data' (ExeRtn 100) or refused are not asked "
        "for again before this",
    )
    backfill_max_hours: int = Field(
        default=24, ge=1, le=24 * 31, description="hours asked for in one 2061 request at most"
    )
    clock_tolerance: PositiveDuration = Field(
        default=timedelta(seconds=60),
        description="send 1012 (set clock) when real-time DataTime is further than this from "
        "the platform's clock",
    )
    clock_sync_interval: Duration = Field(
        default=timedelta(hours=1), description="at most one automatic 1012 per station this often"
    )


class GatewayConfig(Protocol):
    """The sections the HJ 212 gateway and its simulator read."""

    @property
    def mqtt(self) -> MqttSettings: ...
    @property
    def hj212(self) -> Hj212Settings: ...
    @property
    def standards(self) -> StandardsSettings: ...
    @property
    def devices(self) -> DevicesSettings: ...
    @property
    def influx(self) -> InfluxSettings: ...
    @property
    def alerts(self) -> AlertsSettings: ...


def command_store_path(settings: GatewayConfig) -> Path:
    """Where commands are kept: [hj212] command_store, else the alerts store file."""
    return settings.hj212.command_store or settings.alerts.store
