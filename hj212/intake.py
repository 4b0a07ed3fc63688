"""HJ 212-2017 intake: raw station packets on ``<prefix>/hj212/<MN>`` become envgrid readings.

The MN is looked up in the device registry, where a station carries ``mn``, ``pw`` and optional
per-device settings under ``hj212:`` (units, factor aliases, leniency, CRC variant, time zone;
see docs/hj212.md). Data flags follow HJ 212-2017: N and S values are stored under the normal
field names; F, M, D, C, T and B values only under ``<field>_invalid`` with ``<field>_flag``, so
averages, water classes and AQI (which read the normal names) leave them out.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from devices.base import DeviceKind, Reading
from devices.errors import problems
from devices.lineproto import FieldValue, escape_key, format_field
from devices.registry import Device, Registry, RegistryError
from hj212.codec import (
    CN_DATA_KIND,
    FACTOR_SCALE,
    FACTORS,
    ST_KIND,
    VALID_FLAGS,
    Hj212Error,
    Leniency,
    Packet,
    parse,
)
from ingest.pipeline import (
    BAD_DEVICE_ID,
    EMPTY,
    INVALID,
    KIND_MISMATCH,
    MALFORMED,
    Accepted,
    Decoder,
    Pipeline,
    Rejected,
)

__all__ = [
    "PROTOCOL",
    "Hj212ConfigError",
    "Hj212Decoder",
    "Station",
    "StationSettings",
    "decoder_factory",
    "load_stations",
    "protocols",
    "unit_scale",
]

PROTOCOL: Final = "hj212"

# HJ 212-2017 system codes, for rejection reasons (standards.md).
_ST_NAMES: Final[dict[str, str]] = {
    "21": "surface water",
    "22": "air quality",
    "23": "noise",
    "24": "groundwater",
    "31": "air pollution source",
    "32": "water pollution source",
    "91": "system interaction",
}

# ---------------------------------------------------------------------------------------------
# Units
# ---------------------------------------------------------------------------------------------

# Unit families: each maps a unit (normalised by _norm) to its size in the family's base unit,
# so a wire unit converts to envgrid's unit by the ratio of the two sizes. Only multiplicative
# conversions: a unit with an offset (°F) is not accepted.
_FAMILIES: Final[tuple[dict[str, float], ...]] = (
    {"ng/m3": 1e-3, "ug/m3": 1.0, "mg/m3": 1e3},  # mass concentration in air
    {"ug/l": 1e-3, "mg/l": 1.0},  # mass concentration in water
    {"us/cm": 1.0, "ms/m": 10.0, "ms/cm": 1e3},  # conductivity
    {"pa": 0.01, "hpa": 1.0, "mbar": 1.0, "kpa": 10.0},  # pressure
    {"°c": 1.0, "c": 1.0, "degc": 1.0, "℃": 1.0},  # temperature
    {"1": 1.0, "ph": 1.0},  # pH (dimensionless)
    {"ntu": 1.0},
    {"%": 1.0, "%rh": 1.0},
    {"m/s": 1.0},
    {"°": 1.0, "deg": 1.0},
)


def _norm(unit: str) -> str:
    return (
        unit.strip()
        .replace("µ", "u")  # MICRO SIGN
        .replace("μ", "u")  # GREEK SMALL LETTER MU
        .replace("³", "3")
        .replace(" ", "")
        .lower()
    )


def unit_scale(code: str, unit: str) -> float:
    """Factor that turns a value of ``code`` sent in ``unit`` into envgrid's unit.

    Raises ValueError naming the accepted units when ``unit`` cannot be converted.
    """
    target = _norm(FACTORS[code][1])
    wire = _norm(unit)
    for family in _FAMILIES:
        if target in family:
            if wire not in family:
                raise ValueError(
                    f"unit {unit!r} cannot be converted to {FACTORS[code][1]} for {code}; "
                    f"use one of {', '.join(family)}"
                )
            return family[wire] / family[target]
    raise ValueError(f"no unit conversion known for {code}")  # pragma: no cover - table complete


# ---------------------------------------------------------------------------------------------
# Per-station settings (the registry's `mn`, `pw` and `hj212:` facts)
# ---------------------------------------------------------------------------------------------


class Hj212ConfigError(RegistryError):
    """A station's HJ 212 settings cannot be used; the message names file, line and fix."""


