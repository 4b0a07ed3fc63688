"""What every device kind provides: its payload model, topic kind, measurement and point mapping,
and everything else the other packages need to know about it.

A kind module (``devices/water.py`` …) declares one :class:`DeviceKind`: its model with units
and ranges, tags, derived values (per reading and for a day's means), labels in both console
languages, the console's key fields and glance summary, its simulator and a sample it must
reject, its typed registry facts and its Grafana dashboard. Ingest, console, simulator,
rollups, report and dashboards read these from the kind and never branch on a kind's name.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from random import Random
from typing import Annotated, Any, ClassVar, Protocol

import msgspec

from devices.lineproto import FieldValue, escape_key, escape_measurement, format_field
from devices.registry import Device, Facts

# Epoch milliseconds must be a non-negative integer; ISO 8601 strings decode to datetime.
EpochMs = Annotated[int, msgspec.Meta(ge=0)]


def rng(lo: float | None = None, hi: float | None = None, unit: str = "") -> msgspec.Meta:
    """The physical range [lo, hi] of a float reading; ``unit`` documents it."""
    return msgspec.Meta(ge=lo, le=hi, description=unit)


# gc=False: a reading holds numbers, strings and datetimes, never a reference cycle, so the
# cyclic garbage collector need not track the tens of thousands decoded per second.
class Reading(
    msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True, gc=False
):
    """Base of every payload model: a timestamp plus named readings, all optional but one."""

    ts: EpochMs | datetime
    # Readings of which at least one must be present; a payload of only metadata is not a reading.
    MEASURED: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        # Runs for every decoded message: plain loops, no generator (py-spy: the all(...)
        # generator was 5 % of a drain's samples on its own).
        ts = self.ts
        if type(ts) is not int and isinstance(ts, datetime) and ts.tzinfo is None:
            raise ValueError("ts has no UTC offset: send epoch ms or ISO 8601 with an offset")
        measured = self.MEASURED
        if measured:
            for f in measured:
                if getattr(self, f) is not None:
                    break
            else:
                raise ValueError("no readings: expected at least one of " + ", ".join(measured))
        self.check()

    def check(self) -> None:
        """Cross-field rules of a kind; raise ValueError with the reason."""

    def ts_ms(self) -> int:
        """The timestamp as epoch milliseconds."""
        ts = self.ts
        if type(ts) is int:
            return ts
        return int(ts.timestamp() * 1000)  # type: ignore[union-attr]


# Reason codes of a value set apart from a reading (stored as ``<field>_flag``).
BELOW_RANGE = "below_range"
ABOVE_RANGE = "above_range"
NOT_NUMBER = "not_number"


@dataclass(frozen=True, slots=True)
class SetAside:
    """A value kept out of a reading's normal fields: its field, reason code and the number
    (None when it was not a number, e.g. the string "NaN")."""

    field: str
    reason: str
    value: float | None

    def extra(self) -> str:
        """The value as line-protocol fields: ``<field>_invalid`` (when a number) and
        ``<field>_flag``, as the HJ 212 intake stores a flagged value."""
        flag = f'{self.field}_flag="{self.reason}"'
        if self.value is None:
            return flag
        return f"{self.field}_invalid={format_field(float(self.value))},{flag}"


Bounds = tuple[float | None, float | None, bool, bool]  # lo, hi, lo inclusive, hi inclusive


def _numeric_bounds(model: type[Reading]) -> dict[str, Bounds]:
    """Range of each numeric (float or int) field of a model."""
    out: dict[str, Bounds] = {}
    info = msgspec.inspect.type_info(model)
    for f in info.fields:  # type: ignore[attr-defined]
        for member in getattr(f.type, "types", (f.type,)):
            t = getattr(member, "type", member)
            if isinstance(t, msgspec.inspect.FloatType | msgspec.inspect.IntType):
                lo = t.ge if t.ge is not None else t.gt
                hi = t.le if t.le is not None else t.lt
                out[f.name] = (lo, hi, t.gt is None, t.lt is None)
    return out


def _out_of_range(v: object, b: Bounds) -> str | None:
    """The reason code of a JSON value that a numeric field cannot take (None: it can)."""
    if type(v) is bool or not isinstance(v, int | float):
        return NOT_NUMBER
    if type(v) is float and not math.isfinite(v):
        return NOT_NUMBER
    lo, hi, lo_in, hi_in = b
    if lo is not None and (v < lo or (v == lo and not lo_in)):
        return BELOW_RANGE
    if hi is not None and (v > hi or (v == hi and not hi_in)):
        return ABOVE_RANGE
    return None


Derive = Callable[[Any, Device], Iterator[tuple[str, FieldValue]]]
DeriveTags = Callable[[Any, Device], Iterator[tuple[str, str]]]
# (device, local time, random stream, the device's own state between calls) -> payload fields.
Simulate = Callable[[Device, datetime, Random, dict[str, Any]], dict[str, Any]]
# The same for a reading of the past at a coarse step (the demo's history back-fill), with the
# step: a kind whose days should differ (poor-air episodes, runoff after rain) says how here.
History = Callable[[Device, datetime, Random, dict[str, Any], timedelta], dict[str, Any]]
# A stored value as the console reads it back (None: never reported).
Value = FieldValue | None


@dataclass(frozen=True, slots=True)
class Label:
    """A name in the console's two languages."""

    zh: str
    en: str

    def pick(self, lang: str) -> str:
        """The name in ``lang`` ("zh" or "en")."""
        return self.zh if lang == "zh" else self.en


