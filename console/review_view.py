"""The 审核 (review) page: data to review first, a device's chart, the mark form and the history.

``/review`` lists, per device and field, the hours whose values QC flagged suspect (3) or fail
(4) — the ``<measurement>_qc`` points the rollups store — and the values ingest set apart
(``<field>_invalid``), newest first. ``/review/<device_id>`` draws a field over the period with
the flagged values marked and the ranges marks invalidated shaded, offers the mark form, and
lists the device's marks. A mark is recorded through :class:`rollups.review_api.Desk`, the path
``POST /api/review/marks`` takes (stored, then the windows it touches recomputed).

Every signed-in operator may look; only ``auditor`` and ``admin`` see the form, and a POST from
anyone else answers 403, as the API does.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from markupsafe import Markup

from console import data
from console.auth import Session
from console.chart import fmt_num, numeric_chart
from console.i18n import (
    ACTION_LABELS,
    QC_TEST_LABELS,
    REASON_LABELS,
    Lang,
    pick,
    translator,
)
from console.present import Clock, kind_label, unit_of
from devices.registry import Device
from ingest.influxql import QueryError
from rollups.review import ACTIONS, ALL_FIELDS, REASONS, Mark, Marks, ReviewError
from rollups.review_api import REVIEW_ROLES
from rollups.runner import qc_measurement
from rollups.windows import ROLLUP_KINDS, RollupKind

if TYPE_CHECKING:
    from console.web import Console

log = logging.getLogger("envgrid.console")

HOUR_MS = 3_600_000
DEFAULT_DAYS = 3
MAX_DAYS = 31  # one request reads at most a month of one device's readings
ROWS_SHOWN = 200
INPUT_FORMAT = "%Y-%m-%dT%H:%M"  # <input type="datetime-local">


def may_review(session: Session) -> bool:
    """Whether the operator's role may record marks (as ``POST /api/review/marks`` decides)."""
    return session.operator.role in REVIEW_ROLES


def parse_local(text: str, clock: Clock) -> int | None:
    """A datetime-local input (the city's time) as epoch ms; None when it is not one."""
    try:
        dt = datetime.fromisoformat(text.strip()[:32])
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=clock.tz)
    return int(dt.timestamp() * 1000)


def local_input(ms: int, clock: Clock) -> str:
    """Epoch ms as a datetime-local input's value in the city's time."""
    return datetime.fromtimestamp(ms / 1000, clock.tz).strftime(INPUT_FORMAT)


def hour_of(ms: int, clock: Clock) -> int:
    """The start of the local clock hour holding ``ms``."""
    off = clock.offset_ms(ms)
    return (ms + off) // HOUR_MS * HOUR_MS - off


@dataclass(frozen=True, slots=True)
class Period:
    """The period a page shows: [start_ms, end_ms)."""

    start_ms: int
    end_ms: int

    @classmethod
    def parse(cls, q: Mapping[str, str], clock: Clock, now_ms: int) -> Period:
        """From ``from``/``to`` (local datetime-local values); the last days up to the next
        hour by default; never longer than MAX_DAYS."""
        end = parse_local(q.get("to", ""), clock) or hour_of(now_ms, clock) + HOUR_MS
        start = parse_local(q.get("from", ""), clock) or end - DEFAULT_DAYS * 86_400_000
        if start >= end:
            start = end - DEFAULT_DAYS * 86_400_000
        start = max(start, end - MAX_DAYS * 86_400_000)
        return cls(start, end)

    def query(self, clock: Clock, **more: str) -> str:
        """This period (and more parameters) as a query string."""
        d = {"from": local_input(self.start_ms, clock), "to": local_input(self.end_ms, clock)}
        d.update({k: v for k, v in more.items() if v})
        return urlencode(d)


@dataclass(slots=True)
class HourRow:
    """One device field's hour with flagged or invalid values."""

    device_id: str
    field: str
    hour_ms: int
    suspect: int = 0
    fail: int = 0
    invalid: int = 0
    why: set[str] = dataclasses.field(default_factory=set)

    @property
    def total(self) -> int:
        """Values to review in the hour."""
        return self.suspect + self.fail + self.invalid


