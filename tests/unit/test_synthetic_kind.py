"""A sixth device kind, defined and registered here only, goes every way a shipped kind goes.

The fixture below is all a new kind needs: its model (units and ranges), measurement, labels,
key fields, simulator, bad sample and typed registry facts. Nothing outside this file names it,
so each check fails if the pipeline, the registry loader, the console's devices view, the
simulator or the dashboards' schema still knows only the five shipped kinds. The console's
devices page over a real InfluxDB is tests/integration/test_synthetic_kind.py.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

import pytest

from console import data
from console.present import fact_label, format_value, key_values, kind_label
from console.web import Filters
from dashboards import queries as Q
from dashboards.schema import measurements, unit
from devices.base import DeviceKind, Glance, Label, Reading, rng
from devices.kinds import KINDS, registered
from devices.registry import Device, Facts, Registry, RegistryError
from envgrid.simulator import generate
from ingest.deadletter import make_deadletter
from ingest.pipeline import IN_FUTURE, INVALID, KIND_MISMATCH, TOO_OLD, Accepted, Pipeline, Rejected
from ingest.topics import TopicMap

NOW_S = 1_780_272_000.0  # 2026-06-01T00:00:00Z
TS_MS = int(NOW_S * 1000) - 60_000


class NoiseReading(Reading):
    """A sound-level meter's reading (A-weighted equivalent level over the interval)."""

    laeq_db: Annotated[float, rng(20, 140, "dB(A)")] | None = None
    lmax_db: Annotated[float, rng(20, 150, "dB(A)")] | None = None

    MEASURED: ClassVar[tuple[str, ...]] = ("laeq_db", "lmax_db")


class NoiseFacts(Facts):
    """The meter's acoustic zone (a label of the site, not a limit: none is applied here)."""

    zone: Literal["0", "1", "2", "3", "4a", "4b"] | None = None


def noise_summary(g: Glance) -> list[str]:
    v = g.value("laeq_db")
    return [] if v is None else [f"LAeq {g.show('laeq_db', v)}"]


def simulate_noise(
    device: Device, now: datetime, rnd: random.Random, state: dict[str, Any]
) -> dict[str, Any]:
    level = 45 + 10 * (7 <= now.hour < 22) + rnd.gauss(0, 2)
    return {"laeq_db": round(level, 1), "lmax_db": round(level + rnd.uniform(5, 15), 1)}


NOISE = DeviceKind(
    name="noise",
    measurement="noise_level",
    model=NoiseReading,
    description="Sound-level meter",
    registry_tags=("zone",),
    label=Label("噪声自动站", "Noise station"),
    facts_model=NoiseFacts,
    fact_labels={"zone": Label("声环境功能区", "Acoustic zone")},
    key_fields=("laeq_db", "lmax_db"),
    summary=noise_summary,
    simulate=simulate_noise,
    bad_sample={"laeq_db": 300.0},
)

REGISTRY_YAML = """\
devices:
  - {id: NS-001, kind: noise, site: 清江浦广场, county: 清江浦区, zone: "1"}
  - {id: NS-002, kind: noise, site: 淮安新港, county: 淮阴区, zone: 4a}
  - {id: WQ-001, kind: water, site: 古黄河断面, county: 清江浦区, section_type: river}
"""


@pytest.fixture
def noise() -> Iterator[DeviceKind]:
    with registered(NOISE) as kind:
        yield kind
    assert "noise" not in KINDS


@pytest.fixture
def registry(noise: DeviceKind) -> Registry:
    return Registry.parse(REGISTRY_YAML, "reg.yaml", KINDS)


@pytest.fixture
def pipeline(registry: Registry) -> Pipeline:
    return Pipeline(KINDS, registry, TopicMap("envgrid", KINDS), clock=lambda: NOW_S)


# ------------------------------------------------------------------------------ registry


def test_the_registry_accepts_the_kind_and_types_its_facts(registry: Registry) -> None:
    ns = registry.get("NS-002")
    assert ns is not None and ns.kind == "noise"
    facts = NOISE.facts(ns)
    assert isinstance(facts, NoiseFacts) and facts.zone == "4a"
    assert [d.id for d in registry.of_kind("noise")] == ["NS-001", "NS-002"]


def test_a_bad_fact_of_the_kind_names_the_line(noise: DeviceKind) -> None:
    text = REGISTRY_YAML.replace("zone: 4a", "zone: 5")
    with pytest.raises(RegistryError, match=r"reg.yaml:3: device 'NS-002': zone: Input should be"):
        Registry.parse(text, "reg.yaml", KINDS)


def test_without_registration_the_kind_is_unknown() -> None:
    with pytest.raises(RegistryError, match="unknown kind 'noise'"):
        Registry.parse(REGISTRY_YAML, "reg.yaml", KINDS)


