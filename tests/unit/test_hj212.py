"""HJ 212-2017 codec tests.

Expected values come from the standard (via /work/shared/standards.md), from counting by hand,
or from the reference bit-loop CRC below, transcribed from standards.md and independent of the
table-driven code under test. A few published real-world frames (third-party, CRC and length as
sent by their authors) pin the quirks the leniency options exist for.
"""

from __future__ import annotations

import contextlib
import string
from datetime import datetime

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from hj212.codec import (
    CN_DATA_KIND,
    DATA_FLAGS,
    FACTORS,
    LEGACY_ALIASES,
    ST_KIND,
    STRICT,
    VALID_FLAGS,
    CrcError,
    FactorValue,
    FieldError,
    FrameError,
    Hj212Error,
    LengthError,
    Leniency,
    Packet,
    UnknownFactorError,
    build,
    build_reply,
    crc16,
    crc_hj212,
    crc_modbus,
    parse,
    to_envgrid,
)

# The standard's example packet (standards.md): 101-character data segment, CRC 1C80.
EXAMPLE_DATA = (
    b"QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;"
    b"CP=&&RtdInterval=30&&"
)
EXAMPLE = b"##0101" + EXAMPLE_DATA + b"1C80\r\n"
MN24 = "010000A8900016F000169DC0"


def ref_crc_hj212(data: bytes) -> int:
    """The standard's algorithm, exactly as standards.md writes it."""
    crc = 0xFFFF
    for b in data:
        crc = (crc >> 8) ^ b
        for _ in range(8):
            lsb = crc & 1
            crc >>= 1
            if lsb:
                crc ^= 0xA001
    return crc


def ref_crc_modbus(data: bytes) -> int:
    """CRC-16/MODBUS bit by bit: init 0xFFFF, reflected poly 0xA001."""
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            lsb = crc & 1
            crc >>= 1
            if lsb:
                crc ^= 0xA001
    return crc


def wrap(data: bytes, *, modbus: bool = False, declared: int | None = None) -> bytes:
    """Frame a data segment with the reference CRC (not the code under test)."""
    crc = ref_crc_modbus(data) if modbus else ref_crc_hj212(data)
    length = len(data) if declared is None else declared
    return b"##%04d%s%04X\r\n" % (length, data, crc)


def seg(cp: str, *, flag: str = "5", mn: str = MN24, extra_head: str = "", st: str = "22") -> bytes:
    """A data segment with the example's header and the given CP body."""
    return (
        f"QN=20160801085857223;ST={st};CN=2011;PW=123456;MN={mn};Flag={flag};{extra_head}"
        f"CP=&&{cp}&&"
    ).encode()


# --- the standard's example ------------------------------------------------------------------


def test_example_length_and_crc_by_hand() -> None:
    assert len(EXAMPLE_DATA) == 101
    assert ref_crc_hj212(EXAMPLE_DATA) == 0x1C80
    assert crc_hj212(EXAMPLE_DATA) == 0x1C80
    assert crc16(EXAMPLE_DATA) == 0x1C80


def test_example_parses() -> None:
    p = parse(EXAMPLE)
    assert p == Packet(
        qn="20160801085857223",
        st="32",
        cn="1062",
        pw="100000",
        mn=MN24,
        flag=5,
        pnum=None,
        pno=None,
        data_time=None,
        factors={},
        cp_extra={"RtdInterval": "30"},
    )
    assert p.reply_requested is True
    assert p.split is False
    assert p.version == 1


def test_example_without_trailing_crlf() -> None:
    assert parse(EXAMPLE[:-2]) == parse(EXAMPLE)


def test_example_rebuilds_byte_for_byte() -> None:
    assert build(parse(EXAMPLE)) == EXAMPLE


def test_bad_crc_message() -> None:
    with pytest.raises(CrcError, match=r"^bad CRC: got 1C81, expected 1C80$"):
        parse(EXAMPLE.replace(b"1C80", b"1C81"))


def test_lower_case_crc_is_a_frame_error() -> None:
    with pytest.raises(FrameError, match="upper-case hex"):
        parse(EXAMPLE.replace(b"1C80", b"1c80"))


