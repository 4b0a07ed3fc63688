"""Alert rules: the YAML format, its validation, and the compiled form the engine evaluates.

A rule file holds ``rules:``, a list of rules; a folder holds any number of ``*.yaml`` files.
Every error names the file, the line (from the YAML node marks) and a fix, e.g.
``rules.yaml:14: rule 'do-low': unknown operator '=>' — use one of >, >=, <, <=, ==, !=, …``.
The format is documented in docs/alerts.md.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import msgspec
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from devices.base import DeviceKind
from devices.config import parse_duration
from devices.errors import Problem, error_lines, yaml_line, yaml_value
from devices.kinds import KINDS

DEFAULT_RULES = Path(__file__).resolve().with_name("default_rules.yaml")
SEVERITIES = ("critical", "major", "minor", "warning", "info")
Severity = Literal["critical", "major", "minor", "warning", "info"]
OPERATORS = (">", ">=", "<", "<=", "==", "!=", "outside", "in")
_OPS_HINT = "use one of " + ", ".join(OPERATORS)
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# field, operator (a run of symbols or a word), the rest (the operand).
_CONDITION = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*([<>=!]+|[A-Za-z_]+)\s*(.*?)\s*$")

Value = float | int | bool | str
Test = Callable[[Any], bool]


class RuleError(ValueError):
    """Rules that cannot be used; ``errors`` holds one line per problem (file:line: …)."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


# --------------------------------------------------------------------------- compiled form


@dataclass(frozen=True, slots=True)
class Condition:
    """A test on one field: ``do_mg_l < 3``, ``status in [Faulted]``, ``x outside [lo, hi]``."""

    field: str
    op: str
    operand: Value | tuple[Value, ...]
    test: Test = dataclasses.field(repr=False, compare=False)

    @property
    def text(self) -> str:
        """The condition as written in a rule file."""
        if isinstance(self.operand, tuple):
            return f"{self.field} {self.op} [{', '.join(str(v) for v in self.operand)}]"
        return f"{self.field} {self.op} {self.operand}"


@dataclass(frozen=True, slots=True)
class Scope:
    """Which devices a rule covers: fnmatch globs on device id, site and county (empty = any)."""

    devices: tuple[str, ...] = ()
    sites: tuple[str, ...] = ()
    counties: tuple[str, ...] = ()

    @property
    def everything(self) -> bool:
        """No globs at all: every device of the rule's kind is in scope."""
        return not (self.devices or self.sites or self.counties)

    def matches(self, device_id: str, site: str, county: str) -> bool:
        """Whether a device falls in this scope (every non-empty list must match)."""
        return (
            _any_glob(self.devices, device_id)
            and _any_glob(self.sites, site)
            and _any_glob(self.counties, county)
        )


def _any_glob(patterns: tuple[str, ...], value: str) -> bool:
    return not patterns or any(fnmatch.fnmatchcase(value, p) for p in patterns)


@dataclass(frozen=True, slots=True)
class Rule:
    """One compiled rule: a threshold rule (``when``) or a no-data rule (``nodata_ms``)."""

    id: str
    kind: str
    severity: Severity
    description: str = ""
    description_zh: str = ""  # the description in Chinese (messages and the console in zh)
    scope: Scope = Scope()
    when: Condition | None = None
    clear: Condition | None = None  # None: clears as soon as ``when`` no longer holds
    for_ms: int = 0
    nodata_ms: int | None = None
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    standard: str = ""
    unit: str = ""
    source: str = ""  # file:line, for messages

    @property
    def field(self) -> str | None:
        """The field a threshold rule tests (None for a no-data rule)."""
        return self.when.field if self.when else None

    def breached(self, value: Any) -> bool:
        """Whether a value meets the firing condition."""
        return self.when is not None and self.when.test(value)

    def cleared(self, value: Any) -> bool:
        """Whether a value meets the clear condition (hysteresis) of a firing alert."""
        if self.clear is not None:
            return self.clear.test(value)
        return self.when is not None and not self.when.test(value)


@dataclass(frozen=True, slots=True)
class RuleSet:
    """Loaded rules, by kind, with the files they came from."""

    rules: tuple[Rule, ...]
    sources: tuple[str, ...] = ()
    by_id: Mapping[str, Rule] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_id", {r.id: r for r in self.rules})

    def __len__(self) -> int:
        return len(self.rules)

    def of_kind(self, kind: str) -> list[Rule]:
        """Rules of one device kind."""
        return [r for r in self.rules if r.kind == kind]


# --------------------------------------------------------------------------- YAML model