class Glance(Protocol):
    """A device's newest values as a kind's console summary reads them; the console provides it
    (and with it how numbers, units and series read in the visitor's language)."""

    @property
    def lang(self) -> str: ...

    def value(self, field: str) -> Value:
        """The newest value of a field over all the device's series."""
        ...

    def series(self) -> list[tuple[str, Mapping[str, Value]]]:
        """(series, its newest values) per series ('' for the device, 'connector=2' …), sorted."""
        ...

    def number(self, v: float) -> str:
        """A number as the console prints it."""
        ...

    def show(self, field: str, v: Value) -> str:
        """A field's value for people (the kind's value texts, or the number with its unit)."""
        ...

    def series_label(self, series: str) -> str:
        """A series for people ('connector=2' → 'connector 2'; '' for the device itself)."""
        ...


# The few values that tell a device's state at a glance on the console's devices page.
Summary = Callable[[Glance], list[str]]
# A field's value for people, in a language: classes and categories by name, states as words.
ValueText = Callable[[FieldValue, str], str]


def flag_text(yes: Label, no: Label) -> ValueText:
    """A boolean field read as one of two labels."""
    return lambda v, lang: (yes if v else no).pick(lang)


def _key_field_summary(kind: DeviceKind) -> Summary:
    def summary(g: Glance) -> list[str]:
        return [
            f"{name} {g.show(name, v)}"
            for name in kind.key_fields
            if (v := g.value(name)) is not None
        ]

    return summary