def review_kind(device: Device | None) -> RollupKind | None:
    """The rollup of a registered device's kind (None: its data are not rolled up)."""
    if device is None or device.kind is None:
        return None
    return ROLLUP_KINDS.get(device.kind)


async def flagged_values(
    console: Console, period: Period, device_id: str | None = None
) -> list[data.Flagged]:
    """QC flags and invalid values of every rolled-up kind (or one device's) in the period."""
    out: list[data.Flagged] = []
    for rk in ROLLUP_KINDS.values():
        out += await data.qc_flags(
            console.influx, qc_measurement(rk), period.start_ms, period.end_ms, device_id
        )
        out += await data.invalid_values(
            console.influx, rk.source, period.start_ms, period.end_ms, device_id
        )
    return out


def hour_rows(flags: Iterable[data.Flagged], clock: Clock) -> list[HourRow]:
    """Flags grouped by device, field and local hour: newest hours first, then the hours with
    the most values to review."""
    rows: dict[tuple[str, str, int], HourRow] = {}
    for f in flags:
        h = hour_of(f.ts_ms, clock)
        row = rows.setdefault((f.device_id, f.field, h), HourRow(f.device_id, f.field, h))
        if f.flag >= 4:
            row.fail += 1
        elif f.flag == 3:
            row.suspect += 1
        else:
            row.invalid += 1
        if f.why:
            row.why.add(f.why)
    return sorted(rows.values(), key=lambda r: (-r.hour_ms, -r.fail, -r.total, r.device_id))


def row_view(r: HourRow, period: Period, clock: Clock, lang: Lang) -> dict[str, Any]:
    """A table row of data to review, with the link that selects its hour for a mark."""
    select = period.query(
        clock,
        field=r.field,
        mark_from=local_input(r.hour_ms, clock),
        mark_to=local_input(r.hour_ms + HOUR_MS, clock),
    )
    return {
        "device_id": r.device_id,
        "field": r.field,
        "hour": clock.full(r.hour_ms)[:16],
        "hour_iso": clock.iso(r.hour_ms),
        "suspect": r.suspect,
        "fail": r.fail,
        "invalid": r.invalid,
        "why": ", ".join(pick(QC_TEST_LABELS, w, lang) for w in sorted(r.why)),
        "href": f"/review/{quote(r.device_id, safe='')}?{select}#mark",
    }


def invalidated(marks: Sequence[Mark], device_id: str, name: str) -> list[tuple[int, int]]:
    """The ranges in which the newest covering mark of a field is ``invalidate`` (what the
    rollups leave out), merged."""
    cuts = sorted({t for m in marks for t in (m.from_ms, m.to_ms)})
    verdicts = Marks(marks)
    out: list[tuple[int, int]] = []
    for a, b in itertools.pairwise(cuts):
        if verdicts.verdict(device_id, name, a) is None:
            continue
        if out and out[-1][1] == a:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def mark_view(m: Mark, clock: Clock, lang: Lang, who: Mapping[str, str]) -> dict[str, Any]:
    """A line of the review history."""
    t = translator(lang)
    return {
        "id": m.id,
        "at": clock.full(m.at_ms),
        "who": who.get(m.actor, m.actor),
        "action": m.action,
        "action_label": pick(ACTION_LABELS, m.action, lang),
        "fields": t("all_fields") if m.fields == (ALL_FIELDS,) else ", ".join(m.fields),
        "period": f"{clock.full(m.from_ms)[:16]} – {clock.full(m.to_ms)[:16]}",
        "reason": pick(REASON_LABELS, m.reason, lang),
        "comment": m.comment,
    }


