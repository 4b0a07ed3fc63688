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


def select_items(query: str) -> list[str]:
    """The items of the outermost SELECT clause, as written."""
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
    return items


def outer_columns(query: str) -> list[str]:
    """The columns the outermost SELECT returns: aliases, bare identifiers, ``/field regex/``."""
    out = []
    for item in select_items(query):
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


# ------------------------------------------------------------------------ field names
#
# How Grafana names the fields of an InfluxQL answer. Its InfluxDB backend sets each field's
# ``config.displayNameFromDS`` (pkg/tsdb/influxdb/influxql/util/util.go: FormatFrameName and
# BuildFrameNameFromQuery, called from buffered/response_parser.go and converter/converter.go):
#
# - time_series (the default) makes one frame per series and column. Without an alias the
#   value field is named ``<measurement>.<column>``, plus `` { key: value, … }`` when the query
#   groups by tags; the measurement of an answer from a subquery is the inner one. With an
#   alias, the alias with ``$m``/``$measurement``, ``$col``, ``$tag_<key>``, ``$<n>`` (the n-th
#   "."-separated part of the measurement) and their ``[[…]]`` forms replaced; what it cannot
#   resolve stays as written. The field itself is called "Value".
# - table makes one frame: "Time", one field per GROUP BY tag named by its key, one per column
#   named by the column. The alias is not used.
#
# Overrides, transformations and ``reduceOptions.fields`` match these display names
# (packages/grafana-data/src/field/fieldState.ts: an override's displayName, else
# displayNameFromDS; transformations/matchers/nameMatcher.ts: byName compares the display name
# or the field's own name, byRegexp the display name). So a reference to the bare column only
# matches a time-series field whose target has an alias such as ``$col``.

_LEGEND = re.compile(r"\$(\w+)|\[\[([\s\S]+?)\]\]")  # util.go legendFormat
_CALL = re.compile(r"\s*(\w+)\s*\(")


def series_name(
    measurement: str,
    column: str,
    tags: Mapping[str, str],
    alias: str | None = None,
    result_format: str = "time_series",
) -> str:
    """The display name Grafana gives one column of one InfluxQL series (rule above).

    ``$__interval`` in an alias is left as written (Grafana fills in the panel's interval).
    """
    if result_format == "table":
        return column
    if not alias:
        name = f"{measurement}.{column}"
        if tags:
            # Grafana walks a Go map here: its order of the tags is not fixed.
            name += " { " + ", ".join(f"{k}: {v}" for k, v in sorted(tags.items())) + " }"
        return name
    segments = measurement.split(".")

    def part(m: re.Match[str]) -> str:
        text = m.group(0)
        key = text.replace("[[", "", 1).replace("]]", "", 1).replace("$", "", 1)
        if key in ("m", "measurement"):
            return measurement
        if key == "col":
            return column
        if key.isdigit() and int(key) < len(segments):
            return segments[int(key)]
        if key.startswith("tag_") and key[len("tag_") :] in tags:
            return tags[key[len("tag_") :]]
        return text

    return _LEGEND.sub(part, alias)


def column_names(query: str, fields: Sequence[str]) -> list[str]:
    """The columns (after ``time``) InfluxDB 1.x returns for the outermost SELECT.

    An item is named by its ``AS`` alias, a bare identifier by itself, a call by its outermost
    function; a call over a ``/regex/`` gives ``<function>_<field>`` for each of ``fields`` the
    regex matches. Anything else raises ValueError: give it an alias.
    """
    out: list[str] = []
    for item in select_items(query):
        call = _CALL.match(item)
        if alias := _ALIAS.search(item):
            out.append(alias.group(1))
        elif bare := re.fullmatch(r'"((?:[^"\\]|\\.)*)"', item):
            out.append(bare.group(1))
        elif call and (rx := FIELD_REGEX.search(item)):
            out += [f"{call.group(1)}_{f}" for f in fields if re.search(rx.group(1), f)]
        elif call:
            out.append(call.group(1))
        else:
            raise ValueError(f"cannot tell the column name of {item!r}: give it an AS alias")
    return out


@dataclass(frozen=True)
class Field:
    """A field of a panel's data as Grafana names it."""

    display: str  # displayNameFromDS ("Time" for time): what overrides and transforms match
    name: str  # the field's own name: "Value" in a time series, else the column
    ref_id: str


