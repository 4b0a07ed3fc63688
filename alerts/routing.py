"""The routing file (``ENVGRID_ALERTS__ROUTING``): receivers, routes and the on-call rota.

``receivers:`` say how to reach a group or a person (DingTalk, WeCom, Feishu, SMS, e-mail);
``routes:`` are matched in order on each alert's severity, kind, county, site, rule and labels
(the first match wins unless it says ``continue: true``) and name the receivers, the grouping
times and the escalation; ``oncall:`` holds people and weekly rotas. Every problem is reported
as ``file:line: …`` with a fix, like the rule files (``envgrid rules check FILE``). The format is
documented in docs/notifications.md.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from alerts.oncall import EMPTY, WEEKDAYS, OnCall, Override, Person, Rota
from alerts.rules import SEVERITIES, Severity, duration_ms, text_labels
from devices.errors import Problem, error_lines, yaml_line

RECEIVER_TYPES = ("dingtalk", "wecom", "feishu", "sms", "email")
# Names the outbox already uses for its built-in targets.
RESERVED = ("mqtt", "webhook", "influx", "route")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

# The vendors' public endpoints; each receiver's `url` overrides them (private deployments,
# test servers).
DEFAULT_URLS = {
    "aliyun": "https://dysmsapi.aliyuncs.com/",
    "tencent": "https://sms.tencentcloudapi.com/",
}


def _duration_ms(v: Any) -> Any:
    # The one grammar of rules and settings (devices.config); None: an optional one left unset.
    return v if v is None else duration_ms(v)


def _unknown(what: str, got: str, known: Iterable[str]) -> str:
    known = list(known)
    hint = difflib.get_close_matches(str(got), known, n=1, cutoff=0.6)
    dym = f"did you mean {hint[0]!r}? " if hint else ""
    return f"unknown {what} {got!r}; {dym}known: {', '.join(known) or 'none defined'}"


class RoutingError(ValueError):
    """A routing file that cannot be used; ``errors`` holds one line per problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


def _as_list(v: Any) -> Any:
    return [v] if isinstance(v, str) else v


def _name(v: str) -> str:
    if not _NAME.match(v):
        raise ValueError("must be 1-64 letters, digits, '-', '_' or '.'")
    return v


class ReceiverSpec(BaseModel):
    """One receiver as written (the keys that apply depend on ``type``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str
    type: Literal["dingtalk", "wecom", "feishu", "sms", "email"]
    url: str | None = None
    secret: str | None = None
    secret_file: Path | None = None
    secret_env: str | None = None
    language: Literal["zh", "en"] = "zh"
    oncall: str | None = None  # rota whose person on duty is @-mentioned, texted or mailed
    mobiles: list[str] = []  # always @-mentioned (chat) or texted (SMS)
    keyword: str | None = None  # DingTalk keyword mode: the word every message must contain
    at_all: bool = False
    # SMS (Alibaba Cloud)
    provider: Literal["aliyun", "tencent"] = "aliyun"
    sdk_app_id: str | None = None  # Tencent Cloud: the SMS application's SdkAppId
    region: str | None = None  # Tencent Cloud: ap-guangzhou unless given
    access_key_id: str | None = None
    sign_name: str | None = None
    template_code: str | None = None
    template_params: dict[str, str] = {}
    # E-mail
    from_: str | None = Field(default=None, alias="from")
    to: list[str] = []
    ca_file: Path | None = None  # a private CA for the SMTP server's certificate
    max_bytes: int | None = Field(default=None, gt=0)  # message size the vendor accepts
    # Vendor answers: which codes mean "stop trying" and which mean "slow down".
    permanent_codes: list[str] | None = None
    rate_limit_codes: list[str] | None = None
    rate_limit_wait: int = Field(default=60_000, gt=0)
    timeout: int = Field(default=10_000, gt=0)

    _lists = field_validator("mobiles", "to", mode="before")(_as_list)
    _d = field_validator("rate_limit_wait", "timeout", mode="before")(_duration_ms)
    _n = field_validator("name")(_name)

    @field_validator("permanent_codes", "rate_limit_codes", mode="before")
    @classmethod
    def _codes(cls, v: Any) -> Any:
        return [str(x) for x in v] if isinstance(v, list) else v

    @field_validator("mobiles", mode="before")
    @classmethod
    def _mobiles(cls, v: Any) -> Any:
        return [str(x) for x in v] if isinstance(v, list) else v

    @field_validator("template_params", mode="before")
    @classmethod
    def _params(cls, v: Any) -> Any:
        return {str(k): str(x) for k, x in v.items()} if isinstance(v, Mapping) else v


class RouteSpec(BaseModel):
    """One route as written."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str | None = None
    severity: list[Severity] = []
    kind: list[str] = []
    county: list[str] = []
    site: list[str] = []
    rule: list[str] = []
    labels: dict[str, str] = {}
    receivers: list[str] = []
    continue_: bool = Field(default=False, alias="continue")
    group_wait: int = Field(default=30_000, ge=0)
    group_interval: int = Field(default=300_000, gt=0)
    repeat_interval: int | None = Field(default=None, gt=0)
    escalate_after: int | None = Field(default=None, gt=0)
    escalate_to: list[str] = []

    _lists = field_validator(
        "severity", "kind", "county", "site", "rule", "receivers", "escalate_to", mode="before"
    )(_as_list)
    _d = field_validator(
        "group_wait", "group_interval", "repeat_interval", "escalate_after", mode="before"
    )(_duration_ms)

    _labels = field_validator("labels", mode="before")(text_labels)