@dataclass(frozen=True)
class DeviceKind:
    """One device kind: how its payload decodes and how a reading becomes an InfluxDB point."""

    name: str
    measurement: str
    model: type[Reading]
    description: str
    # payload attribute -> tag key, for values that identify a series (a connector, a berth).
    payload_tags: Mapping[str, str] = field(default_factory=dict)
    # payload attributes that are only tags, never also fields.
    tag_only: frozenset[str] = frozenset()
    # registry facts written as tags (low cardinality: section type, assessment level).
    registry_tags: tuple[str, ...] = ()
    derive: Derive | None = None
    derive_tags: DeriveTags | None = None
    # derived field name -> unit, so dashboards and rules can find them.
    derived_fields: Mapping[str, str] = field(default_factory=dict)
    # tag keys derive_tags writes (the AQI edition), which tag_keys() does not list.
    derived_tag_keys: tuple[str, ...] = ()
    # The derivation of a day's mean values (HJ 212 CN 2031 daily data), when it differs from
    # the per-reading one: the AQI of daily means uses HJ 633's 24 h tables.
    derive_daily: Derive | None = None
    # The kind's name on the console (and in its filters), in both languages.
    label: Label | None = None
    # Registry facts of this kind, typed and checked when the registry is loaded.
    facts_model: type[Facts] = Facts
    # Names of the registry facts on the console's device page.
    fact_labels: Mapping[str, Label] = field(default_factory=dict)
    # Fields the console reads for a device's latest state; the first that tell it at a glance,
    # then ones every reading tends to carry, so "last seen" holds for any reading.
    key_fields: tuple[str, ...] = ()
    # What the devices page shows of a device's latest values (default: each key field).
    summary: Summary | None = None
    # Fields whose values read as words, not as a number with a unit (classes, states).
    value_texts: Mapping[str, ValueText] = field(default_factory=dict)
    # uid of the kind's Grafana dashboard (dashboards/json/<uid>.json), when it has one.
    dashboard: str | None = None
    # Plausible readings for the fleet simulator and the demo.
    simulate: Simulate | None = None
    # Payload fields the model must reject as out of range: the simulator's bad sample.
    bad_sample: Mapping[str, Any] = field(default_factory=dict)
    # Readings of the past at a coarse step (sample_history); None: the simulator's.
    history: History | None = None

    def __post_init__(self) -> None:
        if self.label is None:
            object.__setattr__(self, "label", Label(self.description, self.description))
        if not self.key_fields:
            object.__setattr__(self, "key_fields", self.model.MEASURED)
        if self.summary is None:
            object.__setattr__(self, "summary", _key_field_summary(self))
        names = [n for n in self.model.__struct_fields__ if n != "ts" and n not in self.tag_only]
        prefixes = tuple((n, escape_key(n) + "=") for n in names)
        object.__setattr__(self, "_fields", prefixes)
        object.__setattr__(self, "_meas", escape_measurement(self.measurement))
        object.__setattr__(self, "_decoder", msgspec.json.Decoder(self.model))
        # The last reading's derived values, so values() (the alert engine's sink, right after
        # encode() of the same reading) does not derive them a second time.
        object.__setattr__(self, "_memo", [None, None, ()])
        source, namespace = _encoder_source(self)
        exec(compile(source, f"<{self.name} encoder>", "exec"), namespace)
        object.__setattr__(self, "_encode_source", source)
        object.__setattr__(self, "_encode", namespace["encode"])

    @property
    def title(self) -> Label:
        """The kind's name in both console languages."""
        assert self.label is not None  # set in __post_init__
        return self.label

    def glance(self, g: Glance) -> list[str]:
        """The few values that tell a device's state at a glance."""
        assert self.summary is not None  # set in __post_init__
        return self.summary(g)

    def facts(self, device: Device) -> Facts:
        """The device's typed registry facts (the model's defaults for an unregistered one)."""
        return self.facts_model.of(device)

    def sample(
        self, device: Device, now: datetime, rnd: Random, state: dict[str, Any]
    ) -> dict[str, Any]:
        """A plausible payload (without ``ts``) from the kind's simulator."""
        if self.simulate is None:
            raise ValueError(f"device kind {self.name!r} has no simulator")
        return self.simulate(device, now, rnd, state)

    def sample_history(
        self, device: Device, at: datetime, rnd: Random, state: dict[str, Any], step: timedelta
    ) -> dict[str, Any]:
        """A plausible payload (without ``ts``) for a reading at ``at`` in the past, one ``step``
        after the device's previous one: the kind's ``history``, else its simulator told the
        step (``state["dt_h"]``, hours), so counters that integrate power grow by the step."""
        if self.history is not None:
            return self.history(device, at, rnd, state, step)
        state["dt_h"] = step.total_seconds() / 3600
        try:
            return self.sample(device, at, rnd, state)
        finally:
            del state["dt_h"]  # the step of this call only: live sampling after goes by its own

    def daily(self) -> DeviceKind:
        """The kind as a day's mean values are encoded (its daily derivation, if it has one)."""
        if self.derive_daily is None:
            return self
        return dataclasses.replace(self, derive=self.derive_daily, derive_daily=None)

    @property
    def decoder(self) -> msgspec.json.Decoder[Any]:
        """The JSON decoder that validates straight from bytes into the model."""
        return self._decoder  # type: ignore[attr-defined]

    def salvage(self, payload: bytes) -> tuple[Reading, tuple[SetAside, ...]] | None:
        """A payload the strict decoder refused, with its out-of-range or non-numeric values set
        apart; None when that does not make it a valid reading (bad JSON, an unknown field, a
        bad ``ts``, a cross-field rule, or no reading left), so the message is dead-lettered
        whole. Raises msgspec.ValidationError when what is left is refused (its message then
        says why the message goes whole). Only called after a refusal: not the hot path."""
        try:
            raw = msgspec.json.decode(payload)
        except msgspec.DecodeError:
            return None
        if not isinstance(raw, dict):
            return None
        bounds = self.__dict__.get("_bounds")
        if bounds is None:
            bounds = _numeric_bounds(self.model)
            object.__setattr__(self, "_bounds", bounds)
        aside = []
        for name, v in list(raw.items()):
            b = bounds.get(name)
            if b is None or v is None or name == "ts" or name in self.tag_only:
                continue  # not a reading: the strict conversion below decides
            reason = _out_of_range(v, b)
            if reason is not None:
                del raw[name]
                number = None
                if reason != NOT_NUMBER:
                    try:
                        number = float(v)
                    except OverflowError:  # an integer too large for a float: keep the flag
                        number = None
                aside.append(SetAside(name, reason, number))
        if not aside:
            return None
        return msgspec.convert(raw, self.model), tuple(aside)

    def fields(self) -> dict[str, str]:
        """Every field this kind can write, with its unit (readings and derived values)."""
        out: dict[str, str] = {}
        info = msgspec.inspect.type_info(self.model)
        for f in info.fields:  # type: ignore[attr-defined]
            if f.name != "ts" and f.name not in self.tag_only:
                out[f.name] = _unit_of(f.type)
        out.update(self.derived_fields)
        return out

    def explain(self, error: str) -> str:
        """A validation error made actionable: an enumeration error lists the allowed values."""
        if "Invalid enum value" in error and "$." in error:
            name = error.rsplit("$.", 1)[1].rstrip("`")
            struct = msgspec.inspect.type_info(self.model)
            fields = getattr(struct, "fields", ())
            info = next((f for f in fields if f.name == name), None)
            for member in getattr(info.type, "types", ()) if info else ():
                if isinstance(member, msgspec.inspect.LiteralType):
                    return f"{error}; expected one of {', '.join(map(str, member.values))}"
        return error

    def tag_keys(self) -> tuple[str, ...]:
        """Every tag key this kind's points may carry."""
        return ("device_id", "site", "county", *self.registry_tags, *self.payload_tags.values())

    def values(self, reading: Reading, device: Device) -> dict[str, FieldValue]:
        """All field values of a reading, derived ones included (for the alert engine)."""
        out = {n: v for n, _ in self._fields_iter() if (v := getattr(reading, n)) is not None}
        if self.derive is not None:
            memo = self._memo  # type: ignore[attr-defined]
            if memo[0] is reading and memo[1] is device:
                out.update(memo[2])
            else:
                out.update(self.derive(reading, device))
        return out

    def _fields_iter(self) -> tuple[tuple[str, str], ...]:
        return self._fields  # type: ignore[attr-defined]

    def encode(
        self, reading: Reading, device: Device, ts_ms: int, extra: str = "", extra_tags: str = ""
    ) -> str | None:
        """The reading as one line of line protocol; None if it holds nothing storable.

        ``extra`` (fields) and ``extra_tags`` are pre-escaped ``k=v`` pairs a protocol intake
        adds (HJ 212 data flags and data kind). The work is done by code generated per kind
        (``_encoder_source``), the ingest hot path."""
        return self._encode(reading, device, ts_ms, extra, extra_tags)  # type: ignore[attr-defined]

    def encode_generic(
        self, reading: Reading, device: Device, ts_ms: int, extra: str = "", extra_tags: str = ""
    ) -> str | None:
        """The same line as :meth:`encode`, by a plain loop (the reference the tests compare)."""
        parts = []
        for name, prefix in self._fields:  # type: ignore[attr-defined]
            v = getattr(reading, name)
            if v is not None and (s := format_field(v)) is not None:
                parts.append(prefix + s)
        if self.derive is not None:
            for name, v in self.derive(reading, device):
                if (s := format_field(v)) is not None:
                    parts.append(escape_key(name) + "=" + s)
        if extra:
            parts.append(extra)
        if not parts:
            return None
        tags = device.tags_for(self.registry_tags) + extra_tags
        for attr, key in self.payload_tags.items():
            v = getattr(reading, attr)
            if v is None:
                v = device.facts.get(attr)
            if v is not None and v != "":
                tags += "," + escape_key(key) + "=" + escape_key(str(v))
        if self.derive_tags is not None:
            for key, tv in self.derive_tags(reading, device):
                tags += "," + escape_key(key) + "=" + escape_key(tv)
        return f"{self._meas}{tags} {','.join(parts)} {ts_ms}"  # type: ignore[attr-defined]


