"""The alert engine's lifecycle on a real SQLite store, with a clock the test moves."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from alerts.engine import AlertEngine, Observation, Transition
from alerts.rules import Condition, Rule, RuleSet, Scope, parse_rules
from alerts.store import AlertFilter, AlertStore, KnownDevice, Matchers

MIN = 60_000
T0 = 1_780_000_000_000  # device time of the first reading

RULES = """
rules:
  - id: do-low
    description: DO below 3 mg/L
    kind: water
    when: do_mg_l < 3
    for: 5m
    clear: do_mg_l >= 3.5
    severity: major
  - id: nh3n-high
    kind: water
    scope: {devices: [WQ-00*]}
    when: nh3n_mg_l > 1.0
    severity: minor
  - id: ev-faulted
    kind: ev_charger
    when: status == Faulted
    severity: minor
  - id: pv-offline
    kind: pv
    nodata: {interval: 10m}
    severity: warning
"""


class Clock:
    """Wall time in seconds, moved by the test."""

    def __init__(self) -> None:
        self.s = T0 / 1000 + 5.0

    def __call__(self) -> float:
        return self.s

    def ms(self) -> int:
        return int(self.s * 1000)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AlertStore]:
    s = AlertStore(tmp_path / "alerts.db")
    yield s
    s.close()


def engine(
    store: AlertStore, clock: Clock, rules: str = RULES, expected: list[KnownDevice] | None = None
) -> AlertEngine:
    return AlertEngine(
        parse_rules(rules), store, targets=["mqtt", "webhook"], clock=clock, expected=expected or []
    )


def water(i: int, do: float, device: str = "WQ-001", **more: float) -> Observation:
    return Observation("water", device, "断面A", "清江浦区", T0 + i * MIN, {"do_mg_l": do, **more})


def feed(eng: AlertEngine, clock: Clock, series: list[float], start: int = 0) -> list[Transition]:
    """One reading a minute (device time and wall time move together), ticking after each."""
    out: list[Transition] = []
    for i, v in enumerate(series, start):
        clock.s += 60
        out += eng.observe(water(i, v))
        out += eng.tick()
    return out


def notifications(store: AlertStore, target: str = "mqtt") -> list[dict[str, object]]:
    """Every queued notification for a target, oldest first (marking them delivered)."""
    out = []
    while (item := store.next_for(target)) is not None:
        out.append(json.loads(item.payload))
        store.delivered(item.id, 0)
    return out


# ----------------------------------------------------------------------------- lifecycle

HOVER = [5, 4, 2.9, 2.8, 2.7, 2.9, 2.8, 2.9, 3.1, 2.95, 3.2, 3.4, 2.9, 3.3, 3.6, 4]


def test_breach_longer_than_for_hovering_then_recovering(store: AlertStore, clock: Clock) -> None:
    eng = engine(store, clock)
    events = [(t.event, t.notified) for t in feed(eng, clock, HOVER)]
    assert events == [("pending", False), ("firing", True), ("resolved", True)]
    for target in ("mqtt", "webhook"):
        got = notifications(store, target)
        assert [(n["event"], n["rule_id"], n["device_id"]) for n in got] == [
            ("firing", "do-low", "WQ-001"),
            ("resolved", "do-low", "WQ-001"),
        ]
    (rec,) = store.list_alerts()
    assert rec.state == "resolved" and rec.value == 3.6
    assert rec.started_ms == T0 + 2 * MIN  # the first breaching reading
    assert [h.event for h in store.history(rec.id)] == ["pending", "firing", "resolved"]
    assert "DO below 3 mg/L: do_mg_l = " in rec.message and "WQ-001 (断面A)" in rec.message


def test_breach_shorter_than_for_notifies_nothing(store: AlertStore, clock: Clock) -> None:
    eng = engine(store, clock)
    events = [t.event for t in feed(eng, clock, [5, 2.5, 2.6, 2.7, 2.8, 3.0, 5, 5, 5, 5, 5, 5])]
    assert events == ["pending", "cancelled"]
    assert store.list_alerts() == [] and notifications(store) == []


def test_a_value_hovering_at_the_limit_costs_one_commit_per_tick(
    store: AlertStore, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pending, cancelled, pending again…: written with the tick, not a commit (fsync) each."""
    eng = engine(store, clock)
    eng.observe(water(0, 2.0))
    eng.tick()
    (first,) = store.list_alerts()
    commits = 0
    transaction = store.transaction

    def counting() -> contextlib.AbstractContextManager[None]:
        nonlocal commits
        commits += 1
        return transaction()

    monkeypatch.setattr(store, "transaction", counting)
    events = [t.event for i in range(1, 40) for t in eng.observe(water(i, 2.0 if i % 2 else 5.0))]
    assert events == ["cancelled", "pending"] * 19
    assert commits == 0 and [a.id for a in store.list_alerts()] == [first.id]
    eng.observe(water(40, 2.0))
    eng.tick()
    assert commits == 1
    (last,) = store.list_alerts()  # the cancelled ones are gone, the open one is stored
    assert last.state == "pending" and last.started_ms == T0 + 39 * MIN != first.started_ms
    assert engine(store, clock).open_count() == {"pending": 1, "firing": 0}