class StationSettings(BaseModel):
    """The optional ``hj212:`` mapping of a station's registry entry (docs/hj212.md)."""

    model_config = ConfigDict(extra="forbid")

    units: dict[str, str] = {}  # factor code → unit the station sends, e.g. a34004: ng/m3
    aliases: dict[str, str] = {}  # name the station sends → HJ 212-2017 code, e.g. PM25: a34004
    crc: Literal["hj212", "modbus"] = "hj212"
    short_mn: bool = False
    length_mismatch: bool = False
    legacy_aliases: bool = False
    unknown_factors: bool = False
    split_without_pnum: bool = False
    timezone: str | None = None  # DataTime's zone; default [standards] timezone
    # The edition the station speaks; auto: from each packet's Flag version bits.
    edition: Literal["auto", "2017", "2025"] = "auto"
    overtime: int | None = None  # the station's 1000 OverTime (s); default [hj212] command_timeout
    recount: int | None = None  # the station's 1000 ReCount; default [hj212] command_retries

    @field_validator("units")
    @classmethod
    def _units(cls, v: dict[str, str]) -> dict[str, str]:
        for code, unit in v.items():
            if code not in FACTORS:
                raise ValueError(f"unknown factor code {code!r} (e.g. a34004, w01018)")
            unit_scale(code, str(unit))
        return v

    @field_validator("aliases")
    @classmethod
    def _aliases(cls, v: dict[str, str]) -> dict[str, str]:
        for name, code in v.items():
            if code not in FACTORS:
                raise ValueError(f"alias {name!r} points to unknown factor code {code!r}")
            if not name or any(c in name for c in ";,=&-") or not name.isprintable():
                raise ValueError(f"alias {name!r}: a factor name has no ; , = & or -")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                ZoneInfo(v)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {v!r}; e.g. 'Asia/Shanghai'") from None
        return v


@dataclass(frozen=True, slots=True)
class Station:
    """A registered HJ 212 station as the intake and the gateway use it."""

    device: Device
    kind: str  # water | air
    mn: str
    pw: str
    leniency: Leniency
    aliases: Mapping[str, str]
    scale: Mapping[str, float]  # factor code → multiplier from wire unit to envgrid unit
    units: Mapping[str, str]  # factor code → wire unit as configured (the simulator uses it)
    tz: ZoneInfo
    edition: str = "auto"
    overtime: int | None = None
    recount: int | None = None

    def pw_ok(self, pw: str) -> bool:
        """Whether ``pw`` is this station's access password (constant-time compare)."""
        return secrets.compare_digest(pw.encode(), self.pw.encode())


_MN_CHARS: Final = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def load_stations(
    registry: Registry, default_tz: str = "Asia/Shanghai", source: Path | None = None
) -> dict[str, Station]:
    """Every registry device with an ``mn``, by MN; Hj212ConfigError naming file/line if bad."""
    lines = _entry_lines(source) if source is not None else {}
    stations: dict[str, Station] = {}
    for device in registry:
        if "mn" not in device.facts and "hj212" not in device.facts and "pw" not in device.facts:
            continue
        where = f"{source}:{lines.get(device.id, 1)}" if source is not None else "registry"
        try:
            station = _station(device, default_tz)
        except ValueError as e:
            raise Hj212ConfigError(f"{where}: device {device.id!r}: {e}") from None
        first = stations.get(station.mn)
        if first is not None:
            raise Hj212ConfigError(
                f"{where}: device {device.id!r}: mn {station.mn} is already used by "
                f"{first.device.id!r}; every station needs its own MN"
            )
        stations[station.mn] = station
    return stations


