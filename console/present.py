"""How values, times and alerts read on the console, in either language."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from alerts.store import AlertRecord
from console.chart import fmt_num
from console.data import DeviceState
from console.i18n import (
    FACT_LABELS,
    SEVERITY_LABELS,
    STATE_LABELS,
    Lang,
    pick,
    translator,
)
from devices.kinds import KINDS
from ingest.influxql import Value

SEVERITY_RANK = {"critical": 0, "major": 1, "minor": 2, "warning": 3, "info": 4}


def kind_label(kind: str, lang: Lang) -> str:
    """A device kind's name (the kind's own label; the name itself for an unknown kind)."""
    k = KINDS.get(kind)
    return k.title.pick(lang) if k is not None else kind


def fact_label(kind: str, fact: str, lang: Lang) -> str:
    """A registry fact's name: the kind's label for it, a shared one, or the key itself."""
    k = KINDS.get(kind)
    label = k.fact_labels.get(fact) if k is not None else None
    return label.pick(lang) if label is not None else pick(FACT_LABELS, fact, lang)


@functools.cache
def unit_of(kind: str, field: str) -> str:
    """The unit to print after a number of this field ('' when none reads well)."""
    k = KINDS.get(kind)
    u = k.fields().get(field, "") if k else ""
    # Descriptive units ("GB 3838 class 1–6") and pH/AQI do not read well after a number.
    return u if u and len(u) <= 6 and " " not in u and u not in ("pH", "AQI") else ""


def human_duration(seconds: float, lang: Lang) -> str:
    """A rounded duration: 45 s, 12 min, 3.5 h, 2.0 d (秒, 分钟, 小时, 天 in Chinese)."""
    s = max(0.0, seconds)
    units = ("秒", "分钟", "小时", "天") if lang == "zh" else ("s", "min", "h", "d")
    if s < 120:
        return f"{s:.0f} {units[0]}"
    if s < 7200:
        return f"{s / 60:.0f} {units[1]}"
    if s < 172_800:
        return f"{s / 3600:.1f} {units[2]}"
    return f"{s / 86400:.1f} {units[3]}"


def format_value(kind: str, field: str, v: Value, lang: Lang) -> str:
    """A field value for people: the kind's words for its classes, categories and states
    (``DeviceKind.value_texts``), numbers with their unit."""
    t = translator(lang)
    if v is None:
        return "—"
    if field == "":  # a no-data alert: the value is the seconds the device has been silent
        return t("silent_for", d=human_duration(float(v), lang)) if _num(v) else str(v)
    k = KINDS.get(kind)
    text = k.value_texts.get(field) if k is not None else None
    if text is not None:
        return text(v, lang)
    if isinstance(v, bool):
        return t("yes") if v else t("no")
    if _num(v):
        u = unit_of(kind, field)
        return f"{fmt_num(float(v))} {u}".strip()
    return str(v)


def _num(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


@dataclass(frozen=True, slots=True)
class DeviceGlance:
    """A device's newest values as its kind's summary reads them (``devices.base.Glance``)."""

    kind: str
    state: DeviceState
    lang: Lang

    def value(self, field: str) -> Value:
        """The newest value of a field over all series (None when never reported)."""
        return self.state.value(field)

    def series(self) -> list[tuple[str, Mapping[str, Value]]]:
        """(series, newest values) per series, sorted."""
        return sorted(self.state.series.items())

    def number(self, v: float) -> str:
        """A number as the console prints it."""
        return fmt_num(v)

    def show(self, field: str, v: Value) -> str:
        """A value for people, in the visitor's language."""
        return format_value(self.kind, field, v, self.lang)

    def series_label(self, series: str) -> str:
        """'connector=2' → '枪 2' / 'connector 2'."""
        return series_text(series, self.lang)


def key_values(kind: str, state: DeviceState, lang: Lang) -> list[str]:
    """The few values that tell a device's state at a glance, as its kind summarises them."""
    k = KINDS.get(kind)
    return k.glance(DeviceGlance(kind, state, lang)) if k is not None else []