# Field-formatting templates of the generated encoder, by field type (see format_field()).
# A float needs no finiteness check when it has both bounds: msgspec enforces them on decode
# and convert, and NaN or infinity fails one of them (JSON decoding refuses infinity anyway).
_TEMPLATES = {
    "float": "    if v is not None:\n        a({prefix!r} + repr(v))\n",
    "float?": "    if v is not None and isfinite(v):\n        a({prefix!r} + repr(v))\n",
    "bool": "    if v is not None:\n        a({prefix!r} + ('true' if v else 'false'))\n",
    "int": "    if v is not None:\n        a({prefix!r} + str(v) + 'i')\n",
    # Literal members are fixed identifiers (checked below): nothing to escape.
    "literal": "    if v is not None:\n        a({prefix!r} + '\"' + v + '\"')\n",
    "other": (
        "    if v is not None and (s := format_field(v)) is not None:\n        a({prefix!r} + s)\n"
    ),
}


def _field_template(info: msgspec.inspect.Type) -> str:
    """Which template formats a field of this (optional) type."""
    types = [
        t for t in getattr(info, "types", (info,)) if not isinstance(t, msgspec.inspect.NoneType)
    ]
    if len(types) != 1:
        return "other"
    t = types[0]
    if isinstance(t, msgspec.inspect.Metadata):
        t = t.type
    if isinstance(t, msgspec.inspect.FloatType):
        lower = t.ge if t.ge is not None else t.gt
        upper = t.le if t.le is not None else t.lt
        return "float" if lower is not None and upper is not None else "float?"
    if isinstance(t, msgspec.inspect.BoolType):
        return "bool"
    if isinstance(t, msgspec.inspect.IntType):
        return "int"
    if isinstance(t, msgspec.inspect.LiteralType) and all(
        isinstance(v, str) and v.isidentifier() for v in t.values
    ):
        return "literal"
    return "other"


