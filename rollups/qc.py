"""Automatic quality control of closed windows, QARTOD-style (pure, no I/O).

The tests and the flag scale follow the IOOS QARTOD manuals: 1 pass, 3 suspect, 4 fail, 9 missing.
Each test looks at one device's samples of one field, in time order, over a closed window, so the
tests that need neighbours (spike, rate of change, flat line) see both sides of a value:

- **gross range**: outside the configured sensor or climatology range → 3 (suspect). Values
  outside the *physical* range never get here: ingest sets them apart (``<field>_invalid``).
- **spike** (QARTOD): ``|v[n] − (v[n−1] + v[n+1]) / 2| − |(v[n+1] − v[n−1]) / 2|`` above
  ``spike_suspect`` → 3, above ``spike_fail`` → 4.
- **rate of change**: ``|v[n] − v[n−1]|`` between consecutive samples above ``rate_suspect`` → 3
  (a fixed step; the QARTOD manuals' N standard deviations need a history this does not keep).
  The values around a flagged spike are not flagged again for its rise and fall.
- **flat line**: a run of values within ``flat_tolerance`` of its first value lasting
  ``flat_suspect`` → 3, ``flat_fail`` → 4; the whole run is flagged.

The thresholds are configuration (``ENVGRID_QC__CONFIG``, defaults in ``rollups/qc.yaml``), per
kind and field, overridden per device. Only flags 3 and 4 are stored (``<field>_qc``); rollups
leave 4s out, and 3s are what an auditor reviews first (docs/review.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml

from devices.config import parse_duration

PASS, SUSPECT, FAIL, MISSING = 1, 3, 4, 9
DEFAULTS = Path(__file__).resolve().parent / "qc.yaml"
HOUR_MS = 3_600_000

Sample = tuple[int, float]


class QcConfigError(ValueError):
    """A QC file that cannot be used; the message names the file and the fix."""


@dataclass(frozen=True, slots=True)
class FieldQc:
    """One field's thresholds; None turns a test off."""

    suspect_min: float | None = None
    suspect_max: float | None = None
    spike_suspect: float | None = None
    spike_fail: float | None = None
    rate_suspect: float | None = None  # largest believable change between consecutive samples
    flat_suspect_ms: int | None = None
    flat_fail_ms: int | None = None
    flat_tolerance: float = 0.0


@dataclass(frozen=True, slots=True)
class Flag:
    """A sample's worst flag and the test that gave it."""

    flag: int
    test: str


def _worse(out: dict[int, Flag], ts: int, flag: int, test: str) -> None:
    old = out.get(ts)
    if old is None or flag > old.flag:
        out[ts] = Flag(flag, test)


def run_tests(samples: Sequence[Sample], cfg: FieldQc) -> dict[int, Flag]:
    """Flags 3 and 4 of one field's samples (by sample time); samples that pass are absent."""
    s = sorted(samples)
    out: dict[int, Flag] = {}
    for ts, v in s:
        if (cfg.suspect_min is not None and v < cfg.suspect_min) or (
            cfg.suspect_max is not None and v > cfg.suspect_max
        ):
            _worse(out, ts, SUSPECT, "gross_range")
    spiked: set[int] = set()
    if cfg.spike_suspect is not None or cfg.spike_fail is not None:
        for i in range(1, len(s) - 1):
            prev, (ts, v), nxt = s[i - 1][1], s[i], s[i + 1][1]
            spk = abs(v - (prev + nxt) / 2) - abs((nxt - prev) / 2)
            if cfg.spike_fail is not None and spk > cfg.spike_fail:
                _worse(out, ts, FAIL, "spike")
                spiked.add(i)
            elif cfg.spike_suspect is not None and spk > cfg.spike_suspect:
                _worse(out, ts, SUSPECT, "spike")
                spiked.add(i)
    if cfg.rate_suspect is not None:
        for i in range(1, len(s)):
            (t0, v0), (t1, v1) = s[i - 1], s[i]
            if t1 <= t0 or i in spiked or (i - 1) in spiked:
                continue
            if abs(v1 - v0) > cfg.rate_suspect:
                _worse(out, t1, SUSPECT, "rate_of_change")
    if cfg.flat_suspect_ms is not None or cfg.flat_fail_ms is not None:
        start = 0
        for i in range(1, len(s) + 1):
            if i < len(s) and abs(s[i][1] - s[start][1]) <= cfg.flat_tolerance:
                continue
            lasted = s[i - 1][0] - s[start][0]
            flag = None
            if cfg.flat_fail_ms is not None and lasted >= cfg.flat_fail_ms:
                flag = FAIL
            elif cfg.flat_suspect_ms is not None and lasted >= cfg.flat_suspect_ms:
                flag = SUSPECT
            if flag is not None:
                for ts, _ in s[start:i]:
                    _worse(out, ts, flag, "flat_line")
            start = i
    return out


