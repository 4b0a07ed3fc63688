"""HJ 212 commands from the platform to a station: the command table, the tracked command record,
and building the request packet. Pure (no I/O); the dispatcher sends, the store keeps.

The exchange follows HJ 212-2017 §6 and Appendix C: the platform sends a request with a new QN
and Flag bit A set; the station answers ``CN=9011`` (``QnRtn``) with the same QN, then, for a data
or read request, the data packets (same QN), then ``CN=9012`` (``ExeRtn``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

from hj212.codec import Packet

__all__ = [
    "ANSWERS",
    "COMMANDS",
    "EDITION_VERSION",
    "EXE_RTN",
    "OPEN",
    "QN_RTN",
    "STATUSES",
    "SYSTEM_TIME_NOW",
    "Command",
    "CommandError",
    "CommandSpec",
    "edition_of",
    "format_time",
    "new_command",
    "new_qn",
    "parse_time",
    "request_packet",
]

Status = Literal[
    "queued", "sent", "accepted", "refused", "succeeded", "failed", "no_data", "timed_out",
    "expired",
]  # fmt: skip
STATUSES: Final[tuple[str, ...]] = (
    "queued", "sent", "accepted", "refused", "succeeded", "failed", "no_data", "timed_out",
    "expired",
)  # fmt: skip
# Still waiting for the station (re-sent after a gateway restart, same QN).
OPEN: Final = frozenset({"queued", "sent", "accepted"})

# 9011 request answer (QnRtn) as the issue lists them from HJ 212-2017.
QN_RTN: Final[dict[int, str]] = {
    1: "will execute",
    2: "refused",
    3: "bad PW",
    4: "bad MN",
    5: "bad ST",
    6: "bad Flag",
    7: "bad QN",
    8: "bad CN",
    9: "bad CRC",
    100: "unknown error",
}
# 9012 execution result (ExeRtn): 1 success, 2-6 failures, 100 no data.
EXE_RTN: Final[dict[int, str]] = {1: "success", 100: "no data"}

# Flag version bits (Flag >> 2) per edition: 1 = HJ 212-2017. 2 (bits 000010) = HJ 212-2025 as
# reported by public third-party implementations, not confirmed against the text (docs/hj212.md).
EDITION_VERSION: Final[dict[str, int]] = {"2017": 1, "2025": 2}


class CommandError(ValueError):
    """A command that cannot be sent as given; the message says what to change."""


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """One command the platform may send: what it does and the CP keys it needs."""

    name: str
    params: tuple[str, ...]  # required CP keys
    optional: tuple[str, ...] = ()
    times: tuple[str, ...] = ()  # keys holding YYYYMMDDhhmmss
    numbers: tuple[str, ...] = ()  # keys holding a positive integer


# HJ 212-2017 Appendix C command codes envgrid sends (the clause of each in docs/hj212.md).
COMMANDS: Final[dict[str, CommandSpec]] = {
    "2061": CommandSpec(
        "re-send hourly data", ("BeginTime", "EndTime"), times=("BeginTime", "EndTime")
    ),
    "2051": CommandSpec(
        "re-send minute data", ("BeginTime", "EndTime"), times=("BeginTime", "EndTime")
    ),
    "2031": CommandSpec(
        "re-send daily data", ("BeginTime", "EndTime"), times=("BeginTime", "EndTime")
    ),
    "1011": CommandSpec("read the station clock", (), optional=("PolId",)),
    "1012": CommandSpec(
        "set the station clock", ("SystemTime",), optional=("PolId",), times=("SystemTime",)
    ),
    "1061": CommandSpec("read the real-time data interval", ()),
    "1062": CommandSpec(
        "set the real-time data interval", ("RtdInterval",), numbers=("RtdInterval",)
    ),
    "1063": CommandSpec("read the minute data interval", ()),
    "1064": CommandSpec("set the minute data interval", ("MinInterval",), numbers=("MinInterval",)),
    "1000": CommandSpec(
        "set the answer timeout and retry count",
        ("OverTime", "ReCount"),
        numbers=("OverTime", "ReCount"),
    ),
    "1072": CommandSpec("set the access password", ("NewPW",)),
}

# CNs a station sends in answer to a read, carrying the value read.
ANSWERS: Final = frozenset({"1011", "1061", "1063"})

_BAD_CHARS: Final = frozenset(";,=&")
# `envgrid hj212 command MN 1012` without SystemTime (or SystemTime=now): the platform's time.
SYSTEM_TIME_NOW: Final = "now"


def edition_of(flag: int) -> str:
    """The edition a packet's Flag version bits name: '2025', '2017' or '2005'."""
    version = flag >> 2
    if version >= 2:
        return "2025"
    return "2017" if version == 1 else "2005"


def format_time(t: datetime) -> str:
    """YYYYMMDDhhmmss of a naive local time."""
    return f"{t.year:04d}{t.month:02d}{t.day:02d}{t.hour:02d}{t.minute:02d}{t.second:02d}"


