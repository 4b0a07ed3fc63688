"""Read the queries out of dashboard JSON and fill them in the way Grafana does before running.

Used by the tests that run every panel query, template variable and annotation against a real
InfluxDB, and that check every identifier a query names against the storage schema. Grafana
itself cannot run on the build machines, so this is the part of Grafana those tests stand in
for: ``$timeFilter``, ``$__interval`` and template variables in InfluxQL regex filters.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

Origin = Literal["panel", "variable", "annotation"]
ALL = "$__all"


@dataclass(frozen=True)
class Query:
    """One InfluxQL query of a dashboard and where Grafana would run it."""

    dashboard: str
    origin: Origin
    title: str  # panel title, variable name or annotation name
    ref_id: str
    query: str
    result_format: str = "time_series"
    min_interval: str | None = None
    time_from: str | None = None
    hidden: bool = False

    @property
    def where(self) -> str:
        """``dashboard / panel [ref]`` for messages."""
        return f"{self.dashboard} / {self.title} [{self.ref_id}]"


def panels(model: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those inside collapsed rows."""
    for panel in model.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def queries(model: Mapping[str, Any]) -> list[Query]:
    """Every query of a dashboard: panel targets, template variables and annotations."""
    uid = str(model["uid"])
    out: list[Query] = []
    for p in panels(model):
        for t in p.get("targets", []):
            out.append(
                Query(
                    uid,
                    "panel",
                    str(p.get("title", "")),
                    str(t.get("refId", "")),
                    str(t["query"]),
                    str(t.get("resultFormat", "time_series")),
                    p.get("interval"),
                    p.get("timeFrom"),
                    bool(t.get("hide", False)),
                )
            )
    for v in model.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            out.append(Query(uid, "variable", str(v["name"]), "var", str(v["query"])))
    for a in model.get("annotations", {}).get("list", []):
        target = a.get("target") or {}
        if "query" in target:
            out.append(
                Query(
                    uid, "annotation", str(a.get("name", "")), "Anno", str(target["query"]), "table"
                )
            )
    return out


# ------------------------------------------------------------------------ interpolation

_REGEX_SPECIALS = re.compile(r"([\\^$*+?.()|{}\[\]/])")


def regex_escape(value: str) -> str:
    """Grafana's regexEscape, applied to multi-value variables used inside /…/."""
    return _REGEX_SPECIALS.sub(r"\\\1", value)


