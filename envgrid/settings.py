"""envgrid settings: one pydantic-settings class, sources in a fixed order.

Order (first wins): keyword arguments, environment variables (``ENVGRID_<SECTION>__<KEY>``),
the TOML file given with ``--config``, then the defaults below. A bad value stops start-up with
one line per problem naming the setting, where it came from and what is expected.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, ClassVar

from pydantic import (
    ValidationError,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from alerts.config import AlertsSettings
from console.config import ConsoleSettings
from hj212.config import Hj212Settings
from ingest.config import (
    DevicesSettings,
    HttpSettings,
    InfluxSettings,
    IngestSettings,
    MqttSettings,
    StandardsSettings,
)
from rollups.config import RollupSettings

ENV_PREFIX = "ENVGRID_"


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
