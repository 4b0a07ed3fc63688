"""envgrid settings: one pydantic-settings class, sources in a fixed order.

Order (first wins): keyword arguments, environment variables (``ENVGRID_<SECTION>__<KEY>``),
the TOML file given with ``--config``, then the defaults below. A bad value stops start-up with
one line per problem naming the setting, where it came from and what is expected.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, ClassVar

from pydantic import ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from alerts.config import AlertsSettings
from console.config import ConsoleSettings
from devices.errors import Problem, problems, toml_line
from envgrid.cluster.config import ClusterSettings
from hj212.config import Hj212Settings
from ingest.config import (
    DevicesSettings,
    HttpSettings,
    InfluxSettings,
    IngestSettings,
    MqttSettings,
    StandardsSettings,
)
from rollups.config import QcSettings, RollupSettings

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
    qc: QcSettings = QcSettings()
    alerts: AlertsSettings = AlertsSettings()
    hj212: Hj212Settings = Hj212Settings()
    console: ConsoleSettings = ConsoleSettings()
    cluster: ClusterSettings = ClusterSettings()

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
        text = _text(config)
        raise ConfigError(
            "\n".join(_explain(p, config, text) for p in problems(e, _MESSAGES))
        ) from None
    finally:
        Settings._toml_file = None


_MESSAGES = {
    "extra_forbidden": "unknown setting: check its spelling against the README's configuration "
    "table"
}


def _text(config: Path | None) -> str | None:
    if config is None:
        return None
    try:
        return config.read_text(encoding="utf-8")
    except OSError:
        return None


def _explain(p: Problem, config: Path | None, text: str | None) -> str:
    names = [str(part) for part in p.loc if not isinstance(part, int)]
    where = ENV_PREFIX + "__".join(n.upper() for n in names)
    line = toml_line(text, p.loc, header=False) if text is not None and names else None
    if line:
        where += f" or {config}:{line}"
    got = p.input
    hidden = isinstance(got, dict | list) or got is None or _secret(names)
    shown = "" if hidden else f" (got {got!r})"
    return f"config error: {p.path() or 'settings'} [{where}]: {p.message}{shown}"


def _secret(loc: list[str]) -> bool:
    words = ("token", "password", "url", "secret")
    if loc[:2] == ["cluster", "database"]:  # a PostgreSQL URL with its password
        return True
    return any(p in words or p.endswith(tuple("_" + w for w in words)) for p in loc)
