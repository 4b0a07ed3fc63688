"""The hot path's fast versions give exactly what the reference code gives.

The generated per-kind encoders against ``DeviceKind.encode_generic``, the per-reading GB 3838
class against ``gb3838.section_class``, the integer AQI against ``aqi.aqi_realtime``, the edition
switch instant against the date rule, the derived-value memo, and the bounded cache of
unregistered devices.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices import air, water
from devices.aqi import BREAKPOINTS, aqi_realtime, edition_for
from devices.gb3838 import LAKE_LIMITS, LIMITS, section_class
from devices.kinds import KINDS
from devices.lineproto import TagValueError
from devices.registry import Device, Registry, load_registry
from envgrid.app import DEFAULT_REGISTRY

TS = 1_780_271_940_000  # 2026-05-31T23:59Z


def _model(kind: str, body: dict[str, Any]) -> Any:
    return KINDS[kind].decoder.decode(msgspec.json.encode({"ts": TS, **body}))


@pytest.fixture(autouse=True)
def _shanghai() -> Any:
    air.configure("Asia/Shanghai", None)
    yield
    air.configure("Asia/Shanghai", None)


# ------------------------------------------------------------------------- encoders


def test_generated_encoder_matches_the_generic_one_for_the_fleet() -> None:
    registry = load_registry(DEFAULT_REGISTRY)
    rnd = random.Random(8)
    now = datetime(2026, 5, 31, 14, 0, tzinfo=UTC)
    checked = 0
    for dev in registry:
        assert dev.kind is not None
        kind, state = KINDS[dev.kind], {}  # type: ignore[var-annotated]
        for step in range(20):
            body = KINDS[dev.kind].sample(dev, now + timedelta(minutes=step), rnd, state)
            for drop in (None, *body):  # also every reading with one item missing
                part = {k: v for k, v in body.items() if k != drop}
                try:
                    reading = _model(dev.kind, part)
                except msgspec.ValidationError:
                    continue  # nothing measured left
                for extra, extra_tags in (("", ""), ("flag=1i", ",data_kind=hourly")):
                    got = kind.encode(reading, dev, TS, extra, extra_tags)
                    assert got == kind.encode_generic(reading, dev, TS, extra, extra_tags)
                    checked += 1
    assert checked > 5000


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_generated_encoder_matches_for_any_valid_subset(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(KINDS)))
    kind = KINDS[name]
    body: dict[str, Any] = {}
    for f in msgspec.inspect.type_info(kind.model).fields:  # type: ignore[attr-defined]
        if f.name == "ts" or not data.draw(st.booleans()):
            continue
        t = next(t for t in f.type.types if not isinstance(t, msgspec.inspect.NoneType))
        t = t.type if isinstance(t, msgspec.inspect.Metadata) else t
        if isinstance(t, msgspec.inspect.FloatType):
            hi = t.le if t.le is not None else 1e12
            body[f.name] = data.draw(st.floats(t.ge, hi, allow_nan=False))
        elif isinstance(t, msgspec.inspect.IntType):
            body[f.name] = data.draw(st.integers(t.ge or 0, t.le or 10))
        elif isinstance(t, msgspec.inspect.BoolType):
            body[f.name] = data.draw(st.booleans())
        elif isinstance(t, msgspec.inspect.LiteralType):
            body[f.name] = data.draw(st.sampled_from(t.values))
        else:
            body[f.name] = data.draw(st.text('ab"\\ ,=\n', min_size=1, max_size=8))
    try:
        reading = _model(name, body)
    except msgspec.ValidationError:
        return
    dev = data.draw(
        st.sampled_from(
            [
                Device(id="X-1"),
                Device(
                    id="X 2,=",
                    site="清江浦 区",
                    county="a=b",
                    facts={"section_type": "lake", "assessment": "city", "pilot": True},
                    known=True,
                ),
            ]
        )
    )
    try:
        expected = kind.encode_generic(reading, dev, TS)
    except TagValueError:  # a payload tag line protocol cannot carry: both refuse it
        with pytest.raises(TagValueError):
            kind.encode(reading, dev, TS)
        return
    assert kind.encode(reading, dev, TS) == expected


def test_values_reuse_the_derived_values_of_the_last_encode() -> None:
    kind = KINDS["water"]
    lake = Device(id="WQ-L", facts={"section_type": "lake"})
    river = Device(id="WQ-R")
    reading = _model("water", {"tp_mg_l": 0.15, "do_mg_l": 8.0})
    kind.encode(reading, lake, TS)
    assert kind.values(reading, lake)["water_class"] == 5  # lake TP row
    # Another device: the memo must not answer for it.
    assert kind.values(reading, river)["water_class"] == 3


# ----------------------------------------------------------------------- GB 3838 class


def _near_limits() -> st.SearchStrategy[float | None]:
    limits = sorted({v for row in [*LIMITS.values(), *LAKE_LIMITS.values()] for v in row})
    edges = [x + d for x in limits for d in (-0.001, 0.0, 0.001) if x + d >= 0]
    return st.one_of(
        st.none(), st.sampled_from(edges), st.floats(0, 25, allow_nan=False), st.just(0.0)
    )


@settings(max_examples=2000, deadline=None)
@given(
    ph=st.one_of(st.none(), st.sampled_from([5.99, 6.0, 7.2, 9.0, 9.01]), st.floats(0, 14)),
    do=_near_limits(),
    codmn=_near_limits(),
    cod=_near_limits(),
    bod5=_near_limits(),
    nh3n=_near_limits(),
    tp=_near_limits(),
    lake=st.booleans(),
)
def test_reading_class_matches_section_class(
    ph: float | None,
    do: float | None,
    codmn: float | None,
    cod: float | None,
    bod5: float | None,
    nh3n: float | None,
    tp: float | None,
    lake: bool,
) -> None:
    values = {
        "ph": ph,
        "do_mg_l": do,
        "codmn_mg_l": codmn,
        "cod_mg_l": cod,
        "bod5_mg_l": bod5,
        "nh3n_mg_l": nh3n,
        "tp_mg_l": tp,
    }
    # temp_c (not assessed) keeps a reading with no assessed item valid.
    reading = water.WaterReading(ts=TS, temp_c=10.0, **values)  # type: ignore[arg-type]
    want = section_class(values, "lake" if lake else "river")
    got = water.reading_class(reading, lake)
    if want is None:
        assert got is None
    else:
        assert got == (want.water_class, ",".join(want.limiting_items))


# ----------------------------------------------------------------------------- AQI


def _concentrations(pollutant: str) -> st.SearchStrategy[float | None]:
    points = sorted({bp for table in BREAKPOINTS.values() for (p, _), t in table.items()
                     if p == pollutant for bp in t})  # fmt: skip
    near = [x + d for x in points for d in (-0.1, -0.01, 0.0, 0.01, 0.1, 0.001) if x + d >= 0]
    decimals = st.builds(
        lambda m, d: round(m / 10**d, d), st.integers(0, 40_000), st.integers(0, 3)
    )
    return st.one_of(
        st.none(),
        st.sampled_from(near),
        decimals,
        st.floats(0, 5000, allow_nan=False),
        st.just(1 / 3),
    )


@settings(max_examples=3000, deadline=None)
@given(
    so2=_concentrations("so2_ug_m3"),
    no2=_concentrations("no2_ug_m3"),
    co=_concentrations("co_mg_m3").map(lambda v: None if v is None else min(v, 200.0)),
    o3=_concentrations("o3_ug_m3"),
    pm10=_concentrations("pm10_ug_m3"),
    pm25=_concentrations("pm25_ug_m3"),
    edition=st.sampled_from(["2012", "2026"]),
)
def test_realtime_aqi_matches_aqi_realtime(
    so2: float | None,
    no2: float | None,
    co: float | None,
    o3: float | None,
    pm10: float | None,
    pm25: float | None,
    edition: Any,
) -> None:
    values = {
        "so2_ug_m3": so2,
        "no2_ug_m3": no2,
        "co_mg_m3": co,
        "o3_ug_m3": o3,
        "pm10_ug_m3": pm10,
        "pm25_ug_m3": pm25,
    }
    reading = air.AirReading(ts=TS, temp_c=10.0, **values)  # type: ignore[arg-type]
    want = aqi_realtime(values, edition)
    got = air.realtime_aqi(reading, edition)
    if want is None:
        assert got is None
    else:
        assert got == (want.aqi, want.category, ",".join(want.primary))


@pytest.mark.parametrize("tz", ["Asia/Shanghai", "Europe/Berlin", "America/New_York", "UTC"])
def test_edition_switches_at_local_midnight(tz: str) -> None:
    air.configure(tz, None)
    start = datetime(2026, 3, 1, tzinfo=ZoneInfo(tz))
    for delta_ms in (-86_400_000, -1, 0, 1, 3_600_000):
        ts = int(start.timestamp() * 1000) + delta_ms
        local = datetime.fromtimestamp(ts / 1000, tz=UTC).astimezone(ZoneInfo(tz)).date()
        reading = air.AirReading(ts=ts, pm25_ug_m3=70.0)
        assert air._edition(reading) == edition_for(local), (tz, delta_ms)
    assert edition_for(date(2026, 3, 1)) == "2026"


def test_forced_edition_wins() -> None:
    air.configure("Asia/Shanghai", "2012")
    assert air._edition(air.AirReading(ts=TS, pm25_ug_m3=70.0)) == "2012"


# ------------------------------------------------------------------------ registry


def test_unknown_devices_are_cached_within_a_bound() -> None:
    registry = Registry()
    first = registry.resolve("PV-00001")
    assert first is not None and registry.resolve("PV-00001") is first
    for k in range(100_000):
        assert registry.resolve(f"PV-{k:06d}") is not None
    assert len(registry._unknown) <= Registry.UNKNOWN_CACHE
    assert registry.resolve("bad id") is None
