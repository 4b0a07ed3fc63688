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

    url: str = Field(
        default="mqtt://127.0.0.1:1883",
        description="broker URL: `mqtt://[user:pass@]host[:port]`, `mqtts://` for TLS",
    )
    topic_prefix: str = Field(
        default="envgrid", description="first topic segment of readings, dead letters and alerts"
    )
    client_id: str = Field(
        default="",
        description="stable client id of the persistent session (default `envgrid-<host>`)",
    )
    password_file: Path | None = Field(
        default=None, description="file holding the MQTT password (preferred over the URL)"
    )
    keepalive_s: int = Field(default=60, ge=5, le=3600, description="MQTT keepalive in seconds")
    session_expiry: Duration = Field(
        default=timedelta(days=2),
        description="how long the broker keeps the session and its queued messages",
    )
    # MQTT v5 Receive Maximum: unacknowledged messages the broker may send us. It must cover a
    # batch, since acks go out per batch once it is durable.
    receive_maximum: int = Field(
        default=20_000,
        ge=20,
        le=65_535,
        description="MQTT v5 Receive Maximum: unacked messages in flight (covers a batch)",
    )
    topics: list[TopicRoute] = Field(
        default_factory=list,
        description="extra topic routes (`[[mqtt.topics]] pattern, kind`); TOML only",
    )
    shared_group: str = Field(
        default="", description="subscribe through `$share/<group>/` (set by `--workers`)"
    )
    tls_ca: Path | None = Field(default=None, description="CA bundle for `mqtts://`")
    tls_insecure: bool = Field(
        default=False, description="skip TLS certificate checks (testing only)"
    )
    connect_timeout_s: float = Field(default=5.0, gt=0, description="seconds to wait for CONNACK")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise ValueError("expected mqtt://[user:pass@]host[:port] or mqtts://… for TLS")
        if not parts.hostname:
            raise ValueError("the URL has no host")
        _check_port(v)
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

    url: str = Field(default="http://127.0.0.1:8086", description="InfluxDB base URL")
    api: Literal["v1", "v2"] = Field(
        default="v1",
        description="`v1` (`/write`: InfluxDB 1.x, 2.x, 3.x) or `v2` (`/api/v2/write`)",
    )
    database: str = Field(default="envgrid", description="v1 database")
    retention_policy: str = Field(
        default="", description="v1 retention policy (default: the database's default)"
    )
    bucket: str = Field(default="envgrid", description="v2 bucket")
    org: str = Field(default="envgrid", description="v2 organisation")
    token: SecretStr | None = Field(
        default=None, description="API token (v2, or v1 on InfluxDB 2.x/3.x); never logged"
    )
    token_file: Path | None = Field(default=None, description="file holding the token (preferred)")
    username: str = Field(default="", description="v1 basic-auth user")
    password: SecretStr | None = Field(
        default=None, description="v1 basic-auth password; never logged"
    )
    timeout_s: float = Field(
        default=10.0, gt=0, description="seconds before a write counts as failed (and is spooled)"
    )

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if urlsplit(v).scheme not in ("http", "https") or not urlsplit(v).hostname:
            raise ValueError("expected http://host:port or https://host:port")
        _check_port(v)
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

    batch_size: int = Field(default=5000, ge=1, le=100_000, description="lines per InfluxDB write")
    write_concurrency: int = Field(
        default=4,
        ge=1,
        le=16,
        description="InfluxDB writes in flight at once (acks stay in arrival order)",
    )
    flush_interval: Duration = Field(
        default=timedelta(seconds=1), description="longest a reading waits for its batch"
    )
    max_age: Duration = Field(
        default=timedelta(days=7),
        description="oldest accepted reading (stations back-fill after an outage)",
    )
    max_future: Duration = Field(
        default=timedelta(minutes=5), description="how far ahead of the clock a reading may be"
    )
    max_payload_bytes: int = Field(
        default=256 * 1024, ge=64, description="larger payloads are dead-lettered unparsed"
    )
    spool_dir: Path = Field(
        default=Path("var/spool"), description="where batches wait while InfluxDB is unreachable"
    )
    spool_max_bytes: int = Field(default=1 << 30, ge=1 << 16, description="spool size limit")
    spool_high_water: float = Field(
        default=0.9,
        gt=0,
        le=1,
        description="fill fraction at which consumption pauses and /readyz is 503",
    )
    shutdown_grace: Duration = Field(
        default=timedelta(seconds=15),
        description="time to flush or spool on SIGTERM before exiting",
    )
    ack_stall_after: Duration = Field(
        default=timedelta(seconds=60),
        description="/readyz turns unready when the oldest unacked message is this old",
    )
    stats_interval: Duration = Field(
        default=timedelta(seconds=10), description="how often `envgrid_stats` is written"
    )
    replay_backoff_max: Duration = Field(
        default=timedelta(seconds=30), description="longest wait between spool replay attempts"
    )


class DevicesSettings(Section):
    """The device registry file (YAML); unset = every device is unregistered."""

    registry: Path | None = Field(
        default=None, description="device registry YAML (site, county, facts)"
    )


class HttpSettings(Section):
    """The HTTP API: health, metrics, alerts, console."""

    host: str = Field(default="127.0.0.1", description="HTTP API listen address")
    port: int = Field(
        default=8080, ge=0, le=65_535, description="HTTP API port (0 = any free port)"
    )
    token: SecretStr | None = Field(
        default=None, description="bearer token for the JSON API's write calls; never logged"
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="reverse proxies (addresses or CIDR networks) whose X-Forwarded-For is "
        'believed, as JSON: `["10.0.0.5"]`; empty: the connecting address is the client',
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        import ipaddress

        for item in v:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(
                    f"{item!r} is not an IP address or network; e.g. 10.0.0.5 or 10.0.0.0/24"
                ) from None
        return v


class StandardsSettings(Section):
    """The city's time zone and the HJ 633 edition (unset: by each reading's date)."""

    timezone: str = Field(
        default="Asia/Shanghai",
        description="the city's time zone: decides a reading's date and rollup windows",
    )
    aqi_edition: Literal["2012", "2026"] | None = Field(
        default=None, description="force HJ 633 `2012` or `2026` (default: by each date)"
    )

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise ValueError(f"unknown time zone {v!r}; e.g. 'Asia/Shanghai'") from e
        return v


def _check_port(url: str) -> None:
    # urlsplit accepts any port text; .port raises later, far from the setting that caused it.
    try:
        urlsplit(url).port  # noqa: B018
    except ValueError:
        raise ValueError(f"the port in {redact_url(url)!r} is not a number in 0..65535") from None


def redact_url(url: str) -> str:
    """A URL with its password replaced, safe to log."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    # From the raw netloc: .hostname/.port lower-case the host and raise on a bad port.
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


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
