"""Pure parts of HJ 212 commands (issue 15): parameters, routing messages, editions, ranges."""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from hj212.codec import Packet, build, build_reply, parse
from hj212.commands import Command, CommandError, check_params, edition_of, new_command
from hj212.recovery import covering_ranges

TZ = ZoneInfo("Asia/Shanghai")
MN = "320800210000000000000001"


def h(day: int, hour: int) -> datetime:
    return datetime(2026, 12, day, hour)


def test_covering_ranges_are_the_smallest_runs_newest_first_and_capped() -> None:
    hours = [h(1, 2), h(1, 3), h(1, 10), h(1, 4), h(2, 23), h(1, 11)]
    assert covering_ranges(hours, 24) == [
        (h(2, 23), h(2, 23)),
        (h(1, 10), h(1, 11)),
        (h(1, 2), h(1, 4)),
    ]
    assert covering_ranges([h(1, k) for k in range(6)], 4) == [
        (h(1, 4), h(1, 5)),
        (h(1, 0), h(1, 3)),
    ]
    assert covering_ranges([], 24) == []


@pytest.mark.parametrize(
    ("cn", "params", "error"),
    [
        ("9999", {}, "CN '9999' is not a command envgrid sends"),
        ("2061", {"BeginTime": "20261201000000"}, "needs EndTime"),
        ("2061", {"BeginTime": "20261201020000", "EndTime": "20261201000000"}, "after EndTime"),
        ("2061", {"BeginTime": "2026120100", "EndTime": "20261201000000"}, "YYYYMMDDhhmmss"),
        ("1062", {"RtdInterval": "0"}, "whole number above 0"),
        ("1062", {"RtdIntervl": "30"}, "takes no 'RtdIntervl'"),
        ("1072", {"NewPW": "12345"}, "6 characters"),
        ("1012", {"SystemTime": "2026;1201000000"}, "without ; , = &"),
    ],
)
def test_bad_parameters_are_one_clear_line(cn: str, params: dict[str, str], error: str) -> None:
    with pytest.raises(CommandError, match=error.replace("(", r"\(")):
        check_params(cn, params)


def test_a_routed_command_starts_afresh_and_a_forged_one_is_refused() -> None:
    cmd = new_command(MN, "1061", {}, "api", TZ, 60)
    raw = json.loads(cmd.to_json())
    raw.update(status="succeeded", exe_rtn=1, packets=9, result={"RtdInterval": "1"})
    back = Command.from_json(json.dumps(raw).encode())
    assert (back.qn, back.status, back.exe_rtn, back.packets, back.result) == (
        cmd.qn, "queued", None, 0, {},
    )  # fmt: skip
    for bad in (b"{}", b"[", json.dumps({**raw, "qn": "1"}).encode()):
        with pytest.raises(CommandError):
            Command.from_json(bad)


def test_editions_from_flag_and_the_reply_in_the_packets_edition() -> None:
    assert [edition_of(f) for f in (0, 1, 4, 5, 8, 9)] == [
        "2005", "2005", "2017", "2017", "2025", "2025",
    ]  # fmt: skip
    for flag, reply_flag in ((5, 4), (9, 8), (1, 4)):
        p = Packet(qn="20261201000000000", st="21", cn="2011", pw="123456", mn=MN, flag=flag)
        assert parse(build_reply(parse(build(p)))).flag == reply_flag
