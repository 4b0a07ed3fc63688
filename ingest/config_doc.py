"""The README's configuration table, generated from the settings class so it cannot drift."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from ingest.config import Settings


def _default(value: Any) -> str:
    if value is None or value == "" or value == []:
        return "—"
    if isinstance(value, timedelta):
        s = value.total_seconds()
        for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
            if s >= n and s % n == 0:
                return f"`{int(s // n)}{unit}`"
        return f"`{s:g}s`"
    if isinstance(value, SecretStr):
        return "—"
    if isinstance(value, Path):
        return f"`{value}`"
    return f"`{value}`"


def config_table() -> str:
    """A Markdown table: environment variable, TOML key, default, description."""
    rows = ["| environment variable | TOML | default | what it sets |", "|---|---|---|---|"]

    def walk(model: type[BaseModel], env: str, section: str) -> None:
        for name, field in model.model_fields.items():
            if isinstance(field.default, BaseModel):
                walk(type(field.default), f"{env}{name.upper()}__", name)
                continue
            desc = (field.description or "").replace("|", "\\|")
            rows.append(
                f"| `{env}{name.upper()}` | `[{section}] {name}` | {_default(field.default)} "
                f"| {desc} |"
            )

    walk(Settings, "ENVGRID_", "")
    return "\n".join(rows)
