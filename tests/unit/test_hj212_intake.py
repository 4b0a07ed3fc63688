"""HJ 212 intake: raw packets of registered stations → readings, flags, units, rejections, and
the per-device settings (the docs' YAML example is loaded here)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from devices.kinds import KINDS
from devices.registry import Device, Registry, load_registry
from envgrid.app import DEFAULT_REGISTRY
from hj212.codec import FACTOR_SCALE, FACTORS, FactorValue, Packet, build
from hj212.intake import (
    Hj212ConfigError,
    Station,
    decoder_factory,
    load_stations,
    unit_scale,
)
from ingest.pipeline import (
    BAD_DEVICE_ID,
    EMPTY,
    INVALID,
    KIND_MISMATCH,
    MALFORMED,
    Accepted,
    Pipeline,
    Rejected,
)
from ingest.topics import TopicMap

DOCS = Path(__file__).resolve().parents[2] / "docs" / "hj212.md"
NOW = datetime(2026, 6, 1, 12, 0, 0)  # station local time (Asia/Shanghai) of the packets
CLOCK = 1_780_286_400.0 + 600  # 2026-06-01 04:00 UTC = 12:00 in Shanghai, plus 10 minutes


def make_pipeline(registry: Registry, default_tz: str = "Asia/Shanghai") -> Pipeline:
    stations = load_stations(registry, default_tz)
    pipeline = Pipeline(
        KINDS, registry, TopicMap("envgrid", KINDS, protocols=["hj212"]), clock=lambda: CLOCK
    )
    pipeline.decoders["hj212"] = decoder_factory(stations)(pipeline)
    return pipeline


REG = load_registry(DEFAULT_REGISTRY)
PIPE = make_pipeline(REG)


def dev(device_id: str) -> Device:
    d = REG.get(device_id)
    assert d is not None
    return d


def frame(
    device: Device,
    factors: Mapping[str, Mapping[str, Any]],
    *,
    cn: str = "2011",
    st: str | None = None,
    t: datetime | None = NOW,
    pw: str | None = None,
    mn: str | None = None,
    crc: str | None = None,
) -> bytes:
    p = Packet(
        qn="20260601120000000",
        st=st or ("21" if device.kind == "water" else "22"),
        cn=cn,
        pw=pw or str(device.facts["pw"]),
        mn=mn or str(device.facts["mn"]),
        flag=5,
        data_time=t,
        factors={c: FactorValue(c, **v) for c, v in factors.items()},
    )
    variant = crc or (device.facts.get("hj212") or {}).get("crc", "hj212")
    return build(p, variant)  # type: ignore[arg-type]


def process(device: Device, data: bytes, topic_mn: str | None = None) -> Accepted | Rejected:
    return PIPE.process(f"envgrid/hj212/{topic_mn or device.facts['mn']}", data)


def fields(line: str) -> dict[str, str]:
    """Field set of a line of line protocol (values as written)."""
    _, field_part, _ = re.split(r"(?<!\\) ", line)
    return dict(kv.split("=", 1) for kv in re.split(r",(?=[a-z0-9_]+=)", field_part))


def tags(line: str) -> dict[str, str]:
    head = re.split(r"(?<!\\) ", line)[0]
    return dict(kv.split("=", 1) for kv in head.split(",")[1:])


def accepted(res: Accepted | Rejected) -> Accepted:
    assert isinstance(res, Accepted), res
    return res


def rejected(res: Accepted | Rejected, category: str) -> str:
    assert isinstance(res, Rejected), res
    assert res.category == category, res
    return res.reason


# ------------------------------------------------------------------------------- readings


def test_real_time_water_packet() -> None:
    res = accepted(
        process(
            dev("WQ-001"),
            frame(dev("WQ-001"), {"w01001": {"rtd": 7.4, "flag": "N"}, "w21003": {"rtd": 0.3}}),
        )
    )
    assert res.ts_ms == 1_780_286_400_000  # 12:00 Shanghai = 04:00 UTC
    assert fields(res.line) == {"ph": "7.4", "nh3n_mg_l": "0.3", **_class2(res.line)}
    assert tags(res.line)["data_kind"] == "rtd" and tags(res.line)["device_id"] == "WQ-001"


def _class2(line: str) -> dict[str, str]:
    f = fields(line)
    return {k: f[k] for k in ("water_class", "meets_iii", "limiting_items") if k in f}


@pytest.mark.parametrize(
    ("cn", "kind"), [("2011", "rtd"), ("2051", "minute"), ("2061", "hourly"), ("2031", "daily")]
)
def test_data_kinds_and_which_value_is_the_field(cn: str, kind: str) -> None:
    group = {"rtd": 7.1, "avg": 7.3, "min": 7.0, "max": 7.6, "flag": "N"}
    res = accepted(process(dev("WQ-002"), frame(dev("WQ-002"), {"w01001": group}, cn=cn)))
    f = fields(res.line)
    assert tags(res.line)["data_kind"] == kind
    assert f["ph"] == ("7.1" if cn == "2011" else "7.3")
    assert (f["ph_min"], f["ph_max"]) == ("7.0", "7.6")


@pytest.mark.parametrize("flag", ["F", "M", "D", "C", "T", "B"])
def test_invalid_flags_go_only_under_invalid(flag: str) -> None:
    res = accepted(
        process(
            dev("WQ-001"),
            frame(
                dev("WQ-001"),
                {
                    "w01001": {"rtd": 7.4, "flag": "N"},
                    "w01009": {"rtd": 0.5, "flag": flag},  # DO 0.5 would be class 6
                    "w21003": {"rtd": 0.3, "flag": "N"},
                },
            ),
        )
    )
    f = fields(res.line)
    assert "do_mg_l" not in f
    assert (f["do_mg_l_invalid"], f["do_mg_l_flag"]) == ("0.5", f'"{flag}"')
    assert f["water_class"] == "2i"  # from the valid values only
    assert res.reading.do_mg_l is None  # type: ignore[attr-defined]
    assert "do_mg_l" not in KINDS["water"].values(res.reading, res.device)


def test_set_value_is_valid_and_says_so() -> None:
    res = accepted(
        process(dev("WQ-001"), frame(dev("WQ-001"), {"w01001": {"rtd": 7.0, "flag": "S"}}))
    )
    f = fields(res.line)
    assert (f["ph"], f["ph_flag"]) == ("7.0", '"S"')


def test_a_packet_of_only_invalid_values_is_still_stored() -> None:
    res = accepted(
        process(dev("AQ-001"), frame(dev("AQ-001"), {"a34004": {"rtd": 40.0, "flag": "M"}}))
    )
    assert fields(res.line) == {"pm25_ug_m3_invalid": "40.0", "pm25_ug_m3_flag": '"M"'}
    assert "aqi_edition" not in tags(res.line)


def test_air_units_aliases_and_pressure() -> None:
    # AQ-005 sends PM in ng/m³ under the pre-2017 names (fleet.yaml hj212 settings).
    aq5 = dev("AQ-005")
    res = accepted(
        process(
            aq5,
            frame(
                aq5,
                {
                    "PM25": {"rtd": 35200.0, "flag": "N"},
                    "PM10": {"rtd": 61000.0, "flag": "N"},
                    "a01006": {"rtd": 101.32, "flag": "N"},
                },
            ),
        )
    )
    f = fields(res.line)
    assert float(f["pm25_ug_m3"]) == pytest.approx(35.2)
    assert float(f["pm10_ug_m3"]) == pytest.approx(61.0)
    assert float(f["pressure_hpa"]) == pytest.approx(1013.2)
    # HJ 633-2026: PM10 61 → 50 + (61 - 50) / (120 - 50) × 50 = 57.9 → 58 (PM2.5 35.2 → 51)
    assert f["aqi"] == "58i" and f["primary_pollutant"] == '"pm10_ug_m3"'


def test_daily_air_data_gets_the_daily_aqi() -> None:
    aq = dev("AQ-001")
    so2 = {"a21026": {"avg": 100.0, "flag": "N"}}
    daily = fields(accepted(process(aq, frame(aq, so2, cn="2031"))).line)
    hourly = fields(accepted(process(aq, frame(aq, so2, cn="2061"))).line)
    assert daily["aqi"] == "75i"  # HJ 633 SO2 24 h: 50 + (100 - 50) / (150 - 50) * 50
    assert hourly["aqi"] == "34i"  # SO2 1 h: 100 / 150 * 50, rounded up


def test_crc_variant_short_mn_and_time_zone_per_device() -> None:
    wq4 = dev("WQ-004")  # CRC-16/MODBUS firmware
    ph = {"w01001": {"rtd": 7.2}}
    accepted(process(wq4, frame(wq4, ph)))
    reason = rejected(process(wq4, frame(wq4, ph, crc="hj212")), MALFORMED)
    assert "bad CRC: got" in reason
    aq10 = dev("AQ-010")  # a 10-character MN
    assert len(str(aq10.facts["mn"])) == 10
    accepted(process(aq10, frame(aq10, {"a34004": {"rtd": 20.0}})))
    # A station keeping UTC: its 04:00 is Shanghai's 12:00.
    utc = make_pipeline(REG, default_tz="UTC")
    wq1 = dev("WQ-001")
    data = frame(wq1, ph, t=datetime(2026, 6, 1, 4, 0, 0))
    res = accepted(utc.process(f"envgrid/hj212/{wq1.facts['mn']}", data))
    assert res.ts_ms == 1_780_286_400_000


# ------------------------------------------------------------------------------ rejections


def test_rejections_name_the_problem() -> None:
    wq, aq = dev("WQ-001"), dev("AQ-001")
    ph = {"w01001": {"rtd": 7.2}}
    assert "unknown MN 320800219999" in rejected(
        PIPE.process("envgrid/hj212/320800219999999999999999", frame(wq, ph, mn="3" * 24)),
        BAD_DEVICE_ID,
    )
    reason = rejected(process(wq, frame(wq, ph, pw="BADPW1")), INVALID)
    assert reason == "wrong PW for MN 320800210000000000000001 (WQ-001)"
    assert str(wq.facts["pw"]) not in reason
    assert "differs from the topic" in rejected(
        process(wq, frame(wq, ph), topic_mn=str(aq.facts["mn"])), BAD_DEVICE_ID
    )
    assert "ST 32 (water pollution source) is not ingested" in rejected(
        process(wq, frame(wq, ph, st="32")), INVALID
    )
    assert "WQ-001, a water station" in rejected(
        process(wq, frame(wq, {"a34004": {"rtd": 1.0}}, st="22")), KIND_MISMATCH
    )
    assert "CN 2081 is not a data upload" in rejected(
        process(wq, frame(wq, ph, cn="2081")), INVALID
    )
    assert "without DataTime" in rejected(process(wq, frame(wq, ph, t=None)), INVALID)
    assert "w01001-Rtd (ph) = 15" in rejected(
        process(wq, frame(wq, {"w01001": {"rtd": 15.0}})), INVALID
    )
    assert "a34004 (pm25_ug_m3) is not a water reading" in rejected(
        process(wq, frame(wq, {"a34004": {"rtd": 1.0}})), INVALID
    )
    assert "no -Avg values" in rejected(
        process(wq, frame(wq, {"w01001": {"rtd": 7.0}}, cn="2061")), EMPTY
    )
    assert "unknown factor w99999" in rejected(
        process(wq, frame(wq, {"w99999": {"rtd": 7.0}})), MALFORMED
    )
    garbled = frame(wq, ph)
    garbled = garbled[:-6] + (b"0000" if garbled[-6:-2] != b"0000" else b"0001") + b"\r\n"
    assert "bad CRC: got" in rejected(process(wq, garbled), MALFORMED)


# ------------------------------------------------------------------------------ settings


def test_unit_scales() -> None:
    assert unit_scale("a34004", "ng/m3") == pytest.approx(1e-3)
    assert unit_scale("a34004", "µg/m³") == 1.0
    assert unit_scale("a21005", "ug/m3") == pytest.approx(1e-3)  # CO is stored in mg/m³
    assert unit_scale("a01006", "kPa") == FACTOR_SCALE["a01006"] == 10.0
    assert unit_scale("a01006", "Pa") == pytest.approx(0.01)
    assert unit_scale("w21003", "ug/L") == pytest.approx(1e-3)
    assert unit_scale("w01014", "mS/m") == 10.0
    with pytest.raises(ValueError, match="use one of ng/m3, ug/m3, mg/m3"):
        unit_scale("a34004", "ppm")
    # Every factor's own unit converts to itself.
    for code, (_name, unit) in FACTORS.items():
        assert unit_scale(code, unit) == 1.0, code


def _load(entries: str, tmp: Path) -> dict[str, Station]:
    path = tmp / "reg.yaml"
    path.write_text("devices:\n" + entries, encoding="utf-8")
    return load_stations(load_registry(path), "Asia/Shanghai", path)


BASE = "  - {id: AQ-1, kind: air, site: s, county: c, mn: '320800220000000000000001', pw: '735291'"


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (BASE + ", hj212: {unit: {a34004: ng/m3}}}\n", "hj212.unit: unknown setting"),
        (BASE + ", hj212: {units: {a34004: ppm}}}\n", "unit 'ppm' cannot be converted"),
        (BASE + ", hj212: {units: {x1: mg/m3}}}\n", "unknown factor code 'x1'"),
        (BASE + ", hj212: {aliases: {PM25: a99999}}}\n", "points to unknown factor code"),
        (BASE + ", hj212: {crc: crc32}}\n", "hj212.crc"),
        (BASE + ", hj212: {timezone: Mars/Base}}\n", "unknown time zone 'Mars/Base'"),
        (BASE + ", hj212: [1]}\n", "hj212 must be a mapping"),
        (
            "  - {id: AQ-1, kind: air, site: s, county: c, mn: 3208, pw: '735291'}\n",
            "mn must be a quoted string",
        ),
        (
            "  - {id: AQ-1, kind: air, site: s, county: c, mn: 'ABC', pw: '735291'}\n",
            "set hj212: {short_mn: true}",
        ),
        (
            "  - {id: AQ-1, kind: air, site: s, county: c, mn: '320800220000000000000001', "
            "pw: 735291}\n",
            "pw must be a quoted string",
        ),
        (
            "  - {id: AQ-1, kind: air, site: s, county: c, mn: '320800220000000000000001'}\n",
            "mn given without pw",
        ),
        ("  - {id: PV-1, kind: pv, site: s, county: c, pw: '735291'}\n", "for a pv device"),
        (BASE + "}\n" + BASE.replace("AQ-1", "AQ-2") + "}\n", "already used by 'AQ-1'"),
    ],
)
def test_bad_station_settings_name_file_line_and_fix(
    entries: str, message: str, tmp_path: Path
) -> None:
    with pytest.raises(Hj212ConfigError) as e:
        _load(entries, tmp_path)
    text = str(e.value)
    assert message in text, text
    line = entries.count("\n") + 1  # the last entry is the offending one, after "devices:"
    assert text.startswith(f"{tmp_path / 'reg.yaml'}:{line}: device '"), text
    assert "\n" not in text and "735291" not in text


def test_docs_registry_example_loads_and_works() -> None:
    text = DOCS.read_text(encoding="utf-8")
    m = re.search(
        r"<!-- hj212-registry:begin -->\n```yaml\n(.*?)```\n<!-- hj212-registry:end", text, re.S
    )
    assert m, "docs/hj212.md has no hj212-registry block"
    reg = Registry.parse(m.group(1), "docs/hj212.md", KINDS)
    stations = load_stations(reg, "Asia/Shanghai")
    assert sorted(s.device.id for s in stations.values()) == ["AQ-101", "AQ-102", "WQ-101"]
    aq101 = next(s for s in stations.values() if s.device.id == "AQ-101")
    assert aq101.leniency.crc == "modbus" and aq101.scale["a34004"] == pytest.approx(1e-3)
    aq102 = next(s for s in stations.values() if s.device.id == "AQ-102")
    assert aq102.leniency.short_mn and aq102.leniency.length_mismatch
    assert aq102.leniency.legacy_aliases and str(aq102.tz) == "Asia/Shanghai"
    # A packet the way AQ-101 sends it is stored in envgrid's units.
    pipe = make_pipeline(reg)
    data = frame(aq101.device, {"PM25": {"rtd": 42000.0, "flag": "N"}}, crc="modbus")
    res = accepted(pipe.process(f"envgrid/hj212/{aq101.mn}", data))
    assert float(fields(res.line)["pm25_ug_m3"]) == pytest.approx(42.0)
    # AQ-102 miscounts its length and uses the old names.
    data = frame(aq102.device, {"SO2": {"rtd": 9.0, "flag": "N"}})
    data = b"##0001" + data[6:]
    res = accepted(pipe.process(f"envgrid/hj212/{aq102.mn}", data))
    assert fields(res.line)["so2_ug_m3"] == "9.0"