def duration_ms(text: str | float) -> int:
    """Milliseconds of a duration in the one grammar (devices.config): "30s", "5m", "1h30m",
    "PT2H", 300 (seconds)...; ValueError naming what is accepted."""
    return parse_duration(text) // _MS


_MS = timedelta(milliseconds=1)


def text_labels(v: Any) -> Any:
    """Label values as text: YAML reads `team: 1` or `paging: yes` as numbers and booleans."""
    if isinstance(v, Mapping):
        return {str(k): str(x).lower() if isinstance(x, bool) else str(x) for k, x in v.items()}
    return v


def _as_list(v: Any) -> Any:
    return [v] if isinstance(v, str) else v


class ScopeSpec(BaseModel):
    """``scope:`` as written: lists of globs (a single string is a list of one)."""

    model_config = ConfigDict(extra="forbid")

    devices: list[str] = []
    sites: list[str] = []
    counties: list[str] = []

    _lists = field_validator("devices", "sites", "counties", mode="before")(_as_list)


class NoDataSpec(BaseModel):
    """``nodata: {interval: 5m}``: raise 'device offline' after that long without a reading."""

    model_config = ConfigDict(extra="forbid")

    interval: int = Field(gt=0)

    _d = field_validator("interval", mode="before")(duration_ms)


