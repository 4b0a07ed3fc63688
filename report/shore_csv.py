"""The shore-power vessel register and berthing records: CSV files in, InfluxDB points out.

港口和船舶岸电管理办法 (交通运输部令 2019年第45号, amended 2021 and 2025) Art. 11 obliges a ship to
use shore power only when it is **equipped** to take it, is not a **liquid-cargo** ship, and
berths longer than 3 h (coastal) or 2 h (inland); faults, bad weather, emergencies and an
effective alternative excuse a call. The meters cannot tell any of this, so the usage rate's
denominator comes from two CSV files the port keeps anyway (Art. 18: berth, ship, berthing and
unberthing times):

- the **vessel register** (``envgrid shore vessels import FILE``) → ``shore_vessels``;
- the **berthing records** (``envgrid shore calls import FILE``) → ``shore_calls``.

Parsing is pure (:func:`parse_vessels`, :func:`parse_calls`): one bad row refuses the whole file,
with one line per problem naming ``file:line``. Each row becomes one point whose tags and
timestamp are fixed by the row's identity (vessel and ``valid_from``; berth, vessel and arrival),
and every field is always written, so importing a file twice stores it once.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Final
from zoneinfo import ZoneInfo

from devices.lineproto import encode_line, tag_problem

VESSELS: Final = "shore_vessels"
CALLS: Final = "shore_calls"
# The Measures took effect on 2020-02-01 (令2019年第45号): a register row without ``valid_from``
# describes the ship from then on.
REGISTER_SINCE: Final = date(2020, 2, 1)
# Art. 11's excuses for a call: a fault of the ship's or the berth's equipment, bad weather, an
# emergency (意外事故等紧急情况), and an effective alternative measure (有效替代措施).
EXEMPTIONS: Final[dict[str, str]] = {
    "fault": "fault",
    "故障": "fault",
    "bad_weather": "bad_weather",
    "恶劣气候": "bad_weather",
    "emergency": "emergency",
    "紧急情况": "emergency",
    "意外事故": "emergency",
    "alternative": "alternative",
    "有效替代措施": "alternative",
}
_YES = frozenset({"yes", "y", "true", "1", "是"})
_NO = frozenset({"no", "n", "false", "0", "否"})
_MMSI = re.compile(r"\d{9}")
_MAX_PROBLEMS = 20


class ShoreCsvError(ValueError):
    """A CSV file that cannot be imported; one line per problem, each naming file:line."""


@dataclass(frozen=True, slots=True)
class Vessel:
    """One vessel register row."""

    vessel: str  # the id the berthing records use (MMSI, registration number or name)
    name: str
    mmsi: str
    equipped: bool  # 具备受电设施
    liquid_cargo: bool  # 液货船: outside Art. 11's obligation
    exemption: str  # another reason the ship is never obliged (free text), or ""
    valid_from: date

    def line(self, tz: ZoneInfo) -> str:
        """The ``shore_vessels`` point: tag ``vessel``, stamped at local midnight of
        ``valid_from`` (a later row for the same ship supersedes it from its date)."""
        ts = int(datetime(*self.valid_from.timetuple()[:3], tzinfo=tz).timestamp() * 1000)
        line = encode_line(
            VESSELS,
            [("vessel", self.vessel)],
            [
                ("name", self.name),
                ("mmsi", self.mmsi),
                ("equipped", self.equipped),
                ("liquid_cargo", self.liquid_cargo),
                ("exemption", self.exemption),
            ],
            ts,
        )
        assert line is not None  # boolean fields are always storable
        return line


@dataclass(frozen=True, slots=True)
class Call:
    """One berthing record: a vessel at a berth (the site of its shore-power meter)."""

    vessel: str
    berth: str
    arrival_ms: int
    departure_ms: int
    exemption: str  # one of EXEMPTIONS' values, or ""

    def line(self) -> str:
        """The ``shore_calls`` point: tags ``site`` (the berth) and ``vessel``, stamped at the
        arrival; re-importing the row overwrites the same point."""
        line = encode_line(
            CALLS,
            [("site", self.berth), ("vessel", self.vessel)],
            [("departure_ms", self.departure_ms), ("exemption", self.exemption)],
            self.arrival_ms,
        )
        assert line is not None
        return line


def _rows(
    text: str, source: str, required: Sequence[str], optional: Sequence[str]
) -> Iterable[tuple[int, dict[str, str]]]:
    """(line number, row by lower-case column) of a CSV text; ShoreCsvError for a bad header."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    header: list[str] | None = None
    for row in reader:
        if not any(c.strip() for c in row):
            continue
        if header is None:
            header = [c.strip().lower() for c in row]
            missing = [c for c in required if c not in header]
            unknown = [c for c in header if c not in (*required, *optional)]
            if missing or unknown:
                what = []
                if missing:
                    what.append(f"missing column(s) {', '.join(missing)}")
                if unknown:
                    what.append(f"unknown column(s) {', '.join(unknown)}")
                raise ShoreCsvError(
                    f"{source}:{reader.line_num}: {'; '.join(what)}; the header must name "
                    f"{', '.join(required)} (optional: {', '.join(optional)})"
                )
            continue
        if len(row) > len(header):
            yield reader.line_num, {"__extra__": str(len(row))}
            continue
        yield (
            reader.line_num,
            {h: (row[i].strip() if i < len(row) else "") for i, h in enumerate(header)},
        )
    if header is None:
        raise ShoreCsvError(f"{source}:1: the file is empty; write a header line first")


def _flag(value: str) -> bool:
    v = value.strip().lower()
    if v in _YES:
        return True
    if v in _NO:
        return False
    raise ValueError(f"{value!r} is not yes or no; write yes/no (是/否, true/false, 1/0)")


