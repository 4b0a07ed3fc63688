"""HJ 212-2017 frame codec: parse and build the packets environment stations send.

Pure functions only (no I/O), so the gateway, the MQTT path and the simulator share one codec.
Every input is bounded before it is decoded: a frame is at most 2 + 4 + 1024 + 4 + 2 bytes, and
nothing here allocates in proportion to anything larger than that.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Final, Literal

__all__ = [
    "CN_DATA_KIND",
    "DATA_FLAGS",
    "FACTORS",
    "FACTOR_SCALE",
    "LEGACY_ALIASES",
    "MAX_DATA_LEN",
    "MAX_FRAME_LEN",
    "STRICT",
    "ST_KIND",
    "VALID_FLAGS",
    "CrcError",
    "CrcVariant",
    "FactorValue",
    "FieldError",
    "FrameError",
    "Hj212Error",
    "LengthError",
    "Leniency",
    "Packet",
    "UnknownFactorError",
    "build",
    "build_reply",
    "crc16",
    "crc_hj212",
    "crc_modbus",
    "parse",
    "to_envgrid",
]

# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


class Hj212Error(ValueError):
    """Any reason a frame cannot be parsed or built; the only exception `parse` raises."""


class FrameError(Hj212Error):
    """The envelope is wrong: header, length or CRC field syntax, CP=&&..&&, non-ASCII bytes."""


class LengthError(Hj212Error):
    """The declared length does not match the data segment, or the segment is over the limit."""


class CrcError(Hj212Error):
    """The CRC in the frame does not match the data segment."""


class FieldError(Hj212Error):
    """A header or CP field is missing, duplicated or malformed."""


class UnknownFactorError(FieldError):
    """A factor code that is neither in FACTORS nor an allowed alias."""


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------

# HJ 212-2017 communication packet: "##" + 4-digit length + data segment (0–1024 characters)
# + 4 hex CRC + CR LF.
MAX_DATA_LEN: Final = 1024
MAX_FRAME_LEN: Final = 2 + 4 + MAX_DATA_LEN + 4 + 2

# HJ 212-2017 pollutant (factor) codes, as listed in standards.md: code → (envgrid field,
# envgrid unit). Water: GB 3838 basic items as sent by surface-water stations (ST=21).
# Air: HJ 633 pollutants and meteorology as sent by air-quality stations (ST=22).
FACTORS: Final[dict[str, tuple[str, str]]] = {
    "w01001": ("ph", "1"),
    "w01009": ("do_mg_l", "mg/L"),
    "w01010": ("temp_c", "°C"),
    "w01014": ("conductivity_us_cm", "µS/cm"),
    "w01003": ("turbidity_ntu", "NTU"),
    "w01017": ("bod5_mg_l", "mg/L"),
    "w01018": ("cod_mg_l", "mg/L"),
    "w01019": ("codmn_mg_l", "mg/L"),
    "w21001": ("tn_mg_l", "mg/L"),
    "w21003": ("nh3n_mg_l", "mg/L"),
    "w21011": ("tp_mg_l", "mg/L"),
    "a34004": ("pm25_ug_m3", "µg/m³"),
    "a34002": ("pm10_ug_m3", "µg/m³"),
    "a21026": ("so2_ug_m3", "µg/m³"),
    "a21004": ("no2_ug_m3", "µg/m³"),
    "a21005": ("co_mg_m3", "mg/m³"),
    "a05024": ("o3_ug_m3", "µg/m³"),
    "a01001": ("temp_c", "°C"),
    "a01002": ("rh_pct", "%"),
    "a01006": ("pressure_hpa", "hPa"),
    "a01007": ("wind_speed_m_s", "m/s"),
    "a01008": ("wind_dir_deg", "°"),
}

# HJ 212-2017 sends a01006 (pressure) in kPa; envgrid stores hPa, hence ×10. Factors not listed
# here are stored as sent (per-device unit quirks, e.g. PM in ng/m³, belong to device config).
FACTOR_SCALE: Final[dict[str, float]] = {"a01006": 10.0}

# Pre-2017 firmware names seen in the field (standards.md "legacy names"); only honoured when
# Leniency.legacy_aliases is set or the caller passes its own alias map.
LEGACY_ALIASES: Final[dict[str, str]] = {
    "PM25": "a34004",
    "PM10": "a34002",
    "SO2": "a21026",
    "NO2": "a21004",
    "CO": "a21005",
    "O3": "a05024",
}

# HJ 212-2017 system codes (ST) that envgrid ingests.
ST_KIND: Final[dict[str, str]] = {"21": "water", "22": "air"}

# HJ 212-2017 command codes (CN) for uploaded data: 2011 real-time, 2051 minute, 2061 hourly,
# 2031 daily.
CN_DATA_KIND: Final[dict[str, str]] = {
    "2011": "rtd",
    "2051": "minute",
    "2061": "hourly",
    "2031": "daily",
}

# HJ 212-2017 data flags: N normal, S set value (both valid); F stopped, M maintenance,
# D fault, C calibration, T over range, B communication fault (invalid: keep, flag, exclude).
DATA_FLAGS: Final[frozenset[str]] = frozenset("NSFMDCTB")
VALID_FLAGS: Final[frozenset[str]] = frozenset({"N", "S"})

# HJ 212-2017 data-area suffixes: the numeric ones become FactorValue attributes.
_NUMERIC_SUFFIXES: Final[dict[str, str]] = {
    "Rtd": "rtd",
    "Avg": "avg",
    "Min": "min",
    "Max": "max",
    "Cou": "cou",
}
# Other HJ 212-2017 suffixes (converted "Zs" values of pollution sources, equipment flag,
# sample time) are kept verbatim in FactorValue.extra rather than rejected.
_EXTRA_SUFFIXES: Final[frozenset[str]] = frozenset(
    {"ZsRtd", "ZsAvg", "ZsMin", "ZsMax", "EFlag", "SampleTime"}
)

_KNOWN_SUFFIXES: Final[frozenset[str]] = frozenset({*_NUMERIC_SUFFIXES, "Flag", *_EXTRA_SUFFIXES})

_HEADER_KEYS: Final[frozenset[str]] = frozenset(
    {"QN", "ST", "CN", "PW", "MN", "Flag", "PNUM", "PNO"}
)
_HEX_UPPER: Final[frozenset[int]] = frozenset(b"0123456789ABCDEF")
# Characters that would change how a built frame splits; values must never contain them.
_SEPARATORS: Final[frozenset[str]] = frozenset(";,=&")

# ---------------------------------------------------------------------------------------------
# CRC
# ---------------------------------------------------------------------------------------------

CrcVariant = Literal["hj212", "modbus"]


def _crc_table() -> tuple[int, ...]:
    # Eight shift/xor rounds of the reflected polynomial 0xA001 applied to each byte value.
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE: Final = _crc_table()


def crc_hj212(data: bytes) -> int:
    """HJ 212-2017's own CRC (not CRC-16/MODBUS) over `data`, the data segment only."""
    # The standard does `crc = (crc >> 8) ^ b` and then eight rounds. After that step the
    # register is below 256, so the eight rounds are a pure function of one byte: one table
    # lookup replaces them. (It also means the result only ever takes the 256 table values.)
    crc = 0xFFFF
    table = _CRC_TABLE
    for b in data:
        crc = table[(crc >> 8) ^ b]
    return crc