def _encoder_source(kind: DeviceKind) -> tuple[str, dict[str, Any]]:
    """Python source of ``encode(r, device, ts_ms, extra, extra_tags)`` for one kind.

    Unrolled per field with the escaped keys as constants: no getattr() loop, no per-field
    function call, so every kind encodes faster than through the plain loop
    (``encode_generic``; timings in docs/performance.md, "Why the code is shaped this way").
    tests/unit/test_ingest_fast_paths.py checks that both give the same line.
    """
    info = msgspec.inspect.type_info(kind.model)
    types = {f.name: f.type for f in info.fields}  # type: ignore[attr-defined]
    lines = [
        "def encode(r, device, ts_ms, extra='', extra_tags=''):",
        "    parts = []",
        "    a = parts.append",
    ]
    for name, prefix in kind._fields:  # type: ignore[attr-defined]
        lines.append(f"    v = r.{name}")
        lines.append(_TEMPLATES[_field_template(types[name])].format(prefix=prefix).rstrip("\n"))
    if kind.derive is not None:
        lines += [
            "    derived = tuple(derive(r, device))",
            "    memo[0] = r",
            "    memo[1] = device",
            "    memo[2] = derived",
            "    for name, v in derived:",
            "        if (s := format_field(v)) is not None:",
            "            a((dkeys.get(name) or escape_key(name) + '=') + s)",
        ]
    lines += [
        "    if extra:",
        "        a(extra)",
        "    if not parts:",
        "        return None",
        "    tags = device.tags_for(registry_tags) + extra_tags",
    ]
    for attr, key in kind.payload_tags.items():
        lines += [
            f"    v = r.{attr}",
            "    if v is None:",
            f"        v = device.facts.get({attr!r})",
            "    if v is not None and v != '':",
            f"        tags += {',' + escape_key(key) + '='!r} + escape_key(str(v))",
        ]
    if kind.derive_tags is not None:
        lines += [
            "    for key, tv in derive_tags(r, device):",
            "        tags += ',' + escape_key(key) + '=' + escape_key(tv)",
        ]
    lines.append(f"    return {kind._meas!r} + tags + ' ' + ','.join(parts) + ' ' + str(ts_ms)")  # type: ignore[attr-defined]
    namespace: dict[str, Any] = {
        "isfinite": math.isfinite,
        "format_field": format_field,
        "escape_key": escape_key,
        "derive": kind.derive,
        "derive_tags": kind.derive_tags,
        "registry_tags": kind.registry_tags,
        "memo": kind._memo,  # type: ignore[attr-defined]
        "dkeys": {n: escape_key(n) + "=" for n in kind.derived_fields},
    }
    return "\n".join(lines) + "\n", namespace


def _unit_of(info: msgspec.inspect.Type) -> str:
    """The unit a field declares in its Meta description ('' when it has none)."""
    for member in getattr(info, "types", (info,)):
        if isinstance(member, msgspec.inspect.Metadata) and member.extra_json_schema:
            return str(member.extra_json_schema.get("description", ""))
    return ""
