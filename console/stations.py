"""The HJ 212 stations page: each station's state and commands, and the two operator commands.

The page reads the gateway's own dispatcher (the object behind ``/api/hj212``), and its buttons
queue commands through :meth:`hj212.dispatch.Dispatcher.command` and ``sync_clock``, the path
the API takes: the command is committed to the command store before the page answers, then sent
and tracked like any other (docs/hj212.md).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from console.i18n import Lang, translator
from console.present import Clock
from devices.registry import Registry
from hj212.commands import COMMANDS, QN_RTN, Command, CommandError, format_time
from hj212.dispatch import Dispatcher, StationState

COMMANDS_SHOWN = 50
# Who asked, as recorded with the command: the API token records "api", the CLI "cli".
OPERATOR_PREFIX = "operator:"


def requested_by(operator: str) -> str:
    """How a command queued from the console names its operator (docs/hj212.md, Tracking)."""
    return OPERATOR_PREFIX + operator


def _ms(t: float) -> int:
    return int(t * 1000)


def offset_text(offset_s: float | None) -> str:
    """A station clock's offset from the platform's: '+612 s', '-3 s', '—' when unknown."""
    if offset_s is None:
        return "—"
    return f"{offset_s:+.0f} s"


def station_row(
    s: StationState, open_count: int, registry: Registry, clock: Clock, lang: Lang
) -> dict[str, Any]:
    """One line of the stations table."""
    t = translator(lang)
    device = registry.get(s.device_id)
    last = _ms(s.last_packet) if s.last_packet else None
    return {
        "mn": s.mn,
        "device_id": s.device_id,
        "name": device.name if device is not None else "",
        "site": device.site if device is not None else "",
        "online": s.online,
        "status": "online" if s.online else "offline",
        "status_label": t("connected") if s.online else t("not_connected"),
        "edition": f"HJ 212-{s.edition}" if s.edition else "—",
        "last_text": clock.full(last),
        "last_iso": clock.iso(last),
        "offset": offset_text(s.clock_offset_s),
        "open": open_count,
        "gaps": s.gaps,
        "last_command": s.last_command,
        "last_result": t("cmd_" + s.last_result) if s.last_result else "",
    }


def station_rows(
    d: Dispatcher, registry: Registry, clock: Clock, lang: Lang
) -> list[dict[str, Any]]:
    """Every registered station, by device id."""
    open_by_mn = Counter(c.mn for c in d.store.open_commands())
    states = sorted(d.states.values(), key=lambda s: (s.device_id, s.mn))
    return [station_row(s, open_by_mn[s.mn], registry, clock, lang) for s in states]


def command_row(c: Command, clock: Clock, lang: Lang, who: Mapping[str, str]) -> dict[str, Any]:
    """One command as the station page lists it."""
    t = translator(lang)
    spec = COMMANDS.get(c.cn)
    by = c.requested_by
    if by.startswith(OPERATOR_PREFIX):
        name = by[len(OPERATOR_PREFIX) :]
        by = who.get(name, name)
    answer = []
    if c.qn_rtn is not None:
        answer.append(
            f"QnRtn {c.qn_rtn}" + (f" ({QN_RTN[c.qn_rtn]})" if c.qn_rtn in QN_RTN else "")
        )
    if c.exe_rtn is not None:
        answer.append(f"ExeRtn {c.exe_rtn}")
    return {
        "qn": c.qn,
        "cn": c.cn,
        "name": t("cn_" + c.cn) if spec else c.cn,
        "params": " ".join(f"{k}={v}" for k, v in c.params.items()),
        "by": by,
        "status": c.status,
        "status_label": t("cmd_" + c.status),
        "open": c.open,
        "answer": ", ".join(answer),
        "packets": c.packets,
        "attempts": c.attempts,
        "created": clock.full(_ms(c.created)),
        "updated": clock.full(_ms(c.updated)) if c.updated else "—",
        "expires": clock.full(_ms(c.expires)),
        "detail": c.detail,
        "result": " ".join(f"{k}={v}" for k, v in c.result.items()),
    }


def default_range(d: Dispatcher, mn: str) -> tuple[str, str]:
    """Yesterday, 00:00 to 23:00 in the station's time zone, for the re-request form."""
    tz = d.stations[mn].tz if mn in d.stations else d.tz
    today = datetime.now(tz).replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    start = today - timedelta(days=1)
    return start.strftime("%Y-%m-%dT%H:%M"), (start + timedelta(hours=23)).strftime(
        "%Y-%m-%dT%H:%M"
    )


def form_time(text: str, what: str) -> str:
    """A form's local date-time (2026-12-01T08:00 or YYYYMMDDhhmmss) as HJ 212's CP time."""
    text = text.strip()[:32]
    if len(text) == 14 and text.isdigit():
        return text
    try:
        return format_time(datetime.fromisoformat(text).replace(second=0, microsecond=0))
    except ValueError:
        raise CommandError(f"{what}: {text!r} is not a date and time") from None


def rerequest(d: Dispatcher, mn: str, begin: str, end: str, operator: str) -> Command:
    """Queue a 2061 (hourly data, BeginTime to EndTime) for ``mn``, as the API would."""
    params = {"BeginTime": form_time(begin, "BeginTime"), "EndTime": form_time(end, "EndTime")}
    return d.command(mn, "2061", params, requested_by(operator))


def sync_clock(d: Dispatcher, mn: str, operator: str) -> Command | None:
    """Queue a 1012 with the platform's time; None when one is already waiting."""
    return d.sync_clock(mn, requested_by(operator))
