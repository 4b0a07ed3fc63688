"""Hostile input on the hot path (issue 20): topics outside the routes, tags line protocol
cannot carry. Each one becomes a dead letter with a reason, never a silent drop or a line
InfluxDB refuses."""

from __future__ import annotations

import json
import time

import pytest

from devices.kinds import KINDS
from devices.registry import Device, Registry
from ingest.pipeline import INVALID, OWN_TOPIC, UNKNOWN_TOPIC, Accepted, Pipeline, Rejected
from ingest.topics import TopicMap


def pipeline(*devices: Device) -> Pipeline:
    return Pipeline(KINDS, Registry(devices), TopicMap("envgrid", KINDS))


def shore(**extra: object) -> bytes:
    return json.dumps({"ts": int(time.time() * 1000), "power_kw": 10.0, **extra}).encode()


@pytest.mark.parametrize(
    ("topic", "hint"),
    [
        ("envgrid/PV/x", "lower case"),
        ("envgrid/solar/x", "kind one of"),
        ("envgrid/pv/a/b", "kind one of"),
        ("/envgrid/pv/x", "starts with '/'"),
        ("envgrid/pv/x/", "ends with '/'"),
        ("envgrid/alerts", "kind one of"),  # not under alerts/: not ours
    ],
)
def test_topics_outside_the_pattern_are_rejected_with_a_reason(topic: str, hint: str) -> None:
    res = pipeline().process(topic, shore())
    assert isinstance(res, Rejected) and res.category == UNKNOWN_TOPIC
    assert topic in res.reason and hint in res.reason


@pytest.mark.parametrize(
    "topic",
    ["envgrid/deadletter/envgrid/PV/x", "envgrid/alerts/major/pv/PV-1", "envgrid/hj212cmd/MN1"],
)
def test_own_topics_are_not_dead_lettered_again(topic: str) -> None:
    assert pipeline().process(topic, b"{}") is OWN_TOPIC


def test_subscriptions_cover_the_topics_outside_the_pattern() -> None:
    assert TopicMap("envgrid", KINDS).subscriptions() == ["envgrid/#", "/envgrid/#"]


def test_payload_tag_ending_in_a_backslash_is_rejected_not_sent() -> None:
    res = pipeline().process("envgrid/shore_power/SP-1", shore(berth="B1\\"))
    assert isinstance(res, Rejected) and res.category == INVALID
    assert "ends in a backslash" in res.reason
    ok = pipeline().process("envgrid/shore_power/SP-1", shore(berth="B1\\x"))
    assert isinstance(ok, Accepted) and "berth=B1\\x" in ok.line


@pytest.mark.parametrize(("site", "why"), [("trail\\", "backslash"), ("two\nlines", "U+000A")])
def test_registry_tag_line_protocol_cannot_carry_is_rejected(site: str, why: str) -> None:
    dev = Device(id="SP-2", kind="shore_power", site=site, county="c", known=True)
    res = pipeline(dev).process("envgrid/shore_power/SP-2", shore())
    assert isinstance(res, Rejected) and res.category == INVALID and why in res.reason