def crc_modbus(data: bytes) -> int:
    """CRC-16/MODBUS (init 0xFFFF, reflected poly 0xA001), used by some station firmware."""
    crc = 0xFFFF
    table = _CRC_TABLE
    for b in data:
        crc = (crc >> 8) ^ table[(crc ^ b) & 0xFF]
    return crc


def crc16(data: bytes, variant: CrcVariant = "hj212") -> int:
    """CRC of `data` with the given variant."""
    if variant == "hj212":
        return crc_hj212(data)
    if variant == "modbus":
        return crc_modbus(data)
    raise ValueError(f"unknown CRC variant {variant!r}")


# ---------------------------------------------------------------------------------------------
# Data model
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Leniency:
    """Per-device relaxations; the default instance is strict."""

    short_mn: bool = False  # accept an MN of 1–23 characters (standard: exactly 24)
    length_mismatch: bool = False  # ignore a declared length that differs from the segment
    crc: CrcVariant = "hj212"  # the device's CRC variant; only that variant is accepted
    unknown_factors: bool = False  # keep unknown factor fields in cp_extra instead of failing
    legacy_aliases: bool = False  # map LEGACY_ALIASES (PM25, SO2, ...) to HJ 212-2017 codes
    # The real-time upload example circulated with the standard (QN=20160801085000001) sends
    # Flag=7 (D bit set) without PNUM/PNO and firmware copied it: accept it as one packet.
    split_without_pnum: bool = False


