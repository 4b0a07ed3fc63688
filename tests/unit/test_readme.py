"""The README's examples are executed: every payload example is accepted as shown."""

from __future__ import annotations

import json
import re
from pathlib import Path

from devices.kinds import KINDS
from devices.registry import load_registry
from envgrid.app import DEFAULT_REGISTRY
from ingest.pipeline import Accepted, Pipeline
from ingest.topics import TopicMap

README = Path(__file__).resolve().parents[2] / "README.md"


def _block(name: str) -> str:
    text = README.read_text(encoding="utf-8")
    m = re.search(rf"<!-- {name}:begin -->\n(.*?)<!-- {name}:end -->", text, re.S)
    assert m, f"README has no {name} block"
    return m.group(1)


def test_payload_examples_are_accepted() -> None:
    body = _block("payload-examples").strip().removeprefix("```json").removesuffix("```")
    examples = [json.loads(line) for line in body.strip().splitlines()]
    assert {e["topic"].split("/")[1] for e in examples} == set(KINDS)
    reg = load_registry(DEFAULT_REGISTRY)
    # A clock at the examples' time, so the 7-day window holds however old the README gets.
    pipeline = Pipeline(KINDS, reg, TopicMap("envgrid", KINDS), clock=lambda: 1_795_574_500.0)
    for e in examples:
        res = pipeline.process(e["topic"], json.dumps(e["payload"]).encode())
        assert isinstance(res, Accepted), (e["topic"], getattr(res, "reason", ""))
        model_fields = set(KINDS[e["topic"].split("/")[1]].model.__struct_fields__)
        assert set(e["payload"]) <= model_fields


def test_config_table_is_current_and_complete() -> None:
    from envgrid.config_doc import config_table, undocumented

    assert undocumented() == []
    assert _block("config-table").strip() == config_table().strip(), (
        "README configuration table is stale: run `python -m envgrid.config_doc README.md`"
    )


def test_performance_doc_is_the_readme_section() -> None:
    """docs/performance.md is what `envgrid run --workers` points to: the README's section, kept
    word for word so the two never disagree on a figure."""
    text = README.read_text(encoding="utf-8")
    m = re.search(r"^## Performance\n.*?(?=^## |\Z)", text, re.S | re.M)
    assert m, "README has no Performance section"
    doc = README.with_name("docs") / "performance.md"
    assert doc.read_text(encoding="utf-8").strip() == m.group(0).strip(), (
        "docs/performance.md differs from the README's Performance section: copy it over"
    )