def chart_svg(
    console: Console,
    device: Device,
    name: str,
    points: Sequence[tuple[int, data.Value]],
    flags: Sequence[data.Flagged],
    bands: Sequence[tuple[int, int]],
    period: Period,
    lang: Lang,
) -> Markup:
    """The field's readings with the flagged values marked and the invalidated ranges shaded."""
    t = translator(lang)
    clock = console.clock
    nums = [
        (ts, float(v)) for ts, v in points if isinstance(v, int | float) and not isinstance(v, bool)
    ]
    by_ts = dict(nums)
    marked = [(f.ts_ms, by_ts[f.ts_ms], f.flag) for f in flags if f.flag and f.ts_ms in by_ts]
    unit = unit_of(device.kind or "", name)
    vals = [v for _, v in nums]
    desc = f"{len(nums)} · {clock.full(period.start_ms)} – {clock.full(period.end_ms)}"
    if vals:
        desc += f"; {t('min')} {fmt_num(min(vals))}, {t('max')} {fmt_num(max(vals))} {unit}"
    desc += f"; {t('n_suspect')} {sum(1 for m in marked if m[2] == 3)}"
    desc += f", {t('n_fail')} {sum(1 for m in marked if m[2] >= 4)}"
    svg = numeric_chart(
        nums,
        start_ms=period.start_ms,
        end_ms=period.end_ms,
        fmt_time=clock.hm,
        tz_offset_ms=clock.offset_ms(period.end_ms),
        title=f"{name} · {device.id} {unit}".strip(),
        desc=desc,
        ident="chart-review",
        bands=bands,
        flagged=marked,
    )
    return Markup(svg)


async def device_page(
    console: Console,
    request: Request,
    session: Session,
    device_id: str,
    *,
    status: int = 200,
    error: str = "",
    form: Mapping[str, str] | None = None,
) -> Response:
    """The review page of one device."""
    device = console.registry.get(device_id)
    rk = review_kind(device)
    if device is None or rk is None:
        return console.fail(request, 404, "no_such_device", session)
    lang = console.lang(request)
    t = translator(lang)
    clock = console.clock
    q: dict[str, str] = dict(request.query_params)
    if form is not None:  # a refused mark: the page as it was when the form was sent
        q.update({k: form.get(f"view_{k}", "") for k in ("from", "to", "field")})
    period = Period.parse(q, clock, int(time.time() * 1000))
    problem = ""
    try:
        flags = await flagged_values(console, period, device.id)
    except QueryError as e:
        flags, problem = [], e.message
    rows = hour_rows(flags, clock)
    fields = list(rk.fields)
    name = q.get("field", "")
    if name not in fields:
        name = next((r.field for r in rows if r.field in fields), fields[0])
    desk = console.review
    marks = desk.store.marks(device.id, period.start_ms, period.end_ms) if desk else []
    chart: dict[str, Any] = {"svg": "", "error": "", "note": ""}
    try:
        points = await data.readings(
            console.influx, device.kind or "", device.id, "", name, *_ends(period), limit=20_000
        )
    except QueryError as e:
        chart["error"] = e.message
    else:
        if points:
            own = [f for f in flags if f.field == name]
            bands = invalidated(marks, device.id, name)
            chart["svg"] = chart_svg(console, device, name, points, own, bands, period, lang)
        else:
            chart["note"] = t("no_readings")
    f = dict(form or {})
    chosen = {k[len("field_") :] for k, v in f.items() if k.startswith("field_") and v}
    if not chosen and not f:
        chosen = {name}
    done = q.get("done", "")
    return console.render(
        request,
        "review.html",
        session,
        status,
        nav="review",
        device=device,
        kind_text=kind_label(device.kind or "", lang),
        period=period,
        view_from=local_input(period.start_ms, clock),
        view_to=local_input(period.end_ms, clock),
        rows=[row_view(r, period, clock, lang) for r in rows[:ROWS_SHOWN]],
        more_rows=max(len(rows) - ROWS_SHOWN, 0),
        problem=problem,
        field=name,
        fields=fields,
        chosen=chosen,
        chart=chart,
        history=[mark_view(m, clock, lang, console.who()) for m in reversed(marks)],
        can_mark=may_review(session) and desk is not None,
        available=desk is not None,
        actions=[(a, pick(ACTION_LABELS, a, lang)) for a in ACTIONS],
        reasons=[(r, pick(REASON_LABELS, r, lang)) for r in REASONS],
        mark_from=f.get("from", q.get("mark_from", "")),
        mark_to=f.get("to", q.get("mark_to", "")),
        mark_action=f.get("action", "invalidate"),
        mark_reason=f.get("reason", ""),
        mark_comment=f.get("comment", ""),
        done_text=t("mark_done", id=done) if done.isdigit() else "",
        error=error,
    )


