"""Every device model enforces its physical ranges and kind rules."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from devices.kinds import KINDS

TS = 1_780_271_940_000


def _ranges() -> list[tuple[str, str, float | None, float | None]]:
    out = []
    for kind in KINDS.values():
        for f in msgspec.inspect.type_info(kind.model).fields:  # type: ignore[attr-defined]
            for m in getattr(f.type, "types", ()):
                if isinstance(m, msgspec.inspect.Metadata) and isinstance(
                    m.type, msgspec.inspect.FloatType
                ):
                    out.append((kind.name, f.name, m.type.ge, m.type.le))
    return out


# Shore-power frequency has two bands (50 and 60 Hz ships): tested on its own below.
RANGES = [r for r in _ranges() if r[:2] != ("shore_power", "frequency_hz")]


def decode(kind: str, body: dict[str, Any]) -> Any:
    return KINDS[kind].decoder.decode(msgspec.json.encode({"ts": TS, **body}))


def test_every_kind_declares_ranges() -> None:
    kinds = {k for k, *_ in RANGES}
    assert kinds == set(KINDS)
    assert len(RANGES) >= 40


@pytest.mark.parametrize(
    ("kind", "field", "lo", "hi"), RANGES, ids=[f"{k}.{f}" for k, f, *_ in RANGES]
)
def test_range_edges(kind: str, field: str, lo: float | None, hi: float | None) -> None:
    if lo is not None:
        assert getattr(decode(kind, {field: lo}), field) == lo
        with pytest.raises(msgspec.ValidationError, match=f">= .*{field}"):
            decode(kind, {field: lo - 0.001})
    if hi is not None:
        assert getattr(decode(kind, {field: hi}), field) == hi
        with pytest.raises(msgspec.ValidationError, match=f"<= .*{field}"):
            decode(kind, {field: hi + 0.001})


@pytest.mark.parametrize(
    ("kind", "body", "message"),
    [
        ("water", {"ph": 15}, "<= 14.0"),
        ("shore_power", {"energy_kwh": -0.1}, ">= 0.0"),
        ("ev_charger", {"energy_kwh": -5}, ">= 0.0"),
        ("pv", {"energy_total_kwh": -1}, ">= 0.0"),
        ("pv", {"grid_freq_hz": 90}, "<= 55.0"),
        ("air", {"pm25_ug_m3": -3}, ">= 0.0"),
        ("water", {}, "no readings"),
        ("air", {"pm25_ug_m3": "12"}, "got `str`"),
        ("pv", {"status": "ON"}, "Invalid enum value 'ON'"),
        ("ev_charger", {"error_code": "Oops"}, "Invalid enum value 'Oops'"),
        ("ev_charger", {"connector_id": 0, "status": "Preparing"}, "connector 0 cannot be"),
        ("ev_charger", {"connector_id": -1, "status": "Available"}, ">= 0"),
        ("shore_power", {"berth": "", "connected": True}, "length >= 1"),
        ("shore_power", {"frequency_hz": 55.0}, "neither near 50 Hz nor near 60 Hz"),
    ],
)
def test_rejections(kind: str, body: dict[str, Any], message: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=None) as e:
        decode(kind, body)
    assert message in str(e.value)


@pytest.mark.parametrize("hz", [47.5, 50.0, 52.5, 57.5, 60.0, 62.5])
def test_shore_power_frequency_bands(hz: float) -> None:
    assert decode("shore_power", {"frequency_hz": hz}).frequency_hz == hz


@pytest.mark.parametrize("hz", [44.9, 53.0, 56.0, 63.0, 65.1])
def test_shore_power_frequency_out_of_band(hz: float) -> None:
    with pytest.raises(msgspec.ValidationError):
        decode("shore_power", {"frequency_hz": hz})


def test_every_ocpp_status_and_connector0_rule() -> None:
    for status in (
        "Available",
        "Preparing",
        "Charging",
        "SuspendedEVSE",
        "SuspendedEV",
        "Finishing",
        "Reserved",
        "Unavailable",
        "Faulted",
    ):
        assert decode("ev_charger", {"connector_id": 1, "status": status}).status == status
    for status in ("Available", "Unavailable", "Faulted"):
        assert decode("ev_charger", {"connector_id": 0, "status": status}).status == status


def test_units_are_declared_for_every_reading() -> None:
    for kind in KINDS.values():
        units = kind.fields()
        for name in kind.model.MEASURED:
            if name not in ("status", "error_code", "connected", "underperforming"):
                assert units[name] or name == "power_factor", f"{kind.name}.{name} has no unit"


def test_timestamps() -> None:
    r = KINDS["water"].decoder.decode(b'{"ts": "2026-06-01T07:59:00+08:00", "ph": 7}')
    assert r.ts_ms() == TS
    with pytest.raises(msgspec.ValidationError, match="no UTC offset"):
        KINDS["water"].decoder.decode(b'{"ts": "2026-06-01T07:59:00", "ph": 7}')
    with pytest.raises(msgspec.ValidationError, match=">= 0"):
        KINDS["water"].decoder.decode(b'{"ts": -5, "ph": 7}')