def test_errors_are_value_errors() -> None:
    for cls in (FrameError, LengthError, CrcError, FieldError, UnknownFactorError):
        assert issubclass(cls, Hj212Error)
    assert issubclass(Hj212Error, ValueError)


# --- CRC -------------------------------------------------------------------------------------


def test_modbus_catalogue_check_value() -> None:
    # CRC-16/MODBUS check value from the CRC catalogue: "123456789" → 0x4B37.
    assert ref_crc_modbus(b"123456789") == 0x4B37
    assert crc_modbus(b"123456789") == 0x4B37


def test_crc_tables_match_bit_loop_on_every_single_byte() -> None:
    for b in range(256):
        assert crc_hj212(bytes([b])) == ref_crc_hj212(bytes([b]))
        assert crc_modbus(bytes([b])) == ref_crc_modbus(bytes([b]))


@given(st.binary(max_size=1100))
def test_crc_tables_match_bit_loop(data: bytes) -> None:
    assert crc_hj212(data) == ref_crc_hj212(data)
    assert crc_modbus(data) == ref_crc_modbus(data)
    assert crc16(data, "modbus") == ref_crc_modbus(data)


def test_crc_of_empty_input_is_init() -> None:
    assert crc_hj212(b"") == 0xFFFF
    assert crc_modbus(b"") == 0xFFFF


def test_modbus_accepted_only_when_configured() -> None:
    # Worked with the MODBUS bit-loop: the example's data segment gives 0759.
    assert ref_crc_modbus(EXAMPLE_DATA) == 0x0759
    modbus_frame = b"##0101" + EXAMPLE_DATA + b"0759\r\n"
    with pytest.raises(CrcError, match=r"^bad CRC: got 0759, expected 1C80$"):
        parse(modbus_frame)
    lenient = Leniency(crc="modbus")
    assert parse(modbus_frame, lenient) == parse(EXAMPLE)
    # A device configured for MODBUS does not get the standard's CRC for free.
    with pytest.raises(CrcError, match=r"^bad CRC: got 1C80, expected 0759$"):
        parse(EXAMPLE, lenient)
    assert build(parse(EXAMPLE), crc="modbus") == modbus_frame


# --- length ----------------------------------------------------------------------------------


def test_length_mismatch_message_and_leniency() -> None:
    data = EXAMPLE_DATA.replace(b"RtdInterval=30", b"RtdInter=3")
    assert len(data) == 97  # 101 - 4 characters removed, counted by hand
    frame = wrap(data, declared=101)
    with pytest.raises(LengthError, match=r"^length 0101 declared, 0097 found$"):
        parse(frame)
    p = parse(frame, Leniency(length_mismatch=True))
    assert p.cp_extra == {"RtdInter": "3"}


def test_length_counting_crc_and_crlf_is_a_mismatch() -> None:
    # Some firmware declares data + CRC + CR LF (101 + 6): only the leniency accepts it.
    frame = b"##0107" + EXAMPLE_DATA + b"1C80\r\n"
    with pytest.raises(LengthError, match=r"^length 0107 declared, 0101 found$"):
        parse(frame)
    assert parse(frame, Leniency(length_mismatch=True)).mn == MN24


def test_data_segment_of_exactly_1024_is_accepted() -> None:
    head = seg("RtdInterval=30;Pad=")
    data = head[:-2] + b"x" * (1024 - len(head)) + b"&&"
    assert len(data) == 1024
    assert parse(wrap(data)).cp_extra["Pad"] == "x" * (1024 - len(head))


def test_data_segment_over_1024_is_rejected() -> None:
    head = seg("Pad=")
    data = head[:-2] + b"x" * (1025 - len(head)) + b"&&"
    assert len(data) == 1025
    for frame in (wrap(data), wrap(data)[:-2]):
        with pytest.raises(LengthError, match=r"^data segment over 1024 characters$"):
            parse(frame)
    # Even with a lenient length, the limit stands; and huge input is refused up front.
    with pytest.raises(LengthError, match=r"^data segment over 1024 characters$"):
        parse(wrap(data, declared=1000), Leniency(length_mismatch=True))
    with pytest.raises(LengthError, match=r"^data segment over 1024 characters$"):
        parse(b"##0101" + b"A" * 10_000_000)