def _ends(period: Period) -> tuple[int, int]:
    return period.start_ms, period.end_ms - 1


async def list_page(console: Console, request: Request, session: Session) -> Response:
    """Data to review over every device, and the devices that may be reviewed."""
    lang = console.lang(request)
    clock = console.clock
    period = Period.parse(request.query_params, clock, int(time.time() * 1000))
    problem = ""
    try:
        rows = hour_rows(await flagged_values(console, period), clock)
    except QueryError as e:
        rows, problem = [], e.message
    devices = [
        {"id": d.id, "name": d.name, "kind": kind_label(d.kind or "", lang), "site": d.site}
        for d in sorted(console.registry, key=lambda d: d.id)
        if review_kind(d) is not None
    ]
    return console.render(
        request,
        "review.html",
        session,
        nav="review",
        device=None,
        period=period,
        view_from=local_input(period.start_ms, clock),
        view_to=local_input(period.end_ms, clock),
        period_q=period.query(clock),
        rows=[row_view(r, period, clock, lang) for r in rows[:ROWS_SHOWN]],
        more_rows=max(len(rows) - ROWS_SHOWN, 0),
        problem=problem,
        devices=devices,
        can_mark=may_review(session),
        available=console.review is not None,
    )


def mark_of(
    form: Mapping[str, str], device_id: str, fields: Sequence[str], clock: Clock, actor: str
) -> Mark | str:
    """The mark a form asks for, or the i18n key of what is missing."""
    start, end = parse_local(form.get("from", ""), clock), parse_local(form.get("to", ""), clock)
    if start is None or end is None:
        return "bad_time"
    if form.get("field_" + ALL_FIELDS):
        chosen: tuple[str, ...] = (ALL_FIELDS,)
    else:
        chosen = tuple(f for f in fields if form.get("field_" + f))
    if not chosen:
        return "no_fields_chosen"
    action = form.get("action", "")
    return Mark(
        device_id=device_id,
        fields=chosen,
        from_ms=start,
        to_ms=end,
        action="restore" if action == "restore" else "invalidate",
        reason=form.get("reason", ""),
        actor=actor,
        comment=form.get("comment", "").strip()[:1000],
    )


def router(console: Console) -> APIRouter:
    """The review page's routes."""
    r = APIRouter(include_in_schema=False)

    @r.get("/review")
    async def review_list(request: Request) -> Response:
        session = console.session(request)
        if session is None:
            return console.to_login(request)
        return await list_page(console, request, session)

    @r.get("/review/{device_id}")
    async def review_device(request: Request, device_id: str) -> Response:
        session = console.session(request)
        if session is None:
            return console.to_login(request)
        return await device_page(console, request, session, device_id)

    @r.post("/review/{device_id}/marks")
    async def add_mark(request: Request, device_id: str) -> Response:
        session, form, error = await console.form_with_csrf(request)
        if error is not None or session is None:
            return error or console.fail(request, 401, "session_needed")
        if not may_review(session):
            return console.fail(request, 403, "auditor_only", session)
        desk = console.review
        if desk is None:
            return console.fail(request, 503, "review_unavailable", session)
        device = console.registry.get(device_id)
        rk = review_kind(device)
        if device is None or rk is None:
            return console.fail(request, 404, "no_such_device", session)
        t = translator(console.lang(request))
        mark = mark_of(form, device.id, rk.fields, console.clock, session.operator.name)
        if isinstance(mark, str):
            return await device_page(
                console, request, session, device.id, status=422, error=t(mark), form=form
            )
        try:
            stored = await desk.record(mark)
        except ReviewError as e:
            return await device_page(
                console, request, session, device.id, status=422, error=str(e), form=form
            )
        log.info(
            "console: %s recorded review mark %d (%s %s)",
            session.operator.name,
            stored.id,
            stored.action,
            device.id,
        )
        view = {k: form.get(k, "") for k in ("view_from", "view_to")}
        back = urlencode(
            {
                "from": view["view_from"],
                "to": view["view_to"],
                "field": form.get("view_field", ""),
                "done": str(stored.id),
            }
        )
        return RedirectResponse(
            f"/review/{quote(device.id, safe='')}?{back}#history", status_code=303
        )

    return r