def predicted_fields(
    target: Mapping[str, Any], fields_of: Mapping[str, Sequence[str]]
) -> list[Field]:
    """The fields Grafana makes of a target's answer, from the query alone.

    ``fields_of`` gives each measurement's fields (for ``/regex/`` columns). Tag values are only
    known when the query runs: they appear as ``<key>``.
    """
    query, ref = str(target["query"]), str(target.get("refId", ""))
    measurements = sorted(names(query).measurements)
    columns = column_names(query, [f for m in measurements for f in fields_of.get(m, ())])
    tags = {t: f"<{t}>" for t in group_tags(query)}
    out = [Field("Time", "Time", ref)]
    if target.get("resultFormat", "time_series") == "table":
        return out + [Field(c, c, ref) for c in [*tags, *columns]]
    alias = target.get("alias")
    return out + [
        Field(series_name(m, c, tags, alias), "Value", ref) for m in measurements for c in columns
    ]


def answer_fields(target: Mapping[str, Any], series: Sequence[Mapping[str, Any]]) -> list[Field]:
    """The fields Grafana makes of a target's actual answer (InfluxDB's ``series``)."""
    ref = str(target.get("refId", ""))
    out = [Field("Time", "Time", ref)]
    if target.get("resultFormat", "time_series") == "table":
        keys = dict.fromkeys(k for s in series for k in s.get("tags") or {})
        columns = dict.fromkeys(c for s in series for c in s["columns"][1:])
        return out + [Field(c, c, ref) for c in [*keys, *columns]]
    alias = target.get("alias")
    return out + [
        Field(series_name(s["name"], c, s.get("tags") or {}, alias), "Value", ref)
        for s in series
        for c in s["columns"][1:]
    ]


def js_regex(text: str) -> re.Pattern[str]:
    """Grafana's stringToJsRegex: ``/re/flags`` as written, anything else anchored ``^…$``."""
    if not text.startswith("/"):
        return re.compile(f"^{text}$")
    m = re.fullmatch(r"/(.*?)/(g?i?m?y?s?)", text, re.DOTALL)
    if m is None:
        raise ValueError(f"{text!r} is not a valid regular expression")
    flags = (re.IGNORECASE if "i" in m.group(2) else 0) | (re.MULTILINE if "m" in m.group(2) else 0)
    return re.compile(m.group(1), flags | (re.DOTALL if "s" in m.group(2) else 0))


def _alternatives(regex: str) -> list[str]:
    """The alternatives of ``/^(a|b|c)$/``, the form a panel uses to pick fields by name."""
    m = re.fullmatch(r"/\^\((.*)\)\$/", regex)
    if m is None:
        return []
    out, depth, begin, body = [], 0, 0, m.group(1)
    for i, c in enumerate(body):
        escaped = i > 0 and body[i - 1] == "\\"
        if c in "([" and not escaped:
            depth += 1
        elif c in ")]" and not escaped:
            depth -= 1
        elif c == "|" and depth == 0 and not escaped:
            out.append(body[begin:i])
            begin = i + 1
    return [*out, body[begin:]]


def _transform(
    kind: str, options: Mapping[str, Any], fields: list[Field]
) -> tuple[list[Field], list[str]]:
    """Fields after one transformation, and the names it refers to that are missing."""
    shown = {f.display for f in fields}
    missing: list[str] = []

    def need(*names: str) -> None:
        missing.extend(n for n in names if n not in shown)

    if kind == "organize":
        rename, hide = options.get("renameByName", {}), options.get("excludeByName", {})
        need(*options.get("indexByName", {}), *rename, *hide)
        kept = [f for f in fields if not hide.get(f.display)]
        return [Field(rename.get(f.display) or f.display, f.name, f.ref_id) for f in kept], missing
    if kind == "filterByValue":
        need(*(f["fieldName"] for f in options.get("filters", [])))
        return fields, missing
    if kind == "renameByRegex":
        rx = js_regex(options["regex"])
        if not any(rx.search(f.display) for f in fields):
            missing.append(f"/{rx.pattern}/")
        to = re.sub(r"\$(\d+)", r"\\g<\1>", options.get("renamePattern", ""))
        return [Field(rx.sub(to, f.display, count=1), f.name, f.ref_id) for f in fields], missing
    if kind == "groupBy":
        spec = options.get("fields", {})
        need(*spec)
        out = []
        for f in fields:
            how = spec.get(f.display, {})
            if how.get("operation") == "groupby":
                out.append(f)
            elif how.get("operation") == "aggregate":
                out += [
                    Field(f"{f.display} ({a})", f"{f.display} ({a})", f.ref_id)
                    for a in how["aggregations"]
                ]
        return out, missing
    if kind == "calculateField" and options.get("mode") == "binary":
        binary = options["binary"]
        need(*(v for v in (binary["left"], binary["right"]) if not re.fullmatch(r"[-\d.]+", v)))
        alias = str(
            options.get("alias") or f"{binary['left']} {binary['operator']} {binary['right']}"
        )
        new = Field(alias, alias, fields[0].ref_id if fields else "")
        return ([new] if options.get("replaceFields") else [*fields, new]), missing
    raise ValueError(f"transformation {kind!r} is not modelled in dashboards.queries: add it")