def test_build_refuses_over_limit() -> None:
    p = parse(EXAMPLE)
    big = Packet(
        qn=p.qn, st=p.st, cn=p.cn, pw=p.pw, mn=p.mn, flag=p.flag, cp_extra={"Pad": "x" * 1000}
    )
    with pytest.raises(LengthError, match=r"^data segment over 1024 characters$"):
        build(big)


# --- header fields ---------------------------------------------------------------------------


def test_bad_qn_message() -> None:
    data = EXAMPLE_DATA.replace(b"QN=20160801085857223", b"QN=2016080108585722")
    with pytest.raises(FieldError, match=r"^bad QN 2016080108585722: expected 17 digits$"):
        parse(wrap(data))


def test_missing_mn_message() -> None:
    data = EXAMPLE_DATA.replace(b"MN=010000A8900016F000169DC0;", b"")
    with pytest.raises(FieldError, match=r"^missing MN$"):
        parse(wrap(data))


@pytest.mark.parametrize("key", ["QN", "ST", "CN", "PW", "Flag"])
def test_missing_header_fields(key: str) -> None:
    fields = [
        f
        for f in EXAMPLE_DATA.split(b";CP=")[0].split(b";")
        if not f.startswith(key.encode() + b"=")
    ]
    data = b";".join(fields) + b";CP=&&RtdInterval=30&&"
    with pytest.raises(FieldError, match=rf"^missing {key}$"):
        parse(wrap(data))


def test_duplicate_and_unknown_header_fields() -> None:
    with pytest.raises(FieldError, match=r"^duplicate ST$"):
        parse(wrap(seg("", extra_head="ST=22;")))
    with pytest.raises(FieldError, match=r"^unknown header field XX$"):
        parse(wrap(seg("", extra_head="XX=1;")))


def test_short_mn_leniency() -> None:
    frame = wrap(seg("", mn="ZX00001"))
    with pytest.raises(FieldError, match=r"^bad MN ZX00001: expected 24 letters or digits$"):
        parse(frame)
    assert parse(frame, Leniency(short_mn=True)).mn == "ZX00001"
    # Longer than 24 is never accepted, nor separators or an empty MN.
    for mn in (MN24 + "0", "", "AB_CD"):
        with pytest.raises(FieldError, match="bad MN"):
            parse(wrap(seg("", mn=mn)), Leniency(short_mn=True))


@pytest.mark.parametrize(
    ("flag", "reply", "split", "version"),
    [("4", False, False, 1), ("5", True, False, 1), ("9", True, False, 2), ("0", False, False, 0)],
)
def test_flags_accepted(flag: str, reply: bool, split: bool, version: int) -> None:
    p = parse(wrap(seg("", flag=flag)))
    assert (p.flag, p.reply_requested, p.split, p.version) == (int(flag), reply, split, version)


@pytest.mark.parametrize("flag", ["256", "-1", "x", "", "0005"])
def test_bad_flag(flag: str) -> None:
    with pytest.raises(FieldError, match="bad Flag"):
        parse(wrap(seg("", flag=flag)))


def test_pnum_pno() -> None:
    p = parse(wrap(seg("", flag="7", extra_head="PNUM=3;PNO=2;")))
    assert (p.pnum, p.pno, p.split, p.reply_requested, p.version) == (3, 2, True, True, 1)
    assert parse(build(p)) == p
    assert b";Flag=7;PNUM=3;PNO=2;CP=&&" in build(p)


def test_pnum_pno_errors() -> None:
    with pytest.raises(FieldError, match=r"^missing PNUM: Flag 7 has the split bit set$"):
        parse(wrap(seg("", flag="7")))
    with pytest.raises(FieldError, match=r"^missing PNO: Flag 6 has the split bit set$"):
        parse(wrap(seg("", flag="6", extra_head="PNUM=2;")))
    with pytest.raises(FieldError, match=r"^bad PNO 4: expected 1-3$"):
        parse(wrap(seg("", flag="7", extra_head="PNUM=3;PNO=4;")))
    with pytest.raises(FieldError, match=r"^bad PNUM 0: expected 1-9999$"):
        parse(wrap(seg("", flag="7", extra_head="PNUM=0;PNO=0;")))
    with pytest.raises(FieldError, match=r"^PNUM/PNO given but Flag 5 has no split bit$"):
        parse(wrap(seg("", flag="5", extra_head="PNUM=3;PNO=2;")))