def _clock(v: Any) -> Any:
    # YAML 1.1 reads an unquoted 08:30 as the base-60 number 510: minutes since midnight.
    if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 24 * 60:
        return f"{v // 60:02d}:{v % 60:02d}"
    return v


def _moment(v: Any) -> Any:
    if isinstance(v, date) and not isinstance(v, datetime):
        return datetime.combine(v, time())
    return v


class PersonSpec(BaseModel):
    """One person of the rota."""

    model_config = ConfigDict(extra="forbid")

    id: str
    name: str = ""
    mobile: str = ""
    email: str = ""
    feishu_id: str = ""
    wecom_id: str = ""

    _n = field_validator("id")(_name)

    @field_validator("mobile", mode="before")
    @classmethod
    def _mobile(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) else v


class OverrideSpec(BaseModel):
    """``{from, to, person}``: a date (midnight) or date and time, local to the rota."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: datetime = Field(alias="from")
    to: datetime
    person: str

    _m = field_validator("from_", "to", mode="before")(_moment)


class RotaSpec(BaseModel):
    """A weekly rota with its handover time."""

    model_config = ConfigDict(extra="forbid")

    name: str
    timezone: str = "Asia/Shanghai"
    handover: time = time(9, 0)
    weekly: dict[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], str | None]
    overrides: list[OverrideSpec] = []

    _n = field_validator("name")(_name)
    _h = field_validator("handover", mode="before")(_clock)


class OnCallSpec(BaseModel):
    """``oncall:``: people and rotas."""

    model_config = ConfigDict(extra="forbid")

    people: list[PersonSpec] = []
    rotas: list[RotaSpec] = []


# --------------------------------------------------------------------------- compiled form


@dataclass(frozen=True, slots=True)
class Receiver:
    """A receiver ready to build: its spec and its secret, resolved (never in repr or logs)."""

    spec: ReceiverSpec
    secret: str | None = dataclasses.field(default=None, repr=False)
    source: str = ""

    @property
    def name(self) -> str:
        """The receiver's name (its target name in the outbox)."""
        return self.spec.name

    @property
    def url(self) -> str:
        """The endpoint, ``${VAR}`` references replaced from the environment."""
        default = DEFAULT_URLS.get(self.spec.provider, "") if self.spec.type == "sms" else ""
        return _expand(self.spec.url or default)


