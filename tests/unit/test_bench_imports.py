"""bench/ and testkit/ stand on their own: neither imports tests/, and no shipped package
imports testkit/ (it holds test harness, which production code must not depend on)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHIPPED: tuple[str, ...] = ("envgrid", "console", "report", "rollups", "hj212", "dashboards")
SHIPPED += ("ingest", "alerts", "devices")


def _imported(path: Path) -> set[str]:
    """Top-level package of every module ``path`` imports (absolute imports only)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def _offenders(folders: tuple[str, ...], forbidden: str) -> list[str]:
    return sorted(
        str(p.relative_to(ROOT))
        for folder in folders
        for p in (ROOT / folder).rglob("*.py")
        if forbidden in _imported(p)
    )


def test_bench_and_testkit_do_not_import_tests() -> None:
    assert _offenders(("bench", "testkit"), "tests") == []


def test_no_shipped_package_imports_testkit() -> None:
    assert _offenders(SHIPPED, "testkit") == []


def test_the_check_sees_an_import(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("import os\nfrom tests.helpers import mqtt_client\n", encoding="utf-8")
    assert _imported(probe) == {"os", "tests"}
