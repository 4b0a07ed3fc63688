"""The console's pages and form handlers, as one FastAPI router on the service's HTTP server.

Pages need a signed-in operator (a signed session cookie); without one a page redirects to
``/login`` and a form POST or the live fragment answers 401. Every POST form carries the
session's CSRF token. The JSON API (``/api/...``) is untouched: machines keep their bearer token.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import mimetypes
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

import jinja2
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup

from alerts.api import MAX_SILENCE_MS
from alerts.dispatch import Dispatcher as NotifyDispatcher
from alerts.engine import AlertEngine
from alerts.rules import Rule, duration_ms
from alerts.store import AlertFilter, AlertRecord, Matchers, Silence
from console import data, notify_view, review_view, stations
from console.auth import (
    LoginLimiter,
    OperatorBook,
    Session,
    Sessions,
    same_token,
    verify_password,
    verify_unknown,
)
from console.chart import Level, fmt_num, numeric_chart, state_chart
from console.config import ConsoleConfig
from console.i18n import (
    EVENT_LABELS,
    LANGS,
    SEVERITY_LABELS,
    Lang,
    pick,
    translator,
)
from console.present import (
    AlertRow,
    Clock,
    active_order,
    alert_row,
    fact_label,
    format_value,
    human_duration,
    key_values,
    kind_label,
    series_text,
    unit_of,
)
from devices.kinds import KINDS
from devices.registry import Device, Registry
from hj212.commands import CommandError
from hj212.dispatch import Dispatcher as Hj212Dispatcher
from ingest.influxql import InfluxQLClient, QueryError
from rollups.review_api import Desk

log = logging.getLogger("envgrid.console")

HERE = Path(__file__).resolve().parent
LANG_COOKIE = "envgrid_lang"
LOGIN_COOKIE = "envgrid_login"  # CSRF token of the sign-in form (double submit)
HISTORY_PAGE = 50
SILENCE_CHOICES = {"15m": "minutes_15", "1h": "hour_1", "4h": "hours_4", "24h": "hours_24"}
SCOPES = ("rule_device", "device", "rule")
MAX_ID = 2**63 - 1  # SQLite's INTEGER: a larger id in a URL names nothing (and must not 500)
# Registry facts that are secrets (the HJ 212 access password) or config, not facts to show.
HIDDEN_FACTS = ("pw", "password", "secret", "token", "hj212")
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True, slots=True)
class Static:
    """A static file held in memory."""

    body: bytes
    media_type: str
    version: str


def _load_static() -> dict[str, Static]:
    out: dict[str, Static] = {}
    for p in sorted((HERE / "static").iterdir()):
        if p.is_file():
            body = p.read_bytes()
            media = mimetypes.guess_type(p.name)[0] or "application/octet-stream"
            if media.startswith("text/") or media.endswith("javascript"):
                media += "; charset=utf-8"
            out[p.name] = Static(body, media, hashlib.sha256(body).hexdigest()[:12])
    return out


def safe_next(target: str | None) -> str:
    """A local path to return to after sign-in; anything else (other sites) becomes '/'."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


@dataclass
class Filters:
    """The alert list's filters, from the query string (unknown values mean 'all')."""

    severity: str = ""
    kind: str = ""
    county: str = ""
    device: str = ""
    silenced: bool = False
    page: int = 0
    counties: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, q: Mapping[str, str], counties: list[str]) -> Filters:
        """Filters from request query parameters."""
        try:
            page = max(0, min(int(q.get("page", "0") or 0), 10_000))
        except ValueError:
            page = 0
        device = q.get("device", "")
        return cls(
            severity=q.get("severity", "") if q.get("severity") in SEVERITY_LABELS else "",
            kind=q.get("kind", "") if q.get("kind") in KINDS else "",
            county=q.get("county", "") if q.get("county") in counties else "",
            device=device if device and len(device) <= 64 else "",
            silenced=q.get("silenced") == "1",
            page=page,
            counties=counties,
        )

    def store_filter(self, state: str, limit: int, offset: int = 0) -> AlertFilter:
        """The store's filter for one state."""
        return AlertFilter(
            state=state,
            severity=self.severity or None,
            kind=self.kind or None,
            county=self.county or None,
            device_id=self.device or None,
            limit=limit,
            offset=offset,
        )

    def query(self, **change: Any) -> str:
        """This filter's query string with some values changed ('' when nothing is set)."""
        d: dict[str, Any] = {
            "severity": self.severity,
            "kind": self.kind,
            "county": self.county,
            "device": self.device,
            "silenced": "1" if self.silenced else "",
            "page": self.page or "",
        }
        d.update(change)
        pairs = {k: v for k, v in d.items() if v not in ("", None, 0)}
        return "?" + urlencode(pairs) if pairs else ""