def _matched(matcher: Mapping[str, Any], fields: list[Field]) -> list[Field] | None:
    """The fields an override's matcher selects; None for matchers that do not go by name."""
    kind, option = matcher["id"], matcher.get("options")
    if kind == "byName":
        return [f for f in fields if option in (f.display, f.name)]
    if kind == "byNames":
        names_ = set((option or {}).get("names", []))
        return [f for f in fields if f.display in names_ or f.name in names_]
    if kind == "byRegexp":
        rx = js_regex(str(option))
        return [f for f in fields if rx.search(f.display)]
    if kind in ("byType", "byFrameRefID", "byValue"):
        return None
    raise ValueError(f"override matcher {kind!r} is not modelled in dashboards.queries: add it")


def reference_problems(panel: Mapping[str, Any], fields: Sequence[Field]) -> list[str]:
    """Every name a panel refers to that none of its ``fields`` has, as Grafana would match it.

    Follows Grafana's order: transformations (on the datasource's names), then overrides
    (matched on the names after the transformations), then ``reduceOptions.fields``, the
    table's sort and the map layers' fields (on the names after the overrides' displayName).
    """
    problems: list[str] = []
    current = list(dict.fromkeys(fields))
    for t in panel.get("transformations", []):
        current, missing = _transform(t["id"], t.get("options", {}), current)
        problems += [f"transformation {t['id']}: no field {n!r}" for n in missing]
    config = panel.get("fieldConfig", {})
    shown = {f: config.get("defaults", {}).get("displayName") or f.display for f in current}
    for o in config.get("overrides", []):
        matched = _matched(o["matcher"], current)
        if matched is None:
            continue
        if not matched:
            problems.append(
                f"override {o['matcher']['id']} {o['matcher'].get('options')!r}: no field"
            )
        for p in o.get("properties", []):
            if p["id"] == "displayName":
                shown.update({f: str(p["value"]) for f in matched})
    final = set(shown.values())
    options = panel.get("options") or {}
    picked = (options.get("reduceOptions") or {}).get("fields") or ""
    if picked:
        if not any(js_regex(picked).search(n) for n in final):
            problems.append(f"reduceOptions.fields {picked}: picks no field")
        for alt in _alternatives(picked):
            if not any(re.fullmatch(alt, n) for n in final):
                problems.append(f"reduceOptions.fields {picked}: no field shown as {alt!r}")
    for s in options.get("sortBy", []):
        if s["displayName"] not in final:
            problems.append(f"sortBy {s['displayName']!r}: no such column")
    for layer in options.get("layers", []):
        ref = (layer.get("filterData") or {}).get("options")
        own = {n for f, n in shown.items() if ref is None or f.ref_id == ref}
        own |= {f.name for f in shown if ref is None or f.ref_id == ref}
        location = layer.get("location") or {}
        style = (layer.get("config") or {}).get("style") or {}
        wanted = [location.get(k) for k in ("lookup", "latitude", "longitude", "geohash", "wkt")]
        wanted += [(style.get(k) or {}).get("field") for k in ("color", "size", "text", "rotation")]
        problems += [
            f"layer {layer.get('name')!r}: no field {w!r}" for w in wanted if w and w not in own
        ]
    return problems
