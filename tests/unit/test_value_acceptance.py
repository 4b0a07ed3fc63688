"""Per-value acceptance (issue 16): DeviceKind.salvage sets out-of-range and non-numeric values
apart; the pipeline stores the rest with <field>_invalid/<field>_flag and counts them."""

from __future__ import annotations

import msgspec
import pytest

from devices.base import ABOVE_RANGE, BELOW_RANGE, NOT_NUMBER, SetAside
from devices.kinds import KINDS
from devices.registry import Registry
from ingest.pipeline import Accepted, Pipeline, Rejected
from ingest.topics import TopicMap

AIR = KINDS["air"]
TS = 1_780_271_940_000


def test_bad_values_are_set_apart_with_their_reason() -> None:
    payload = (
        b'{"ts": 1780271940000, "pm25_ug_m3": -3, "so2_ug_m3": 8, "no2_ug_m3": 1e9,'
        b' "o3_ug_m3": "NaN", "co_mg_m3": true, "pm10_ug_m3": 1' + b"0" * 400 + b"}"
    )
    salvaged = AIR.salvage(payload)
    assert salvaged is not None
    reading, aside = salvaged
    assert reading.so2_ug_m3 == 8.0 and reading.pm25_ug_m3 is None  # type: ignore[attr-defined]
    assert aside == (
        SetAside("pm25_ug_m3", BELOW_RANGE, -3.0),
        SetAside("no2_ug_m3", ABOVE_RANGE, 1e9),
        SetAside("o3_ug_m3", NOT_NUMBER, None),
        SetAside("co_mg_m3", NOT_NUMBER, None),  # a boolean is not a concentration
        SetAside("pm10_ug_m3", ABOVE_RANGE, None),  # too large for a float: the flag only
    )
    assert aside[0].extra() == 'pm25_ug_m3_invalid=-3.0,pm25_ug_m3_flag="below_range"'
    assert aside[2].extra() == 'o3_ug_m3_flag="not_number"'


@pytest.mark.parametrize(
    "payload",
    [
        b'{"ts": 1780271940000, "pm25_ug_m3": 5}',  # nothing wrong with a value: not salvage's job
        b"not json",
        b"[1, 2]",
    ],
)
def test_nothing_to_set_apart_is_none(payload: bytes) -> None:
    assert AIR.salvage(payload) is None


def test_what_is_left_must_still_be_a_reading() -> None:
    with pytest.raises(msgspec.ValidationError, match="no readings"):
        AIR.salvage(b'{"ts": 1780271940000, "pm25_ug_m3": -3}')
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        AIR.salvage(b'{"ts": 1780271940000, "pm25_ug_m3": -3, "so2_ug_m3": 1, "x": 1}')


def test_the_pipeline_counts_set_apart_values_per_kind_field_and_reason() -> None:
    pipe = Pipeline(KINDS, Registry([]), TopicMap("envgrid", KINDS), clock=lambda: TS / 1000)
    for _ in range(2):
        res = pipe.process(
            "envgrid/air/A1", b'{"ts": 1780271940000, "pm25_ug_m3": -3, "so2_ug_m3": 8}'
        )
        assert isinstance(res, Accepted) and res.set_aside[0].field == "pm25_ug_m3"
        assert "so2_ug_m3=8.0" in res.line and 'pm25_ug_m3_flag="below_range"' in res.line
    res = pipe.process("envgrid/water/W1", b'{"ts": 1780271940000, "ph": 15}')
    assert isinstance(res, Rejected) and res.reason.endswith("no valid reading left")
    assert pipe.values_rejected == {("air", "pm25_ug_m3", BELOW_RANGE): 2}