def parse_time(text: str) -> datetime:
    """A naive local time from YYYYMMDDhhmmss; CommandError if it is not one."""
    if len(text) != 14 or not text.isdigit():
        raise CommandError(f"time {text[:20]!r}: expected YYYYMMDDhhmmss")
    try:
        return datetime.strptime(text, "%Y%m%d%H%M%S")
    except ValueError:
        raise CommandError(f"time {text!r}: not a valid date and time") from None


_last_qn_ms = 0


def new_qn(tz: ZoneInfo) -> str:
    """A QN (YYYYMMDDhhmmsszzz, the platform's local time in ms), unique in this process."""
    global _last_qn_ms
    ms = max(int(time.time() * 1000), _last_qn_ms + 1)
    _last_qn_ms = ms
    t = datetime.fromtimestamp(ms / 1000, tz)
    return f"{format_time(t.replace(tzinfo=None))}{ms % 1000:03d}"


def check_params(cn: str, params: Mapping[str, Any]) -> dict[str, str]:
    """The params of a ``cn`` command as CP strings; CommandError naming the problem."""
    spec = COMMANDS.get(cn)
    if spec is None:
        raise CommandError(
            f"CN {cn!r} is not a command envgrid sends; use one of {', '.join(sorted(COMMANDS))}"
        )
    out: dict[str, str] = {}
    for key, value in params.items():
        if key not in spec.params and key not in spec.optional:
            allowed = ", ".join(spec.params + spec.optional) or "none"
            raise CommandError(f"CN {cn} ({spec.name}) takes no {key!r}; parameters: {allowed}")
        text = str(value)
        if not text or not text.isascii() or not text.isprintable() or _BAD_CHARS & set(text):
            raise CommandError(f"{key}={text[:20]!r}: printable ASCII without ; , = & expected")
        if key in spec.times:
            parse_time(text)
        if key in spec.numbers and not (text.isdigit() and 0 < int(text) < 100_000):
            raise CommandError(f"{key}={text!r}: expected a whole number above 0")
        if key == "NewPW" and len(text) != 6:
            raise CommandError("NewPW: the access password has 6 characters")
        out[key] = text
    missing = [k for k in spec.params if k not in out]
    if missing:
        raise CommandError(f"CN {cn} ({spec.name}) needs {', '.join(missing)}")
    if "BeginTime" in out and out["BeginTime"] > out["EndTime"]:
        raise CommandError("BeginTime is after EndTime")
    return out


@dataclass(slots=True)
class Command:
    """A tracked command: who asked for what, and how far the station got with it."""

    qn: str
    mn: str
    cn: str
    params: dict[str, str]
    requested_by: str  # operator name, 'api', 'cli', 'auto' or 'station' (1013)
    created: float  # epoch seconds
    expires: float  # epoch seconds: a command still queued then ends 'expired'
    status: str = "queued"
    qn_rtn: int | None = None
    exe_rtn: int | None = None
    packets: int = 0  # data packets received in answer
    attempts: int = 0  # times sent
    updated: float = 0.0
    result: dict[str, str] = field(default_factory=dict)  # values read (SystemTime, ...)
    detail: str = ""

    @property
    def open(self) -> bool:
        """Still waiting for the station."""
        return self.status in OPEN

    def to_json(self) -> bytes:
        """The routing message on ``<prefix>/hj212cmd/<MN>``."""
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Command:
        """Parse a routing message; CommandError if it is not one."""
        try:
            raw = json.loads(data)
            cmd = cls(**{k: raw[k] for k in raw if k in cls.__dataclass_fields__})
        except (ValueError, TypeError, KeyError) as e:
            raise CommandError(f"not a command message: {e}") from None
        if not (len(cmd.qn) == 17 and cmd.qn.isdigit()):
            raise CommandError(f"bad QN {cmd.qn[:20]!r}: expected 17 digits")
        cmd.params = check_params(cmd.cn, cmd.params)
        # A routed command starts afresh: its progress is the gateway's to record.
        cmd.status, cmd.qn_rtn, cmd.exe_rtn, cmd.packets, cmd.attempts = "queued", None, None, 0, 0
        cmd.result, cmd.detail = {}, ""
        return cmd


def new_command(
    mn: str,
    cn: str,
    params: Mapping[str, Any],
    requested_by: str,
    tz: ZoneInfo,
    expiry_s: float,
) -> Command:
    """A new queued command with its QN; CommandError if the CN or params are wrong."""
    checked = check_params(cn, params)
    now = time.time()
    return Command(
        qn=new_qn(tz),
        mn=mn,
        cn=cn,
        params=checked,
        requested_by=requested_by,
        created=now,
        expires=now + expiry_s,
        updated=now,
    )


def request_packet(cmd: Command, st: str, pw: str, edition: str) -> Packet:
    """The request packet of ``cmd`` (Flag: the station's edition, bit A: answer wanted)."""
    version = EDITION_VERSION.get(edition, 1)
    return Packet(
        qn=cmd.qn,
        st=st,
        cn=cmd.cn,
        pw=pw,
        mn=cmd.mn,
        flag=(version << 2) | 1,
        cp_extra=dict(cmd.params),
    )