@dataclass(frozen=True, slots=True)
class Route:
    """One compiled route; empty matcher lists match anything."""

    name: str
    receivers: tuple[str, ...]
    severity: tuple[str, ...] = ()
    kind: tuple[str, ...] = ()
    county: tuple[str, ...] = ()
    site: tuple[str, ...] = ()
    rule: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    cont: bool = False
    group_wait_ms: int = 30_000
    group_interval_ms: int = 300_000
    repeat_ms: int | None = None
    escalate_ms: int | None = None
    escalate_to: tuple[str, ...] = ()

    def matches(self, event: Mapping[str, Any]) -> bool:
        """Whether an alert event falls on this route."""
        labels = event.get("labels") or {}
        return (
            (not self.severity or event.get("severity") in self.severity)
            and (not self.kind or event.get("kind") in self.kind)
            and _glob(self.county, str(event.get("county") or ""))
            and _glob(self.site, str(event.get("site") or ""))
            and _glob(self.rule, str(event.get("rule_id") or ""))
            and all(fnmatch.fnmatchcase(str(labels.get(k, "")), v) for k, v in self.labels)
        )


def _glob(patterns: tuple[str, ...], value: str) -> bool:
    return not patterns or any(fnmatch.fnmatchcase(value, p) for p in patterns)


@dataclass(frozen=True, slots=True)
class Routing:
    """A loaded routing file."""

    receivers: Mapping[str, Receiver]
    routes: tuple[Route, ...]
    oncall: OnCall = EMPTY
    source: str = ""

    def match(self, event: Mapping[str, Any]) -> list[Route]:
        """The routes an event takes, in order (first match, then on while ``continue``)."""
        out = []
        for r in self.routes:
            if r.matches(event):
                out.append(r)
                if not r.cont:
                    break
        return out

    def route(self, name: str) -> Route | None:
        """A route by name."""
        return next((r for r in self.routes if r.name == name), None)


NO_ROUTING = Routing({}, ())


# --------------------------------------------------------------------------- loading


def load_routing(path: Path | None) -> Routing:
    """The routing file (no routes when None); raises RoutingError with every problem."""
    if path is None:
        return NO_ROUTING
    routing, errors = check_routing(path)
    if errors:
        raise RoutingError(errors)
    return routing


def check_routing(path: Path) -> tuple[Routing, list[str]]:
    """What is valid in a routing file and every problem found (``envgrid rules check``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        why = getattr(e, "strerror", None) or e
        return NO_ROUTING, [
            f"{path}: cannot read the routing file ({why}); set ENVGRID_ALERTS__ROUTING"
        ]
    return parse_routing(text, str(path), base=path.parent)


def is_routing_file(path: Path) -> bool:
    """Whether a YAML file is a routing file (top-level receivers/routes/oncall, no rules)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return (
        isinstance(data, Mapping)
        and "rules" not in data
        and bool({"receivers", "routes", "oncall"} & set(data))
    )


