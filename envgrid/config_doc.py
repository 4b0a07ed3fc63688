"""The README's configuration table, generated from the settings class so it cannot drift.

Every description comes from its field's ``Field(description=...)`` in the owning section's
``config.py``: one place, beside the setting it describes.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from envgrid.settings import Settings


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
            default = _default(field.get_default(call_default_factory=True))
            rows.append(f"| `{env}{name.upper()}` | `[{section}] {name}` | {default} | {desc} |")

    walk(Settings, "ENVGRID_", "")
    return "\n".join(rows)


def undocumented() -> list[str]:
    """Settings declared without ``Field(description=...)`` (the README table would show a
    blank)."""
    return [
        line.split("|")[1].strip()
        for line in config_table().splitlines()[2:]
        if not line.split("|")[4].strip()
    ]


def update_readme(path: Path) -> bool:
    """Rewrite the README's config-table block; True when it changed."""
    text = path.read_text(encoding="utf-8")
    begin, end = "<!-- config-table:begin -->\n", "<!-- config-table:end -->"
    head, _, rest = text.partition(begin)
    _, _, tail = rest.partition(end)
    new = f"{head}{begin}{config_table()}\n{end}{tail}"
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


if __name__ == "__main__":  # python -m envgrid.config_doc README.md
    import sys

    changed = update_readme(Path(sys.argv[1] if len(sys.argv) > 1 else "README.md"))
    print("README config table " + ("updated" if changed else "already current"))