class RuleSpec(BaseModel):
    """One rule as written in YAML (see docs/alerts.md)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: str
    description: str = ""
    description_zh: str = ""
    kind: str
    scope: ScopeSpec = ScopeSpec()
    when: str | None = None
    for_ms: int = Field(default=0, ge=0, alias="for")
    clear: str | None = None
    hysteresis: float | None = Field(default=None, gt=0)
    severity: Severity
    labels: dict[str, str] = {}
    standard: str = ""
    nodata: NoDataSpec | None = None

    _d = field_validator("for_ms", mode="before")(duration_ms)

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not _ID.match(v):
            raise ValueError(
                "must be 1-64 letters, digits, '-', '_' or '.', starting with a letter or digit"
            )
        return v

    _labels = field_validator("labels", mode="before")(text_labels)


_SPEC_KEYS = [f.alias or n for n, f in RuleSpec.model_fields.items()]


# --------------------------------------------------------------------------- loading


def load_rules(path: Path | None = None) -> RuleSet:
    """Rules from a file or a folder of ``*.yaml`` (the shipped defaults when None)."""
    rules, errors, sources = _load(path or DEFAULT_RULES)
    if errors:
        raise RuleError(errors)
    return RuleSet(tuple(rules), tuple(sources))


def check_rules(path: Path) -> tuple[RuleSet, list[str]]:
    """The rules that are valid and every problem found (for ``envgrid rules check``)."""
    rules, errors, sources = _load(path)
    return RuleSet(tuple(rules), tuple(sources)), errors


def parse_rules(text: str, source: str = "<rules>") -> RuleSet:
    """Rules from YAML text; ``source`` names it in errors. Raises RuleError."""
    rules, errors = _parse(text, source)
    if errors:
        raise RuleError(errors)
    _check_unique(rules, errors)
    if errors:
        raise RuleError(errors)
    return RuleSet(tuple(rules), (source,))


def _load(path: Path) -> tuple[list[Rule], list[str], list[str]]:
    if path.is_dir():
        files = sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
        if not files:
            return [], [f"{path}: no *.yaml rule files in this folder"], []
    elif path.exists():
        files = [path]
    else:
        return [], [f"{path}: no such rule file or folder; set ENVGRID_ALERTS__RULES"], []
    rules: list[Rule] = []
    errors: list[str] = []
    for f in files:
        try:
            text = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            errors.append(f"{f}: cannot read the rule file ({getattr(e, 'strerror', None) or e})")
            continue
        got, errs = _parse(text, str(f))
        rules += got
        errors += errs
    _check_unique(rules, errors)
    return rules, errors, [str(f) for f in files]


def _check_unique(rules: list[Rule], errors: list[str]) -> None:
    seen: dict[str, str] = {}
    for r in rules:
        if r.id in seen:
            errors.append(
                f"{r.source}: rule {r.id!r} is defined twice (first at {seen[r.id]}); "
                "give each rule its own id"
            )
        else:
            seen[r.id] = r.source


def _parse(text: str, source: str) -> tuple[list[Rule], list[str]]:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 1
        return [], [f"{source}:{line}: not valid YAML: {e.problem or e.context}"]
    if root is None:
        return [], [f"{source}:1: empty rule file; expected a top-level 'rules:' list"]
    items = yaml_value(root, "rules")
    if items is None or not isinstance(data, Mapping):
        return [], [f"{source}:{root.start_mark.line + 1}: expected a top-level 'rules:' list"]
    extra = [k for k, _ in root.value if k.value != "rules"]
    errors = [
        f"{source}:{k.start_mark.line + 1}: unknown top-level key {k.value!r}; "
        "a rule file holds only 'rules:'"
        for k in extra
    ]
    raw = data.get("rules") or []
    if not isinstance(items, yaml.SequenceNode) or not isinstance(raw, list):
        return [], [*errors, f"{source}:{items.start_mark.line + 1}: 'rules' must be a list"]
    rules: list[Rule] = []
    for node, item in zip(items.value, raw, strict=True):
        rule, errs = _compile(node, item, source)
        errors += errs
        if rule is not None:
            rules.append(rule)
    return rules, sorted(errors, key=_line_key)


def _line_key(msg: str) -> int:
    m = re.search(r":(\d+): ", msg)
    return int(m.group(1)) if m else 0


def _compile(node: yaml.Node, raw: Any, source: str) -> tuple[Rule | None, list[str]]:
    """Validate one rule mapping; every problem as ``file:line: rule 'id': …``."""
    line0 = node.start_mark.line + 1
    if not isinstance(raw, Mapping) or not isinstance(node, yaml.MappingNode):
        return None, [f"{source}:{line0}: each rule must be a mapping with id, kind, when, …"]
    rid = raw.get("id")
    who = f"rule {rid!r}" if isinstance(rid, str) else "rule"

    def at(loc: tuple[str | int, ...]) -> str:
        return f"{source}:{yaml_line(node, loc)}"

    def err(loc: tuple[str | int, ...], msg: str) -> str:
        return f"{at(loc)}: {who}: {msg}"

    errors: list[str] = []
    spec: RuleSpec | None = None
    try:
        spec = RuleSpec.model_validate(raw)
    except ValidationError as e:
        errors += error_lines(e, where=at, about=who, root="", explain=_explain)
    # Past a schema error, still check the kind and conditions, so one run lists every problem.
    kind_name = spec.kind if spec else raw.get("kind")
    kind = KINDS.get(kind_name) if isinstance(kind_name, str) else None
    if kind is None:
        if isinstance(kind_name, str):
            errors.append(err(("kind",), _unknown("kind", kind_name, KINDS)))
        return None, errors
    fields = kind.fields()

    def text(key: str) -> str | None:
        v = raw.get(key)
        return v if isinstance(v, str) else None

    when = clear = None
    hysteresis = spec.hysteresis if spec else None
    if raw.get("nodata") is not None:
        for key in ("when", "clear", "hysteresis"):
            if raw.get(key) is not None:
                errors.append(err((key,), f"'{key}' does not apply to a nodata rule; remove it"))
        if spec is not None and spec.for_ms:
            errors.append(
                err(("for",), "'for' does not apply to a nodata rule: its interval is the limit")
            )
    elif raw.get("when") is None:
        errors.append(
            err((), "needs 'when: <field> <op> <value>' (e.g. when: do_mg_l < 3) or 'nodata:'")
        )
    elif (when_text := text("when")) is not None:
        when = _condition(when_text, kind, fields, lambda m: errors.append(err(("when",), m)))
        clear_text = text("clear")
        if when is not None and clear_text is not None and hysteresis is not None:
            errors.append(err(("hysteresis",), "give either 'clear' or 'hysteresis', not both"))
        elif when is not None and clear_text is not None:
            clear = _condition(
                clear_text, kind, fields, lambda m: errors.append(err(("clear",), m))
            )
            if clear is not None and clear.field != when.field:
                errors.append(
                    err(
                        ("clear",),
                        f"'clear' must test the same field as 'when' ({when.field}), "
                        f"not {clear.field}",
                    )
                )
        elif when is not None and hysteresis is not None:
            clear = _hysteresis(when, hysteresis, lambda m: errors.append(err(("hysteresis",), m)))
    if errors or spec is None:
        return None, errors
    field_name = when.field if when else ""
    return (
        Rule(
            id=spec.id,
            kind=spec.kind,
            severity=spec.severity,
            description=spec.description,
            description_zh=spec.description_zh,
            scope=Scope(
                tuple(spec.scope.devices), tuple(spec.scope.sites), tuple(spec.scope.counties)
            ),
            when=when,
            clear=clear,
            for_ms=spec.for_ms,
            nodata_ms=spec.nodata.interval if spec.nodata else None,
            labels=dict(spec.labels),
            standard=spec.standard,
            unit=fields.get(field_name, ""),
            source=f"{source}:{line0}",
        ),
        [],
    )


# --------------------------------------------------------------------------- conditions

_FieldType = tuple[str, tuple[str, ...]]  # ("number" | "bool" | "str" | "enum" | "any", values)


def _field_type(kind: DeviceKind, name: str) -> _FieldType:
    """What a kind's field holds, from its msgspec model (derived fields: any)."""
    info = msgspec.inspect.type_info(kind.model)
    for f in info.fields:  # type: ignore[attr-defined]
        if f.name != name:
            continue
        for t in getattr(f.type, "types", (f.type,)):
            t = getattr(t, "type", t)  # unwrap Metadata
            if isinstance(t, msgspec.inspect.LiteralType):
                return "enum", tuple(str(v) for v in t.values)
            if isinstance(t, msgspec.inspect.BoolType):
                return "bool", ()
            if isinstance(t, msgspec.inspect.FloatType | msgspec.inspect.IntType):
                return "number", ()
            if isinstance(t, msgspec.inspect.StrType):
                return "str", ()
    return "any", ()


