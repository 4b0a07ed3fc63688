"""The device registry: which device is where (site, county) and its static facts.

Loaded from YAML (``devices:`` a list of objects). Errors name the file and line, so an
operator can fix the file without reading a traceback.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from devices.config import PositiveDuration
from devices.errors import error_lines
from devices.lineproto import escape_key

ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
UNKNOWN = "unknown"


# The fleet shipped with envgrid (devices/fleet.yaml), which the dashboards are built from.
FLEET = Path(__file__).resolve().parent / "fleet.yaml"
Assessment = Literal["national", "provincial", "city"]


class RegistryError(ValueError):
    """A registry file that cannot be used; the message names file, line and fix."""


class Facts(BaseModel):
    """A kind's registry facts, typed; each kind module subclasses it with the facts it reads.

    Every field has a default: an unregistered device has the defaults. Other keys of an entry
    (a station's HJ 212 ``mn``, …) stay in ``Device.facts`` untyped."""

    model_config = ConfigDict(extra="ignore", frozen=True, coerce_numbers_to_str=True)
    _defaults: ClassVar[dict[type[Facts], Facts]] = {}

    # How often the device reports (``interval: 5m``); rollups count each sample for this long
    # when they decide whether an hour is covered. Unset: learned from the device's own spacing.
    interval: PositiveDuration | None = None

    @classmethod
    def of(cls, device: Device) -> Self:
        """The device's facts as this model: as the registry checked them, from the facts of a
        device built in code (checked once, then kept), or the defaults for one without."""
        typed = device.typed
        if isinstance(typed, cls):
            return typed
        if not device.facts:
            default = cls._defaults.get(cls)
            if default is None:
                default = cls._defaults[cls] = cls()
            return default  # type: ignore[return-value]
        typed = cls.model_validate(device.facts)
        device.typed = typed
        return typed


class KindFacts(Protocol):
    """What the registry needs of a device kind: the model of its facts."""

    @property
    def facts_model(self) -> type[Facts]: ...


@dataclass(slots=True)
class Device:
    """One device as the pipeline sees it: identity, place and facts."""

    id: str
    kind: str | None = None
    site: str = UNKNOWN
    county: str = UNKNOWN
    name: str = ""
    lat: float | None = None
    lon: float | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    known: bool = False
    typed: Facts | None = None  # the facts as the kind's model (DeviceKind.facts reads them)
    _tags: dict[tuple[str, ...], str] = field(default_factory=dict, repr=False)
    _all_tags: str | None = field(default=None, repr=False)  # no facts: one tag set for any kind

    @classmethod
    def unregistered(cls, device_id: str) -> Device:
        """A device the registry does not list, its tag set already built.

        Many passing ids outgrow the registry's cache, so every reading may build one: one
        format is several times cheaper than the general path (docs/performance.md, "Why the
        code is shaped this way"). Only for ids that match ID_PATTERN,
        whose characters never need escaping in line protocol.
        """
        return cls(
            id=device_id, _all_tags=f",county={UNKNOWN},device_id={device_id},site={UNKNOWN}"
        )

    def tags_for(self, registry_tags: tuple[str, ...]) -> str:
        """The escaped tag set of this device's points (cached per tag selection)."""
        if self._all_tags is not None:
            return self._all_tags
        cached = self._tags.get(registry_tags)
        if cached is None:
            pairs = [("county", self.county), ("device_id", self.id), ("site", self.site)]
            pairs += [
                (k, str(self.facts[k])) for k in registry_tags if self.facts.get(k) is not None
            ]
            cached = "".join(f",{escape_key(k)}={escape_key(v)}" for k, v in pairs if v != "")
            self._tags[registry_tags] = cached
        return cached


class DeviceEntry(BaseModel):
    """A registry entry as written in YAML; extra keys are kind facts (capacity_kw, berth, …)."""

    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)

    id: str
    kind: str
    site: str = Field(min_length=1, max_length=128)
    county: str = Field(min_length=1, max_length=128)
    name: str = ""
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)

    @field_validator("id")
    @classmethod
    def _full_match(cls, v: str) -> str:
        if not ID_PATTERN.fullmatch(v):
            raise ValueError(f"must match {ID_PATTERN.pattern}")
        return v