def test_firing_by_the_timer_names_the_latest_value(store: AlertStore, clock: Clock) -> None:
    eng = engine(store, clock)
    eng.observe(water(0, 2.0))
    eng.tick()
    (rec,) = store.list_alerts()
    assert rec.state == "pending" and "do_mg_l = 2.0 mg/L at WQ-001" in rec.message
    eng.observe(water(1, 2.5))
    clock.s += 300
    assert [t.event for t in eng.tick()] == ["firing"]
    (rec,) = store.list_alerts()
    assert rec.state == "firing" and "do_mg_l = 2.5 mg/L at WQ-001" in rec.message
    assert notifications(store)[0]["message"] == rec.message


def test_for_reached_by_the_timer_without_new_readings(store: AlertStore, clock: Clock) -> None:
    eng = engine(store, clock)
    assert [t.event for t in eng.observe(water(0, 2.0))] == ["pending"]
    clock.s += 299
    assert eng.tick() == []
    clock.s += 1
    assert [(t.event, t.notified) for t in eng.tick()] == [("firing", True)]
    assert eng.tick() == []  # no repeat


def test_backfilled_short_breach_does_not_fire(store: AlertStore, clock: Clock) -> None:
    """Old readings arriving in a burst: `for` is judged on their own timestamps."""
    eng = engine(store, clock)
    for i, v in enumerate([5, 2.0, 2.1, 5, 5]):
        eng.observe(water(i - 600, v))  # ten hours old, one a minute, all arriving now
    clock.s += 3600
    eng.tick()
    assert store.list_alerts() == []


def test_for_zero_fires_at_once_and_series_are_separate(store: AlertStore, clock: Clock) -> None:
    eng = engine(store, clock)

    def ev(i: int, connector: int, status: str) -> Observation:
        return Observation(
            "ev_charger",
            "EV-001",
            "站",
            "区",
            T0 + i * MIN,
            {"status": status},
            f"connector={connector}",
        )

    assert [t.event for t in eng.observe(ev(0, 1, "Faulted"))] == ["firing"]
    # The other connector being Available neither clears nor repeats connector 1's alert.
    assert eng.observe(ev(1, 2, "Available")) == ()
    assert eng.observe(ev(2, 1, "Faulted")) == ()
    assert [t.event for t in eng.observe(ev(3, 2, "Faulted"))] == ["firing"]
    assert [t.event for t in eng.observe(ev(4, 1, "Available"))] == ["resolved"]
    assert [(n["event"], n["series"]) for n in notifications(store)] == [
        ("firing", "connector=1"),
        ("firing", "connector=2"),
        ("resolved", "connector=1"),
    ]


def test_scope_limits_devices(store: AlertStore, clock: Clock) -> None:
    eng = engine(store, clock)
    assert eng.observe(water(0, 8, device="WQ-101", nh3n_mg_l=1.5)) == ()
    assert [t.rule_id for t in eng.observe(water(0, 8, device="WQ-002", nh3n_mg_l=1.5))] == [
        "nh3n-high"
    ]


