"""Build every envgrid dashboard to JSON, and the gazetteer that places devices on the map.

``envgrid dashboards build`` writes ``dashboards/json/<uid>.json`` (committed, provisioned into
Grafana by docker-compose) and ``dashboards/gazetteer/envgrid-devices.json``; a test fails when
the committed files differ from what this code builds, so the JSON never drifts from the code.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from dashboards import (
    DATASOURCE_UID,
    HERE,
    air,
    city,
    ev,
    health,
    plan,
    pv,
    shore,
    water,
)
from dashboards.panels import CITY_TZ, Ctx
from devices.registry import FLEET, Registry, load_registry

GAZETTEER_FILE = HERE / "gazetteer" / "envgrid-devices.json"
DEFAULT_REGISTRY = FLEET

Builder = Callable[[Ctx], db.Dashboard]
BUILDERS: tuple[Builder, ...] = (
    city.build,
    water.build,
    air.build,
    pv.build,
    ev.build,
    shore.build,
    health.build,
    plan.build,
)


@dataclass(frozen=True)
class Built:
    """One dashboard as Grafana JSON, and the file it is written to."""

    uid: str
    title: str
    model: dict[str, Any]

    @property
    def filename(self) -> str:
        """``<uid>.json``."""
        return f"{self.uid}.json"

    def text(self) -> str:
        """The JSON file's content: stable key order, UTF-8, a final newline."""
        return json.dumps(self.model, ensure_ascii=False, indent=2) + "\n"


def build_all(
    registry: Registry | None = None,
    *,
    datasource_uid: str = DATASOURCE_UID,
    timezone: str = CITY_TZ,
) -> list[Built]:
    """Every dashboard, built from code."""
    # The shipped fleet by default: map positions and PV capacity come from it.
    ctx = Ctx(registry or load_registry(FLEET), datasource_uid, timezone)
    out = []
    for builder in BUILDERS:
        model = to_model(builder(ctx))
        out.append(Built(str(model["uid"]), str(model["title"]), model))
    return out


def to_model(dashboard: db.Dashboard) -> dict[str, Any]:
    """The dashboard as a plain JSON object, with panel ids numbered top to bottom."""
    model: dict[str, Any] = json.loads(json.dumps(dashboard.build(), cls=JSONEncoder))
    # Grafana's own JSON always carries these lists, even empty.
    model.setdefault("templating", {}).setdefault("list", [])
    model.setdefault("annotations", {}).setdefault("list", [])
    for i, panel in enumerate(_panels(model), start=1):
        panel["id"] = i
    return model


def _panels(model: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in model.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # a collapsed row holds its panels


def gazetteer(registry: Registry) -> list[dict[str, Any]]:
    """Device positions in Grafana's gazetteer format (key → latitude, longitude, name)."""
    return [
        {
            "key": d.id,
            "latitude": d.lat,
            "longitude": d.lon,
            "name": d.name or f"{d.site} {d.id}",
        }
        for d in sorted(registry, key=lambda d: d.id)
        if d.lat is not None and d.lon is not None
    ]


def gazetteer_text(registry: Registry) -> str:
    """The gazetteer file's content."""
    return json.dumps(gazetteer(registry), ensure_ascii=False, indent=1) + "\n"


def outputs(built: list[Built], registry: Registry, root: Path = HERE) -> dict[Path, str]:
    """Every file ``envgrid dashboards build`` writes under ``root``, with its content."""
    files = {root / "json" / b.filename: b.text() for b in built}
    files[root / "gazetteer" / GAZETTEER_FILE.name] = gazetteer_text(registry)
    return files


def write(files: dict[Path, str], root: Path = HERE) -> list[Path]:
    """Write the files and remove stale dashboard JSON; return the paths that changed."""
    changed = []
    for path, content in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != content:
            path.write_text(content, encoding="utf-8")
            changed.append(path)
    for stale in sorted((root / "json").glob("*.json")):
        if stale not in files:
            stale.unlink()
            changed.append(stale)
    return changed


def differences(files: dict[Path, str], root: Path = HERE) -> list[str]:
    """Files on disk that differ from what the code builds (missing, changed or stale)."""
    out = []
    for path, content in files.items():
        if not path.exists():
            out.append(f"{path}: missing")
        elif path.read_text(encoding="utf-8") != content:
            out.append(f"{path}: differs from what the code builds")
    stale = sorted(p for p in (root / "json").glob("*.json") if p not in files)
    return out + [f"{p}: not built by the code" for p in stale]