class Registry:
    """Devices by id (and by HJ 212 MN), with unknown ids answered as ``site=unknown``."""

    # Unregistered devices seen recently, so a fleet reporting every minute gets its tag set from
    # a cache. Bounded: up to this many entries (~0.5 KB each), then it starts over, so 100,000
    # passing unknown ids cost at most this much memory and each miss only a new Device.
    UNKNOWN_CACHE = 8192

    def __init__(self, devices: Iterable[Device] = ()) -> None:
        self._by_id: dict[str, Device] = {}
        self._by_mn: dict[str, Device] = {}
        self._unknown: dict[str, Device] = {}
        for d in devices:
            self._by_id[d.id] = d
            mn = d.facts.get("mn")
            if mn:
                self._by_mn[str(mn)] = d

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[Device]:
        return iter(self._by_id.values())

    def get(self, device_id: str) -> Device | None:
        """The registered device, or None."""
        return self._by_id.get(device_id)

    def by_mn(self, mn: str) -> Device | None:
        """The station registered with this HJ 212 MN, or None."""
        return self._by_mn.get(mn)

    def resolve(self, device_id: str) -> Device | None:
        """The registered device, an unregistered one tagged ``unknown``, or None for a bad id."""
        d = self._by_id.get(device_id) or self._unknown.get(device_id)
        if d is not None:
            return d
        if ID_PATTERN.fullmatch(device_id):
            cache = self._unknown
            if len(cache) >= self.UNKNOWN_CACHE:
                cache.clear()  # start over: O(1) per miss, and never more than the bound
            d = cache[device_id] = Device.unregistered(device_id)
            return d
        return None

    def of_kind(self, kind: str) -> list[Device]:
        """Registered devices of one kind."""
        return [d for d in self._by_id.values() if d.kind == kind]

    @classmethod
    def parse(cls, text: str, source: str, kinds: Mapping[str, KindFacts]) -> Registry:
        """Parse registry YAML text; ``source`` names it in errors. Each entry's facts are
        checked against its kind's facts model."""
        known_kinds = set(kinds)
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as e:
            line = e.problem_mark.line + 1 if e.problem_mark else 0
            raise RegistryError(f"{source}:{line}: not valid YAML: {e.problem}") from e
        if not isinstance(root, yaml.MappingNode) or not any(
            k.value == "devices" for k, _ in root.value
        ):
            raise RegistryError(f"{source}:1: expected a top-level 'devices:' list")
        items = next(v for k, v in root.value if k.value == "devices")
        if not isinstance(items, yaml.SequenceNode):
            raise RegistryError(f"{source}:{items.start_mark.line + 1}: 'devices' must be a list")
        data = yaml.safe_load(text)["devices"] or []
        devices: list[Device] = []
        seen: dict[str, int] = {}
        for node, raw in zip(items.value, data, strict=True):
            line = node.start_mark.line + 1
            where = f"{source}:{line}"
            if not isinstance(raw, Mapping):
                raise RegistryError(
                    f"{where}: each device must be a mapping with id, kind, site, county"
                )
            try:
                entry = DeviceEntry.model_validate(raw)
            except ValidationError as e:
                raise RegistryError(_one_line(where, raw.get("id", "?"), e)) from e
            if entry.kind not in known_kinds:
                raise RegistryError(
                    f"{where}: device {entry.id!r}: unknown kind {entry.kind!r}; "
                    f"use one of {', '.join(sorted(known_kinds))}"
                )
            facts = dict(entry.model_extra or {})
            try:
                typed = kinds[entry.kind].facts_model.model_validate(facts)
            except ValidationError as e:
                raise RegistryError(_one_line(where, entry.id, e)) from e
            if entry.id in seen:
                raise RegistryError(
                    f"{where}: device {entry.id!r} is listed twice (first at line {seen[entry.id]})"
                )
            seen[entry.id] = line
            devices.append(
                Device(
                    id=entry.id,
                    kind=entry.kind,
                    site=entry.site,
                    county=entry.county,
                    name=entry.name,
                    lat=entry.lat,
                    lon=entry.lon,
                    facts=facts,
                    known=True,
                    typed=typed,
                )
            )
        return cls(devices)


def _one_line(where: str, device_id: object, e: ValidationError) -> str:
    return error_lines(e, where=where, about=f"device {device_id!r}", root="entry")[0]


def load_registry(path: Path | None, kinds: Mapping[str, KindFacts] | None = None) -> Registry:
    """The device registry in ``path`` (an empty one for None: every device unregistered),
    checked against the registered kinds (or ``kinds``); RegistryError names file, line, fix."""
    if path is None:
        return Registry()
    if kinds is None:
        from devices.kinds import KINDS  # the kinds import this module: resolved at call time

        kinds = KINDS
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise RegistryError(f"{path}: cannot read the device registry ({e.strerror})") from e
    return Registry.parse(text, str(path), kinds)