def _condition(
    text: str, kind: DeviceKind, fields: Mapping[str, str], report: Callable[[str], None]
) -> Condition | None:
    m = _CONDITION.match(text)
    if not m:
        report(f"cannot read condition {text!r}; write '<field> <op> <value>', e.g. do_mg_l < 3")
        return None
    name, op, rest = m.groups()
    ok = True
    if name not in fields:
        report(_unknown(f"{kind.name} field", name, fields))
        ok = False
    if op not in OPERATORS:
        report(f"unknown operator {op!r} — {_OPS_HINT}")
        return None
    if not rest:
        report(f"'{name} {op}' needs a value, e.g. {name} {op} {_example(op)}")
        return None
    if not ok:
        return None
    ftype, enum = _field_type(kind, name)
    if op in ("outside", "in"):
        if not (rest.startswith("[") and rest.endswith("]")):
            report(f"'{op}' takes a list in brackets, e.g. {name} {op} {_example(op)}")
            return None
        items = tuple(_scalar(s) for s in _split_list(rest[1:-1]))
        if op == "outside":
            if len(items) != 2 or not all(_is_num(v) for v in items):
                report(f"'outside' takes two numbers [lo, hi], e.g. {name} outside [198.0, 235.4]")
                return None
            lo, hi = float(items[0]), float(items[1])
            if lo >= hi:
                report(f"'outside [{items[0]}, {items[1]}]': lo must be below hi")
                return None
            if ftype not in ("number", "any"):
                report(f"'outside' needs a numeric field; {name} holds {ftype} values")
                return None
            return Condition(name, op, (lo, hi), _outside(lo, hi))
        if not items:
            report(f"'in' needs at least one value, e.g. {name} in {_example(op)}")
            return None
        if not _check_values(name, items, ftype, enum, report):
            return None
        return Condition(name, op, items, _in(frozenset(items)))
    value = _scalar(rest)
    if op in ("==", "!="):
        if not _check_values(name, (value,), ftype, enum, report):
            return None
        return Condition(name, op, value, _compare(op, value))
    if not _is_num(value):
        report(f"'{op}' compares numbers; {value!r} is not a number")
        return None
    if ftype not in ("number", "any"):
        report(f"'{op}' needs a numeric field; {name} holds {ftype} values: use == or in")
        return None
    return Condition(name, op, value, _compare(op, value))


def _check_values(
    name: str,
    values: tuple[Value, ...],
    ftype: str,
    enum: tuple[str, ...],
    report: Callable[[str], None],
) -> bool:
    for v in values:
        if ftype == "enum" and str(v) not in enum:
            hint = [e for e in enum if e.lower() == str(v).lower()]
            hint = hint or difflib.get_close_matches(str(v), enum, n=1, cutoff=0.5)
            dym = f"did you mean {hint[0]!r}? " if hint else ""
            report(f"{name} is never {v!r}; {dym}it is one of {', '.join(enum)}")
            return False
        if ftype == "number" and not _is_num(v):
            report(f"{name} is a number; {v!r} is not")
            return False
        if ftype == "bool" and not isinstance(v, bool):
            report(f"{name} is true or false; {v!r} is neither")
            return False
    return True


