"""Settings sections of the hot path: broker, InfluxDB, batching and spool, HTTP, registry,
standards. The whole settings class is composed in ``envgrid.settings``."""

from __future__ import annotations

import socket
from datetime import timedelta
from pathlib import Path
from typing import Literal, Protocol
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from devices.config import Duration, Section


class TopicRoute(Section):
    """Maps a site's own topics onto kinds: ``pattern`` with ``{kind}``/``{device_id}``, ``+``."""

    pattern: str
    kind: str | None = None

    @model_validator(mode="after")
    def _placeholders(self) -> TopicRoute:
        if "{device_id}" not in self.pattern:
            raise ValueError("pattern needs a {device_id} segment")
        if "{kind}" not in self.pattern and self.kind is None:
            raise ValueError('pattern has no {kind} segment: give kind = "water" (or another)')
        return self


class MqttSettings(Section):
    """The broker envgrid reads from and publishes dead letters and alerts to."""

    url: str = "mqtt://127.0.0.1:1883"
    topic_prefix: str = "envgrid"
    client_id: str = ""  # default: envgrid-<hostname>[-<worker>]; stable, so the session survives
    password_file: Path | None = None
    keepalive_s: int = Field(default=60, ge=5, le=3600)
    session_expiry: Duration = timedelta(days=2)
    # MQTT v5 Receive Maximum: unacknowledged messages the broker may send us. It must cover a
    # batch, since acks go out per batch once it is durable.
    receive_maximum: int = Field(default=20_000, ge=20, le=65_535)
    topics: list[TopicRoute] = Field(default_factory=list)
    shared_group: str = ""  # set by --workers: subscribe through $share/<group>/…
    tls_ca: Path | None = None
    tls_insecure: bool = False
    connect_timeout_s: float = Field(default=5.0, gt=0)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise ValueError("expected mqtt://[user:pass@]host[:port] or mqtts://… for TLS")
        if not parts.hostname:
            raise ValueError("the URL has no host")
        return v

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not v or any(c in v for c in "+#") or v.startswith("/") or v.endswith("/"):
            raise ValueError("a topic prefix like 'envgrid' or 'city/envgrid': no +, #, or edge /")
        return v

    @property
    def tls(self) -> bool:
        """Whether the URL asks for TLS."""
        return urlsplit(self.url).scheme in ("mqtts", "ssl")

    @property
    def host(self) -> str:
        """Broker host name."""
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        """Broker port (1883, or 8883 with TLS, when the URL has none)."""
        return urlsplit(self.url).port or (8883 if self.tls else 1883)

    @property
    def username(self) -> str | None:
        """User name from the URL."""
        return urlsplit(self.url).username

    def password(self) -> str | None:
        """Password from the password file (preferred) or the URL; never logged."""
        if self.password_file is not None:
            return self.password_file.read_text(encoding="utf-8").strip()
        return urlsplit(self.url).password

    def effective_client_id(self, worker: int | None = None) -> str:
        """The stable client id, per worker when several share a host."""
        base = self.client_id or f"envgrid-{socket.gethostname()}"
        return base if worker is None else f"{base}-w{worker}"


class InfluxSettings(Section):
    """Where readings are written: InfluxDB 1.x/2.x/3.x v1 API, or the v2 API."""

    url: str = "http://127.0.0.1:8086"
    api: Literal["v1", "v2"] = "v1"
    database: str = "envgrid"
    retention_policy: str = ""
    bucket: str = "envgrid"
    org: str = "envgrid"
    token: SecretStr | None = None
    token_file: Path | None = None
    username: str = ""
    password: SecretStr | None = None
    timeout_s: float = Field(default=10.0, gt=0)

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if urlsplit(v).scheme not in ("http", "https") or not urlsplit(v).hostname:
            raise ValueError("expected http://host:port or https://host:port")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _v2_needs_token(self) -> InfluxSettings:
        if self.api == "v2" and self.token is None and self.token_file is None:
            raise ValueError("api = 'v2' needs a token (ENVGRID_INFLUX__TOKEN or token_file)")
        return self

    def auth_token(self) -> str | None:
        """The API token from the token file (preferred) or the setting; never logged."""
        if self.token_file is not None:
            return self.token_file.read_text(encoding="utf-8").strip()
        return self.token.get_secret_value() if self.token else None


class IngestSettings(Section):
    """Batching, validation windows, spool and shutdown."""

    batch_size: int = Field(default=5000, ge=1, le=100_000)
    write_concurrency: int = Field(default=4, ge=1, le=16)
    flush_interval: Duration = timedelta(seconds=1)
    max_age: Duration = timedelta(days=7)  # stations back-fill after an outage
    max_future: Duration = timedelta(minutes=5)
    max_payload_bytes: int = Field(default=256 * 1024, ge=64)
    spool_dir: Path = Path("var/spool")
    spool_max_bytes: int = Field(default=1 << 30, ge=1 << 16)
    # Fraction of spool_max_bytes at which consumption pauses and /readyz turns unready.
    spool_high_water: float = Field(default=0.9, gt=0, le=1)
    shutdown_grace: Duration = timedelta(seconds=15)
    ack_stall_after: Duration = Field(
        default=timedelta(seconds=60),
        description="/readyz turns unready when the oldest unacked message is this old",
    )
    stats_interval: Duration = timedelta(seconds=10)
    replay_backoff_max: Duration = timedelta(seconds=30)


class DevicesSettings(Section):
    """The device registry file (YAML); unset = every device is unregistered."""

    registry: Path | None = None


class HttpSettings(Section):
    """The HTTP API: health, metrics, alerts, console."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65_535)
    token: SecretStr | None = None  # bearer token for write calls of the JSON API


class StandardsSettings(Section):
    """The city's time zone and the HJ 633 edition (unset: by each reading's date)."""

    timezone: str = "Asia/Shanghai"
    aqi_edition: Literal["2012", "2026"] | None = None

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise ValueError(f"unknown time zone {v!r}; e.g. 'Asia/Shanghai'") from e
        return v


def redact_url(url: str) -> str:
    """A URL with its password replaced, safe to log."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class IngestConfig(Protocol):
    """The sections the ingest service reads (``envgrid.settings.Settings`` has them all)."""

    @property
    def mqtt(self) -> MqttSettings: ...
    @property
    def influx(self) -> InfluxSettings: ...
    @property
    def ingest(self) -> IngestSettings: ...


class StorageConfig(Protocol):
    """The sections a reader of stored readings needs: InfluxDB and the city's standards."""

    @property
    def influx(self) -> InfluxSettings: ...
    @property
    def standards(self) -> StandardsSettings: ...