def test_split_without_pnum_leniency() -> None:
    p = parse(wrap(seg("", flag="7")), Leniency(split_without_pnum=True))
    assert (p.split, p.pnum, p.pno) == (True, None, None)


# --- CP: DataTime, factors, flags ------------------------------------------------------------


def test_water_packet() -> None:
    cp = (
        "DataTime=20240315140000;"
        "w01001-Avg=7.42,w01001-Flag=N;w01009-Avg=8.1,w01009-Flag=N;"
        "w21003-Avg=0.412,w21003-Min=0.39,w21003-Max=0.45,w21003-Flag=M;"
        "w21011-Avg=0.08,w21011-Flag=S,w21011-SampleTime=20240315134000"
    )
    p = parse(wrap(seg(cp, st="21")))
    assert ST_KIND[p.st] == "water"
    assert CN_DATA_KIND[p.cn] == "rtd"
    assert p.data_time == datetime(2024, 3, 15, 14, 0, 0)
    assert p.data_time.tzinfo is None
    assert p.factors["w01001"] == FactorValue(code="w01001", avg=7.42, flag="N")
    nh3 = p.factors["w21003"]
    assert (nh3.avg, nh3.min, nh3.max, nh3.flag, nh3.valid) == (0.412, 0.39, 0.45, "M", False)
    tp = p.factors["w21011"]
    assert (tp.flag, tp.valid, tp.extra) == ("S", True, {"SampleTime": "20240315134000"})


def test_all_data_flags_kept_as_strings() -> None:
    assert set("NSFMDCTB") == DATA_FLAGS
    assert {"N", "S"} == VALID_FLAGS
    for f in "NSFMDCTB":
        p = parse(wrap(seg(f"a34004-Rtd=35,a34004-Flag={f}")))
        assert p.factors["a34004"].flag == f
        assert p.factors["a34004"].valid is (f in "NS")
    with pytest.raises(FieldError, match=r"^bad data flag P for a34004"):
        parse(wrap(seg("a34004-Rtd=35,a34004-Flag=P")))


def test_trailing_semicolon_in_cp_is_accepted() -> None:
    p = parse(wrap(seg("a34004-Rtd=35,a34004-Flag=N;")))
    assert p.factors["a34004"].rtd == 35.0


@pytest.mark.parametrize("value", ["nan", "inf", "1e5", " 1", "1_0", "", "-", ".", "+1", "0x10"])
def test_bad_numbers_rejected(value: str) -> None:
    with pytest.raises(FieldError, match="bad a34004-Rtd value"):
        parse(wrap(seg(f"a34004-Rtd={value}")))


@pytest.mark.parametrize(
    ("text", "value"), [("-12.5", -12.5), ("25", 25.0), ("0.", 0.0), (".5", 0.5)]
)
def test_plain_decimals_accepted(text: str, value: float) -> None:
    assert parse(wrap(seg(f"a01001-Rtd={text}"))).factors["a01001"].rtd == value


@pytest.mark.parametrize(
    "dt", ["20160230084000", "2016080108400", "2016080108400x", "20161301000000"]
)
def test_bad_data_time(dt: str) -> None:
    with pytest.raises(FieldError, match="bad DataTime"):
        parse(wrap(seg(f"DataTime={dt}")))


def test_unknown_factor_and_leniency() -> None:
    frame = wrap(seg("DataTime=20240315140000;w99999-Rtd=1.0,w99999-Flag=N;a34004-Rtd=35"))
    with pytest.raises(UnknownFactorError, match=r"^unknown factor w99999$"):
        parse(frame)
    p = parse(frame, Leniency(unknown_factors=True))
    assert p.factors == {"a34004": FactorValue(code="a34004", rtd=35.0)}
    assert p.cp_extra == {"w99999-Rtd": "1.0", "w99999-Flag": "N"}