def _hysteresis(when: Condition, h: float, report: Callable[[str], None]) -> Condition | None:
    """The clear condition ``h`` beyond the firing threshold, on the good side."""
    v = when.operand
    if isinstance(v, tuple):
        if when.op != "outside":
            report(f"hysteresis needs <, <=, >, >= or outside; for '{when.op}' write 'clear:'")
            return None
        lo, hi = round(float(v[0]) + h, 9), round(float(v[1]) - h, 9)
        if lo > hi:
            report(f"hysteresis {h} is more than half the band {list(v)}: nothing would clear")
            return None
        return Condition(when.field, "inside", (lo, hi), lambda x: _inside(x, lo, hi))
    if when.op in ("<", "<=") and _is_num(v):
        t = round(float(v) + h, 9)
        return Condition(when.field, ">=", t, _compare(">=", t))
    if when.op in (">", ">=") and _is_num(v):
        t = round(float(v) - h, 9)
        return Condition(when.field, "<=", t, _compare("<=", t))
    report(f"hysteresis needs <, <=, >, >= or outside; for '{when.op}' write a 'clear:' condition")
    return None


def _compare(op: str, t: Value) -> Test:
    # A reading of the wrong type (a string where a number was expected) is not a breach.
    def guard(f: Callable[[Any], bool]) -> Test:
        def test(x: Any) -> bool:
            try:
                return f(x)
            except TypeError:
                return False

        return test

    if op == ">":
        return guard(lambda x: x > t)
    if op == ">=":
        return guard(lambda x: x >= t)
    if op == "<":
        return guard(lambda x: x < t)
    if op == "<=":
        return guard(lambda x: x <= t)
    if op == "==":
        return lambda x: x == t
    return lambda x: x != t


def _outside(lo: float, hi: float) -> Test:
    def test(x: Any) -> bool:
        try:
            return not (lo <= x <= hi)
        except TypeError:
            return False

    return test


def _inside(x: Any, lo: float, hi: float) -> bool:
    try:
        return bool(lo <= x <= hi)
    except TypeError:
        return False


def _in(values: frozenset[Value]) -> Test:
    return lambda x: x in values


def _split_list(s: str) -> list[str]:
    return [p.strip() for p in s.split(",") if p.strip()]


def _scalar(s: str) -> Value:
    """A literal from a condition: quoted text, int, float, true/false, or bare text.

    Not YAML: YAML 1.1 would read the SunSpec status OFF as false.
    """
    s = s.strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"":
        return s[1:-1]
    if s in ("true", "false"):
        return s == "true"
    try:
        return int(s)
    except ValueError:
        pass
    try:
        f = float(s)
    except ValueError:
        return s
    return f if math.isfinite(f) else s


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _example(op: str) -> str:
    return {"outside": "[198.0, 235.4]", "in": "[Faulted, Unavailable]"}.get(op, "3")


# --------------------------------------------------------------------------- errors


def _unknown(what: str, got: str, known: Iterable[str]) -> str:
    known = list(known)
    hint = difflib.get_close_matches(str(got), known, n=1, cutoff=0.6) or [
        k for k in known if got and k.startswith(str(got))
    ]
    dym = f"did you mean {hint[0]!r}? " if hint else ""
    return f"unknown {what} {got!r}; {dym}known: {', '.join(known)}"


def _explain(p: Problem) -> str | None:
    """What to do about a schema problem pydantic words generically; None: pydantic's words."""
    loc = [str(part) for part in p.loc]
    name = ".".join(loc) or "rule"
    if p.type == "extra_forbidden":
        known = _SPEC_KEYS if len(loc) == 1 else _sub_keys(loc[0])
        return _unknown("key", loc[-1], known).replace("known:", "allowed:")
    if p.type == "missing":
        hint = {
            "id": "add id: a-short-name",
            "kind": "add kind: one of " + ", ".join(KINDS),
            "severity": "add severity: one of " + ", ".join(SEVERITIES),
        }.get(name, f"add {name}:")
        return f"'{name}' is missing; {hint}"
    if p.type == "literal_error" and loc[-1] == "severity":
        got = str(p.input)
        close = difflib.get_close_matches(got, SEVERITIES, n=1, cutoff=0.5)
        dym = f"did you mean {close[0]!r}? " if close else ""
        return f"unknown severity {got!r}; {dym}use one of {', '.join(SEVERITIES)}"
    if p.type == "string_type" and isinstance(p.input, bool | int | float):
        # YAML 1.1 reads off, yes, no, on as booleans and 1.0 as a number.
        return f"{p.path()}: YAML reads the value as {p.input!r}, not text; put it in quotes"
    return None


def _sub_keys(key: str) -> list[str]:
    models: dict[str, type[BaseModel]] = {"scope": ScopeSpec, "nodata": NoDataSpec}
    model = models.get(key)
    return list(model.model_fields) if model else []
