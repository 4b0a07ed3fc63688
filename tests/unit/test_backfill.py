"""The demo's history (envgrid.backfill.history): on a grid, the same twice, accepted by the
pipeline, and looking like a city: poor-air days among good ones, sections in Class IV on some
days only, energy registers that grow by the power over each step."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta
from statistics import mean
from zoneinfo import ZoneInfo

import yaml

from devices.fleet import fleet
from devices.kinds import KINDS
from devices.registry import Registry
from envgrid.backfill import Span, count, history
from ingest.pipeline import Accepted, Pipeline
from ingest.topics import TopicMap

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 20, 9, 47, 13, tzinfo=TZ)
DAYS = 21


def _num(v: object) -> float:
    assert isinstance(v, int | float) and not isinstance(v, bool), v
    return float(v)


def _registry(per_kind: int) -> Registry:
    return Registry.parse(yaml.safe_dump({"devices": fleet(per_kind)}), "fleet", KINDS)


def test_span_is_whole_local_days_on_the_step_grid() -> None:
    span = Span.of(3, TZ, NOW)
    assert span.start() == datetime(2026, 11, 17, tzinfo=TZ)
    assert span.days() == [date(2026, 11, 17) + timedelta(days=i) for i in range(4)]
    stamps = span.stamps()
    assert all(ts % 300_000 == 0 for ts in stamps)
    assert stamps[-1] < span.end_ms <= stamps[-1] + 300_000
    assert len(stamps) == 3 * 288 + (9 * 60 + 47) // 5 + 1


def test_history_is_the_same_twice_and_every_reading_is_accepted() -> None:
    registry = _registry(1)
    devices = list(registry)
    span = Span.of(2, TZ, NOW)
    first = [(m.topic, m.payload) for m in history(devices, span, prefix="envgrid")]
    again = [(m.topic, m.payload) for m in history(devices, span, prefix="envgrid")]
    assert first == again and len(first) == count(devices, span)
    assert len({t for t, _ in first}) == len(devices)
    pipeline = Pipeline(
        KINDS,
        registry,
        TopicMap("envgrid", KINDS),
        max_age_ms=4 * 86_400_000,
        clock=lambda: NOW.timestamp(),
    )
    for topic, payload in first:
        res = pipeline.process(topic, payload)
        assert isinstance(res, Accepted), (topic, getattr(res, "reason", ""))


def test_history_looks_like_a_city() -> None:
    registry = _registry(5)
    span = Span.of(DAYS, TZ, NOW)
    step_h = span.step_ms / 3_600_000
    pm25: dict[date, list[float]] = defaultdict(list)
    classes: dict[str, dict[date, list[int]]] = defaultdict(lambda: defaultdict(list))
    last: dict[str, tuple[float, float]] = {}  # device -> (register, power kW) of its previous
    grew = 0
    for m in history(list(registry), span, prefix="envgrid"):
        device = registry.get(m.device_id)
        assert device is not None and device.kind is not None
        kind = KINDS[device.kind]
        reading = kind.decoder.decode(m.payload)
        day = datetime.fromtimestamp(m.ts_ms / 1000, TZ).date()
        values = kind.values(reading, device)
        if device.kind == "air":
            pm25[day].append(_num(values["pm25_ug_m3"]))
        if device.kind == "water":
            classes[device.id][day].append(int(_num(values["water_class"])))
        raw = values.get("energy_kwh", values.get("energy_total_kwh"))
        if raw is None:
            continue
        register = _num(raw)
        if "power_kw" in values:
            power = _num(values["power_kw"])
        else:
            power = _num(values["ac_power_w"]) / 1000
        if m.device_id in last:
            before, _ = last[m.device_id]
            assert register >= before, m.device_id
            if power > 1:
                # The register grew by this reading's power over one step (rounding aside).
                assert abs(register - before - power * step_h) < 0.02 * power * step_h + 0.01
                grew += 1
        last[m.device_id] = (register, power)
    assert grew > 1000
    closed = span.days()[:-1]
    city = [mean(pm25[d]) for d in closed]
    # GB 3095 grade II PM2.5 24 h limit: 75 µg/m³; poor days among good ones.
    assert 0 < sum(v > 75 for v in city) < len(city) / 2
    assert min(city) < 35
    # A section whose day (its readings' median class) is Class IV on some days, not on all;
    # and a section that stays within Class III.
    worst = {
        s: [sorted(by_day[d])[len(by_day[d]) // 2] for d in closed] for s, by_day in classes.items()
    }
    assert any(0 < sum(c >= 4 for c in days) < len(days) for days in worst.values()), worst
    assert sum(all(c <= 3 for c in days) for days in worst.values()) >= 1
