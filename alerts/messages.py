"""The text people read: one message for a group of alerts, in Chinese (default) or English.

A message names, for each alert, the device, site, county, value, limit and standard, and links
to the alert in the console. A group of a few alerts is written out in full; a larger one in one
line per alert, so a storm still fits a chat message (WeCom takes 4,096 bytes of markdown).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

TZ = ZoneInfo("Asia/Shanghai")
FULL_UP_TO = 5  # alerts written out in full; more go one line each

_SEV = {
    "zh": {"critical": "严重", "major": "重要", "minor": "次要", "warning": "警告", "info": "提示"},
    "en": {s: s for s in ("critical", "major", "minor", "warning", "info")},
}
_T = {
    "zh": {
        "notify": "告警通知",
        "reminder": "告警提醒（仍未确认）",
        "escalation": "告警升级（超时未确认）",
        "test": "测试消息",
        "firing": "触发",
        "resolved": "恢复",
        "alerts": "条告警",
        "device": "设备",
        "site": "站点",
        "county": "区县",
        "value": "数值",
        "limit": "限值",
        "standard": "标准",
        "since": "开始",
        "link": "查看",
        "oncall": "值班",
        "all": "全部告警",
        "test_body": "envgrid 测试消息：此接收方配置正确。",
    },
    "en": {
        "notify": "Alert",
        "reminder": "Reminder: still unacknowledged",
        "escalation": "Escalation: not acknowledged in time",
        "test": "Test message",
        "firing": "FIRING",
        "resolved": "RESOLVED",
        "alerts": "alerts",
        "device": "device",
        "site": "site",
        "county": "county",
        "value": "value",
        "limit": "limit",
        "standard": "standard",
        "since": "since",
        "link": "open",
        "oncall": "on call",
        "all": "all alerts",
        "test_body": "envgrid test message: this receiver is set up correctly.",
    },
}


@dataclass(frozen=True, slots=True)
class Rendered:
    """One message in the forms receivers use."""

    title: str
    markdown: str
    text: str
    html: str


def render(
    payload: Mapping[str, Any], lang: str = "zh", *, mentions: Sequence[str] = ()
) -> Rendered:
    """Render a notification payload (``alerts``, ``reason``, ``console_url``)."""
    t = _T.get(lang, _T["zh"])
    alerts: list[Mapping[str, Any]] = list(payload.get("alerts") or [])
    reason = str(payload.get("reason") or "notify")
    title = _title(alerts, reason, lang)
    if reason == "test":
        body = t["test_body"] + ("\n\n" + " ".join(mentions) if mentions else "")
        return Rendered(
            title, f"### {title}\n\n{body}", f"{title}\n{body}", f"<p>{html.escape(body)}</p>"
        )
    base = str(payload.get("console_url") or "").rstrip("/")
    full = len(alerts) <= FULL_UP_TO
    md = [f"### {title}", ""]
    txt = [title]
    hl = [f"<h3>{html.escape(title)}</h3>", "<ul>"]
    for a in alerts:
        link = f"{base}/alerts/{a.get('alert_id')}" if base else ""
        state = t["resolved"] if a.get("event") == "resolved" else t["firing"]
        sev = _SEV.get(lang, _SEV["zh"]).get(str(a.get("severity")), str(a.get("severity")))
        desc = _desc(a, lang)
        value = _value(a)
        if full:
            lines = [
                f"**[{state}·{sev}] {desc}**",
                f"- {t['device']}: {a.get('device_id')}{_series(a)}",
                f"- {t['site']}: {a.get('site') or '—'}　{t['county']}: {a.get('county') or '—'}",
                f"- {t['value']}: {value}　{t['limit']}: {a.get('limit') or '—'}",
            ]
            if a.get("standard"):
                lines.append(f"- {t['standard']}: {a.get('standard')}")
            if a.get("fired_at"):
                lines.append(f"- {t['since']}: {_local(str(a.get('fired_at')))}")
            if link:
                lines.append(f"- [{t['link']}]({link})")
            md += [*lines, ""]
            txt += [
                f"[{state}·{sev}] {desc}",
                f"{t['device']} {a.get('device_id')}{_series(a)} {a.get('site') or ''} "
                f"{a.get('county') or ''}",
                f"{t['value']} {value} {t['limit']} {a.get('limit') or '—'} "
                f"{a.get('standard') or ''}".rstrip(),
                *([link] if link else []),
                "",
            ]
        else:
            line = _line(a, lang)
            md.append(f"- {line}")
            txt.append(line)
        hl.append(
            "<li>"
            + html.escape(f"[{state}·{sev}] {desc}: {a.get('device_id')}{_series(a)}, ")
            + html.escape(f"{a.get('site') or ''} {a.get('county') or ''}, {value} ")
            + html.escape(f"({t['limit']} {a.get('limit') or '—'}; {a.get('standard') or ''})")
            + (f' <a href="{html.escape(link)}">{t["link"]}</a>' if link else "")
            + "</li>"
        )
    if not full and base:
        md.append(f"\n[{t['all']}]({base}/)")
        txt.append(f"{t['all']}: {base}/")
    hl.append("</ul>")
    if mentions:
        md.append("\n" + " ".join(mentions))
    return Rendered(title, "\n".join(md).strip(), "\n".join(txt).strip(), "\n".join(hl))


def _line(a: Mapping[str, Any], lang: str) -> str:
    """One alert on one line (groups of more than FULL_UP_TO)."""
    t = _T.get(lang, _T["zh"])
    state = t["resolved"] if a.get("event") == "resolved" else t["firing"]
    sev = _SEV.get(lang, _SEV["zh"]).get(str(a.get("severity")), str(a.get("severity")))
    return (
        f"{state}·{sev} {a.get('device_id')}{_series(a)} {a.get('site') or ''} "
        f"{a.get('county') or ''}: {_value(a)} ({a.get('limit') or '—'})"
    )


def line_bytes(a: Mapping[str, Any], lang: str = "zh") -> int:
    """Bytes one alert adds to a markdown message of many (to split a storm into messages)."""
    return len(_line(a, lang).encode()) + 3  # "- " and the newline


def _title(alerts: Sequence[Mapping[str, Any]], reason: str, lang: str) -> str:
    t = _T.get(lang, _T["zh"])
    head = t.get(reason, t["notify"])
    if not alerts:
        return f"envgrid {head}"
    firing = sum(1 for a in alerts if a.get("event") != "resolved")
    resolved = len(alerts) - firing
    order = list(_SEV["en"])
    worst = min(
        (str(a.get("severity")) for a in alerts), key=lambda s: order.index(s) if s in order else 9
    )
    sev = _SEV.get(lang, _SEV["zh"]).get(worst, worst)
    if lang == "en":
        parts = [f"{firing} firing"] * bool(firing) + [f"{resolved} resolved"] * bool(resolved)
        return f"[{sev}] {head}: {len(alerts)} {t['alerts']} ({', '.join(parts)})"
    parts = [f"触发 {firing}"] * bool(firing) + [f"恢复 {resolved}"] * bool(resolved)
    return f"【{sev}】{head}：{len(alerts)} {t['alerts']}（{'，'.join(parts)}）"


def _desc(a: Mapping[str, Any], lang: str) -> str:
    if lang == "zh" and a.get("description_zh"):
        return str(a["description_zh"])
    return str(a.get("description") or a.get("rule_id") or "")


def _series(a: Mapping[str, Any]) -> str:
    return f" ({a['series']})" if a.get("series") else ""


def _value(a: Mapping[str, Any]) -> str:
    v = a.get("value")
    return "—" if v is None else f"{a.get('field') or ''} = {v}".strip(" =")


def _local(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso).astimezone(TZ).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return iso