STRICT: Final = Leniency()


@dataclass(frozen=True, slots=True)
class FactorValue:
    """One factor's values from a CP group; absent suffixes are None."""

    code: str
    rtd: float | None = None
    avg: float | None = None
    min: float | None = None
    max: float | None = None
    cou: float | None = None
    flag: str | None = None
    extra: dict[str, str] = field(default_factory=dict)  # ZsRtd, EFlag, SampleTime: verbatim

    @property
    def valid(self) -> bool:
        """True when the data flag is absent or marks the value valid (N, S)."""
        return self.flag is None or self.flag in VALID_FLAGS


@dataclass(frozen=True, slots=True)
class Packet:
    """A parsed HJ 212 data segment; data_time is naive station local time."""

    qn: str
    st: str
    cn: str
    pw: str
    mn: str
    flag: int
    pnum: int | None = None
    pno: int | None = None
    data_time: datetime | None = None
    factors: dict[str, FactorValue] = field(default_factory=dict)
    cp_extra: dict[str, str] = field(default_factory=dict)

    @property
    def reply_requested(self) -> bool:
        """Flag bit 0 (A): the station wants a 9014 data reply."""
        return bool(self.flag & 1)

    @property
    def split(self) -> bool:
        """Flag bit 1 (D): the packet is one part of a split message (PNUM/PNO present)."""
        return bool(self.flag & 2)

    @property
    def version(self) -> int:
        """Protocol version from Flag bits V5..V0: 1 = HJ 212-2017, 0 = HJ/T 212-2005."""
        return self.flag >> 2


def to_envgrid(code: str, value: float) -> tuple[str, float]:
    """Map a factor code and its wire value to (envgrid field, value in envgrid's unit)."""
    try:
        name = FACTORS[code][0]
    except KeyError:
        raise UnknownFactorError(f"unknown factor {_show(code)}") from None
    return name, value * FACTOR_SCALE.get(code, 1.0)


# ---------------------------------------------------------------------------------------------
# Parse
# ---------------------------------------------------------------------------------------------


def _show(text: str, limit: int = 40) -> str:
    # Error messages end up in logs: keep them one line and short whatever the input was.
    if len(text) > limit:
        text = text[:limit] + "..."
    return text if text.isprintable() else repr(text)[1:-1]


def _digits(text: str, lo: int, hi: int) -> bool:
    # str.isdigit alone accepts non-ASCII digits; everything reaching here was ASCII-decoded,
    # but check isascii anyway so the helper is safe on its own.
    return lo <= len(text) <= hi and text.isascii() and text.isdigit()


def _number(key: str, text: str) -> float:
    # HJ 212 values are plain decimals ("-12.3"). float() alone would also take "nan", "inf",
    # "1_0", " 1", "1e5": reject those rather than store them.
    body = text[1:] if text[:1] == "-" else text
    whole, _, frac = body.partition(".")
    if (whole or frac) and (not whole or whole.isdigit()) and (not frac or frac.isdigit()):
        return float(text)
    raise FieldError(f"bad {key} value {_show(text)}: expected a decimal number")


def _data_time(text: str) -> datetime:
    if not _digits(text, 14, 14):
        raise FieldError(f"bad DataTime {_show(text)}: expected YYYYMMDDhhmmss")
    try:
        return datetime(
            int(text[0:4]),
            int(text[4:6]),
            int(text[6:8]),
            int(text[8:10]),
            int(text[10:12]),
            int(text[12:14]),
        )
    except ValueError:
        raise FieldError(f"bad DataTime {text}: not a valid date and time") from None