def test_unknown_suffix_on_known_factor() -> None:
    with pytest.raises(FieldError, match=r"^unknown field a34004-Foo$"):
        parse(wrap(seg("a34004-Foo=1")))


def test_duplicates_in_cp() -> None:
    with pytest.raises(FieldError, match=r"^duplicate a34004-Rtd$"):
        parse(wrap(seg("a34004-Rtd=1;a34004-Rtd=2")))
    with pytest.raises(FieldError, match=r"^duplicate DataTime$"):
        parse(wrap(seg("DataTime=20240315140000;DataTime=20240315140000")))


def test_legacy_aliases() -> None:
    frame = wrap(seg("PM25-Rtd=35.0,PM25-Flag=N;SO2-Rtd=8;CO-Rtd=0.6"))
    with pytest.raises(UnknownFactorError, match=r"^unknown factor PM25$"):
        parse(frame)
    p = parse(frame, Leniency(legacy_aliases=True))
    assert p.factors["a34004"] == FactorValue(code="a34004", rtd=35.0, flag="N")
    assert p.factors["a21026"].rtd == 8.0
    assert p.factors["a21005"].rtd == 0.6
    assert LEGACY_ALIASES == {
        "PM25": "a34004",
        "PM10": "a34002",
        "SO2": "a21026",
        "NO2": "a21004",
        "CO": "a21005",
        "O3": "a05024",
    }


def test_alias_map_parameter() -> None:
    frame = wrap(seg("TEM-Rtd=21.5;PM25-Rtd=35"))
    p = parse(frame, aliases={"TEM": "a01001", "PM25": "a34004"})
    assert p.factors["a01001"].rtd == 21.5
    assert p.factors["a34004"].rtd == 35.0
    # An alias pointing outside FACTORS does not smuggle the code in.
    with pytest.raises(UnknownFactorError, match=r"^unknown factor TSP$"):
        parse(wrap(seg("TSP-Rtd=1")), aliases={"TSP": "a34001"})


def test_alias_and_code_in_one_packet_is_a_duplicate() -> None:
    with pytest.raises(FieldError, match=r"^duplicate a34004-Rtd$"):
        parse(wrap(seg("PM25-Rtd=35;a34004-Rtd=36")), Leniency(legacy_aliases=True))


def test_factor_table() -> None:
    assert len(FACTORS) == 22
    assert FACTORS["w21011"] == ("tp_mg_l", "mg/L")
    assert FACTORS["a34004"][0] == "pm25_ug_m3"
    # a01006 arrives in kPa (HJ 212); envgrid stores hPa: 101.02 kPa = 1010.2 hPa.
    field, value = to_envgrid("a01006", 101.02)
    assert field == "pressure_hpa"
    assert value == pytest.approx(1010.2)
    assert to_envgrid("w01001", 7.4) == ("ph", 7.4)
    with pytest.raises(UnknownFactorError):
        to_envgrid("w99999", 1.0)


# --- reply -----------------------------------------------------------------------------------


def test_reply_to_flag_5_packet() -> None:
    p = parse(EXAMPLE)
    assert p.flag == 5 and p.reply_requested
    reply_data = (
        b"QN=20160801085857223;ST=91;CN=9014;PW=100000;MN=010000A8900016F000169DC0;Flag=4;CP=&&&&"
    )
    # 21 + 6 + 8 + 10 + 28 + 7 + 7 characters, counted field by field.
    assert len(reply_data) == 87
    expected = b"##0087" + reply_data + b"%04X\r\n" % ref_crc_hj212(reply_data)
    assert build_reply(p) == expected
    r = parse(expected)
    assert (r.qn, r.st, r.cn, r.flag, r.reply_requested, r.factors, r.cp_extra) == (
        p.qn,
        "91",
        "9014",
        4,
        False,
        {},
        {},
    )


def test_reply_with_modbus_crc() -> None:
    reply = build_reply(parse(EXAMPLE), crc="modbus")
    assert reply[-6:-2] == b"%04X" % ref_crc_modbus(reply[6:-6])