SCOPES = """
rules:
  - {id: everyone, kind: water, when: tp_mg_l > 1, severity: info}
  - {id: literal, kind: water, scope: {devices: [WQ-7, WQ-8, WQ-7]}, when: tp_mg_l > 1,
     severity: info}
  - {id: glob, kind: water, scope: {devices: ["WQ-?"]}, when: tp_mg_l > 1, severity: info}
  - {id: site, kind: water, scope: {sites: [断面A]}, when: tp_mg_l > 1, severity: info}
  - {id: literal-and-site, kind: water, scope: {devices: [WQ-7], sites: [other]},
     when: tp_mg_l > 1, severity: info}
  - {id: other-kind, kind: air, scope: {devices: [WQ-7]}, when: aqi > 1, severity: info}
"""


@pytest.mark.parametrize(
    ("device", "site", "fired"),
    [
        ("WQ-7", "断面A", ["everyone", "literal", "glob", "site"]),
        ("WQ-8", "断面B", ["everyone", "literal", "glob"]),
        ("WQ-9", "断面A", ["everyone", "glob", "site"]),
        ("WQ-10", "断面B", ["everyone"]),
        ("WQ-7", "other", ["everyone", "literal", "glob", "literal-and-site"]),
    ],
)
def test_every_kind_of_scope_picks_its_devices(
    store: AlertStore, clock: Clock, device: str, site: str, fired: list[str]
) -> None:
    """Literal ids (looked up), globs and sites (matched), in rule-file order."""
    eng = engine(store, clock, SCOPES)
    for d, s in [("WQ-1", "断面A"), ("WQ-7", "断面B")]:  # other devices first: shared indexes
        eng.observe(Observation("water", d, s, "清江浦区", T0, {"tp_mg_l": 0.1}))
    obs = Observation("water", device, site, "清江浦区", T0 + MIN, {"tp_mg_l": 2.0})
    assert [t.rule_id for t in eng.observe(obs)] == fired


def test_out_of_order_reading_is_ignored(store: AlertStore, clock: Clock) -> None:
    eng = engine(store, clock)
    feed(eng, clock, [2.0] * 7)  # firing
    assert eng.observe(water(1, 9.0)) == ()  # older than what the alert has seen
    assert store.list_alerts()[0].state == "firing"


# ----------------------------------------------------------------------------- restart