def _station(device: Device, default_tz: str) -> Station:
    facts = device.facts
    mn, pw = facts.get("mn"), facts.get("pw")
    if device.kind not in ST_KIND.values():
        raise ValueError(
            f"mn/pw/hj212 given for a {device.kind} device; HJ 212 intake serves "
            f"{' and '.join(sorted(ST_KIND.values()))} stations"
        )
    if mn is None:
        raise ValueError("pw or hj212 given without mn: add the station's 24-character MN")
    if not isinstance(mn, str):
        raise ValueError(f"mn must be a quoted string (YAML read {mn!r}): write mn: '{mn}'")
    if pw is None:
        raise ValueError("mn given without pw: add the station's 6-character access password")
    if not isinstance(pw, str):
        # Unquoted 012345 is octal to YAML 1.1; refuse numbers rather than guess.
        raise ValueError("pw must be a quoted string of 6 characters, e.g. pw: '123456'")
    if len(pw) != 6 or not pw.isascii() or not pw.isprintable() or any(c in pw for c in ";,=&"):
        raise ValueError("pw must be 6 printable ASCII characters without ; , = &")
    raw = facts.get("hj212") or {}
    if not isinstance(raw, Mapping):
        raise ValueError("hj212 must be a mapping (units, aliases, crc, short_mn, ...)")
    try:
        cfg = StationSettings.model_validate(raw)
    except ValidationError as e:
        unknown = "unknown setting; see docs/hj212.md for the per-device settings"
        p = problems(e, {"extra_forbidden": unknown})[0]
        at = f"hj212.{p.path()}" if p.loc else "hj212"
        raise ValueError(f"{at}: {p.message}") from None
    if not (1 <= len(mn) <= 24 and set(mn) <= _MN_CHARS):
        raise ValueError(f"mn {mn!r}: expected 24 letters or digits")
    if len(mn) != 24 and not cfg.short_mn:
        raise ValueError(
            f"mn {mn!r} has {len(mn)} characters, HJ 212-2017 MNs have 24; if the station "
            "really sends it, set hj212: {short_mn: true}"
        )
    leniency = Leniency(
        short_mn=cfg.short_mn,
        length_mismatch=cfg.length_mismatch,
        crc=cfg.crc,
        unknown_factors=cfg.unknown_factors,
        legacy_aliases=cfg.legacy_aliases,
        split_without_pnum=cfg.split_without_pnum,
    )
    scale = {code: FACTOR_SCALE.get(code, 1.0) for code in FACTORS}
    scale.update({code: unit_scale(code, unit) for code, unit in cfg.units.items()})
    return Station(
        device=device,
        kind=str(device.kind),
        mn=mn,
        pw=pw,
        leniency=leniency,
        aliases=dict(cfg.aliases),
        scale=scale,
        units=dict(cfg.units),
        tz=ZoneInfo(cfg.timezone or default_tz),
        edition=cfg.edition,
        overtime=cfg.overtime,
        recount=cfg.recount,
    )


def _entry_lines(source: Path) -> dict[str, int]:
    """Line of each device entry in a registry file (errors name it); {} if unreadable."""
    try:
        root = yaml.compose(source.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, yaml.YAMLError):
        return {}
    out: dict[str, int] = {}
    if not isinstance(root, yaml.MappingNode):
        return out
    for key, items in root.value:
        if key.value != "devices" or not isinstance(items, yaml.SequenceNode):
            continue
        for node in items.value:
            if isinstance(node, yaml.MappingNode):
                for k, v in node.value:
                    if k.value == "id" and isinstance(v, yaml.ScalarNode):
                        out.setdefault(str(v.value), node.start_mark.line + 1)
    return out


# ---------------------------------------------------------------------------------------------
# Packet → reading
# ---------------------------------------------------------------------------------------------


def _lenient(model: type[Reading]) -> type[Reading]:
    # A packet whose every value is flagged invalid (a station in maintenance) is still stored,
    # under <field>_invalid; the kind's "at least one reading" rule would refuse it, so decode
    # into a subclass without that rule. Ranges and cross-field checks still apply.
    return type(f"Hj212{model.__name__}", (model,), {"MEASURED": ()})


