"""InfluxDB line protocol: escaping and a compiled per-kind encoder.

Escaping follows the line-protocol reference: measurement names escape comma and space;
tag keys, tag values and field keys escape comma, equals sign and space; string field values
escape double quote and backslash.

Two things cannot be written as a tag value (or tag or field key) at all, so they are refused
with a reason (``TagValueError``) rather than stored wrongly:

- a trailing backslash: InfluxDB reads it as escaping the separator that follows and refuses the
  whole line ("invalid tag format"); a doubled backslash is not an escape there, so no padding
  helps (tests/integration/test_lineproto_influx.py shows both against the real server);
- control characters: a newline ends the line, and written as backslash-n it would be stored as
  those two characters, the same as a value that really holds them.

The pipeline turns the refusal into a dead letter of that one reading; ``envgrid devices check``
reports a registry value that would be refused.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterable

FieldValue = float | int | bool | str

_MEAS = str.maketrans({",": "\\,", " ": "\\ ", "\n": "\\n", "\r": "\\r"})
_KEY = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ "})


class TagValueError(ValueError):
    """A tag value, tag key or field key that line protocol cannot carry; the message says why."""


def escape_measurement(name: str) -> str:
    """Escape a measurement name."""
    out = name.translate(_MEAS)
    # A leading '#' would turn the line into a comment.
    return "\\" + out if out.startswith("#") else out


def tag_problem(value: str) -> str | None:
    """Why ``value`` cannot be a tag value or key in line protocol, or None if it can."""
    if value.endswith("\\"):
        return f"'{value}' ends in a backslash, which InfluxDB line protocol cannot store"
    # isprintable() is the fast test; it is also False for Unicode spaces, which are fine.
    if not value.isprintable():
        for c in value:
            if unicodedata.category(c) == "Cc":
                return (
                    f"{value!r} holds the control character U+{ord(c):04X}, which line "
                    "protocol cannot store as itself"
                )
    return None


def escape_key(key: str) -> str:
    """Escape a tag key, tag value or field key; TagValueError if it cannot be written."""
    if key.endswith("\\") or not key.isprintable():
        problem = tag_problem(key)
        if problem is not None:
            raise TagValueError(problem)
    return key.translate(_KEY)


def escape_string_field(value: str) -> str:
    """Quote a string field value."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def format_field(value: FieldValue) -> str | None:
    """Format one field value; None for a value InfluxDB cannot store (NaN, infinity)."""
    t = type(value)
    if t is float:
        return None if not math.isfinite(value) else repr(value)  # type: ignore[arg-type]
    if t is bool:
        return "true" if value else "false"
    if t is int:
        return f"{value}i"
    return escape_string_field(str(value))


def tag_set(tags: Iterable[tuple[str, str]]) -> str:
    """Encode tags as `,k=v,...` sorted by key (InfluxDB's preferred order); drop empty values."""
    return "".join(f",{escape_key(k)}={escape_key(v)}" for k, v in sorted(tags) if v != "")


def encode_line(
    measurement: str,
    tags: Iterable[tuple[str, str]],
    fields: Iterable[tuple[str, FieldValue]],
    ts_ms: int,
) -> str | None:
    """Encode one point; None when no field is storable."""
    parts = []
    for k, v in fields:
        s = format_field(v)
        if s is not None:
            parts.append(f"{escape_key(k)}={s}")
    if not parts:
        return None
    return f"{escape_measurement(measurement)}{tag_set(tags)} {','.join(parts)} {ts_ms}"