# ------------------------------------------------------------------------------ pipeline


def test_pipeline_writes_a_line_and_dead_letters_a_bad_one(pipeline: Pipeline) -> None:
    ok = pipeline.process(
        "envgrid/noise/NS-001", json.dumps({"ts": TS_MS, "laeq_db": 55.5}).encode()
    )
    assert isinstance(ok, Accepted), ok
    assert ok.line == (
        f"noise_level,county=清江浦区,device_id=NS-001,site=清江浦广场,zone=1 laeq_db=55.5 {TS_MS}"
    )
    topic, payload = "envgrid/noise/NS-001", json.dumps({"ts": TS_MS, **NOISE.bad_sample}).encode()
    bad = pipeline.process(topic, payload)
    assert isinstance(bad, Rejected) and bad.category == INVALID
    assert "laeq_db" in bad.reason
    dl = make_deadletter(
        lambda t: "envgrid/deadletter/" + t, topic, payload, bad.reason, max_packet=1 << 20
    )
    assert dl.topic == "envgrid/deadletter/envgrid/noise/NS-001"
    assert json.loads(dl.body)["reason"] == bad.reason


def test_a_reading_on_the_kind_of_another_device_is_refused(pipeline: Pipeline) -> None:
    res = pipeline.process(
        "envgrid/noise/WQ-001", json.dumps({"ts": TS_MS, "laeq_db": 50}).encode()
    )
    assert isinstance(res, Rejected) and res.category == KIND_MISMATCH


# ----------------------------------------------------------------------------- simulator


def test_simulator_makes_valid_readings_and_the_bad_ones_it_promises(
    registry: Registry, pipeline: Pipeline
) -> None:
    devices = registry.of_kind("noise")
    good = list(generate(devices, 20, start_ms=TS_MS - 3_600_000, seed=1))
    for m in good:
        res = pipeline.process(m.topic, m.payload)
        assert isinstance(res, Accepted), (m.payload, res)
        assert res.line.startswith("noise_level,")
    bad = list(generate(devices, 60, start_ms=TS_MS - 3_600_000, bad_fraction=1.0, seed=2))
    assert any(
        json.dumps(NOISE.bad_sample)[1:-1] in m.payload.decode("utf-8", "replace") for m in bad
    )
    for m in bad:
        res = pipeline.process(m.topic, m.payload)
        assert isinstance(res, Rejected), m.payload[:80]
        if m.expect not in (TOO_OLD, IN_FUTURE):  # relative to the wall clock, not NOW_S
            assert res.category == m.expect, (m.payload[:80], res)


# ------------------------------------------------------------------------- console view


def test_console_reads_and_shows_the_kinds_key_values(registry: Registry) -> None:
    statements = data.latest_query("noise", 600)
    assert statements == [
        'SELECT last("laeq_db") AS "v" FROM "noise_level" WHERE time > now() - 600s '
        'GROUP BY "device_id"',
        'SELECT last("lmax_db") AS "v" FROM "noise_level" WHERE time > now() - 600s '
        'GROUP BY "device_id"',
    ]
    state = data.DeviceState(TS_MS, {"": {"laeq_db": 55.5, "laeq_db@": TS_MS}})
    assert key_values("noise", state, "en") == ["LAeq 55.5 dB(A)"]
    assert kind_label("noise", "zh") == "噪声自动站"
    assert fact_label("noise", "zone", "en") == "Acoustic zone"
    assert format_value("noise", "lmax_db", 71.0, "zh") == "71 dB(A)"
    assert Filters.parse({"kind": "noise"}, []).kind == "noise"


# --------------------------------------------------------------------- dashboards schema


def test_dashboards_schema_holds_what_the_pipeline_writes(pipeline: Pipeline) -> None:
    res = pipeline.process(
        "envgrid/noise/NS-002", json.dumps({"ts": TS_MS, "laeq_db": 61, "lmax_db": 80.5}).encode()
    )
    assert isinstance(res, Accepted)
    head, fields, _ = res.line.split(" ")
    measurement, *tags = head.split(",")
    schema = measurements()[measurement]
    assert {t.split("=")[0] for t in tags} <= set(schema.tags)
    assert {f.split("=")[0] for f in fields.split(",")} <= set(schema.fields)
    assert schema.fields["laeq_db"] == "dB(A)"
    assert unit(measurement, "laeq_db") == "suffix:dB(A)"
    names = Q.names('SELECT mean("laeq_db") FROM "noise_level" GROUP BY "zone"')
    assert names.measurements == {"noise_level"} <= set(measurements())
    assert names.identifiers <= set(schema.fields) | set(schema.tags)