def _bounds(model: type[Reading]) -> dict[str, tuple[float | None, float | None]]:
    """Physical range (ge, le) of each float field, to name the factor in range errors."""
    out: dict[str, tuple[float | None, float | None]] = {}
    info = msgspec.inspect.type_info(model)
    for f in info.fields:  # type: ignore[attr-defined]
        for member in getattr(f.type, "types", (f.type,)):
            t = getattr(member, "type", member)
            if isinstance(t, msgspec.inspect.FloatType):
                out[f.name] = (t.ge, t.le)
    return out


@dataclass(frozen=True, slots=True)
class _KindView:
    """What the intake needs of one device kind, prepared once."""

    kind: DeviceKind
    daily: DeviceKind  # the kind as CN 2031 (daily) data is encoded
    model: type[Reading]
    bounds: dict[str, tuple[float | None, float | None]]


def _views(kinds: Mapping[str, DeviceKind]) -> dict[str, _KindView]:
    out = {}
    for name in ST_KIND.values():
        kind = kinds[name]
        # The real-time AQI uses 1 h tables; a daily packet's means need the 24 h ones.
        daily = kind.daily()
        out[name] = _KindView(kind, daily, _lenient(kind.model), _bounds(kind.model))
    return out


class Hj212Decoder:
    """The pipeline's decoder for ``<prefix>/hj212/<MN>``: (MN, raw packet) → result."""

    def __init__(self, pipeline: Pipeline, stations: Mapping[str, Station]) -> None:
        self.pipeline = pipeline
        self.stations = stations
        self._views = _views(pipeline.kinds)

    def __call__(self, mn: str, payload: bytes) -> Accepted | Rejected:
        station = self.stations.get(mn)
        if station is None:
            return Rejected(
                BAD_DEVICE_ID,
                f"unknown MN {_show(mn)}: no station in the device registry has it "
                "(add mn and pw to the station's entry)",
            )
        try:
            packet = parse(payload, station.leniency, station.aliases)
        except Hj212Error as e:
            return Rejected(MALFORMED, f"HJ 212 packet from MN {mn}: {e}")
        if packet.mn != mn:
            return Rejected(
                BAD_DEVICE_ID, f"packet MN {packet.mn} differs from the topic's MN {_show(mn)}"
            )
        if not station.pw_ok(packet.pw):
            # Never echo the password: neither the one sent nor the registered one.
            return Rejected(INVALID, f"wrong PW for MN {mn} ({station.device.id})")
        return self.convert(packet, station)

    def convert(self, packet: Packet, station: Station) -> Accepted | Rejected:
        """Map a parsed, authenticated packet of ``station`` to a reading and encode it."""
        kind_name = ST_KIND.get(packet.st)
        if kind_name is None:
            name = _ST_NAMES.get(packet.st, "unknown system")
            return Rejected(
                INVALID,
                f"ST {packet.st} ({name}) is not ingested: envgrid takes ST 21 surface water "
                "and ST 22 air quality",
            )
        if kind_name != station.kind:
            return Rejected(
                KIND_MISMATCH,
                f"ST {packet.st} is {kind_name} data but MN {station.mn} is "
                f"{station.device.id}, a {station.kind} station",
            )
        data_kind = CN_DATA_KIND.get(packet.cn)
        if data_kind is None:
            return Rejected(
                INVALID,
                f"CN {packet.cn} is not a data upload: envgrid takes 2011 real-time, "
                "2051 minute, 2061 hourly and 2031 daily data",
            )
        if packet.data_time is None:
            return Rejected(INVALID, f"CN {packet.cn} packet without DataTime in CP")
        view = self._views[kind_name]
        ts_ms = int(packet.data_time.replace(tzinfo=station.tz).timestamp() * 1000)
        mapped = _map_values(packet, station, view)
        if isinstance(mapped, Rejected):
            return mapped
        values, extra = mapped
        if not values and not extra:
            attr = "-Rtd" if packet.cn == "2011" else "-Avg"
            return Rejected(EMPTY, f"no {attr} values in the CN {packet.cn} packet")
        values["ts"] = ts_ms
        try:
            reading = msgspec.convert(values, view.model)
        except msgspec.ValidationError as e:
            return Rejected(INVALID, f"{kind_name}: {e}")
        kind = view.daily if data_kind == "daily" else view.kind
        fields = ",".join(
            f"{escape_key(k)}={s}"
            for k, v in sorted(extra.items())
            if (s := format_field(v)) is not None
        )
        return self.pipeline.accept(
            kind, reading, station.device, fields, f",data_kind={data_kind}"
        )


