"""The HJ 212 gateway's settings section (``[hj212]``)."""

from __future__ import annotations

from datetime import timedelta
from typing import Protocol

from pydantic import (
    Field,
    field_validator,
)

from devices.config import Duration, Section
from ingest.config import DevicesSettings, MqttSettings, StandardsSettings


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
    idle_timeout: Duration = Field(
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

    @field_validator("idle_timeout")
    @classmethod
    def _positive(cls, v: timedelta) -> timedelta:
        if v <= timedelta(0):
            raise ValueError("must be a positive duration, e.g. '10m'")
        return v


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