# --- real-world frames (third-party, published with their CRC) ---------------------------------

# An air station frame: 7-character MN, a34001 (TSP) and LA (noise) outside FACTORS.
AIR_SHORT_MN = (
    b"##0317QN=20191018104952418;ST=22;CN=2011;PW=123456;MN=ZX00001;Flag=5;CP=&&"
    b"DataTime=20191018104900;a34002-Rtd=30,a34002-Flag=N;a34004-Rtd=25,a34004-Flag=N;"
    b"a01001-Rtd=13.5,a01001-Flag=N;a01002-Rtd=43.8,a01002-Flag=N;a01008-Rtd=30,a01008-Flag=N;"
    b"a01007-Rtd=3.5,a01007-Flag=N;a34001-Rtd=132,a34001-Flag=N;LA-Rtd=66.8,LA-Flag=N&&AF01"
)

# The 2017 standard's appendix real-time example as circulated: Flag=7 without PNUM/PNO,
# the "LA-td" typo, a trailing ';' before '&&'.
APPENDIX_FLAG7 = (
    b"##0481QN=20160801085000001;ST=22;CN=2011;PW=123456;MN=010000A8900016F000169DC0;Flag=7;"
    b"CP=&&DataTime=20160801084000;a21005-Rtd=1.1,a21005-Flag=N;a21004-Rtd=112,a21004-Flag=N;"
    b"a21026-Rtd=58,a21026-Flag=N;a21030-Rtd=64,a21030-Flag=N;LA-td=50.1,LA-Flag=N;"
    b"a34004-Rtd=207,a34004-Flag=N;a34002-Rtd=295,a34002-Flag=N;a01001-Rtd=12.6,a01001-Flag=N;"
    b"a01002-Rtd=32,a01002-Flag=N;a01006-Rtd=101.02,a01006-Flag=N;a01007-Rtd=2.1,a01007-Flag=N;"
    b"a01008-Rtd=120,a01008-Flag=N;a34001-Rtd=217,a34001-Flag=N;&&5CC0\r\n"
)


def test_real_world_air_frame() -> None:
    with pytest.raises(FieldError, match=r"^bad MN ZX00001"):
        parse(AIR_SHORT_MN)
    p = parse(AIR_SHORT_MN, Leniency(short_mn=True, unknown_factors=True))
    assert p.data_time == datetime(2019, 10, 18, 10, 49, 0)
    assert p.factors["a34004"] == FactorValue(code="a34004", rtd=25.0, flag="N")
    assert p.factors["a01002"].rtd == 43.8
    assert p.cp_extra == {"a34001-Rtd": "132", "a34001-Flag": "N", "LA-Rtd": "66.8", "LA-Flag": "N"}


def test_real_world_appendix_flag7_frame() -> None:
    with pytest.raises(FieldError, match=r"^missing PNUM: Flag 7 has the split bit set$"):
        parse(APPENDIX_FLAG7)
    lenient = Leniency(split_without_pnum=True, unknown_factors=True)
    p = parse(APPENDIX_FLAG7, lenient)
    assert (p.version, p.split, p.reply_requested, p.pnum) == (1, True, True, None)
    assert p.factors["a34004"].rtd == 207.0
    assert p.factors["a01006"].rtd == 101.02
    assert "LA-td" in p.cp_extra and "a21030-Rtd" in p.cp_extra


# --- hypothesis: round trip, flipped bytes, garbage --------------------------------------------

DIGITS = "0123456789"
ALNUM = string.ascii_letters + string.digits
SAFE = "".join(chr(c) for c in range(32, 127) if chr(c) not in ";,=&")

numbers = st.one_of(
    st.integers(-(10**9), 10**9).map(lambda n: n / 1000),
    # Bounded away from zero so the plain-decimal text stays short (1e-300 is 300 characters).
    st.floats(min_value=1e-6, max_value=1e9),
    st.floats(min_value=-1e9, max_value=-1e-6),
    st.just(0.0),
)
opt_number = st.none() | numbers