def _name(value: str, what: str) -> str:
    if not value:
        raise ValueError(f"{what} is empty; give it")
    if len(value) > 64:
        raise ValueError(f"{what} {value!r} is longer than 64 characters; shorten it")
    if (problem := tag_problem(value)) is not None:
        raise ValueError(f"{what} {problem}; change it")
    return value


def _instant(value: str, what: str, tz: ZoneInfo) -> int:
    try:
        dt = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(
            f"{what} {value!r} is not a time; write e.g. 2026-11-03 08:30 (local) or "
            "2026-11-03T08:30+08:00"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz)
    return int(dt.timestamp() * 1000)


def _refuse(source: str, problems: list[str], rows: int) -> None:
    if problems:
        more = len(problems) - _MAX_PROBLEMS
        shown = problems[:_MAX_PROBLEMS] + ([f"{source}: … and {more} more"] if more > 0 else [])
        raise ShoreCsvError(
            "\n".join(shown) + f"\n{source}: nothing imported ({rows} rows): fix the rows above"
        )


def parse_vessels(text: str, source: str) -> list[Vessel]:
    """The vessel register; columns ``vessel, equipped, liquid_cargo`` and optionally
    ``name, mmsi, exemption, valid_from`` (YYYY-MM-DD). ShoreCsvError refuses the whole file."""
    out: list[Vessel] = []
    problems: list[str] = []
    seen: dict[tuple[str, date], int] = {}
    n = 0
    for line, row in _rows(
        text,
        source,
        ("vessel", "equipped", "liquid_cargo"),
        ("name", "mmsi", "exemption", "valid_from"),
    ):
        n += 1
        where = f"{source}:{line}"
        if "__extra__" in row:
            problems.append(f"{where}: more cells than the header has columns; quote a comma")
            continue
        try:
            vessel = _name(row["vessel"], "vessel")
            mmsi = row.get("mmsi", "")
            if mmsi and not _MMSI.fullmatch(mmsi):
                raise ValueError(f"mmsi {mmsi!r} is not 9 digits; correct it or leave it empty")
            raw_from = row.get("valid_from", "")
            try:
                valid_from = date.fromisoformat(raw_from) if raw_from else REGISTER_SINCE
            except ValueError:
                raise ValueError(
                    f"valid_from {raw_from!r} is not a date; write YYYY-MM-DD"
                ) from None
            v = Vessel(
                vessel=vessel,
                name=row.get("name", ""),
                mmsi=mmsi,
                equipped=_flag_of(row, "equipped"),
                liquid_cargo=_flag_of(row, "liquid_cargo"),
                exemption=row.get("exemption", ""),
                valid_from=valid_from,
            )
        except ValueError as e:
            problems.append(f"{where}: {e}")
            continue
        key = (v.vessel, v.valid_from)
        if key in seen:
            problems.append(
                f"{where}: vessel {v.vessel!r} from {v.valid_from} is already at line "
                f"{seen[key]}; keep one row (or give a later valid_from)"
            )
            continue
        seen[key] = line
        out.append(v)
    _refuse(source, problems, n)
    return out


def _flag_of(row: Mapping[str, str], column: str) -> bool:
    try:
        return _flag(row[column])
    except ValueError as e:
        raise ValueError(f"{column}: {e}") from None


def parse_calls(text: str, source: str, berths: Mapping[str, str], tz: ZoneInfo) -> list[Call]:
    """Berthing records; columns ``vessel, berth, arrival, departure`` and optionally
    ``exemption`` (fault, bad_weather, emergency, alternative, or their Chinese names).

    ``berths`` maps what a ``berth`` cell may say (a shore-power meter's site or device id) to
    the site; times without an offset are local (``tz``). ShoreCsvError refuses the file."""
    out: list[Call] = []
    problems: list[str] = []
    seen: dict[tuple[str, str, int], int] = {}
    n = 0
    for line, row in _rows(
        text, source, ("vessel", "berth", "arrival", "departure"), ("exemption",)
    ):
        n += 1
        where = f"{source}:{line}"
        if "__extra__" in row:
            problems.append(f"{where}: more cells than the header has columns; quote a comma")
            continue
        try:
            vessel = _name(row["vessel"], "vessel")
            site = berths.get(row["berth"])
            if site is None:
                raise ValueError(
                    f"berth {row['berth']!r} is not the site (or id) of a shore-power meter in "
                    "the device registry; use the site the registry gives the berth's meter"
                )
            arrival = _instant(row["arrival"], "arrival", tz)
            departure = _instant(row["departure"], "departure", tz)
            if departure <= arrival:
                raise ValueError("departure is not after arrival; swap or correct them")
            raw = row.get("exemption", "")
            exemption = EXEMPTIONS.get(raw.lower()) if raw else ""
            if exemption is None:
                raise ValueError(
                    f"exemption {raw!r} is not one of Art. 11's: write fault, bad_weather, "
                    "emergency or alternative (or leave it empty)"
                )
        except ValueError as e:
            problems.append(f"{where}: {e}")
            continue
        key = (site, vessel, arrival)
        if key in seen:
            problems.append(
                f"{where}: the call of {vessel!r} at {site} arriving {row['arrival']} is already "
                f"at line {seen[key]}; keep one row"
            )
            continue
        seen[key] = line
        out.append(Call(vessel, site, arrival, departure, exemption))
    _refuse(source, problems, n)
    return out


__all__ = [
    "CALLS",
    "EXEMPTIONS",
    "REGISTER_SINCE",
    "VESSELS",
    "Call",
    "ShoreCsvError",
    "Vessel",
    "parse_calls",
    "parse_vessels",
]