def parse_routing(
    text: str, source: str = "<routing>", base: Path | None = None
) -> tuple[Routing, list[str]]:
    """Compile routing YAML; returns what is usable and one ``source:line: …`` per problem."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 1
        return NO_ROUTING, [f"{source}:{line}: not valid YAML: {e.problem or e.context}"]
    if root is None or not isinstance(root, yaml.MappingNode) or not isinstance(data, Mapping):
        line = root.start_mark.line + 1 if root is not None else 1
        return NO_ROUTING, [f"{source}:{line}: expected 'receivers:', 'routes:' and 'oncall:'"]
    errors: list[str] = []

    def at(loc: tuple[str | int, ...]) -> int:
        return yaml_line(root, loc)

    for k, _ in root.value:
        if k.value not in ("receivers", "routes", "oncall"):
            errors.append(
                f"{source}:{k.start_mark.line + 1}: "
                + _unknown("top-level key", k.value, ["receivers", "routes", "oncall"])
            )
    oncall = _oncall(data.get("oncall"), source, at, errors)
    receivers: dict[str, Receiver] = {}
    for i, raw in enumerate(_items(data, "receivers", source, at, errors)):
        rec = _receiver(raw, ("receivers", i), source, at, errors, oncall, base)
        if rec is None:
            continue
        if rec.name in receivers:
            errors.append(
                f"{source}:{at(('receivers', i))}: receiver {rec.name!r} is defined twice"
            )
        receivers[rec.name] = rec
    routes: list[Route] = []
    for i, raw in enumerate(_items(data, "routes", source, at, errors)):
        route = _route(raw, ("routes", i), i, source, at, errors, receivers)
        if route is None:
            continue
        if any(r.name == route.name for r in routes):
            errors.append(f"{source}:{at(('routes', i))}: route {route.name!r} is defined twice")
        routes.append(route)
    errors.sort(key=_line_key)
    return Routing(receivers, tuple(routes), oncall, source), errors


def _line_key(msg: str) -> int:
    m = re.search(r":(\d+): ", msg)
    return int(m.group(1)) if m else 0


def _items(data: Mapping[str, Any], key: str, source: str, at: Any, errors: list[str]) -> list[Any]:
    v = data.get(key)
    if v is None:
        return []
    if not isinstance(v, list):
        errors.append(f"{source}:{at((key,))}: '{key}' must be a list")
        return []
    return v


def _explain(p: Problem, model: type[BaseModel]) -> str | None:
    """What to do about a schema problem pydantic words generically; None: pydantic's words."""
    loc = [str(part) for part in p.loc]
    name = p.path()
    if p.type == "extra_forbidden":
        known = [f.alias or n for n, f in model.model_fields.items()]
        return _unknown("key", loc[-1], known).replace("known:", "allowed:")
    if p.type == "missing":
        return f"'{name}' is missing; add {name}:"
    if p.type == "literal_error":
        return f"{name}: {p.input!r} is not allowed; {p.message.lower()}"
    if p.type == "string_type" and isinstance(p.input, bool | int | float):
        return f"{name}: YAML reads the value as {p.input!r}, not text; put it in quotes"
    return None


def _validate(
    model: type[BaseModel],
    raw: Any,
    loc: tuple[str | int, ...],
    who: str,
    source: str,
    at: Any,
    errors: list[str],
) -> Any:
    if not isinstance(raw, Mapping):
        errors.append(f"{source}:{at(loc)}: {who}: must be a mapping of keys")
        return None
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        errors += error_lines(
            e,
            where=lambda sub: f"{source}:{at((*loc, *sub))}",
            about=who,
            explain=lambda p: _explain(p, model),
        )
        return None