@st.composite
def factor_values(draw: st.DrawFn, code: str) -> FactorValue:
    fv = FactorValue(
        code=code,
        rtd=draw(opt_number),
        avg=draw(opt_number),
        min=draw(opt_number),
        max=draw(opt_number),
        cou=draw(opt_number),
        flag=draw(st.none() | st.sampled_from(sorted(DATA_FLAGS))),
        extra=draw(
            st.dictionaries(
                st.sampled_from(["ZsRtd", "EFlag", "SampleTime"]),
                st.text(SAFE, max_size=14),
                max_size=2,
            )
        ),
    )
    has_value = any(v is not None for v in (fv.rtd, fv.avg, fv.min, fv.max, fv.cou, fv.flag))
    assume(has_value or fv.extra)
    return fv


@st.composite
def packets(draw: st.DrawFn, short_mn: bool = False) -> Packet:
    flag = draw(st.integers(0, 255))
    pnum = pno = None
    if flag & 2:
        pnum = draw(st.integers(1, 9999))
        pno = draw(st.integers(1, pnum))
    codes = draw(st.lists(st.sampled_from(sorted(FACTORS)), max_size=3, unique=True))
    data_time = draw(st.none() | st.datetimes().map(lambda d: d.replace(microsecond=0)))
    return Packet(
        qn=draw(st.text(DIGITS, min_size=17, max_size=17)),
        st=draw(st.text(DIGITS, min_size=2, max_size=2)),
        cn=draw(st.text(DIGITS, min_size=4, max_size=4)),
        pw=draw(st.text(SAFE, min_size=6, max_size=6)),
        mn=draw(st.text(ALNUM, min_size=1 if short_mn else 24, max_size=24)),
        flag=flag,
        pnum=pnum,
        pno=pno,
        data_time=data_time,
        factors={c: draw(factor_values(c)) for c in codes},
        cp_extra=draw(
            st.dictionaries(
                st.text(string.ascii_letters, min_size=1, max_size=8).filter(
                    lambda k: k != "DataTime"
                ),
                st.text(SAFE, max_size=10),
                max_size=2,
            )
        ),
    )


def build_or_skip(p: Packet, crc: str = "hj212") -> bytes:
    try:
        return build(p, crc="modbus" if crc == "modbus" else "hj212")
    except LengthError:
        assume(False)
        raise


@settings(max_examples=300)
@given(packets(), st.sampled_from(["hj212", "modbus"]))
def test_round_trip_is_lossless(p: Packet, crc: str) -> None:
    frame = build_or_skip(p, crc)
    leniency = Leniency(crc="modbus") if crc == "modbus" else STRICT
    assert parse(frame, leniency) == p
    assert parse(frame[:-2], leniency) == p
    # The frame is self-consistent by the reference algorithms, not just by the codec.
    data = frame[6:-6]
    assert int(frame[2:6]) == len(data)
    ref = ref_crc_modbus(data) if crc == "modbus" else ref_crc_hj212(data)
    assert frame[-6:-2] == b"%04X" % ref


@given(packets(short_mn=True))
def test_round_trip_short_mn(p: Packet) -> None:
    assert parse(build_or_skip(p), Leniency(short_mn=True)) == p


@settings(max_examples=300)
@given(packets(), st.data())
def test_flipped_byte_in_data_segment_is_caught(p: Packet, data: st.DataObject) -> None:
    frame = bytearray(build_or_skip(p))
    at = data.draw(st.integers(6, len(frame) - 7), label="offset")
    frame[at] ^= data.draw(st.integers(1, 255), label="xor")
    # Every changed byte changes the register's high byte (a bijection), so the CRC catches it.
    with pytest.raises(CrcError):
        parse(bytes(frame))


@given(st.integers(0, len(EXAMPLE_DATA) - 1), st.integers(1, 255))
def test_flipped_byte_in_example_is_caught(at: int, xor: int) -> None:
    frame = bytearray(EXAMPLE)
    frame[6 + at] ^= xor
    with pytest.raises(CrcError, match=r"^bad CRC: got 1C80, expected [0-9A-F]{4}$"):
        parse(bytes(frame))


