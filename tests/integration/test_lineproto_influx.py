"""Escaping proven against the real server: awkward names round-trip through InfluxDB 1.x."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.lineproto import TagValueError, encode_line
from envgrid.localstack import LocalInfluxDB

# Backslashes included, but not at the end (refused: test_trailing_backslash below).
names = (
    st.text(
        st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.sampled_from("淮安岸电泊位"),
        min_size=1,
        max_size=20,
    )
    .filter(lambda s: s.strip() == s)  # InfluxDB trims nothing, but a leading space is ambiguous
    .filter(lambda s: not s.endswith("\\"))
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(names, min_size=5, max_size=5, unique=True))
def test_tag_values_round_trip(influxdb: LocalInfluxDB, berths: list[str]) -> None:
    db = "lp_roundtrip"
    influxdb.create_database(db)
    influxdb.query('DROP SERIES FROM "shore power"', db=db)
    lines = [
        encode_line(
            "shore power",
            [("berth", b), ("device_id", "SP-1")],
            [("power kw", float(i)), ("note", b)],
            1_700_000_000_000 + i,
        )
        for i, b in enumerate(berths)
    ]
    influxdb.write("\n".join(x for x in lines if x), db)
    rows = influxdb.points('SELECT "power kw", "note", "berth" FROM "shore power"', db)
    assert sorted((r["berth"], r["note"], r["power kw"]) for r in rows) == sorted(
        (b, b, float(i)) for i, b in enumerate(berths)
    )


@pytest.mark.parametrize("padded", ["B1\\\\", "B1\\\\\\\\"])
def test_trailing_backslash_cannot_be_written(influxdb: LocalInfluxDB, padded: str) -> None:
    """Why a tag value ending in a backslash is refused: InfluxDB rejects the line however the
    backslash is doubled (issue 20: it used to be padded, and every reading was refused)."""
    db = "lp_trailing"
    influxdb.create_database(db)
    with pytest.raises(Exception, match="invalid tag format"):
        influxdb.write(f"m,berth={padded} v=1 1", db)
    with pytest.raises(TagValueError, match="ends in a backslash"):
        encode_line("m", [("berth", "B1\\")], [("v", 1.0)], 1)


def test_newline_and_backslash_n_stay_apart(influxdb: LocalInfluxDB) -> None:
    """A tag holding the two characters backslash and n is stored as such; a real newline is
    refused (it used to be written as those same two characters)."""
    db = "lp_newline"
    influxdb.create_database(db)
    line = encode_line("m", [("berth", "x\\n")], [("v", 1.0)], 1)
    assert line is not None
    influxdb.write(line, db)
    assert [r["berth"] for r in influxdb.points("SELECT v, berth FROM m", db)] == ["x\\n"]
    with pytest.raises(TagValueError, match="U\\+000A"):
        encode_line("m", [("berth", "x\nb")], [("v", 1.0)], 1)