def _map_values(
    packet: Packet, station: Station, view: _KindView
) -> tuple[dict[str, Any], dict[str, FieldValue]] | Rejected:
    """(valid values by field, extra fields) of a packet, or the reason it cannot be stored."""
    # HJ 212-2017: real-time data (2011) carries -Rtd; minute/hourly/daily data carry -Avg.
    attr = "rtd" if packet.cn == "2011" else "avg"
    values: dict[str, Any] = {}
    extra: dict[str, FieldValue] = {}
    source: dict[str, str] = {}
    for code, fv in packet.factors.items():
        field = FACTORS[code][0]
        if field not in view.bounds:
            return Rejected(
                INVALID, f"factor {code} ({field}) is not a {station.kind} reading (ST {packet.st})"
            )
        if field in source:
            return Rejected(INVALID, f"factors {source[field]} and {code} both give {field}")
        source[field] = code
        raw = getattr(fv, attr)
        if raw is None:
            continue  # e.g. an hourly group with only -Cou: nothing for this field
        scale = station.scale[code]
        value = raw * scale
        if fv.flag is not None and fv.flag not in VALID_FLAGS:
            # Invalid data (maintenance, fault, calibration, ...): kept for the record, but not
            # under the normal name, so averages, classes and AQI never see it.
            extra[f"{field}_invalid"] = value
            extra[f"{field}_flag"] = fv.flag
            continue
        lo, hi = view.bounds[field]
        checks = (
            (attr.capitalize(), value),
            ("Min", _scaled(fv.min, scale)),
            ("Max", _scaled(fv.max, scale)),
        )
        for suffix, v in checks:
            if v is None:
                continue
            if (lo is not None and v < lo) or (hi is not None and v > hi) or not math.isfinite(v):
                return Rejected(
                    INVALID,
                    f"{code}-{suffix} ({field}) = {v:g} after unit conversion is outside the "
                    f"physical range {_g(lo)} to {_g(hi)}: a sensor fault or a wrong unit "
                    "(per-device units: docs/hj212.md)",
                )
        values[field] = value
        if fv.flag is not None and fv.flag != "N":
            extra[f"{field}_flag"] = fv.flag  # S (set value): valid, but say so
        if fv.min is not None:
            extra[f"{field}_min"] = fv.min * scale
        if fv.max is not None:
            extra[f"{field}_max"] = fv.max * scale
    return values, extra


def _scaled(v: float | None, scale: float) -> float | None:
    return None if v is None else v * scale


def _g(v: float | None) -> str:
    return "any" if v is None else f"{v:g}"


def _show(text: str) -> str:
    text = text[:40]
    return text if text.isprintable() else repr(text)[1:-1]


# ---------------------------------------------------------------------------------------------
# Wiring
# ---------------------------------------------------------------------------------------------


def decoder_factory(stations: Mapping[str, Station]) -> Callable[[Pipeline], Decoder]:
    """The ``make_decoder`` IngestService calls with its pipeline."""

    def make_decoder(pipeline: Pipeline) -> Decoder:
        return Hj212Decoder(pipeline, stations)

    return make_decoder


def protocols(
    registry: Registry, default_tz: str, source: Path | None = None
) -> dict[str, Callable[[Pipeline], Decoder]]:
    """``protocols=`` for IngestService: HJ 212 on ``<prefix>/hj212/<MN>``."""
    return {PROTOCOL: decoder_factory(load_stations(registry, default_tz, source))}
