"""Escaping proven against the real server: awkward names round-trip through InfluxDB 1.x."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.lineproto import encode_line
from envgrid.localstack import LocalInfluxDB

names = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E, blacklist_characters="\\")
    | st.sampled_from("淮安岸电泊位"),
    min_size=1,
    max_size=20,
).filter(lambda s: s.strip() == s)  # InfluxDB trims nothing, but a leading space is ambiguous


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