def _receiver(
    raw: Any,
    loc: tuple[str | int, ...],
    source: str,
    at: Any,
    errors: list[str],
    oncall: OnCall,
    base: Path | None,
) -> Receiver | None:
    rname = raw.get("name") if isinstance(raw, Mapping) else None
    who = f"receiver {rname!r}" if isinstance(rname, str) else "receiver"
    spec = _validate(ReceiverSpec, raw, loc, who, source, at, errors)
    if spec is None:
        return None
    n0 = len(errors)

    def err(key: str | tuple[str | int, ...], msg: str) -> None:
        sub = (key,) if isinstance(key, str) else key
        errors.append(f"{source}:{at((*loc, *sub))}: {who}: {msg}")

    if spec.name in RESERVED:
        err("name", f"{spec.name!r} is a built-in target; choose another name")
    if spec.oncall is not None and spec.oncall not in oncall.rotas:
        err("oncall", _unknown("rota", spec.oncall, oncall.rotas))
    t = spec.type
    if t in ("dingtalk", "wecom", "feishu") and not spec.url:
        err((), f"a {t} receiver needs url: (the robot's webhook address)")
    if t in ("dingtalk", "wecom", "feishu", "sms") and spec.url:
        u = urlsplit(_expand(spec.url))
        if u.scheme not in ("http", "https") or not u.hostname:
            err("url", "expected http(s)://host[:port]/path")
    if t == "sms":
        needed = ["access_key_id", "sign_name", "template_code"]
        needed += ["sdk_app_id"] if spec.provider == "tencent" else []
        for key in needed:
            if not getattr(spec, key):
                err((), f"an sms receiver ({spec.provider}) needs {key}:")
        if not (spec.secret or spec.secret_file or spec.secret_env):
            err((), "an sms receiver needs its AccessKey secret: secret_env: or secret_file:")
        if not spec.mobiles and not spec.oncall:
            err((), "an sms receiver needs mobiles: or oncall: (whom to text)")
    if t == "email":
        u = urlsplit(_expand(spec.url or ""))
        if u.scheme not in ("smtp", "smtps") or not u.hostname:
            err("url" if spec.url else (), "needs url: smtp://user@host:587 or smtps://…:465")
        if not spec.from_:
            err((), "an email receiver needs from: (the sender address)")
        if not spec.to and not spec.oncall:
            err((), "an email receiver needs to: (a list of addresses) or oncall:")
    if spec.keyword is not None and t != "dingtalk":
        err("keyword", "keyword applies to dingtalk receivers only")
    for key in ("url", "access_key_id"):
        v = getattr(spec, key)
        for var in _ENV_REF.findall(v or ""):
            if var not in os.environ:
                err(key, f"environment variable {var} is not set")
    secret = _secret(spec, base, lambda k, m: err(k, m))
    if len(errors) > n0:
        return None
    return Receiver(spec, secret, f"{source}:{at(loc)}")


def _secret(spec: ReceiverSpec, base: Path | None, err: Any) -> str | None:
    given = [k for k in ("secret", "secret_file", "secret_env") if getattr(spec, k)]
    if len(given) > 1:
        err(given[1], f"give one of secret, secret_file, secret_env (not {' and '.join(given)})")
        return None
    if spec.secret_env:
        if spec.secret_env not in os.environ:
            err("secret_env", f"environment variable {spec.secret_env} is not set")
            return None
        return os.environ[spec.secret_env]
    if spec.secret_file:
        p = (
            spec.secret_file
            if spec.secret_file.is_absolute() or base is None
            else base / spec.secret_file
        )
        try:
            return p.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            err("secret_file", f"cannot read {p} ({getattr(e, 'strerror', None) or e})")
            return None
    return spec.secret


def _route(
    raw: Any,
    loc: tuple[str | int, ...],
    index: int,
    source: str,
    at: Any,
    errors: list[str],
    receivers: Mapping[str, Receiver],
) -> Route | None:
    rname = raw.get("name") if isinstance(raw, Mapping) else None
    who = f"route {rname!r}" if isinstance(rname, str) else f"route {index + 1}"
    spec = _validate(RouteSpec, raw, loc, who, source, at, errors)
    n0 = len(errors)

    def err(key: str | tuple[str | int, ...], msg: str) -> None:
        sub = (key,) if isinstance(key, str) else key
        errors.append(f"{source}:{at((*loc, *sub))}: {who}: {msg}")

    # Receiver names are checked even past a schema error, so one run lists every problem.
    for key in ("receivers", "escalate_to"):
        names = _as_list(raw.get(key)) if isinstance(raw, Mapping) else None
        for j, r in enumerate(names if isinstance(names, list) else []):
            if isinstance(r, str) and r not in receivers:
                err((key, j), _unknown("receiver", r, receivers))
    if spec is None:
        return None
    if not spec.receivers:
        err((), "needs receivers: [a receiver name, …]")
    if spec.escalate_after is not None and not spec.escalate_to:
        err("escalate_after", "escalate_after needs escalate_to: [receiver, …]")
    if spec.escalate_to and spec.escalate_after is None:
        err("escalate_to", "escalate_to needs escalate_after: (e.g. 15m)")
    from devices.kinds import KINDS  # the device kinds, only to check names

    for j, k in enumerate(spec.kind):
        if k not in KINDS:
            err(("kind", j), _unknown("kind", k, KINDS))
    if spec.name is not None:
        try:
            _name(spec.name)
        except ValueError as e:
            err("name", str(e))
    if len(errors) > n0:
        return None
    return Route(
        name=spec.name or f"route-{index + 1}",
        receivers=tuple(spec.receivers),
        severity=tuple(spec.severity),
        kind=tuple(spec.kind),
        county=tuple(spec.county),
        site=tuple(spec.site),
        rule=tuple(spec.rule),
        labels=tuple(spec.labels.items()),
        cont=spec.continue_,
        group_wait_ms=spec.group_wait,
        group_interval_ms=spec.group_interval,
        repeat_ms=spec.repeat_interval,
        escalate_ms=spec.escalate_after,
        escalate_to=tuple(spec.escalate_to),
    )


