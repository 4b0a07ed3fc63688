"""Golden files: topic + payload in, expected line protocol or dead-letter reason out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from devices import air
from devices.kinds import KINDS
from devices.registry import load_registry
from ingest.pipeline import Accepted, Pipeline, Rejected
from ingest.topics import TopicMap

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
CASES: list[dict[str, Any]] = yaml.safe_load((GOLDEN / "pipeline.yaml").read_text())["cases"]
NOW_S = 1_780_272_000.0  # 2026-06-01T00:00:00Z


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    air.configure("Asia/Shanghai", None)
    reg = load_registry(GOLDEN / "registry.yaml")
    return Pipeline(KINDS, reg, TopicMap("envgrid", KINDS), clock=lambda: NOW_S)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_golden(pipeline: Pipeline, case: dict[str, Any]) -> None:
    res = pipeline.process(case["topic"], case["payload"].encode())
    if "line" in case:
        assert isinstance(res, Accepted), getattr(res, "reason", res)
        assert res.line == case["line"]
    else:
        category, reason = case["reject"]
        assert isinstance(res, Rejected), res
        assert res.category == category
        assert reason in res.reason


def test_oversize_is_rejected_without_parsing(pipeline: Pipeline) -> None:
    payload = b"{" + b" " * 300_000  # would be malformed if it were parsed
    res = pipeline.process("envgrid/water/WQ-001", payload)
    assert isinstance(res, Rejected)
    assert res.category == "oversize"
    assert "300001 bytes exceeds the limit of 262144" in res.reason


def test_edition_follows_the_local_date(pipeline: Pipeline) -> None:
    pipeline = Pipeline(
        pipeline.kinds, pipeline.registry, pipeline.topics, clock=lambda: 1_772_330_000.0
    )  # 2026-03-01T02:33Z
    # 2026-02-28T16:30Z is 2026-03-01 00:30 in Asia/Shanghai: the 2026 table applies.
    res = pipeline.process(
        "envgrid/air/AQ-001", b'{"ts": "2026-02-28T16:30:00Z", "pm25_ug_m3": 70}'
    )
    assert isinstance(res, Accepted)
    assert "aqi_edition=2026" in res.line
    # PM2.5 70 µg/m³: 2026 table (60→100, 115→150): (150-100)/(115-60)*(70-60)+100 = 109.09 → 110
    assert "aqi=110i" in res.line
    res = pipeline.process(
        "envgrid/air/AQ-001", b'{"ts": "2026-02-28T15:30:00Z", "pm25_ug_m3": 70}'
    )
    assert isinstance(res, Accepted)
    # 2012 table (35→50, 75→100): (100-50)/(75-35)*(70-35)+50 = 93.75 → 94
    assert "aqi_edition=2012" in res.line and "aqi=94i" in res.line
