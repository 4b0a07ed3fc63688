"""The operator console's settings section (``[console]``)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal, Protocol
from urllib.parse import urlsplit

from pydantic import (
    Field,
    SecretStr,
    field_validator,
)

from devices.config import PositiveDuration, Section
from ingest.config import StorageConfig


class ConsoleSettings(Section):
    """The operator console at / (served when alerts are enabled; docs/console.md)."""

    enabled: bool = Field(default=True, description="serve the operator console at /")
    operators: Path = Field(
        default=Path("var/operators.yaml"),
        description="YAML file of operators: name, display name, bcrypt hash "
        "(`envgrid operators add NAME`)",
    )
    session_secret: SecretStr | None = Field(
        default=None, description="key that signs session cookies; unset: session_secret_file"
    )
    session_secret_file: Path = Field(
        default=Path("var/console-session.key"),
        description="file holding the signing key; created (mode 600) when missing",
    )
    session_lifetime: PositiveDuration = Field(
        default=timedelta(hours=12), description="how long a sign-in lasts (one shift)"
    )
    cookie_secure: bool = Field(
        default=False, description="send cookies only over HTTPS (set behind a TLS proxy)"
    )
    grafana_url: str | None = Field(
        default=None, description="Grafana base URL: the devices view links each device there"
    )
    language: Literal["zh", "en"] = Field(
        default="zh", description="language until an operator picks one (zh or en)"
    )
    offline_after: PositiveDuration = Field(
        default=timedelta(minutes=10), description="a device silent this long shows offline"
    )
    lookback: PositiveDuration = Field(
        default=timedelta(days=7), description="how far back the devices view looks for readings"
    )
    chart_hours: float = Field(
        default=6, gt=0, le=168, description="hours of readings in an alert's chart"
    )

    @field_validator("grafana_url")
    @classmethod
    def _grafana(cls, v: str | None) -> str | None:
        if v is not None and (
            urlsplit(v).scheme not in ("http", "https") or not urlsplit(v).hostname
        ):
            raise ValueError("expected http(s)://host[:port][/path], e.g. http://grafana:3000")
        return v.rstrip("/") if v else v

    @field_validator("session_secret")
    @classmethod
    def _long_enough(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and len(v.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters, e.g. `openssl rand -hex 32`")
        return v


class ConsoleConfig(StorageConfig, Protocol):
    """The sections the console reads."""

    @property
    def console(self) -> ConsoleSettings: ...
