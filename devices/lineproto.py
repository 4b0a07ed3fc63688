"""InfluxDB line protocol: escaping and a compiled per-kind encoder.

Escaping follows the line-protocol reference: measurement names escape comma and space;
tag keys, tag values and field keys escape comma, equals sign and space; string field values
escape double quote and backslash. Newlines cannot be escaped at all, so they are replaced
(a device id never legitimately holds one; the registry and id pattern reject them first).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

FieldValue = float | int | bool | str

_MEAS = str.maketrans({",": "\\,", " ": "\\ ", "\n": "\\n", "\r": "\\r"})
_KEY = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ ", "\n": "\\n", "\r": "\\r"})


def escape_measurement(name: str) -> str:
    """Escape a measurement name."""
    out = name.translate(_MEAS)
    # A leading '#' would turn the line into a comment.
    return "\\" + out if out.startswith("#") else out


def escape_key(key: str) -> str:
    """Escape a tag key, tag value or field key."""
    out = key.translate(_KEY)
    # An odd run of trailing backslashes would escape the separator that follows: pad it even.
    trailing = len(out) - len(out.rstrip("\\"))
    return out + "\\" if trailing % 2 else out


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