def _header(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for item in text.split(";"):
        key, eq, value = item.partition("=")
        if not eq:
            raise FieldError(f"bad header field {_show(item)}: expected key=value")
        if key not in _HEADER_KEYS:
            raise FieldError(f"unknown header field {_show(key)}")
        if key in fields:
            raise FieldError(f"duplicate {key}")
        fields[key] = value
    return fields


def _require(fields: Mapping[str, str], key: str) -> str:
    value = fields.get(key)
    if value is None:
        raise FieldError(f"missing {key}")
    return value


def _split_data(data: str) -> tuple[str, str]:
    # The header ends at the first ";CP=&&" (header values cannot contain ';'); CP ends at the
    # final "&&" of the segment. str.find is linear, so no backtracking on hostile input.
    if data.startswith("CP=&&"):
        raise FieldError("missing QN")
    at = data.find(";CP=&&")
    if at < 0 or not data.endswith("&&") or len(data) < at + 8:
        raise FrameError("missing CP=&&...&&")
    return data[:at], data[at + 6 : -2]


def parse(
    frame: bytes,
    leniency: Leniency = STRICT,
    aliases: Mapping[str, str] | None = None,
) -> Packet:
    """Parse one HJ 212 frame (trailing CR LF optional); raise an Hj212Error subclass if bad.

    `aliases` maps extra device-specific factor names to HJ 212-2017 codes.
    """
    n = len(frame)
    if n > MAX_FRAME_LEN:
        raise LengthError(f"data segment over {MAX_DATA_LEN} characters")
    if frame.endswith(b"\r\n"):
        frame = frame[:-2]
        n -= 2
    if n - 10 > MAX_DATA_LEN:
        raise LengthError(f"data segment over {MAX_DATA_LEN} characters")
    if n < 10:
        raise FrameError(f"frame too short: {n} bytes")
    if frame[:2] != b"##":
        raise FrameError("missing ## header")
    length_field = frame[2:6]
    if not length_field.isdigit():
        raise FrameError(f"bad length field {_show(length_field.decode('latin-1'))}")
    crc_field = frame[-4:]
    if not all(b in _HEX_UPPER for b in crc_field):
        raise FrameError(
            f"bad CRC field {_show(crc_field.decode('latin-1'))}: expected 4 upper-case hex digits"
        )
    raw = frame[6:-4]
    declared = int(length_field)
    if declared != len(raw) and not leniency.length_mismatch:
        raise LengthError(f"length {declared:04d} declared, {len(raw):04d} found")
    got = int(crc_field, 16)
    expected = crc16(raw, leniency.crc)
    if got != expected:
        raise CrcError(f"bad CRC: got {got:04X}, expected {expected:04X}")
    try:
        data = raw.decode("ascii")
    except UnicodeDecodeError as exc:
        raise FrameError(
            f"non-ASCII byte {raw[exc.start]:#04x} at offset {exc.start} of the data segment"
        ) from None
    return _parse_data(data, leniency, aliases)


def _parse_data(data: str, leniency: Leniency, aliases: Mapping[str, str] | None) -> Packet:
    head_text, cp = _split_data(data)
    head = _header(head_text)

    qn = _require(head, "QN")
    if not _digits(qn, 17, 17):
        raise FieldError(f"bad QN {_show(qn)}: expected 17 digits")
    st = _require(head, "ST")
    if not _digits(st, 2, 2):
        raise FieldError(f"bad ST {_show(st)}: expected 2 digits")
    cn = _require(head, "CN")
    if not _digits(cn, 4, 4):
        raise FieldError(f"bad CN {_show(cn)}: expected 4 digits")
    pw = _require(head, "PW")
    if len(pw) != 6 or not pw.isprintable() or not _SEPARATORS.isdisjoint(pw):
        raise FieldError(f"bad PW {_show(pw)}: expected 6 characters")
    mn = _require(head, "MN")
    mn_ok = len(mn) == 24 or (leniency.short_mn and 1 <= len(mn) < 24)
    if not (mn_ok and mn.isascii() and mn.isalnum()):
        want = "1 to 24" if leniency.short_mn else "24"
        raise FieldError(f"bad MN {_show(mn)}: expected {want} letters or digits")
    flag_text = _require(head, "Flag")
    if not _digits(flag_text, 1, 3) or int(flag_text) > 255:
        raise FieldError(f"bad Flag {_show(flag_text)}: expected a number 0-255")
    flag = int(flag_text)

    pnum, pno = _split_numbers(head, flag, leniency)

    data_time, factors, cp_extra = _parse_cp(cp, leniency, aliases)
    return Packet(
        qn=qn,
        st=st,
        cn=cn,
        pw=pw,
        mn=mn,
        flag=flag,
        pnum=pnum,
        pno=pno,
        data_time=data_time,
        factors=factors,
        cp_extra=cp_extra,
    )


def _split_numbers(
    head: Mapping[str, str], flag: int, leniency: Leniency
) -> tuple[int | None, int | None]:
    pnum_text = head.get("PNUM")
    pno_text = head.get("PNO")
    if not flag & 2:
        if pnum_text is not None or pno_text is not None:
            raise FieldError(f"PNUM/PNO given but Flag {flag} has no split bit")
        return None, None
    # HJ 212-2017 Flag bit D: the packet carries PNUM (total packets) and PNO (this packet).
    if pnum_text is None and pno_text is None and leniency.split_without_pnum:
        return None, None
    if pnum_text is None:
        raise FieldError(f"missing PNUM: Flag {flag} has the split bit set")
    if pno_text is None:
        raise FieldError(f"missing PNO: Flag {flag} has the split bit set")
    if not _digits(pnum_text, 1, 4) or int(pnum_text) < 1:
        raise FieldError(f"bad PNUM {_show(pnum_text)}: expected 1-9999")
    pnum = int(pnum_text)
    if not _digits(pno_text, 1, 4) or not 1 <= int(pno_text) <= pnum:
        raise FieldError(f"bad PNO {_show(pno_text)}: expected 1-{pnum}")
    return pnum, int(pno_text)


def _parse_cp(
    cp: str, leniency: Leniency, aliases: Mapping[str, str] | None
) -> tuple[datetime | None, dict[str, FactorValue], dict[str, str]]:
    data_time: datetime | None = None
    raw: dict[str, dict[str, str]] = {}
    extra: dict[str, str] = {}
    for group in cp.split(";"):
        if not group:
            # A trailing ';' before the closing && is common in the field and unambiguous.
            continue
        for item in group.split(","):
            key, eq, value = item.partition("=")
            if not eq or not key:
                raise FieldError(f"bad CP field {_show(item)}: expected key=value")
            # A second '=', a lone '&' or a control character: no frame build() could write, and
            # a key that would reach line protocol (issue 20, found by tests/fuzz).
            _safe("CP field", key)
            _safe(key, value)
            code, dash, suffix = key.partition("-")
            if not dash:
                if key == "DataTime":
                    if data_time is not None:
                        raise FieldError("duplicate DataTime")
                    data_time = _data_time(value)
                    continue
                if key in extra:
                    raise FieldError(f"duplicate {_show(key)}")
                extra[key] = value
                continue
            if not code or not suffix:
                raise FieldError(f"bad CP field {_show(item)}: expected code-Suffix=value")
            canonical = _canonical(code, leniency, aliases)
            if canonical is None:
                if not leniency.unknown_factors:
                    raise UnknownFactorError(f"unknown factor {_show(code)}")
                if key in extra:
                    raise FieldError(f"duplicate {_show(key)}")
                extra[key] = value
                continue
            if suffix not in _KNOWN_SUFFIXES:
                raise FieldError(f"unknown field {_show(key)}")
            values = raw.setdefault(canonical, {})
            if suffix in values:
                raise FieldError(f"duplicate {canonical}-{suffix}")
            values[suffix] = value
    factors = {code: _factor(code, values) for code, values in raw.items()}
    return data_time, factors, extra


def _canonical(code: str, leniency: Leniency, aliases: Mapping[str, str] | None) -> str | None:
    if code in FACTORS:
        return code
    target = None
    if aliases is not None:
        target = aliases.get(code)
    if target is None and leniency.legacy_aliases:
        target = LEGACY_ALIASES.get(code)
    # An alias pointing outside FACTORS is a config mistake: treat the code as unknown.
    return target if target in FACTORS else None


def _factor(code: str, values: dict[str, str]) -> FactorValue:
    nums: dict[str, float] = {}
    flag: str | None = None
    extra: dict[str, str] = {}
    for suffix, text in values.items():
        attr = _NUMERIC_SUFFIXES.get(suffix)
        if attr is not None:
            nums[attr] = _number(f"{code}-{suffix}", text)
        elif suffix == "Flag":
            if text not in DATA_FLAGS:
                raise FieldError(
                    f"bad data flag {_show(text)} for {code}: expected N S F M D C T B"
                )
            flag = text
        else:
            extra[suffix] = text
    return FactorValue(
        code=code,
        rtd=nums.get("rtd"),
        avg=nums.get("avg"),
        min=nums.get("min"),
        max=nums.get("max"),
        cou=nums.get("cou"),
        flag=flag,
        extra=extra,
    )


# ---------------------------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------------------------


def _safe(name: str, value: str) -> str:
    # build() is used by the simulator to produce quirky frames too (short MN, odd codes), so it
    # only refuses what would make the frame split differently when parsed back.
    if not value.isascii() or not value.isprintable() or not _SEPARATORS.isdisjoint(value):
        raise FieldError(f"bad {name} {_show(value)}: must be printable ASCII without ;,=&")
    return value


def _format_number(key: str, value: float) -> str:
    if not math.isfinite(value):
        raise FieldError(f"bad {key} value {value}: not finite")
    text = repr(float(value))
    if "e" in text or "E" in text:
        # Shortest round-trip digits, written without an exponent (HJ 212 has none).
        text = format(Decimal(text), "f")
    return text


def _format_time(t: datetime) -> str:
    if t.tzinfo is not None or t.microsecond:
        raise FieldError("DataTime must be naive local time with whole seconds")
    # Not strftime: %Y is not zero-padded for years < 1000 on every platform.
    return f"{t.year:04d}{t.month:02d}{t.day:02d}{t.hour:02d}{t.minute:02d}{t.second:02d}"


def _factor_group(fv: FactorValue) -> str:
    code = _safe("factor code", fv.code)
    if "-" in code or not code:
        raise FieldError(f"bad factor code {_show(code)}")
    items = []
    for suffix, attr in _NUMERIC_SUFFIXES.items():
        value = getattr(fv, attr)
        if value is not None:
            items.append(f"{code}-{suffix}={_format_number(f'{code}-{suffix}', value)}")
    for suffix, text in fv.extra.items():
        if suffix not in _EXTRA_SUFFIXES:
            raise FieldError(f"unknown field {_show(code)}-{_show(suffix)}")
        items.append(f"{code}-{suffix}={_safe(f'{code}-{suffix}', text)}")
    if fv.flag is not None:
        items.append(f"{code}-Flag={_safe(f'{code}-Flag', fv.flag)}")
    if not items:
        raise FieldError(f"factor {_show(code)} has no values")
    return ",".join(items)


def build(packet: Packet, crc: CrcVariant = "hj212") -> bytes:
    """Build the exact frame for `packet`, CR LF included, with the given CRC variant."""
    if not 0 <= packet.flag <= 255:
        raise FieldError(f"bad Flag {packet.flag}: expected a number 0-255")
    head = [
        f"QN={_safe('QN', packet.qn)}",
        f"ST={_safe('ST', packet.st)}",
        f"CN={_safe('CN', packet.cn)}",
        f"PW={_safe('PW', packet.pw)}",
        f"MN={_safe('MN', packet.mn)}",
        f"Flag={packet.flag:d}",
    ]
    if packet.pnum is not None:
        head.append(f"PNUM={packet.pnum:d}")
    if packet.pno is not None:
        head.append(f"PNO={packet.pno:d}")
    groups = []
    if packet.data_time is not None:
        groups.append(f"DataTime={_format_time(packet.data_time)}")
    for key, value in packet.cp_extra.items():
        if not key or "-" in key or key == "DataTime":
            raise FieldError(f"bad CP key {_show(key)}")
        groups.append(f"{_safe('CP key', key)}={_safe(key, value)}")
    groups.extend(_factor_group(fv) for fv in packet.factors.values())
    data = ";".join(head) + ";CP=&&" + ";".join(groups) + "&&"
    if len(data) > MAX_DATA_LEN:
        raise LengthError(f"data segment over {MAX_DATA_LEN} characters")
    raw = data.encode("ascii")
    return b"##%04d%s%04X\r\n" % (len(raw), raw, crc16(raw, crc))


def build_reply(packet: Packet, crc: CrcVariant = "hj212") -> bytes:
    """Build the data reply (ST=91, CN=9014, empty CP) with the same QN, in the packet's edition:
    Flag=4 (HJ 212-2017, and for 2005 packets) or the packet's version bits (2025: Flag=8)."""
    flag = packet.version << 2 if packet.version > 1 else 4
    reply = Packet(qn=packet.qn, st="91", cn="9014", pw=packet.pw, mn=packet.mn, flag=flag)
    return build(reply, crc)
