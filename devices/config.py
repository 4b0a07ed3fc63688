"""Building blocks of every settings section: strict sections and the one duration grammar.

:func:`parse_duration` is the one reader of durations in envgrid: settings (every section), alert
rules (``for:``, ``nodata.interval``, silences) and the plan file (``step``, ``max_gap``, ...)
all accept the same text:

- a number of seconds: ``90``, ``1.5``;
- numbers with units, largest first, each unit once: ``500ms``, ``90s``, ``15m`` (or ``15min``),
  ``12h``, ``7d``, ``2w``, ``1h30m``, ``1d 12h``, ``1.5h``;
- ISO 8601: ``PT1H30M``, ``P7D``, ``P2W``, ``P1DT12H``, ``PT0.5S`` (years and months are refused:
  they have no fixed length);
- a clock: ``01:30:00`` (hours, minutes, seconds).

A duration is never negative. Microseconds are the finest step (``timedelta``'s own).
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
)

# Microseconds per unit. "m" is minutes: a month has no fixed length, so nothing means months.
_UNIT_US = {
    "ms": 1_000,
    "s": 1_000_000,
    "m": 60_000_000,
    "min": 60_000_000,
    "h": 3_600_000_000,
    "d": 86_400_000_000,
    "w": 604_800_000_000,
}
_NUMBER = r"\d+(?:\.\d+)?"
_PART = re.compile(rf"\s*({_NUMBER})\s*(ms|min|s|m|h|d|w)")
_BARE = re.compile(rf"\s*({_NUMBER})\s*")
_ISO = re.compile(
    rf"P(?:(?P<w>{_NUMBER})W)?(?:(?P<d>{_NUMBER})D)?"
    rf"(?:T(?:(?P<h>{_NUMBER})H)?(?:(?P<m>{_NUMBER})M)?(?:(?P<s>{_NUMBER})S)?)?",
    re.IGNORECASE,
)
_CLOCK = re.compile(r"\s*(\d+):([0-5]\d):([0-5]\d(?:\.\d+)?)\s*")
# Bigger first, so "1h30m" reads as written and "30m1h" is refused as a likely typo.
_RANK = {"w": 6, "d": 5, "h": 4, "m": 3, "min": 3, "s": 2, "ms": 1}

ACCEPTED = (
    "write e.g. 30s, 5m, 1h30m, 7d, 2w or 500ms (units largest first), 90 (seconds), "
    "ISO 8601 such as PT1H30M or P7D, or 01:30:00"
)


def parse_duration(text: str | float) -> timedelta:
    """The duration ``text`` stands for; ValueError naming what is accepted otherwise.

    A number (not a bool) is seconds, like a string of digits.
    """
    if isinstance(text, bool):
        raise ValueError(f"{text!r} is not a duration; {ACCEPTED}")
    if isinstance(text, int | float):
        if not math.isfinite(text) or text < 0:
            raise ValueError(f"{text!r} is not a duration (durations are finite, never negative)")
        return _micro(Decimal(str(text)) * _UNIT_US["s"], text)
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a duration; {ACCEPTED}")
    stripped = text.strip()
    if not stripped:
        raise ValueError(f"an empty text is not a duration; {ACCEPTED}")
    if stripped.startswith("-"):
        raise ValueError(f"{text!r} is not a duration (never negative); {ACCEPTED}")
    if m := _BARE.fullmatch(stripped):
        return _micro(Decimal(m.group(1)) * _UNIT_US["s"], text)
    if m := _CLOCK.fullmatch(stripped):
        h, mi, s = m.groups()
        return _micro(
            Decimal(h) * _UNIT_US["h"] + Decimal(mi) * _UNIT_US["m"] + Decimal(s) * _UNIT_US["s"],
            text,
        )
    if stripped[:1] in ("P", "p"):
        return _iso(stripped, text)
    return _units(stripped, text)


def _units(stripped: str, text: str) -> timedelta:
    total, pos, last = Decimal(0), 0, 99
    while pos < len(stripped):
        m = _PART.match(stripped, pos)
        if m is None:
            raise ValueError(f"{text!r} is not a duration; {ACCEPTED}")
        rank = _RANK[m.group(2)]
        if rank >= last:
            raise ValueError(
                f"{text!r} is not a duration: give each unit once, largest first, e.g. 1h30m"
            )
        last = rank
        total += Decimal(m.group(1)) * _UNIT_US[m.group(2)]
        pos = m.end()
    return _micro(total, text)


def _iso(stripped: str, text: str) -> timedelta:
    m = _ISO.fullmatch(stripped)
    if m is None or not any(m.groupdict().values()) or stripped.upper().endswith("T"):
        hint = ""
        if re.fullmatch(r"P.*\d(Y|M).*", stripped.split("T")[0], re.IGNORECASE):
            hint = " (years and months have no fixed length: write days, e.g. P30D)"
        raise ValueError(f"{text!r} is not a duration{hint}; {ACCEPTED}")
    total = sum(
        (Decimal(v) * _UNIT_US[k] for k, v in m.groupdict().items() if v),
        Decimal(0),
    )
    return _micro(total, text)


def _micro(us: Decimal, text: object) -> timedelta:
    try:
        return timedelta(microseconds=int(us.to_integral_value()))
    except OverflowError:
        raise ValueError(f"{text!r} is longer than any duration envgrid can hold") from None


def _duration(v: Any) -> Any:
    # timedelta values (defaults, Python callers) pass as they are; anything else is text or
    # a number for the one grammar, so pydantic's own looser timedelta parsing never applies.
    if isinstance(v, timedelta):
        return v
    return parse_duration(v)


def _positive(v: timedelta) -> timedelta:
    if v <= timedelta(0):
        raise ValueError("must be a positive duration, e.g. 30s, 10m, 12h")
    return v


Duration = Annotated[timedelta, BeforeValidator(_duration)]
# For intervals, timeouts and windows, where zero would mean "never" or a busy loop.
PositiveDuration = Annotated[Duration, AfterValidator(_positive)]


class Section(BaseModel):
    """A settings section: unknown keys are errors, so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid")
