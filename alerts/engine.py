"""Rule evaluation on the live stream and the alert lifecycle: pending → firing → resolved.

``observe()`` takes each validated reading as it arrives; ``tick()`` runs on a timer for what
time alone decides (a ``for`` duration reached without a new reading, devices gone silent,
silences starting or ending). Cost per reading does not grow with the number of rules: each
device gets, once, the rules of its kind and scope indexed by field, and a reading only visits
the rules of its own fields.

Each transition and the notifications it causes are committed to the store in one transaction,
so one notification goes out when an alert fires and one when it resolves, and a restart resumes
the same episodes instead of repeating them.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from alerts.rules import Rule, RuleSet
from alerts.store import (
    AlertFilter,
    AlertRecord,
    AlertStore,
    HistoryEntry,
    KnownDevice,
    Matchers,
    Silence,
    Value,
)

log = logging.getLogger("envgrid.alerts")

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Observation:
    """One validated reading as the engine sees it: who, where, when, and every field value."""

    kind: str
    device_id: str
    site: str
    county: str
    ts_ms: int
    values: Mapping[str, Value]
    # Separate subjects within one device, e.g. "connector=2" of a charge point: each gets its
    # own alerts, so connector 1 Faulted and connector 2 Available do not flap one alert.
    series: str = ""


@dataclass(frozen=True, slots=True)
class Transition:
    """A lifecycle step the engine took (returned for tests and logs)."""

    alert_id: int
    rule_id: str
    device_id: str
    series: str
    event: str  # pending, firing, resolved, cancelled
    notified: bool = False


@dataclass(slots=True, eq=False)
class _Open:
    """An open episode (pending or firing) and the rule it belongs to."""

    rec: AlertRecord
    rule: Rule


@dataclass(frozen=True, slots=True, eq=False)
class _RuleIndex:
    """The rules that apply to a device, by field; shared by every device with the same rules."""

    by_field: dict[str, tuple[Rule, ...]]
    nodata: tuple[Rule, ...]


_NO_RULES = _RuleIndex({}, ())


@dataclass(frozen=True, slots=True)
class _KindRules:
    """A kind's rules, split by what it takes to match a new device against them.

    Most rules have no scope; rules scoped to a list of literal device ids (per-device limits,
    a city's usual way to grow its rule set) are found with one dict lookup; only the rest are
    matched glob by glob. 1,000 per-device rules would otherwise cost every new device 200
    fnmatch calls.
    """

    rules: tuple[Rule, ...]
    by_device: Mapping[str, tuple[int, ...]]  # literal device id → indices of its rules
    globbed: tuple[int, ...]  # scoped in any other way

    @classmethod
    def of(cls, rules: Sequence[Rule]) -> _KindRules:
        """Split one kind's rules (in their file order)."""
        by_device: dict[str, list[int]] = {}
        globbed: list[int] = []
        for i, r in enumerate(rules):
            s = r.scope
            if s.everything:
                continue
            if s.sites or s.counties or any(c in p for p in s.devices for c in "*?["):
                globbed.append(i)
            else:
                for d in dict.fromkeys(s.devices):
                    by_device.setdefault(d, []).append(i)
        return cls(tuple(rules), {d: tuple(ix) for d, ix in by_device.items()}, tuple(globbed))

    def scoped_matches(self, device_id: str, site: str, county: str) -> tuple[int, ...]:
        """The scoped rules a device falls in: the same tuple for the same set of rules."""
        hits = self.by_device.get(device_id, ())
        if self.globbed:
            m = (i for i in self.globbed if self.rules[i].scope.matches(device_id, site, county))
            hits += tuple(m)
        return hits


@dataclass(slots=True, eq=False)
class _Device:
    """What the engine keeps per device: its rule index, open episodes, last arrival.

    A city fleet is 100,000 devices, nearly all with nothing open: the rule index is shared and
    the episode maps exist only while something is open, so a quiet device costs little
    (bytes per device: docs/performance.md; tests/unit/test_alert_engine.py bounds it).
    """

    kind: str
    device_id: str
    site: str
    county: str
    last_seen_ms: int
    rules: _RuleIndex = _NO_RULES
    # Open threshold episodes, every series: a device rarely has more than a few, and a short
    # tuple costs a third of a series → rule id → episode map (and 40 bytes less than a list).
    open: tuple[_Open, ...] | None = None
    offline: dict[str, _Open] | None = None  # nodata rule id → episode

    def find(self, rule: Rule, series: str) -> _Open | None:
        """The open threshold episode of a rule on one series."""
        for op in self.open or ():
            if op.rule is rule and op.rec.series == series:
                return op
        return None

    def add_open(self, op: _Open) -> None:
        """Index an open threshold episode."""
        self.open = (op,) if self.open is None else (*self.open, op)

    def add_offline(self, op: _Open) -> None:
        """Index an open no-data episode."""
        if self.offline is None:
            self.offline = {}
        self.offline[op.rule.id] = op

    def drop(self, op: _Open) -> None:
        """Remove an episode from the index (and the maps once they are empty)."""
        rec = op.rec
        if self.offline and self.offline.get(rec.rule_id) is op:
            del self.offline[rec.rule_id]
            if not self.offline:
                self.offline = None
        if self.open and op in self.open:
            self.open = tuple(o for o in self.open if o is not op) or None


_NONE: tuple[Transition, ...] = ()


class AlertEngine:
    """Evaluates rules on observations and keeps alert state in an :class:`AlertStore`."""

    def __init__(
        self,
        rules: RuleSet,
        store: AlertStore,
        *,
        targets: Sequence[str] = (),
        clock: Clock = time.time,
        expected: Iterable[KnownDevice] = (),
        on_enqueue: Callable[[], None] | None = None,
        max_devices: int = 200_000,
    ) -> None:
        self.rules = rules
        self.store = store
        self.targets = tuple(targets)
        self.on_enqueue = on_enqueue
        self._clock = clock
        self._max_devices = max_devices
        by_kind: dict[str, list[Rule]] = {}
        for r in rules.rules:
            by_kind.setdefault(r.kind, []).append(r)
        self._by_kind = {kind: _KindRules.of(rs) for kind, rs in by_kind.items()}
        # Per kind, then by id: a (kind, id) tuple key would cost 64 bytes more per device.
        self._devices: dict[str, dict[str, _Device]] = {}
        self._n_devices = 0
        self._indexes: dict[tuple[str | int, ...], _RuleIndex] = {}
        self._watched: list[_Device] = []  # devices with a no-data rule
        # Keyed by the episode itself (identity: a pending episode has no alert id until it is
        # persisted); dicts rather than sets keep arrival order, so ticks fire in that order.
        self._open: dict[_Open, None] = {}
        self._pending: dict[_Open, None] = {}
        self._dirty: dict[_Open, None] = {}  # value changed since the last tick
        self._watermarks: dict[tuple[str, str, str], int] = {}
        self._new_devices: list[KnownDevice] = []
        self._cancelled: list[int] = []  # stored pending episodes that ended early
        self._silences: list[Silence] = []
        self._active_silences: frozenset[int] = frozenset()
        self._full_warned = False
        self._last_now = 0
        self._resume(expected)

    # ------------------------------------------------------------------ start-up
    def _now(self) -> int:
        now = int(self._clock() * 1000)
        if now == self._last_now:
            # The same int object for every reading of one millisecond: each device keeps its
            # last arrival, and distinct ints per device add up against the memory budget
            # (docs/performance.md, "Why the code is shaped this way").
            return self._last_now
        self._last_now = now
        return now

    def _resume(self, expected: Iterable[KnownDevice]) -> None:
        """Load open episodes, known devices and silences: continue where the last run stopped."""
        now = self._now()
        self._watermarks = self.store.watermarks()
        self._silences = self.store.silences(current_at=now)
        self._active_silences = frozenset(s.id for s in self._silences if s.active(now))
        # Every device gets one full interval after start-up before it can be 'offline': the
        # engine's own downtime is not the device's silence.
        for d in [*self.store.known_devices(), *expected]:
            if self._device(d.kind, d.device_id) is None:
                self._learn(d.kind, d.device_id, d.site, d.county, now, remember=False)
        self._remember_expected(expected, now)
        for rec in self.store.open_alerts():
            rule = self.rules.by_id.get(rec.rule_id)
            dev = self._device(rec.kind, rec.device_id) or self._learn(
                rec.kind, rec.device_id, rec.site, rec.county, now
            )
            op = _Open(rec, rule) if rule is not None else None
            if rule is None or rule.kind != rec.kind:
                self._end_orphan(rec, now, "its rule was removed from the rule set")
            elif not rule.scope.matches(rec.device_id, rec.site, rec.county):
                self._end_orphan(rec, now, "the device is no longer in the rule's scope")
            elif op is not None:
                self._open[op] = None
                if rule.nodata_ms is not None:
                    dev.add_offline(op)
                else:
                    dev.add_open(op)
                if rec.state == "pending":
                    self._pending[op] = None
        if self._open:
            log.info("alerts: resumed %d open alerts from %s", len(self._open), self.store.path)

    def _remember_expected(self, expected: Iterable[KnownDevice], now: int) -> None:
        devs = list(expected)
        if devs:
            with self.store.transaction():
                self.store.remember_devices(devs, now)

    def _end_orphan(self, rec: AlertRecord, now: int, why: str) -> None:
        """Resolve an open alert whose rule no longer applies (a rule file edit between runs)."""
        log.info("alerts: resolving alert %d (%s): %s", rec.id, rec.rule_id, why)
        rec.message = f"resolved: {why} — {rec.message}"
        self._close(_Open(rec, _orphan_rule(rec)), now, rec.last_ts, rec.value)

    def _learn(
        self, kind: str, device_id: str, site: str, county: str, now: int, *, remember: bool = True
    ) -> _Device:
        """Index the rules that apply to a device (once per device, or when its site changes)."""
        rules = self._index(kind, device_id, site, county)
        devs = self._devices.setdefault(kind, {})
        old = devs.get(device_id)
        dev = _Device(
            kind, device_id, site, county, now if old is None else old.last_seen_ms, rules
        )
        if old is not None:
            dev.open, dev.offline = old.open, old.offline
            if old in self._watched:
                self._watched.remove(old)
        elif self._n_devices >= self._max_devices:
            if not self._full_warned:
                log.warning(
                    "alerts: tracking %d devices already; further new devices get threshold "
                    "rules but no no-data watch",
                    self._max_devices,
                )
                self._full_warned = True
            return dev
        else:
            self._n_devices += 1
        devs[device_id] = dev
        if rules.nodata:
            self._watched.append(dev)
        if remember:
            self._new_devices.append(KnownDevice(kind, device_id, site, county))
        return dev

    def _index(self, kind: str, device_id: str, site: str, county: str) -> _RuleIndex:
        """The rule index for a device: built once per distinct set of matching rules."""
        kr = self._by_kind.get(kind)
        if kr is None:
            return _NO_RULES
        # Keyed by the scoped rules a device falls in: (kind,) for nearly every device, so a
        # new device costs a lookup or two instead of matching every rule.
        hits = kr.scoped_matches(device_id, site, county)
        key: tuple[str | int, ...] = (kind, *hits)
        index = self._indexes.get(key)
        if index is not None:
            return index
        included = set(hits)
        by_field: dict[str, list[Rule]] = {}
        nodata: list[Rule] = []
        for i, r in enumerate(kr.rules):
            if not (i in included or r.scope.everything):
                continue
            if r.nodata_ms is not None:
                nodata.append(r)
            elif r.field is not None:
                by_field.setdefault(r.field, []).append(r)
        index = _RuleIndex({f: tuple(rs) for f, rs in by_field.items()}, tuple(nodata))
        self._indexes[key] = index
        return index

    def last_seen_ms(self, kind: str, device_id: str) -> int | None:
        """When the engine last had a reading from a device (None: not tracked)."""
        dev = self._device(kind, device_id)
        return dev.last_seen_ms if dev is not None else None

    def _device(self, kind: str, device_id: str) -> _Device | None:
        devs = self._devices.get(kind)
        return devs.get(device_id) if devs is not None else None

    # ------------------------------------------------------------------ the stream
    def observe(self, obs: Observation) -> Sequence[Transition]:
        """Evaluate one reading against the rules of its device and fields."""
        now = self._now()
        devs = self._devices.get(obs.kind)
        dev = devs.get(obs.device_id) if devs is not None else None
        if dev is None or dev.site != obs.site or dev.county != obs.county:
            dev = self._learn(obs.kind, obs.device_id, obs.site, obs.county, now)
        dev.last_seen_ms = now
        out: list[Transition] | None = None
        if dev.offline:
            out = [self._back_online(dev, op, obs, now) for op in list(dev.offline.values())]
        values = obs.values
        series = obs.series
        for fname, rules in dev.rules.by_field.items():
            v = values.get(fname)
            if v is None:
                continue
            for rule in rules:
                op = dev.find(rule, series) if dev.open else None
                if op is None:
                    if rule.breached(v):
                        t = self._begin(dev, rule, obs, v, now)
                        if t:
                            out = (out or []) + t
                else:
                    t2 = self._advance(dev, op, obs, v, now)
                    if t2 is not None:
                        out = (out or []) + [t2]
        return out or _NONE

    def _begin(
        self, dev: _Device, rule: Rule, obs: Observation, v: Value, now: int
    ) -> list[Transition]:
        key = (rule.id, dev.device_id, obs.series)
        mark = self._watermarks.get(key)
        if mark is not None and obs.ts_ms <= mark:
            return []  # a reading redelivered after a restart: its episode is already over
        rec = AlertRecord(
            id=0,
            rule_id=rule.id,
            kind=dev.kind,
            device_id=dev.device_id,
            series=obs.series,
            site=dev.site,
            county=dev.county,
            severity=rule.severity,
            state="pending",
            field=rule.field or "",
            value=v,
            # A pending episode's text is built when it is stored or fires, not kept: in an
            # alert storm the kept texts were megabytes nobody reads (docs/performance.md).
            message="" if rule.for_ms > 0 else _message(rule, dev, obs.series, v),
            description=rule.description,
            standard=rule.standard,
            labels=rule.labels,
            started_ms=obs.ts_ms,
            seen_wall_ms=now,
            fired_ms=None,
            resolved_ms=None,
            updated_ms=now,
            last_ts=obs.ts_ms,
        )
        rec.silenced = self._is_silenced(rec, now)
        op = _Open(rec, rule)
        dev.add_open(op)
        self._open[op] = None
        if rule.for_ms > 0:
            # Kept in memory until the next tick: a value flapping across the limit within a
            # tick costs no disk write. The tick persists it (and a restart then resumes it).
            self._pending[op] = None
            return [Transition(rec.id, rule.id, dev.device_id, obs.series, "pending")]
        with self.store.transaction():
            fired = self._fire(op, now)
        self._after_commit(fired)
        return [Transition(rec.id, rule.id, dev.device_id, obs.series, "firing", fired)]

    def _advance(
        self, dev: _Device, op: _Open, obs: Observation, v: Value, now: int
    ) -> Transition | None:
        rec, rule = op.rec, op.rule
        if obs.ts_ms < rec.last_ts:
            return None  # out of order: an older reading says nothing about now
        if rec.state == "pending":
            if not rule.breached(v):
                self._cancel(dev, op)
                return Transition(rec.id, rule.id, dev.device_id, rec.series, "cancelled")
            rec.value, rec.last_ts = v, obs.ts_ms
            self._dirty[op] = None
            if obs.ts_ms - rec.started_ms >= rule.for_ms:
                rec.message = self._text(op)
                with self.store.transaction():
                    sent = self._fire(op, now)
                self._after_commit(sent)
                return Transition(rec.id, rule.id, dev.device_id, rec.series, "firing", sent)
            return None
        if rule.cleared(v):
            sent = self._resolve(op, now, obs.ts_ms, v)
            return Transition(rec.id, rule.id, dev.device_id, rec.series, "resolved", sent)
        if v != rec.value:
            rec.value, rec.last_ts = v, obs.ts_ms
            self._dirty[op] = None
        return None

    # ------------------------------------------------------------------ transitions
    def _fire(self, op: _Open, now: int) -> bool:
        """pending → firing, inside the caller's transaction; whether a notification was queued."""
        rec = op.rec
        self._persist(op)
        rec.state, rec.fired_ms, rec.updated_ms = "firing", now, now
        rec.silenced = self._is_silenced(rec, now)
        self.store.update_alert(
            rec.id,
            state="firing",
            fired_ms=now,
            updated_ms=now,
            value=rec.value,
            last_ts=rec.last_ts,
            message=rec.message,
            silenced=rec.silenced,
        )
        hid = self.store.add_history(rec.id, now, "firing", value=rec.value, message=rec.message)
        self._pending.pop(op, None)
        if rec.silenced:
            log.info("alert %d %s %s firing (silenced)", rec.id, rec.rule_id, rec.device_id)
            return False
        self._notify(rec, hid, "firing", now)
        log.info("alert %d %s %s firing: %s", rec.id, rec.rule_id, rec.device_id, rec.message)
        return True

    def _resolve(self, op: _Open, now: int, ts_ms: int, v: Value | None) -> bool:
        """firing → resolved; whether a notification was queued (only if firing was notified)."""
        rec, rule = op.rec, op.rule
        rec.message = "resolved — " + _message(rule, self._device_of(rec), rec.series, v)
        return self._close(op, now, ts_ms, v)

    def _close(self, op: _Open, now: int, ts_ms: int, v: Value | None) -> bool:
        rec = op.rec
        rec.state, rec.resolved_ms, rec.updated_ms, rec.last_ts = "resolved", now, now, ts_ms
        rec.value = v
        with self.store.transaction():
            self.store.update_alert(
                rec.id,
                state="resolved",
                resolved_ms=now,
                updated_ms=now,
                last_ts=ts_ms,
                value=v,
                message=rec.message,
            )
            hid = self.store.add_history(rec.id, now, "resolved", value=v, message=rec.message)
            sent = rec.notified
            if sent:
                self._notify(rec, hid, "resolved", now)
        self._forget(op)
        self._watermarks[(rec.rule_id, rec.device_id, rec.series)] = ts_ms
        log.info("alert %d %s %s resolved", rec.id, rec.rule_id, rec.device_id)
        self._after_commit(sent)
        return sent

    def _cancel(self, dev: _Device, op: _Open) -> None:
        """A pending breach ended before its ``for``: it never fired, so nothing is kept."""
        if op.rec.id:
            # Deleted by the next tick with the rest of its batch: a value hovering at a limit
            # cancels often, and a transaction of its own is an fsync each time, on the loop.
            self._cancelled.append(op.rec.id)
        self._forget(op)

    def _persist(self, op: _Open) -> None:
        """Write a pending episode not yet in the store (inside the caller's transaction)."""
        rec = op.rec
        if rec.id:
            return
        message = rec.message or self._text(op)
        rec.message = message
        self.store.insert_alert(rec)
        self.store.add_history(
            rec.id, rec.seen_wall_ms, "pending", value=rec.value, message=message
        )

    def _forget(self, op: _Open) -> None:
        rec = op.rec
        self._open.pop(op, None)
        self._pending.pop(op, None)
        self._dirty.pop(op, None)
        dev = self._device(rec.kind, rec.device_id)
        if dev is not None:
            dev.drop(op)

    def _notify(self, rec: AlertRecord, history_id: int, event: str, now: int) -> None:
        """Queue a notification for every target (inside the transition's transaction)."""
        rec.notified = True
        self.store.update_alert(rec.id, notified=True)
        if self.targets:
            payload = event_payload(rec, event, history_id, now)
            self.store.enqueue(history_id, rec.id, self.targets, payload, now)

    def _after_commit(self, queued: bool) -> None:
        if queued and self.on_enqueue is not None:
            self.on_enqueue()

    def _text(self, op: _Open) -> str:
        """An open threshold episode's message as it stands now (its latest value)."""
        rec = op.rec
        return _message(op.rule, self._device_of(rec), rec.series, rec.value)

    def _device_of(self, rec: AlertRecord) -> _Device:
        dev = self._device(rec.kind, rec.device_id)
        if dev is None:
            return _Device(rec.kind, rec.device_id, rec.site, rec.county, 0)
        return dev

    # ------------------------------------------------------------------ no data
    def _offline(self, dev: _Device, rule: Rule, now: int) -> Transition:
        silent = now - dev.last_seen_ms
        rec = AlertRecord(
            id=0,
            rule_id=rule.id,
            kind=dev.kind,
            device_id=dev.device_id,
            series="",
            site=dev.site,
            county=dev.county,
            severity=rule.severity,
            state="firing",
            field="",
            value=round(silent / 1000, 1),
            message=(
                f"device offline: no reading from {_where(dev, '')} for {_human(silent)} "
                f"(limit {_human(rule.nodata_ms or 0)})"
            ),
            description=rule.description,
            standard=rule.standard,
            labels=rule.labels,
            started_ms=dev.last_seen_ms,
            seen_wall_ms=dev.last_seen_ms,
            fired_ms=now,
            resolved_ms=None,
            updated_ms=now,
            last_ts=dev.last_seen_ms,
        )
        op = _Open(rec, rule)
        with self.store.transaction():
            self.store.insert_alert(rec)
            sent = self._fire(op, now)
        dev.add_offline(op)
        self._open[op] = None
        self._after_commit(sent)
        return Transition(rec.id, rule.id, dev.device_id, "", "firing", sent)

    def _back_online(self, dev: _Device, op: _Open, obs: Observation, now: int) -> Transition:
        rec = op.rec
        silent = now - (rec.fired_ms or now) + (op.rule.nodata_ms or 0)
        rec.message = f"device back online: {_where(dev, '')} reported after ~{_human(silent)}"
        sent = self._close(op, now, obs.ts_ms, round(silent / 1000, 1))
        return Transition(rec.id, rec.rule_id, dev.device_id, "", "resolved", sent)

    # ------------------------------------------------------------------ the timer
    def tick(self, now_ms: int | None = None) -> Sequence[Transition]:
        """Time-driven work: ``for`` reached without a new reading, silent devices, silences."""
        now = self._now() if now_ms is None else now_ms
        out: list[Transition] = []
        self._refresh_silences(now)
        for op in list(self._pending):
            rec = op.rec
            if now - rec.seen_wall_ms >= op.rule.for_ms:
                rec.message = self._text(op)
                with self.store.transaction():
                    sent = self._fire(op, now)
                self._after_commit(sent)
                out.append(
                    Transition(rec.id, rec.rule_id, rec.device_id, rec.series, "firing", sent)
                )
        for dev in self._watched:
            silent = now - dev.last_seen_ms
            for rule in dev.rules.nodata:
                if silent > (rule.nodata_ms or 0) and not (dev.offline and rule.id in dev.offline):
                    out.append(self._offline(dev, rule, now))
        self._flush(now)
        return out

    def _flush(self, now: int) -> None:
        """Persist new pending episodes, latest values, newly seen devices and cancellations
        (once per tick)."""
        new = {op: None for op in self._pending if not op.rec.id}
        if not (self._dirty or self._new_devices or new or self._cancelled):
            return
        with self.store.transaction():
            # Cancelled first: a new episode of the same rule and series may replace one, and
            # the store keeps one open episode per rule and series.
            for alert_id in self._cancelled:
                self.store.delete_alert(alert_id)
            for op in new:
                self._persist(op)
                op.rec.message = ""  # in the store now; rebuilt if it fires
            for op in self._dirty:
                r = op.rec
                if op not in new:
                    self.store.update_alert(r.id, value=r.value, last_ts=r.last_ts, updated_ms=now)
            if self._new_devices:
                self.store.remember_devices(self._new_devices, now)
        self._dirty.clear()
        self._new_devices.clear()
        self._cancelled.clear()

    def flush(self) -> None:
        """Persist what ``tick`` would batch (on a clean shutdown)."""
        self._flush(self._now())

    # ------------------------------------------------------------------ silences
    def _is_silenced(self, rec: AlertRecord, now: int) -> bool:
        return any(s.active(now) and s.matchers.covers(rec) for s in self._silences)

    def _refresh_silences(self, now: int) -> None:
        """Re-read silences and re-mark open alerts when the set in force changed."""
        # Re-read each time: silences are few, and another process may have written one.
        self._silences = self.store.silences(current_at=now)
        active = frozenset(s.id for s in self._silences if s.active(now))
        if active == self._active_silences:
            return
        self._active_silences = active
        queued = False
        with self.store.transaction():
            for op in self._open:
                rec = op.rec
                silenced = self._is_silenced(rec, now)
                if silenced == rec.silenced:
                    continue
                rec.silenced = silenced
                if not rec.id:
                    continue  # not persisted yet: written with this flag at the next tick
                self.store.update_alert(rec.id, silenced=silenced, updated_ms=now)
                self.store.add_history(rec.id, now, "silenced" if silenced else "unsilenced")
                if not silenced and rec.state == "firing" and not rec.notified:
                    # Still breaching after the silence: the operator hears of it now, once.
                    hid = self.store.add_history(
                        rec.id, now, "firing", value=rec.value, message=rec.message
                    )
                    self._notify(rec, hid, "firing", now)
                    queued = True
        self._after_commit(queued)

    # ------------------------------------------------------------------ operator actions
    # The API and the operator console (issue 10) call these with the operator's name.
    def ack(self, alert_id: int, by: str, comment: str = "") -> AlertRecord | None:
        """Acknowledge an alert (who, when, why); None if there is no such alert."""
        return self.store.ack(alert_id, by, comment, self._now())

    def add_silence(
        self,
        matchers: Matchers,
        ends_ms: int,
        by: str,
        comment: str = "",
        starts_ms: int | None = None,
    ) -> Silence:
        """Mute notifications of matching alerts until ``ends_ms``; marks open alerts at once."""
        now = self._now()
        if matchers.empty():
            raise ValueError("a silence needs at least one matcher (e.g. devices: ['WQ-001'])")
        if ends_ms <= now:
            raise ValueError("the silence would end in the past: give an end time after now")
        with self.store.transaction():
            s = self.store.add_silence(matchers, starts_ms or now, ends_ms, by, comment, now)
        self._refresh_silences(now)
        return s

    def delete_silence(self, silence_id: int, by: str) -> Silence | None:
        """End a silence now; alerts still firing under it notify then. None if unknown."""
        now = self._now()
        with self.store.transaction():
            s = self.store.delete_silence(silence_id, by, now)
        if s is not None:
            self._refresh_silences(now)
        return s

    def alerts(self, f: AlertFilter | None = None) -> list[AlertRecord]:
        """Alerts matching a filter, newest first."""
        return self.store.list_alerts(f)

    def alert(self, alert_id: int) -> tuple[AlertRecord, list[HistoryEntry]] | None:
        """One alert with its history."""
        rec = self.store.get_alert(alert_id)
        return None if rec is None else (rec, self.store.history(alert_id))

    def silences(self, *, current: bool = True) -> list[Silence]:
        """Silences not yet ended (or all of them)."""
        return self.store.silences(current_at=self._now() if current else None)

    def open_count(self) -> dict[str, int]:
        """Open alerts by state (for metrics and logs)."""
        out = {"pending": 0, "firing": 0}
        for op in self._open:
            out[op.rec.state] = out.get(op.rec.state, 0) + 1
        return out


# --------------------------------------------------------------------------- helpers


def _orphan_rule(rec: AlertRecord) -> Rule:
    return Rule(id=rec.rule_id, kind=rec.kind, severity=rec.severity)  # type: ignore[arg-type]


def _where(dev: _Device, series: str) -> str:
    s = dev.device_id + (f" {series}" if series else "")
    return f"{s} ({dev.site})" if dev.site and dev.site != "unknown" else s


def _message(rule: Rule, dev: _Device, series: str, v: Value | None) -> str:
    # Units like mg/L or V read well after a number; descriptive ones (GB 3838 class 1–6) do not.
    u = rule.unit
    unit = f" {u}" if u and len(u) <= 6 and " " not in u and u not in ("pH", "AQI") else ""
    what = rule.description or (f"{rule.id} ({rule.when.text})" if rule.when else rule.id)
    return f"{what}: {rule.field} = {v}{unit} at {_where(dev, series)}"


def _human(ms: int) -> str:
    s = ms / 1000
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def _iso(ms: int | None) -> str | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def event_payload(rec: AlertRecord, event: str, event_id: int, now: int) -> str:
    """The JSON every target receives for a firing or resolved notification."""
    return json.dumps(
        {
            "event": event,
            "event_id": event_id,  # stable: a receiver can drop a redelivered duplicate
            "alert_id": rec.id,
            "rule_id": rec.rule_id,
            "severity": rec.severity,
            "kind": rec.kind,
            "device_id": rec.device_id,
            "series": rec.series,
            "site": rec.site,
            "county": rec.county,
            "state": rec.state,
            "field": rec.field,
            "value": rec.value,
            "message": rec.message,
            "description": rec.description,
            "standard": rec.standard,
            "labels": rec.labels,
            "started_at": _iso(rec.started_ms),
            "fired_at": _iso(rec.fired_ms),
            "resolved_at": _iso(rec.resolved_ms),
            "ts_ms": now,
        },
        ensure_ascii=False,
    )