def format_variable(
    value: str | Sequence[str], all_values: Sequence[str], all_value: str | None
) -> str:
    """A multi-value variable's text inside an InfluxQL regex, as Grafana's InfluxDB plugin."""
    if value == ALL or (not isinstance(value, str) and list(value) == [ALL]):
        if all_value is not None:
            return all_value
        value = list(all_values)
    values = [value] if isinstance(value, str) else list(value)
    escaped = [regex_escape(v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
# Grafana's rangeutil.roundInterval: (upper bound of the raw interval, interval used), in ms.
_ROUNDING: tuple[tuple[int, int], ...] = (
    (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1500, 1000),
    (3500, 2000), (7500, 5000), (12500, 10000), (17500, 15000), (25000, 20000),
    (45000, 30000), (90000, 60000), (210000, 120000), (450000, 300000), (750000, 600000),
    (1050000, 900000), (1500000, 1200000), (2700000, 1800000), (5400000, 3600000),
    (9000000, 7200000), (16200000, 10800000), (32400000, 21600000), (86400000, 43200000),
    (604800000, 86400000), (1814400000, 604800000), (3628800000, 2592000000),
)  # fmt: skip


def duration_ms(text: str) -> int:
    """``10s``, ``5m``, ``1d`` → milliseconds."""
    m = re.fullmatch(r"(\d+)(ms|s|m|h|d|w)", text.strip())
    if not m:
        raise ValueError(f"not a Grafana duration: {text!r}")
    return int(m.group(1)) * _UNITS_MS[m.group(2)]


def format_duration(ms: int) -> str:
    """Milliseconds → the largest whole unit (``60000`` → ``1m``)."""
    for unit in ("w", "d", "h", "m", "s"):
        if ms % _UNITS_MS[unit] == 0:
            return f"{ms // _UNITS_MS[unit]}{unit}"
    return f"{ms}ms"


def interval(range_ms: int, min_interval: str | None, max_data_points: int = 1000) -> str:
    """``$__interval`` for a time range: range ÷ points, rounded, at least the panel's minimum."""
    raw = range_ms / max_data_points
    rounded = next((to for upper, to in _ROUNDING if raw <= upper), 31_536_000_000)
    low = duration_ms(min_interval) if min_interval else 0
    return format_duration(max(rounded, low))


def time_range(spec: str, now: datetime, tz: str) -> tuple[int, int]:
    """A panel or dashboard ``from`` (``now-24h``, ``now/d``) to ``now``, in epoch ms."""
    end = int(now.timestamp() * 1000)
    if spec == "now/d":
        local = now.astimezone(ZoneInfo(tz))
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        return int(midnight.timestamp() * 1000), end
    m = re.fullmatch(r"now-(\d+)([smhdw])", spec)
    if not m:
        raise ValueError(f"unsupported time range {spec!r}")
    return end - int(m.group(1)) * _UNITS_MS[m.group(2)], end


def interpolate(
    query: str,
    *,
    variables: Mapping[str, str],
    start_ms: int,
    end_ms: int,
    interval_text: str,
) -> str:
    """The query as Grafana sends it to InfluxDB (``variables`` already formatted)."""
    out = query.replace("$timeFilter", f"time >= {start_ms}ms and time <= {end_ms}ms")
    out = out.replace("$__interval_ms", str(duration_ms(interval_text)))
    out = out.replace("$__interval", interval_text).replace("$interval", interval_text)
    # Longest names first, so $site is not replaced inside $site_type.
    for name in sorted(variables, key=len, reverse=True):
        out = out.replace("${" + name + "}", variables[name]).replace("$" + name, variables[name])
    return out


# ------------------------------------------------------------------------ static reading

_IDENT = re.compile(r'"((?:[^"\\]|\\.)*)"')
_ALIAS = re.compile(r'\bAS\s+"((?:[^"\\]|\\.)*)"', re.IGNORECASE)
_FROM = re.compile(r'\bFROM\s+((?:"(?:[^"\\]|\\.)*"\s*,?\s*)+)', re.IGNORECASE)
_KEY = re.compile(r'\bWITH\s+KEY\s*=\s*"((?:[^"\\]|\\.)*)"', re.IGNORECASE)
FIELD_REGEX = re.compile(r"\(\s*/([^/]+)/\s*\)")


@dataclass(frozen=True)
class Names:
    """What a query names: measurements, aliases it defines, other identifiers, field regexes."""

    measurements: frozenset[str]
    aliases: frozenset[str]
    identifiers: frozenset[str]
    field_regexes: tuple[str, ...]
    tag_key: str | None  # SHOW TAG VALUES … WITH KEY


def names(query: str) -> Names:
    """Read the names out of a query written in the envgrid style (all identifiers quoted)."""
    measurements = {m for clause in _FROM.findall(query) for m in _IDENT.findall(clause)}
    aliases = set(_ALIAS.findall(query))
    key = _KEY.search(query)
    idents = set(_IDENT.findall(query)) - measurements - aliases
    if key:
        idents.discard(key.group(1))
    return Names(
        frozenset(measurements),
        frozenset(aliases),
        frozenset(idents),
        tuple(FIELD_REGEX.findall(query)),
        key.group(1) if key else None,
    )


def _top_level(query: str) -> str:
    """The query with everything inside parentheses blanked (same length, same positions)."""
    out, depth = [], 0
    for c in query:
        if c == ")":
            depth -= 1
        out.append(c if depth == 0 else " ")
        if c == "(":
            depth += 1
    return "".join(out)


def outer_columns(query: str) -> list[str]:
    """The columns the outermost SELECT returns: aliases, bare identifiers, ``/field regex/``."""
    top = _top_level(query)
    if not top.upper().startswith("SELECT "):
        return []
    end = top.upper().find(" FROM ")
    clause, mask = query[len("SELECT ") : end], top[len("SELECT ") : end]
    items, begin = [], 0
    for i, c in enumerate(mask):
        if c == ",":
            items.append(clause[begin:i].strip())
            begin = i + 1
    items.append(clause[begin:].strip())
    out = []
    for item in items:
        alias = _ALIAS.search(item)
        if alias:
            out.append(alias.group(1))
        elif (regex := FIELD_REGEX.search(item)) is not None:
            out.append(f"/{regex.group(1)}/")  # one column <fn>_<field> per matching field
        elif m := re.fullmatch(r'"((?:[^"\\]|\\.)*)"', item):
            out.append(m.group(1))
        else:
            out.append(item)
    return out


def group_tags(query: str) -> list[str]:
    """The tags of the outermost GROUP BY."""
    top = _top_level(query)
    at = top.upper().rfind(" GROUP BY ")
    if at < 0:
        return []
    clause = top[at + len(" GROUP BY ") :]
    clause = re.split(r"\b(?:fill|tz|ORDER|LIMIT|SLIMIT)\b", clause)[0]
    return _IDENT.findall(clause)