# ------------------------------------------------------------------------------- configuration

_KEYS = {f.name for f in fields(FieldQc)} - {"flat_suspect_ms", "flat_fail_ms"}
_KEYS |= {"flat_suspect", "flat_fail"}


def _field(base: FieldQc, raw: Any, where: str) -> FieldQc:
    if not isinstance(raw, Mapping):
        raise QcConfigError(f"{where}: expected a mapping of thresholds")
    unknown = set(raw) - _KEYS
    if unknown:
        raise QcConfigError(
            f"{where}: unknown key {sorted(unknown)[0]!r}; allowed: {', '.join(sorted(_KEYS))}"
        )
    changes: dict[str, Any] = {}
    for key, value in raw.items():
        if key in ("flat_suspect", "flat_fail"):
            try:
                d = parse_duration(value) if value is not None else None
            except ValueError as e:
                raise QcConfigError(f"{where}.{key}: {e}") from None
            # QC sees one local day at a time (a closed rollup window): a run can last 23:59 at
            # most, so a longer threshold would silently never flag anything.
            if d is not None and d >= timedelta(days=1):
                raise QcConfigError(
                    f"{where}.{key}: {value} is never reached: QC runs on one local day at a "
                    "time; give less than 24h"
                )
            changes[f"{key}_ms"] = int(d / timedelta(milliseconds=1)) if d is not None else None
        elif value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
            changes[key] = None if value is None else float(value)
        else:
            raise QcConfigError(f"{where}.{key}: expected a number (or null to turn it off)")
    return replace(base, **changes)


@dataclass(frozen=True, slots=True)
class QcConfig:
    """Thresholds per kind and field, and per-device overrides."""

    kinds: Mapping[str, Mapping[str, FieldQc]]
    devices: Mapping[str, Mapping[str, FieldQc]]

    def for_device(self, kind: str, device_id: str) -> dict[str, FieldQc]:
        """The thresholds that apply to one device's fields."""
        out = dict(self.kinds.get(kind, {}))
        out.update(self.devices.get(device_id, {}))
        return out


def parse_qc(text: str, source: str) -> QcConfig:
    """A QC file: ``kinds: {kind: {field: thresholds}}`` and ``devices: {id: {field: ...}}``
    (a device's thresholds start from its kind's)."""
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise QcConfigError(f"{source}: not valid YAML ({e})") from None
    if not isinstance(data, Mapping) or set(data) - {"kinds", "devices"}:
        raise QcConfigError(f"{source}: expected top-level 'kinds:' and/or 'devices:'")
    kinds: dict[str, dict[str, FieldQc]] = {}
    for kind, per_field in (data.get("kinds") or {}).items():
        if not isinstance(per_field, Mapping):
            raise QcConfigError(f"{source}: kinds.{kind}: expected a mapping of fields")
        kinds[str(kind)] = {
            str(f): _field(FieldQc(), raw, f"{source}: kinds.{kind}.{f}")
            for f, raw in per_field.items()
        }
    return QcConfig(kinds, _devices(data.get("devices") or {}, kinds, source))


def _devices(
    raw: Any, kinds: Mapping[str, Mapping[str, FieldQc]], source: str
) -> dict[str, dict[str, FieldQc]]:
    if not isinstance(raw, Mapping):
        raise QcConfigError(f"{source}: devices: expected a mapping of device ids")
    out: dict[str, dict[str, FieldQc]] = {}
    for device, per_field in raw.items():
        if not isinstance(per_field, Mapping):
            raise QcConfigError(f"{source}: devices.{device}: expected a mapping of fields")
        out[str(device)] = {}
        for f, th in per_field.items():
            # Start from the field's kind defaults, whichever kind defines the field.
            base = next((k[f] for k in kinds.values() if f in k), FieldQc())
            out[str(device)][str(f)] = _field(base, th, f"{source}: devices.{device}.{f}")
    return out


def load_qc(path: Path | None) -> QcConfig:
    """The QC file at ``path``, or the shipped defaults (``rollups/qc.yaml``) when None."""
    p = path or DEFAULTS
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise QcConfigError(f"{p}: cannot read the QC file ({e.strerror})") from None
    return parse_qc(text, str(p))
