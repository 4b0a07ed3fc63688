"""The alert engine's settings section (``[alerts]``)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import (
    Field,
    SecretStr,
    field_validator,
)

from devices.config import PositiveDuration, Section


class AlertsSettings(Section):
    """The alert engine: rules, its SQLite store, notification targets (docs/alerts.md)."""

    enabled: bool = Field(default=True, description="run the alert engine in `envgrid run`")
    rules: Path | None = Field(
        default=None, description="rule file or folder of *.yaml; unset: the shipped defaults"
    )
    store: Path = Field(
        default=Path("var/alerts.db"), description="SQLite file: state, history, silences, outbox"
    )
    webhook_url: str | None = Field(
        default=None, description="POST each notification here (JSON, HMAC-signed)"
    )
    webhook_secret: SecretStr | None = Field(
        default=None, description="HMAC-SHA256 key of the X-Envgrid-Signature header"
    )
    mqtt: bool = Field(
        default=True, description="publish on <prefix>/alerts/<severity>/<kind>/<device_id>"
    )
    influx: bool = Field(
        default=True, description="write the `alerts` measurement (Grafana annotations)"
    )
    tick_interval: PositiveDuration = Field(
        default=timedelta(seconds=1), description="timer for `for` durations, no-data, silences"
    )
    retry_max: PositiveDuration = Field(
        default=timedelta(seconds=60), description="longest wait between delivery attempts"
    )
    routing: Path | None = Field(
        default=None,
        description="routing file: receivers (DingTalk, WeCom, Feishu, SMS, e-mail), routes, "
        "on-call rota (docs/notifications.md); unset: no people notified",
    )
    console_url: str | None = Field(
        default=None,
        description="console address for links in messages, e.g. https://envgrid.example.cn",
    )

    @field_validator("webhook_url")
    @classmethod
    def _webhook(cls, v: str | None) -> str | None:
        if v is not None and (
            urlsplit(v).scheme not in ("http", "https") or not urlsplit(v).hostname
        ):
            raise ValueError("expected http(s)://host[:port]/path")
        return v