@dataclass(frozen=True, slots=True)
class Clock:
    """Formats epoch milliseconds in the city's time zone."""

    tz: ZoneInfo

    def full(self, ms: int | None) -> str:
        """2026-05-01 14:03:22 (local)."""
        return "—" if ms is None else self._dt(ms).strftime("%Y-%m-%d %H:%M:%S")

    def short(self, ms: int | None) -> str:
        """05-01 14:03 (local)."""
        return "—" if ms is None else self._dt(ms).strftime("%m-%d %H:%M")

    def time(self, ms: int) -> str:
        """14:03:22 (local)."""
        return self._dt(ms).strftime("%H:%M:%S")

    def hm(self, ms: int) -> str:
        """14:03, or 05-01 at local midnight (chart axes)."""
        d = self._dt(ms)
        return d.strftime("%m-%d") if (d.hour, d.minute) == (0, 0) else d.strftime("%H:%M")

    def iso(self, ms: int | None) -> str:
        """ISO 8601 with offset (for <time datetime>)."""
        return "" if ms is None else self._dt(ms).isoformat(timespec="seconds")

    def offset_ms(self, ms: int) -> int:
        """The zone's UTC offset at that time, in ms (to align chart ticks to local hours)."""
        off = self._dt(ms).utcoffset()
        return int(off.total_seconds() * 1000) if off else 0

    def _dt(self, ms: int) -> datetime:
        return datetime.fromtimestamp(ms / 1000, UTC).astimezone(self.tz)


def series_text(series: str, lang: Lang) -> str:
    """'connector=2' → '枪 2' / 'connector 2'."""
    t = translator(lang)
    parts = []
    for p in filter(None, series.split(",")):
        k, _, v = p.partition("=")
        parts.append(f"{t(k)} {v}" if k == "connector" else f"{k} {v}")
    return ", ".join(parts)


@dataclass(frozen=True, slots=True)
class AlertRow:
    """One alert as a table row shows it."""

    id: int
    severity: str
    severity_label: str
    state: str
    state_label: str
    kind: str
    kind_label: str
    device_id: str
    series: str
    site: str
    county: str
    rule_id: str
    rule_text: str
    value_text: str
    since_ms: int
    since_text: str
    since_iso: str
    resolved_text: str
    duration_text: str
    silenced: bool
    acked: bool
    acked_label: str
    acked_at_text: str
    ack_comment: str


def alert_row(
    rec: AlertRecord,
    lang: Lang,
    clock: Clock,
    who: dict[str, str],
    description: str | None = None,
) -> AlertRow:
    """The table row of an alert; ``who`` maps operator names to their display labels, and
    ``description`` replaces the stored (English) rule text, e.g. by ``description_zh``."""
    since = rec.fired_ms or rec.started_ms
    end = rec.resolved_ms
    return AlertRow(
        id=rec.id,
        severity=rec.severity,
        severity_label=pick(SEVERITY_LABELS, rec.severity, lang),
        state=rec.state,
        state_label=pick(STATE_LABELS, rec.state, lang),
        kind=rec.kind,
        kind_label=kind_label(rec.kind, lang),
        device_id=rec.device_id,
        series=series_text(rec.series, lang),
        site=rec.site,
        county=rec.county,
        rule_id=rec.rule_id,
        rule_text=description or rec.description or rec.rule_id,
        value_text=(f"{rec.field} = " if rec.field else "")
        + format_value(rec.kind, rec.field, rec.value, lang),
        since_ms=since,
        since_text=clock.full(since),
        since_iso=clock.iso(since),
        resolved_text=clock.full(end) if end else "",
        duration_text=human_duration((end - rec.started_ms) / 1000, lang) if end else "",
        silenced=rec.silenced,
        acked=rec.acked_by is not None,
        acked_label=who.get(rec.acked_by or "", rec.acked_by or ""),
        acked_at_text=clock.full(rec.acked_ms),
        ack_comment=rec.ack_comment or "",
    )


def active_order(rec: AlertRecord) -> tuple[int, int, int]:
    """Firing before pending, then by severity, then newest first."""
    return (
        0 if rec.state == "firing" else 1,
        SEVERITY_RANK.get(rec.severity, 9),
        -(rec.fired_ms or rec.started_ms),
    )