class Console:
    """The operator console: pages over the alert engine, the registry and InfluxDB."""

    def __init__(
        self,
        settings: ConsoleConfig,
        engine: AlertEngine,
        registry: Registry,
        book: OperatorBook,
        sessions: Sessions,
        influx: InfluxQLClient,
        *,
        notify: NotifyDispatcher | None = None,
        hj212: Callable[[], Hj212Dispatcher | None] | None = None,
    ) -> None:
        self.settings = settings
        self.cfg = settings.console
        self.engine = engine
        self.registry = registry
        self.book = book
        self.sessions = sessions
        self.influx = influx
        # The notification dispatcher (None without receivers in ENVGRID_ALERTS__ROUTING) and
        # the HJ 212 gateway's command dispatcher (None until, or unless, it runs here).
        self.notify = notify
        self._hj212 = hj212 or (lambda: None)
        # The review desk (审核), set by the composition root with the review API's store and
        # recomputation (envgrid/review.py); None: the page shows, nothing can be marked.
        self.review: Desk | None = None
        self.clock = Clock(ZoneInfo(settings.standards.timezone))
        self.latest = data.Latest(influx, int(self.cfg.lookback.total_seconds()))
        self.limiter = LoginLimiter()
        self.static = _load_static()
        self.counties = sorted({d.county for d in registry if d.county != "unknown"})
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=jinja2.select_autoescape(["html"]),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.globals["static"] = self.static_url
        self.router = self._routes()

    async def close(self) -> None:
        """Close the InfluxDB client."""
        await self.influx.close()

    # ------------------------------------------------------------------ helpers
    def static_url(self, name: str) -> str:
        """URL of a static file, versioned by its content (so it can be cached)."""
        return f"/console/static/{name}?v={self.static[name].version}"

    def lang(self, request: Request) -> Lang:
        """The operator's language: their cookie, else the configured default."""
        v = request.cookies.get(LANG_COOKIE)
        return v if v in LANGS else self.cfg.language

    def session(self, request: Request) -> Session | None:
        """The signed-in operator, or None."""
        return self.sessions.read(request.cookies.get(Sessions.COOKIE))

    def render(
        self,
        request: Request,
        template: str,
        session: Session | None,
        status: int = 200,
        **ctx: Any,
    ) -> HTMLResponse:
        """A page with the shared context (language, operator, CSRF token)."""
        lang = self.lang(request)
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        html = self.env.get_template(template).render(
            t=translator(lang),
            lang=lang,
            other_lang="en" if lang == "zh" else "zh",
            here=here,
            op=session.operator if session else None,
            csrf=session.csrf if session else "",
            nav=ctx.pop("nav", ""),
            oncall_now=notify_view.oncall_rows(self.notify, self.clock) if session else [],
            **ctx,
        )
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)

    def fail(
        self, request: Request, status: int, key: str, session: Session | None = None
    ) -> Response:
        """A short error page (401 sign-in needed, 403 bad form, 404 not found)."""
        return self.render(request, "error.html", session, status, status_code=status, key=key)

    def to_login(self, request: Request) -> RedirectResponse:
        """Redirect to sign-in, coming back here afterwards."""
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(here, safe='')}", status_code=303)

    def who(self) -> dict[str, str]:
        """Operator names → display labels, for 'acknowledged by'."""
        return self.book.labels()

    async def form_with_csrf(
        self, request: Request
    ) -> tuple[Session | None, dict[str, str], Response | None]:
        """The session and form of a POST, or the 401/403 response to send instead."""
        session = self.session(request)
        if session is None:
            return None, {}, self.fail(request, 401, "session_needed")
        form = await request.form()
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        if not same_token(fields.get("csrf"), session.csrf):
            return session, fields, self.fail(request, 403, "csrf_failed", session)
        return session, fields, None

    # ------------------------------------------------------------------ alert list
    def row(self, rec: AlertRecord, lang: Lang, who: dict[str, str]) -> AlertRow:
        """An alert's row, with its rule's Chinese description on a Chinese page."""
        rule = self.engine.rules.by_id.get(rec.rule_id)
        zh = rule.description_zh if rule is not None and lang == "zh" else ""
        return alert_row(rec, lang, self.clock, who, description=zh or None)

    def alert_lists(self, f: Filters, lang: Lang) -> dict[str, Any]:
        """Active alerts (firing, then pending; silenced hidden unless asked) and history."""
        active = [
            *self.engine.alerts(f.store_filter("firing", 1000)),
            *self.engine.alerts(f.store_filter("pending", 1000)),
        ]
        active.sort(key=active_order)
        hidden = sum(1 for a in active if a.silenced)
        if not f.silenced:
            active = [a for a in active if not a.silenced]
        history = self.engine.alerts(
            f.store_filter("resolved", HISTORY_PAGE + 1, f.page * HISTORY_PAGE)
        )
        who = self.who()
        return {
            "active": [self.row(a, lang, who) for a in active],
            "hidden": hidden,
            "history": [self.row(a, lang, who) for a in history[:HISTORY_PAGE]],
            "has_older": len(history) > HISTORY_PAGE,
            "f": f,
            "now_text": self.clock.time(int(time.time() * 1000)),
        }

    # ------------------------------------------------------------------ alert detail
    def rule_view(self, rule: Rule | None, lang: Lang) -> dict[str, str] | None:
        """The rule's facts as the detail page lists them."""
        if rule is None:
            return None
        t = translator(lang)
        return {
            "id": rule.id,
            "description": (rule.description_zh if lang == "zh" else "") or rule.description,
            "condition": rule.when.text if rule.when else "",
            "clears": rule.clear.text if rule.clear else "",
            "hold": human_duration(rule.for_ms / 1000, lang) if rule.for_ms else t("at_once"),
            "nodata": human_duration(rule.nodata_ms / 1000, lang) if rule.nodata_ms else "",
            "standard": rule.standard,
            "source": Path(rule.source).name if rule.source else "",
            "severity": pick(SEVERITY_LABELS, rule.severity, lang),
        }

    def device_view(self, device: Device | None, lang: Lang) -> list[tuple[str, str]] | None:
        """The device's registry facts (secrets left out) as label/value pairs."""
        if device is None or not device.known:
            return None
        t = translator(lang)
        rows = [
            (t("name"), device.name),
            (t("kind"), kind_label(device.kind or "", lang)),
            (t("site"), device.site),
            (t("county"), device.county),
        ]
        if device.lat is not None and device.lon is not None:
            rows.append((t("location"), f"{device.lat:.5f}, {device.lon:.5f}"))
        for k, v in device.facts.items():
            if any(h in k.lower() for h in HIDDEN_FACTS) or isinstance(v, dict | list):
                continue
            rows.append((fact_label(device.kind or "", k, lang), str(v)))
        return [(k, v) for k, v in rows if v]

    async def chart(self, rec: AlertRecord, rule: Rule | None, lang: Lang) -> dict[str, Any]:
        """The alert's readings around the breach: SVG, a table, or why there are none."""
        t = translator(lang)
        if not rec.field:
            return {"note": t("nodata_chart")}
        now = int(time.time() * 1000)
        hours_ms = int(self.cfg.chart_hours * 3_600_000)
        end = now if rec.resolved_ms is None else min(now, rec.resolved_ms + hours_ms // 6)
        start = max(min(end - hours_ms, rec.started_ms - hours_ms // 6), end - 7 * 86_400_000)
        try:
            points = await data.readings(
                self.influx, rec.kind, rec.device_id, rec.series, rec.field, start, end
            )
        except QueryError as e:
            return {"error": e.message}
        if not points:
            return {"note": t("no_readings")}
        unit = unit_of(rec.kind, rec.field)
        fmt = self.clock.hm
        breach_label = f"{t('breach')} {self.clock.hm(rec.started_ms)}"
        ident = f"chart-{rec.id}"
        title = f"{rec.field} · {rec.device_id} {series_text(rec.series, lang)}".strip()
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for _, v in points)
        table = [
            (
                self.clock.full(ts),
                format_value(rec.kind, rec.field, v, lang),
                bool(rule and rule.breached(v)),
            )
            for ts, v in points[-200:]
        ]
        table.reverse()
        if numeric:
            nums = [(ts, float(v)) for ts, v in points if isinstance(v, int | float)]
            levels = _levels(rule, unit, t)
            vals = [v for _, v in nums]
            desc = (
                f"{len(nums)} · {self.clock.full(nums[0][0])} – {self.clock.full(nums[-1][0])}; "
                f"{t('min')} {fmt_num(min(vals))}, {t('max')} {fmt_num(max(vals))}, "
                f"{t('latest')} {fmt_num(vals[-1])} {unit}"
                + "".join(f"; {lv.label}" for lv in levels)
            )
            svg = numeric_chart(
                nums,
                start_ms=start,
                end_ms=end,
                levels=levels,
                breach_ms=rec.started_ms,
                breach_label=breach_label,
                fmt_time=fmt,
                tz_offset_ms=self.clock.offset_ms(end),
                title=title,
                desc=desc,
                ident=ident,
            )
        else:
            raw = {_state_text(v): v for _, v in points}
            states = [(ts, _state_text(v)) for ts, v in points]
            svg = state_chart(
                states,
                start_ms=start,
                end_ms=end,
                bad=lambda s: bool(rule and rule.breached(raw.get(s))),
                latest_label=f"{t('latest')}: {states[-1][1]}",
                breach_ms=rec.started_ms,
                breach_label=breach_label,
                fmt_time=fmt,
                tz_offset_ms=self.clock.offset_ms(end),
                title=title,
                desc=f"{len(states)} · {states[-1][1]} ({t('latest')})",
                ident=ident,
            )
        return {"svg": Markup(svg), "table": table, "count": len(points)}

    def silences_for(self, rec: AlertRecord, lang: Lang) -> list[dict[str, Any]]:
        """Silences in force (or scheduled) that cover this alert."""
        now = int(time.time() * 1000)
        out = []
        for s in self.engine.silences(current=True):
            if s.matchers.covers(rec):
                out.append(_silence_view(s, self.clock, self.book.label(s.created_by), now))
        return out

    # ------------------------------------------------------------------ devices
    async def device_rows(self, lang: Lang, q: Mapping[str, str]) -> dict[str, Any]:
        """Every registered device with its last reading, online state and key values."""
        t = translator(lang)
        snap = await self.latest.snapshot()
        now = int(time.time() * 1000)
        offline_ms = int(self.cfg.offline_after.total_seconds() * 1000)
        hj212 = self.hj212()
        stations_here = hj212.stations if hj212 is not None else {}
        firing: dict[str, int] = {}
        for a in self.engine.alerts(AlertFilter(state="firing", limit=1000)):
            firing[a.device_id] = firing.get(a.device_id, 0) + 1
        kind_f = q.get("kind", "") if q.get("kind") in KINDS else ""
        county_f = q.get("county", "") if q.get("county") in self.counties else ""
        status_f = q.get("status", "") if q.get("status") in ("online", "offline", "never") else ""
        order = {k: i for i, k in enumerate(KINDS)}
        rows = []
        counts = {"online": 0, "offline": 0, "never": 0}
        for d in sorted(self.registry, key=lambda d: (order.get(d.kind or "", 99), d.id)):
            if d.kind is None:
                continue
            st = snap.devices.get(d.id)
            last = st.last_seen_ms if st else None
            status = (
                "never" if last is None else ("online" if now - last <= offline_ms else "offline")
            )
            counts[status] += 1
            if (kind_f and d.kind != kind_f) or (county_f and d.county != county_f):
                continue
            if status_f and status != status_f:
                continue
            grafana = None
            uid = KINDS[d.kind].dashboard if d.kind in KINDS else None
            if self.cfg.grafana_url and uid:
                grafana = f"{self.cfg.grafana_url}/d/{uid}?" + urlencode({"var-device": d.id})
            rows.append(
                {
                    "id": d.id,
                    "name": d.name,
                    "kind": d.kind,
                    "kind_label": kind_label(d.kind, lang),
                    "site": d.site,
                    "county": d.county,
                    "status": status,
                    "status_label": t(status),
                    "last_text": self.clock.full(last),
                    "last_iso": self.clock.iso(last),
                    "values": key_values(d.kind, st, lang) if st else [],
                    "grafana": grafana,
                    "firing": firing.get(d.id, 0),
                    # An HJ 212 station the gateway here holds: its state and commands page.
                    "station": mn if (mn := str(d.facts.get("mn", ""))) in stations_here else "",
                }
            )
        return {
            "rows": rows,
            "counts": counts,
            "total": sum(counts.values()),
            "error": snap.error,
            "kind_f": kind_f,
            "county_f": county_f,
            "status_f": status_f,
            "kinds": [(k, kind_label(k, lang)) for k in KINDS],
            "counties": self.counties,
            "grafana_url": self.cfg.grafana_url,
        }

    # ------------------------------------------------------------------ routes
    def _routes(self) -> APIRouter:
        router = APIRouter(include_in_schema=False)
        console = self

        @router.get("/console/static/{name}")
        async def static(name: str) -> Response:
            s = console.static.get(name)
            if s is None:
                return Response("not found", status_code=404)
            headers = {
                "Cache-Control": "public, max-age=86400",
                "X-Content-Type-Options": "nosniff",
            }
            return Response(s.body, media_type=s.media_type, headers=headers)

        @router.get("/console/lang")
        async def set_lang(to: str = "zh", next: str = "/") -> Response:
            resp = RedirectResponse(safe_next(next), status_code=303)
            if to in LANGS:
                resp.set_cookie(
                    LANG_COOKIE,
                    to,
                    max_age=365 * 86400,
                    httponly=True,
                    samesite="lax",
                    secure=console.cfg.cookie_secure,
                )
            return resp

        @router.get("/login")
        async def login_page(request: Request, next: str = "/") -> Response:
            if console.session(request) is not None:
                return RedirectResponse(safe_next(next), status_code=303)
            return console._login(request, safe_next(next), None, 200)

        @router.post("/login")
        async def login(request: Request) -> Response:
            form = await request.form()
            f = {k: v for k, v in form.items() if isinstance(v, str)}
            target = safe_next(f.get("next"))
            if not same_token(f.get("csrf"), request.cookies.get(LOGIN_COOKIE)):
                return console._login(request, target, "csrf_failed", 403)
            # The connecting address; X-Forwarded-For counts only when it comes from one of
            # ENVGRID_HTTP__TRUSTED_PROXIES (the HTTP server applies it, ingest/http.py).
            client = request.client.host if request.client else "?"
            name, password = f.get("name", "").strip()[:64], f.get("password", "")
            # Per address and name (auth.LoginLimiter): a guesser elsewhere cannot lock an
            # operator out, and one person's typos do not lock the room behind a proxy out.
            wait = console.limiter.wait_s(client, name)
            if wait > 0:
                resp = console._login(request, target, "too_many_attempts", 429)
                resp.headers["Retry-After"] = str(math.ceil(wait))
                return resp
            op = console.book.get(name) if name else None
            # bcrypt takes a quarter of a second: off the event loop, which also carries ingest.
            if op is None:
                await asyncio.to_thread(verify_unknown)
                ok = False
            else:
                ok = await asyncio.to_thread(verify_password, password, op.password_hash)
            if not ok or op is None:
                console.limiter.failed(client, name)
                log.info("console: failed sign-in for %r from %s", name, client)
                return console._login(request, target, "bad_login", 401)
            console.limiter.succeeded(client, name)
            cookie, _ = console.sessions.issue(op)
            log.info("console: %s signed in from %s", op.name, client)
            resp = RedirectResponse(target, status_code=303)
            resp.set_cookie(
                Sessions.COOKIE,
                cookie,
                max_age=int(console.sessions.lifetime_s),
                httponly=True,
                samesite="lax",
                secure=console.cfg.cookie_secure,
            )
            resp.delete_cookie(LOGIN_COOKIE)
            return resp

        @router.post("/logout")
        async def logout(request: Request) -> Response:
            session, _, error = await console.form_with_csrf(request)
            if error is not None and session is not None:
                return error
            if session is not None:
                # Ended here, not only in this browser: a copy of the cookie stops working too.
                console.sessions.end(session)
                log.info("console: %s signed out", session.operator.name)
            resp = RedirectResponse("/login", status_code=303)
            resp.delete_cookie(Sessions.COOKIE)
            return resp

        @router.get("/")
        async def index(request: Request) -> Response:
            session = console.session(request)
            if session is None:
                return console.to_login(request)
            lang = console.lang(request)
            f = Filters.parse(request.query_params, console.counties)
            ctx = console.alert_lists(f, lang)
            fragment = console.env.get_template("_live.html").render(
                t=translator(lang), lang=lang, **ctx
            )
            return console.render(
                request,
                "index.html",
                session,
                nav="alerts",
                live=Markup(fragment),
                etag=_etag(fragment),
                severities=[(s, pick(SEVERITY_LABELS, s, lang)) for s in SEVERITY_LABELS],
                kinds=[(k, kind_label(k, lang)) for k in KINDS],
                **ctx,
            )

        @router.get("/console/live")
        async def live(request: Request) -> Response:
            if console.session(request) is None:
                return Response("sign in first", status_code=401, headers=SECURITY_HEADERS)
            lang = console.lang(request)
            f = Filters.parse(request.query_params, console.counties)
            html = console.env.get_template("_live.html").render(
                t=translator(lang), lang=lang, **console.alert_lists(f, lang)
            )
            tag = _etag(html)
            headers = {**SECURITY_HEADERS, "ETag": tag}
            if request.headers.get("if-none-match") == tag:
                return Response(status_code=304, headers=headers)
            return HTMLResponse(html, headers=headers)

        @router.get("/alerts/{alert_id}")
        async def detail(request: Request, alert_id: int, done: str = "") -> Response:
            session = console.session(request)
            if session is None:
                return console.to_login(request)
            if not 0 < alert_id <= MAX_ID:
                return console.fail(request, 404, "no_such_alert", session)
            return await console._detail(request, session, alert_id, done=done)

        @router.post("/alerts/{alert_id}/ack")
        async def ack(request: Request, alert_id: int) -> Response:
            session, form, error = await console.form_with_csrf(request)
            if error is not None or session is None:
                return error or console.fail(request, 401, "session_needed")
            comment = form.get("comment", "").strip()[:1000]
            if not 0 < alert_id <= MAX_ID:
                return console.fail(request, 404, "no_such_alert", session)
            rec = console.engine.ack(alert_id, session.operator.name, comment)
            if rec is None:
                return console.fail(request, 404, "no_such_alert", session)
            log.info("console: %s acknowledged alert %d", session.operator.name, alert_id)
            return RedirectResponse(f"/alerts/{alert_id}?done=acked", status_code=303)

        @router.post("/alerts/{alert_id}/silence")
        async def silence(request: Request, alert_id: int) -> Response:
            session, form, error = await console.form_with_csrf(request)
            if error is not None or session is None:
                return error or console.fail(request, 401, "session_needed")
            found = console.engine.alert(alert_id) if 0 < alert_id <= MAX_ID else None
            if found is None:
                return console.fail(request, 404, "no_such_alert", session)
            rec = found[0]
            choice = form.get("duration", "1h")
            text = form.get("custom", "").strip() if choice == "custom" else choice
            try:
                span = duration_ms(text[:32]) if text else 0
            except (ValueError, OverflowError):  # "99999999999999d" overflows, as said
                span = 0
            if not 0 < span <= MAX_SILENCE_MS:
                return await console._detail(
                    request, session, alert_id, status=422, error="bad_duration", form=form
                )
            scope = form.get("scope", "rule_device")
            matchers = {
                "device": Matchers(devices=(rec.device_id,)),
                "rule": Matchers(rules=(rec.rule_id,)),
            }.get(scope, Matchers(rules=(rec.rule_id,), devices=(rec.device_id,)))
            now = int(time.time() * 1000)
            comment = form.get("comment", "").strip()[:1000]
            try:
                s = console.engine.add_silence(matchers, now + span, session.operator.name, comment)
            except (ValueError, OverflowError):
                return await console._detail(
                    request, session, alert_id, status=422, error="bad_duration", form=form
                )
            log.info("console: %s silenced %s until %d", session.operator.name, scope, s.ends_ms)
            return RedirectResponse(f"/alerts/{alert_id}?done=silenced", status_code=303)

        @router.post("/silences/{silence_id}/end")
        async def end_silence(request: Request, silence_id: int) -> Response:
            session, form, error = await console.form_with_csrf(request)
            if error is not None or session is None:
                return error or console.fail(request, 401, "session_needed")
            if 0 < silence_id <= MAX_ID:
                console.engine.delete_silence(silence_id, session.operator.name)
            back = form.get("alert", "")
            target = (
                f"/alerts/{int(back)}?done=unsilenced" if back.isascii() and back.isdigit() else "/"
            )
            return RedirectResponse(target, status_code=303)

        @router.get("/devices")
        async def devices(request: Request) -> Response:
            session = console.session(request)
            if session is None:
                return console.to_login(request)
            lang = console.lang(request)
            ctx = await console.device_rows(lang, request.query_params)
            return console.render(request, "devices.html", session, nav="devices", **ctx)

        @router.get("/receivers")
        async def receivers(request: Request, done: str = "", name: str = "") -> Response:
            session = console.session(request)
            if session is None:
                return console.to_login(request)
            return console._receivers(request, session, done=done, name=name)

        @router.post("/receivers/{name}/test")
        async def test_receiver(request: Request, name: str) -> Response:
            session, _, error = await console.form_with_csrf(request)
            if error is not None or session is None:
                return error or console.fail(request, 401, "session_needed")
            if not session.operator.admin:
                return console.fail(request, 403, "admin_only", session)
            d = console.notify
            if d is None or name not in d.receivers:
                return console.fail(request, 404, "no_such_receiver", session)
            # Through the outbox, as POST /api/receivers/{name}/test: retried, kept, counted.
            d.send_test(name)
            log.info("console: %s sent a test message to receiver %s", session.operator.name, name)
            return RedirectResponse(
                f"/receivers?done=test&name={quote(name, safe='')}", status_code=303
            )

        @router.get("/stations")
        async def station_list(request: Request) -> Response:
            session = console.session(request)
            if session is None:
                return console.to_login(request)
            lang = console.lang(request)
            d = console.hj212()
            rows = stations.station_rows(d, console.registry, console.clock, lang) if d else []
            return console.render(
                request, "stations.html", session, nav="stations", running=d is not None, rows=rows
            )

        @router.get("/stations/{mn}")
        async def station_page(request: Request, mn: str, done: str = "", qn: str = "") -> Response:
            session = console.session(request)
            if session is None:
                return console.to_login(request)
            return console._station(request, session, mn, done=done, qn=qn)

        async def station_form(
            request: Request, mn: str
        ) -> tuple[Session, dict[str, str], Hj212Dispatcher] | Response:
            """A signed-in operator's form for a station this gateway holds, or the refusal."""
            session, form, error = await console.form_with_csrf(request)
            if error is not None or session is None:
                return error or console.fail(request, 401, "session_needed")
            d = console.hj212()
            if d is None or mn not in d.stations:
                return console.fail(request, 404, "no_such_station", session)
            return session, form, d

        @router.post("/stations/{mn}/rerequest")
        async def rerequest(request: Request, mn: str) -> Response:
            got = await station_form(request, mn)
            if isinstance(got, Response):
                return got
            session, form, d = got
            try:
                cmd = stations.rerequest(
                    d, mn, form.get("begin", ""), form.get("end", ""), session.operator.name
                )
            except CommandError as e:
                return console._station(request, session, mn, status=422, error=str(e), form=form)
            log.info("console: %s queued 2061 %s for MN %s", session.operator.name, cmd.qn, mn)
            return RedirectResponse(
                f"/stations/{quote(mn, safe='')}?done=queued&qn={cmd.qn}", status_code=303
            )

        @router.post("/stations/{mn}/sync-clock")
        async def sync_clock(request: Request, mn: str) -> Response:
            got = await station_form(request, mn)
            if isinstance(got, Response):
                return got
            session, _, d = got
            try:
                cmd = stations.sync_clock(d, mn, session.operator.name)
            except CommandError as e:
                return console._station(request, session, mn, status=422, error=str(e))
            if cmd is None:
                return RedirectResponse(
                    f"/stations/{quote(mn, safe='')}?done=clock_waiting", status_code=303
                )
            log.info("console: %s queued 1012 %s for MN %s", session.operator.name, cmd.qn, mn)
            return RedirectResponse(
                f"/stations/{quote(mn, safe='')}?done=queued&qn={cmd.qn}", status_code=303
            )

        router.include_router(review_view.router(console))
        return router

    def hj212(self) -> Hj212Dispatcher | None:
        """The HJ 212 command dispatcher, when the gateway runs in this process."""
        return self._hj212()

    def _receivers(self, request: Request, session: Session, *, done: str, name: str) -> Response:
        lang = self.lang(request)
        d = self.notify
        rows = notify_view.receiver_rows(d, self.clock, lang) if d is not None else []
        known = {r["name"] for r in rows}
        done_text = (
            translator(lang)("test_queued", name=name) if done == "test" and name in known else ""
        )
        return self.render(
            request,
            "receivers.html",
            session,
            nav="receivers",
            configured=d is not None,
            rows=rows,
            oncall=notify_view.oncall_rows(d, self.clock),
            done_text=done_text,
        )

    def _station(
        self,
        request: Request,
        session: Session,
        mn: str,
        *,
        status: int = 200,
        done: str = "",
        qn: str = "",
        error: str | None = None,
        form: Mapping[str, str] | None = None,
    ) -> Response:
        d = self.hj212()
        if d is None or mn not in d.states:
            return self.fail(request, 404, "no_such_station", session)
        lang = self.lang(request)
        t = translator(lang)
        who = self.who()
        commands = [
            stations.command_row(c, self.clock, lang, who)
            for c in d.store.find(mn=mn, limit=stations.COMMANDS_SHOWN)
        ]
        state = d.states[mn]
        row = stations.station_row(
            state, len(d.store.open_commands(mn)), self.registry, self.clock, lang
        )
        begin, end = stations.default_range(d, mn)
        done_text = ""
        if done == "queued" and qn.isdigit():
            done_text = t("command_queued", qn=qn)
        elif done == "clock_waiting":
            done_text = t("clock_sync_waiting")
        return self.render(
            request,
            "station.html",
            session,
            status,
            nav="stations",
            s=row,
            commands=commands,
            begin=(form or {}).get("begin", begin),
            end=(form or {}).get("end", end),
            done_text=done_text,
            error=error,
        )

    def _login(self, request: Request, target: str, error: str | None, status: int) -> Response:
        token = secrets.token_urlsafe(24)
        resp = self.render(
            request,
            "login.html",
            None,
            status,
            next=target,
            login_csrf=token,
            error=error,
            no_operators=len(self.book) == 0,
        )
        resp.set_cookie(
            LOGIN_COOKIE,
            token,
            max_age=3600,
            httponly=True,
            samesite="lax",
            secure=self.cfg.cookie_secure,
        )
        return resp

    async def _detail(
        self,
        request: Request,
        session: Session,
        alert_id: int,
        *,
        status: int = 200,
        done: str = "",
        error: str | None = None,
        form: Mapping[str, str] | None = None,
    ) -> Response:
        found = self.engine.alert(alert_id)
        if found is None:
            return self.fail(request, 404, "no_such_alert", session)
        rec, history = found
        lang = self.lang(request)
        rule = self.engine.rules.by_id.get(rec.rule_id)
        who = self.who()
        events = [
            {
                "at": self.clock.full(h.ts_ms),
                "event": pick(EVENT_LABELS, h.event, lang),
                "by": who.get(h.by or "", h.by or ""),
                "comment": h.comment or "",
                "value": format_value(rec.kind, rec.field, h.value, lang)
                if h.value is not None
                else "",
            }
            for h in reversed(history)
        ]
        done_keys = {"acked": "acked_ok", "silenced": "silenced_ok", "unsilenced": "silence_ended"}
        silences = self.silences_for(rec, lang)
        done_text = ""
        if done in done_keys:
            until = silences[-1]["until"] if silences else ""
            done_text = translator(lang)(done_keys[done], until=until)
        return self.render(
            request,
            "alert.html",
            session,
            status,
            nav="alerts",
            a=self.row(rec, lang, who),
            rec=rec,
            rule=self.rule_view(rule, lang),
            device=self.device_view(self.registry.get(rec.device_id), lang),
            chart=await self.chart(rec, rule, lang),
            events=events,
            sent=notify_view.alert_notifications(self.engine.store, alert_id, self.clock, lang),
            silences=silences,
            choices=list(SILENCE_CHOICES.items()),
            scopes=SCOPES,
            done_text=done_text,
            error=error,
            form=dict(form or {}),
        )


def _etag(html: str) -> str:
    return '"' + hashlib.sha256(html.encode()).hexdigest()[:20] + '"'


def _state_text(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _levels(rule: Rule | None, unit: str, t: Any) -> list[Level]:
    """Horizontal lines for a rule's numeric limit(s) and clear threshold(s)."""
    if rule is None or rule.when is None:
        return []
    out: list[Level] = []
    for cond, key, css in ((rule.when, "limit", "c-limit"), (rule.clear, "clears_at", "c-clear")):
        if cond is None:
            continue
        ops = cond.operand if isinstance(cond.operand, tuple) else (cond.operand,)
        if cond.op not in ("<", "<=", ">", ">=", "outside", "inside"):
            continue
        for v in ops:
            if isinstance(v, int | float) and not isinstance(v, bool):
                out.append(Level(float(v), f"{t(key)} {fmt_num(float(v))} {unit}".strip(), css))
    return out


def _silence_view(s: Silence, clock: Clock, who: str, now: int) -> dict[str, Any]:
    m = s.matchers
    scope = ", ".join(
        f"{k}: {', '.join(v)}"
        for k, v in (
            ("rules", m.rules),
            ("devices", m.devices),
            ("kinds", m.kinds),
            ("sites", m.sites),
            ("counties", m.counties),
            ("severities", m.severities),
        )
        if v
    )
    return {
        "id": s.id,
        "who": who,
        "until": clock.full(s.ends_ms),
        "scope": scope,
        "comment": s.comment,
        "active": s.active(now),
    }
