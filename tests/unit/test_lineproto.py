"""Line-protocol escaping: no tag value or field key can corrupt a line."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.lineproto import (
    TagValueError,
    encode_line,
    escape_key,
    escape_measurement,
    escape_string_field,
    tag_problem,
)

# Text a device could put in an id, site or berth name: no control characters and no trailing
# backslash, which line protocol cannot carry (refused with a reason: test_refused below).
text = st.text(st.characters(blacklist_categories=["Cs", "Cc"]), min_size=1).filter(
    lambda s: not s.endswith("\\")
)


def split_unescaped(s: str, sep: str) -> list[str]:
    """Split on ``sep`` where it is not escaped by a backslash (a reference tokenizer)."""
    out, cur, i = [], "", 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            cur += s[i : i + 2]
            i += 2
            continue
        if c == sep:
            out.append(cur)
            cur = ""
        else:
            cur += c
        i += 1
    out.append(cur)
    return out


def unescape(s: str) -> str:
    out, i = "", 0
    while i < len(s):
        if s[i] == "\\" and i + 1 < len(s) and s[i + 1] in ",= \\":
            out += s[i + 1]
            i += 2
        else:
            out += s[i]
            i += 1
    return out


@given(text)
def test_escaped_key_has_no_bare_separator(v: str) -> None:
    e = escape_key(v)
    assert split_unescaped(e, ",") == [e]
    assert split_unescaped(e, " ") == [e]
    assert split_unescaped(e, "=") == [e]
    # an odd run of trailing backslashes would escape the next separator
    assert (len(e) - len(e.rstrip("\\"))) % 2 == 0


@given(text, text, text)
def test_line_keeps_its_structure(tag_value: str, field_key: str, string_value: str) -> None:
    line = encode_line("m", [("berth", tag_value)], [(field_key, 1.5), ("s", string_value)], 1)
    assert line is not None
    # measurement+tags, fields, timestamp: exactly three space-separated sections outside quotes
    series, rest = split_unescaped(line, " ")[0], line[len(split_unescaped(line, " ")[0]) + 1 :]
    assert split_unescaped(series, ",")[0] == "m"
    key, _value = split_unescaped(split_unescaped(series, ",")[1], "=")
    assert key == "berth"
    assert rest.endswith(" 1")


def test_examples() -> None:
    assert escape_key("B 1,east=2") == r"B\ 1\,east\=2"
    assert escape_measurement("a b,c") == r"a\ b\,c"
    assert escape_string_field('say "hi" \\') == r'"say \"hi\" \\"'
    assert encode_line("m", [], [("x", float("nan"))], 1) is None
    assert encode_line("m", [("t", "")], [("x", 1), ("b", True)], 5) == "m x=1i,b=true 5"


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("B1\\", "ends in a backslash"),
        ("trail\\\\", "ends in a backslash"),
        ("a\nb", "U+000A"),
        ("tab\there", "U+0009"),
        ("\x7f", "U+007F"),
    ],
)
def test_refused(value: str, why: str) -> None:
    """InfluxDB refuses a line whose tag ends in a backslash; a control character would be
    stored as an escape text indistinguishable from the real characters (issue 20)."""
    assert why in (tag_problem(value) or "")
    with pytest.raises(TagValueError, match=re.escape(why)):
        encode_line("m", [("berth", value)], [("x", 1.0)], 1)


def test_unicode_spaces_and_inner_backslashes_are_fine() -> None:
    assert tag_problem("淮安\u3000港") is None and tag_problem("a\\b") is None
    assert escape_key("a\\ b") == "a\\\\ b"