def test_restart_while_firing_resumes_without_repeat(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "alerts.db"
    first = AlertStore(path)
    eng = engine(first, clock)
    feed(eng, clock, [5, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0])
    assert [n["event"] for n in notifications(first)] == ["firing"]
    del eng  # killed: no flush, no close

    second = AlertStore(path)
    eng2 = engine(second, clock)
    assert eng2.open_count() == {"pending": 0, "firing": 1}
    assert feed(eng2, clock, [2.0, 2.5, 3.2], start=8) == []  # still breaching: no repeat
    assert [t.event for t in feed(eng2, clock, [3.6], start=11)] == ["resolved"]
    assert [n["event"] for n in notifications(second)] == ["resolved"]
    first.close()
    second.close()


def test_redelivered_readings_after_restart_start_no_new_episode(
    tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "alerts.db"
    store = AlertStore(path)
    eng = engine(store, clock)
    fault = Observation("ev_charger", "EV-001", "站", "区", T0, {"status": "Faulted"})
    ok = Observation("ev_charger", "EV-001", "站", "区", T0 + MIN, {"status": "Available"})
    eng.observe(fault)
    eng.observe(ok)
    assert [n["event"] for n in notifications(store)] == ["firing", "resolved"]
    # The broker redelivers both (they were not acked before the crash).
    eng2 = engine(AlertStore(path), clock)
    assert eng2.observe(fault) == () and eng2.observe(ok) == ()
    assert notifications(store) == []
    # A genuinely new fault is a new episode.
    later = Observation("ev_charger", "EV-001", "站", "区", T0 + 2 * MIN, {"status": "Faulted"})
    assert [t.event for t in eng2.observe(later)] == ["firing"]


def test_pending_survives_a_restart(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "alerts.db"
    eng = engine(AlertStore(path), clock)
    feed(eng, clock, [2.0, 2.0])
    eng2 = engine(AlertStore(path), clock)
    assert eng2.open_count() == {"pending": 1, "firing": 0}
    assert [t.event for t in feed(eng2, clock, [2.0, 2.0, 2.0, 2.0], start=2)] == ["firing"]


def test_rule_removed_between_runs_resolves_its_alert(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "alerts.db"
    store = AlertStore(path)
    feed(engine(store, clock), clock, [2.0] * 7)
    notifications(store)
    other = RULES.replace("id: do-low", "id: do-low-renamed")
    store2 = AlertStore(path)
    eng2 = engine(store2, clock, other)
    assert eng2.open_count() == {"pending": 0, "firing": 0}
    (rec,) = store2.list_alerts(AlertFilter(rule_id="do-low"))
    assert rec.state == "resolved" and "rule was removed" in rec.message
    assert [n["event"] for n in notifications(store2)] == ["resolved"]


# ----------------------------------------------------------------------------- no data


def test_silent_device_goes_offline_within_interval_plus_one_tick(
    store: AlertStore, clock: Clock
) -> None:
    eng = engine(store, clock)
    pv = Observation("pv", "PV-001", "屋顶", "区", T0, {"ac_power_w": 100.0})
    eng.observe(pv)
    seen = clock.ms()
    fired = None
    for _ in range(20):  # a tick every 50 s
        clock.s += 50
        if eng.tick():
            fired = clock.ms()
            break
    assert fired is not None and 600_000 < fired - seen <= 600_000 + 50_000
    (rec,) = store.list_alerts(AlertFilter(state="firing"))
    assert rec.message.startswith("device offline: no reading from PV-001 (屋顶)")
    assert eng.tick() == []
    assert [t.event for t in eng.observe(pv)] == ["resolved"]
    assert [n["event"] for n in notifications(store)] == ["firing", "resolved"]


def test_registered_devices_are_watched_from_start(store: AlertStore, clock: Clock) -> None:
    eng = engine(store, clock, expected=[KnownDevice("pv", "PV-009", "屋顶", "区")])
    clock.s += 601
    assert [(t.device_id, t.event) for t in eng.tick()] == [("PV-009", "firing")]


def test_restart_gives_devices_a_fresh_interval(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "alerts.db"
    eng = engine(AlertStore(path), clock)
    eng.observe(Observation("pv", "PV-001", "屋顶", "区", T0, {"ac_power_w": 1.0}))
    eng.tick()
    clock.s += 3600  # the engine was down an hour
    eng2 = engine(AlertStore(path), clock)
    assert eng2.tick() == []  # not blamed on the device
    clock.s += 601
    assert [t.device_id for t in eng2.tick()] == ["PV-001"]  # remembered: still watched


# ----------------------------------------------------------------------------- silences, ack


def test_silenced_breach_notifies_nothing_but_is_visible(store: AlertStore, clock: Clock) -> None:
    eng = engine(store, clock)
    s = eng.add_silence(Matchers(devices=("WQ-00*",)), clock.ms() + 3_600_000, "ops", "dredging")
    feed(eng, clock, [2.0] * 8)
    (rec,) = store.list_alerts()
    assert rec.state == "firing" and rec.silenced and not rec.notified
    assert notifications(store) == []
    feed(eng, clock, [4.0], start=8)  # resolves: its firing was never sent, so nothing is
    assert store.list_alerts()[0].state == "resolved" and notifications(store) == []
    assert [x.id for x in eng.silences()] == [s.id]


def test_breach_outlasting_its_silence_notifies_once_when_it_ends(
    store: AlertStore, clock: Clock
) -> None:
    eng = engine(store, clock)
    s = eng.add_silence(Matchers(rules=("do-*",)), clock.ms() + 10 * MIN, "ops")
    feed(eng, clock, [2.0] * 8)
    assert notifications(store) == []
    assert eng.delete_silence(s.id, "ops") is not None
    assert [n["event"] for n in notifications(store)] == ["firing"]
    eng.tick()
    assert notifications(store) == []
    rec = store.list_alerts()[0]
    assert [h.event for h in store.history(rec.id)] == ["pending", "firing", "unsilenced", "firing"]
    assert not rec.silenced and rec.notified


def test_silence_expiry_is_noticed_by_the_tick(store: AlertStore, clock: Clock) -> None:
    eng = engine(store, clock)
    eng.add_silence(Matchers(kinds=("water",)), clock.ms() + 9 * MIN, "ops")
    feed(eng, clock, [2.0] * 8)  # 8 minutes
    assert notifications(store) == []
    feed(eng, clock, [2.0] * 2, start=8)  # the silence ended during these
    assert [n["event"] for n in notifications(store)] == ["firing"]


def test_silence_needs_a_matcher_and_a_future_end(store: AlertStore, clock: Clock) -> None:
    eng = engine(store, clock)
    with pytest.raises(ValueError, match="at least one matcher"):
        eng.add_silence(Matchers(), clock.ms() + MIN, "ops")
    with pytest.raises(ValueError, match="in the past"):
        eng.add_silence(Matchers(devices=("x",)), clock.ms() - 1, "ops")


def test_ack_records_who_when_and_why(store: AlertStore, clock: Clock) -> None:
    eng = engine(store, clock)
    feed(eng, clock, [2.0] * 7)
    rec = store.list_alerts()[0]
    acked = eng.ack(rec.id, "王工", "crew sent to the aerator")
    assert acked is not None
    assert (acked.acked_by, acked.ack_comment, acked.acked_ms) == (
        "王工",
        "crew sent to the aerator",
        clock.ms(),
    )
    assert store.history(rec.id)[-1].event == "acked" and store.history(rec.id)[-1].by == "王工"
    assert eng.ack(9999, "x") is None
    # Acknowledging does not end the alert, and a later resolve keeps who acked it.
    feed(eng, clock, [4.0], start=7)
    final = store.get_alert(rec.id)
    assert final is not None and final.state == "resolved" and final.acked_by == "王工"


# ----------------------------------------------------------------------------- the index


def test_a_reading_visits_only_the_rules_of_its_device_and_fields(
    store: AlertStore, clock: Clock
) -> None:
    """1,000 rules, of which one applies: the other 999 are never evaluated."""
    calls: list[str] = []

    def counting(rid: str) -> Condition:
        def test(v: object) -> bool:
            calls.append(rid)
            return False

        return Condition("do_mg_l", "<", 0, test)

    rules = [Rule(id="mine", kind="water", severity="info", when=counting("mine"))]
    for i in range(333):  # other devices' rules on the same field
        rules.append(
            Rule(
                id=f"dev-{i}",
                kind="water",
                severity="info",
                scope=Scope(devices=(f"WQ-9{i:03d}",)),
                when=counting(f"dev-{i}"),
            )
        )
    for i in range(333):  # other fields of the same kind
        c = counting(f"fld-{i}")
        rules.append(
            Rule(
                id=f"fld-{i}",
                kind="water",
                severity="info",
                when=Condition("tp_mg_l", "<", 0, c.test),
            )
        )
    for i in range(333):  # other kinds
        c = counting(f"kind-{i}")
        rules.append(
            Rule(id=f"kind-{i}", kind="air", severity="info", when=Condition("aqi", "<", 0, c.test))
        )
    eng = AlertEngine(RuleSet(tuple(rules)), store, clock=clock)
    for i in range(10):
        eng.observe(water(i, 5.0, ph=7.0))
    assert calls == ["mine"] * 10


@pytest.mark.parametrize(
    ("do", "state", "limit"),
    [
        # Measured 126 bytes: a slotted _Device and its dict entry, the rule index shared (the
        # per-device dicts and rule tuples it replaced cost 704).
        (6.0, "quiet", 200),
        # Measured 544: the device and its pending episode, whose text waits in the store (it
        # was 1,513 with the text and the per-device maps in memory).
        (2.0, "pending", 700),
    ],
)
def test_memory_per_device_is_small_and_fixed(
    store: AlertStore, clock: Clock, do: float, state: str, limit: int
) -> None:
    """100,000 devices must fit the 150 MB budget, even when a third of them breach a limit."""
    import gc
    import tracemalloc

    eng = engine(store, clock)
    n = 20_000
    # Built before measuring: the ids and readings belong to the stream, not to the engine.
    obs = [
        Observation("water", f"WQ-{i:06d}", "unknown", "unknown", T0, {"do_mg_l": do})
        for i in range(n)
    ]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for o in obs:
            eng.observe(o)
        eng.tick()  # new devices and episodes go to the store
        gc.collect()
        per_device = (tracemalloc.get_traced_memory()[0] - before) / n
    finally:
        tracemalloc.stop()
    assert eng.open_count()["pending"] == (n if state == "pending" else 0)
    assert per_device < limit, f"{per_device:.0f} bytes per {state} device"
    if state == "pending":
        (rec, *_) = store.list_alerts()
        assert rec.message.startswith("DO below 3 mg/L: do_mg_l = 2.0")