leniencies = st.builds(
    Leniency,
    short_mn=st.booleans(),
    length_mismatch=st.booleans(),
    crc=st.sampled_from(["hj212", "modbus"]),
    unknown_factors=st.booleans(),
    legacy_aliases=st.booleans(),
    split_without_pnum=st.booleans(),
)


def parse_or_hj212_error(frame: bytes, leniency: Leniency = STRICT) -> None:
    with contextlib.suppress(Hj212Error):
        parse(frame, leniency)


@settings(max_examples=500)
@given(st.binary(max_size=1100), leniencies)
def test_random_bytes_raise_only_hj212_error(frame: bytes, leniency: Leniency) -> None:
    parse_or_hj212_error(frame, leniency)
    parse_or_hj212_error(b"##0101" + frame, leniency)


TOKENS = [
    "QN=", "20160801085857223", "ST=", "22", "CN=", "2011", "PW=", "123456", "MN=", MN24,
    "Flag=", "7", "5", "PNUM=", "PNO=", "3", "0", "CP=&&", "&&", "&", ";", ",", "=", "-",
    "DataTime=", "20160230084000", "20240315140000", "a34004", "PM25", "w99999", "-Rtd=",
    "-Flag=", "-SampleTime=", "N", "P", "nan", "1e5", ".", "12.5", "\x00", "\xe9", " ", "\r\n",
]  # fmt: skip


@settings(max_examples=500)
@given(st.lists(st.sampled_from(TOKENS), max_size=80), leniencies, st.booleans())
def test_well_framed_garbage_raises_only_hj212_error(
    tokens: list[str], leniency: Leniency, modbus: bool
) -> None:
    # A valid envelope (length and CRC right) pushes garbage through to the field parser.
    data = "".join(tokens).encode("utf-8")
    parse_or_hj212_error(wrap(data, modbus=modbus), leniency)


@given(packets(), st.data(), leniencies)
def test_mutated_segments_raise_only_hj212_error(
    p: Packet, data: st.DataObject, leniency: Leniency
) -> None:
    segment = bytearray(build_or_skip(p)[6:-6])
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(segment)))
        op = data.draw(st.sampled_from(["insert", "delete", "replace"]))
        byte = data.draw(st.sampled_from(list(b";,=&-#.\x00\xff0aN")))
        if op == "insert":
            segment.insert(at, byte)
        elif at < len(segment):
            if op == "delete":
                del segment[at]
            else:
                segment[at] = byte
    parse_or_hj212_error(wrap(bytes(segment)), leniency)


def test_build_rejects_unsafe_values() -> None:
    p = parse(EXAMPLE)
    with pytest.raises(FieldError):
        build(Packet(qn=p.qn, st=p.st, cn=p.cn, pw="12;456", mn=p.mn, flag=5))
    with pytest.raises(FieldError):
        build(Packet(qn=p.qn, st=p.st, cn=p.cn, pw=p.pw, mn=p.mn, flag=5, cp_extra={"a-b": "1"}))
    with pytest.raises(FieldError, match="not finite"):
        build(
            Packet(
                qn=p.qn,
                st=p.st,
                cn=p.cn,
                pw=p.pw,
                mn=p.mn,
                flag=5,
                factors={"a34004": FactorValue(code="a34004", rtd=float("nan"))},
            )
        )
    with pytest.raises(FieldError, match="whole seconds"):
        build(
            Packet(
                qn=p.qn,
                st=p.st,
                cn=p.cn,
                pw=p.pw,
                mn=p.mn,
                flag=5,
                data_time=datetime(2024, 1, 1, 0, 0, 0, 5),
            )
        )


def test_build_writes_plain_decimals() -> None:
    p = Packet(
        qn="20240315140000000",
        st="22",
        cn="2011",
        pw="123456",
        mn=MN24,
        flag=4,
        data_time=datetime(1999, 1, 2, 3, 4, 5),
        factors={"a21005": FactorValue(code="a21005", rtd=1e-05, avg=1e20, flag="N")},
    )
    frame = build(p)
    assert b"DataTime=19990102030405;a21005-Rtd=0.00001,a21005-Avg=100000000000000000000," in frame
    assert parse(frame) == p
