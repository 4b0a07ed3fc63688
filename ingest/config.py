"""envgrid settings: one pydantic-settings class, sources in a fixed order.

Order (first wins): keyword arguments, environment variables (``ENVGRID_<SECTION>__<KEY>``),
the TOML file given with ``--config``, then the defaults below. A bad value stops start-up with
one line per problem naming the setting, where it came from and what is expected.
"""

from __future__ import annotations

import re
import socket
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

ENV_PREFIX = "ENVGRID_"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, None: 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def _duration(v: Any) -> Any:
    """Accept 90, "90s", "15m", "12h", "7d" besides ISO 8601 ("P7D")."""
    if isinstance(v, int | float) and not isinstance(v, bool):
        return timedelta(seconds=v)
    if isinstance(v, str) and (m := _DURATION.match(v)):
        return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])
    return v


Duration = Annotated[timedelta, BeforeValidator(_duration)]


class Section(BaseModel):
    """A settings section: unknown keys are errors, so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid")


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
    topics: list[TopicRoute] = []
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


class RollupSettings(Section):
    """Hourly/daily rollups: the service's background task and the validity rules.

    Defaults are GB 3095-2012 Table 4 and HJ 663-2013 (see docs/standards.md).
    """

    enabled: bool = Field(
        default=True, description="run the rollup task in `envgrid run` (first worker only)"
    )
    interval: Duration = Field(
        default=timedelta(minutes=10), description="how often recent windows are recomputed"
    )
    lateness: Duration = Field(
        default=timedelta(hours=3), description="windows closed this recently are recomputed"
    )
    startup_lookback: Duration = Field(
        default=timedelta(hours=48), description="recomputed once when the service starts"
    )
    hour_min_minutes: int = Field(
        default=45, ge=1, le=60, description="air 1 h mean valid with this many minutes sampled"
    )
    day_min_hours: int = Field(
        default=20, ge=1, le=24, description="air 24 h mean valid with this many valid hours"
    )
    o3_8h_min_hours: int = Field(
        default=6, ge=1, le=8, description="O3 8 h mean valid with this many valid hours"
    )
    o3_8h_min_windows: int = Field(
        default=14, ge=1, le=17, description="daily max 8 h O3 valid with this many 8 h means"
    )
    water_day_min_hours: int = Field(
        default=1, ge=1, le=24, description="water daily mean valid with this many hours"
    )

    @field_validator("interval", "lateness", "startup_lookback")
    @classmethod
    def _positive(cls, v: timedelta) -> timedelta:
        if v <= timedelta(0):
            raise ValueError("must be a positive duration, e.g. '10m', '3h', '2d'")
        return v


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
    tick_interval: Duration = Field(
        default=timedelta(seconds=1), description="timer for `for` durations, no-data, silences"
    )
    retry_max: Duration = Field(
        default=timedelta(seconds=60), description="longest wait between delivery attempts"
    )

    @field_validator("webhook_url")
    @classmethod
    def _webhook(cls, v: str | None) -> str | None:
        if v is not None and (
            urlsplit(v).scheme not in ("http", "https") or not urlsplit(v).hostname
        ):
            raise ValueError("expected http(s)://host[:port]/path")
        return v

    @field_validator("tick_interval", "retry_max")
    @classmethod
    def _positive(cls, v: timedelta) -> timedelta:
        if v <= timedelta(0):
            raise ValueError("must be a positive duration, e.g. '1s', '30s'")
        return v


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
    session_lifetime: Duration = Field(
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
    offline_after: Duration = Field(
        default=timedelta(minutes=10), description="a device silent this long shows offline"
    )
    lookback: Duration = Field(
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

    @field_validator("session_lifetime", "offline_after", "lookback")
    @classmethod
    def _positive(cls, v: timedelta) -> timedelta:
        if v <= timedelta(0):
            raise ValueError("must be a positive duration, e.g. '12h', '10m', '7d'")
        return v


class Settings(BaseSettings):
    """Every envgrid setting; see the README's configuration table."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", case_sensitive=False
    )
    # Set by load_settings() before instantiation: the TOML file to read, if any.
    _toml_file: ClassVar[Path | None] = None

    mqtt: MqttSettings = MqttSettings()
    influx: InfluxSettings = InfluxSettings()
    ingest: IngestSettings = IngestSettings()
    devices: DevicesSettings = DevicesSettings()
    http: HttpSettings = HttpSettings()
    standards: StandardsSettings = StandardsSettings()
    rollup: RollupSettings = RollupSettings()
    alerts: AlertsSettings = AlertsSettings()
    hj212: Hj212Settings = Hj212Settings()
    console: ConsoleSettings = ConsoleSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls._toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls._toml_file))
        return tuple(sources)


class ConfigError(ValueError):
    """Settings that cannot be used; ``str()`` is the message for the operator."""


def load_settings(config: Path | None = None, **overrides: Any) -> Settings:
    """Read settings from the environment and an optional TOML file; ConfigError if invalid."""
    if config is not None:
        try:
            with config.open("rb") as f:
                tomllib.load(f)
        except OSError as e:
            raise ConfigError(f"{config}: cannot read the config file ({e.strerror})") from e
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{config}: not valid TOML: {e}") from e
    Settings._toml_file = config
    try:
        return Settings(**overrides)
    except ValidationError as e:
        raise ConfigError("\n".join(_explain(err, config) for err in e.errors())) from None
    finally:
        Settings._toml_file = None


def _explain(err: Any, config: Path | None) -> str:
    loc = [str(p) for p in err["loc"] if not str(p).isdigit()]
    dotted = ".".join(loc) or "settings"
    env = ENV_PREFIX + "__".join(p.upper() for p in loc)
    where = f"{env}"
    if config is not None and loc:
        line = _toml_line(config, loc)
        if line:
            where += f" or {config}:{line}"
    got = err.get("input")
    shown = "" if isinstance(got, dict | list) or got is None or _secret(loc) else f" (got {got!r})"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown setting: check its spelling against the README's configuration table"
    return f"config error: {dotted} [{where}]: {msg}{shown}"


def _secret(loc: list[str]) -> bool:
    words = ("token", "password", "url", "secret")
    return any(p in words or p.endswith(tuple("_" + w for w in words)) for p in loc)


def _toml_line(path: Path, loc: list[str]) -> int | None:
    """The line where a setting is written in the TOML file, for the error message."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    section, key = ".".join(loc[:-1]), loc[-1]
    current = ""
    for i, raw in enumerate(lines, 1):
        s = raw.strip()
        if s.startswith("[") and s.endswith("]"):
            current = s.strip("[]").strip()
            if current == ".".join(loc):
                return i
            continue
        if current == section and re.match(rf"{re.escape(key)}\s*=", s):
            return i
    return None


def redact_url(url: str) -> str:
    """A URL with its password replaced, safe to log."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