def _oncall(raw: Any, source: str, at: Any, errors: list[str]) -> OnCall:
    if raw is None:
        return EMPTY
    spec = _validate(OnCallSpec, raw, ("oncall",), "oncall", source, at, errors)
    if spec is None:
        return EMPTY
    people = {
        p.id: Person(p.id, p.name, p.mobile, p.email, p.feishu_id, p.wecom_id) for p in spec.people
    }
    rotas: dict[str, Rota] = {}
    for i, r in enumerate(spec.rotas):
        loc: tuple[str | int, ...] = ("oncall", "rotas", i)
        who = f"rota {r.name!r}"
        try:
            tz = ZoneInfo(r.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            errors.append(
                f"{source}:{at((*loc, 'timezone'))}: {who}: unknown time zone "
                f"{r.timezone!r}; e.g. Asia/Shanghai"
            )
            continue
        bad = False
        for day, pid in r.weekly.items():
            if pid is not None and pid not in people:
                errors.append(
                    f"{source}:{at((*loc, 'weekly', day))}: {who}: "
                    + _unknown("person", pid, people)
                )
                bad = True
        overrides = []
        for j, o in enumerate(r.overrides):
            if o.person not in people:
                errors.append(
                    f"{source}:{at((*loc, 'overrides', j))}: {who}: "
                    + _unknown("person", o.person, people)
                )
                bad = True
            start = o.from_ if o.from_.tzinfo else o.from_.replace(tzinfo=tz)
            end = o.to if o.to.tzinfo else o.to.replace(tzinfo=tz)
            if end <= start:
                errors.append(
                    f"{source}:{at((*loc, 'overrides', j))}: {who}: 'to' must be after 'from'"
                )
                bad = True
            overrides.append(Override(start, end, o.person))
        if r.name in rotas:
            errors.append(f"{source}:{at(loc)}: {who} is defined twice")
        if bad:
            continue
        weekly = tuple(r.weekly.get(d) for d in WEEKDAYS)
        rotas[r.name] = Rota(r.name, tz, r.handover, weekly, tuple(overrides))
    return OnCall(people, rotas)


def _expand(text: str) -> str:
    return _ENV_REF.sub(lambda m: os.environ.get(m.group(1), ""), text)


def redact(url: str) -> str:
    """A URL fit for logs and the console: no query (tokens, keys) and no password."""
    u = urlsplit(url)
    host = u.hostname or ""
    port = f":{u.port}" if u.port else ""
    path = u.path
    # Feishu and similar put the token in the path: keep only its first characters.
    parts = path.rsplit("/", 1)
    if len(parts) == 2 and len(parts[1]) > 12:
        path = f"{parts[0]}/{parts[1][:4]}…"
    return f"{u.scheme}://{host}{port}{path}"


__all__ = ["SEVERITIES", "Receiver", "Route", "Routing", "RoutingError", "load_routing"]
