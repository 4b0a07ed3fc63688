"""Manual lab results of surface-water sections: the CSV file, its checks, its InfluxDB points.

Pure: :func:`parse_lab_csv` turns the text of a lab file into :class:`LabResult` s or refuses the
whole file with one ``FILE:LINE: what is wrong — the fix`` line per problem; ``envgrid lab
import`` (envgrid/cli/lab.py) writes :func:`lab_lines` to InfluxDB. The water assessment
(report/water_assessment.py) reads them back from :data:`LAB_MEASUREMENT`.

The file (UTF-8, a header line, comma-separated; docs/report.md "Lab results")::

    section,sampled_at,item,value,dl,flag,lab,method
    城南断面,2026-11-05,cod_mg_l,25,,,市监测站,HJ 828-2017
    城南断面,2026-11-05 10:30,hg_mg_l,<0.00004,,,市监测站,HJ 694-2014
    城南断面,2026-11-05,cd_mg_l,,0.0005,ND,市监测站,

- ``section``: the site of a surface-water station in the device registry.
- ``sampled_at``: local date (``2026-11-05``, stored at local midnight) or local date and time
  (``2026-11-05 10:30``, ``2026-11-05T10:30:00``); an explicit UTC offset is honoured.
- ``item``: a GB 3838-2002 Table 1 item under envgrid's field name (``cod_mg_l``, ``hg_mg_l``…,
  :data:`LAB_ITEMS`), in mg/L (pH dimensionless).
- ``value``: the result; below the detection limit written ``<0.01``, ``0.01L`` (the Chinese
  lab-report form), or left empty with ``flag`` = ``ND`` and the limit in ``dl``.
- ``dl`` (optional): the method's detection limit; ``flag`` (optional): ``ND`` or empty.
- ``lab``, ``method`` (optional): who analysed it and how; kept with the result.

One point per result: tags ``site``, ``county``, ``item``; time = the sampling time. Importing a
file again writes the same series at the same times, so it stores each result once (a corrected
value replaces the old one).
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from devices import water
from devices.errors import error_lines
from devices.gb3838 import ASSESSED_ITEMS_2020
from devices.lineproto import FieldValue, encode_line, tag_problem
from devices.registry import Registry

LAB_MEASUREMENT = "water_lab"

# What a lab may report: the 21 assessed items (环办监测函〔2020〕82号) and TN (lakes).
LAB_ITEMS: tuple[str, ...] = (*ASSESSED_ITEMS_2020, "tn_mg_l")

COLUMNS = ("section", "sampled_at", "item", "value", "dl", "flag", "lab", "method")
REQUIRED = ("section", "sampled_at", "item", "value")
HEADER_HINT = "section,sampled_at,item,value,dl,flag,lab,method"

_BELOW = re.compile(r"^<\s*(?P<dl>\S+)$|^(?P<dl2>[0-9.eE+-]+)\s*[Ll]$")


class LabFileError(ValueError):
    """A lab file refused as a whole; the message has one ``FILE:LINE: …`` line per problem."""


@dataclass(frozen=True, slots=True)
class LabResult:
    """One lab result as stored: the measured value, or below the detection limit ``dl``."""

    line: int
    site: str
    county: str
    item: str
    ts_ms: int
    value: float | None  # None when below the detection limit
    dl: float | None
    lab: str = ""
    method: str = ""

    @property
    def below_dl(self) -> bool:
        """Not detected: the result is below the method's detection limit."""
        return self.value is None

    def statistic(self) -> float:
        """The value statistics use: below the detection limit, half the limit
        (环办监测函〔2020〕82号, 第七条: 低于检出限时以 1/2 检出限参与计算和统计)."""
        if self.value is not None:
            return self.value
        assert self.dl is not None  # parse_lab_csv never makes a below-DL result without one
        return self.dl / 2

    def line_protocol(self) -> str:
        """The result as an InfluxDB point (ms precision)."""
        fields: list[tuple[str, FieldValue]] = [("below_dl", self.below_dl)]
        if self.value is not None:
            fields.append(("value", self.value))
        if self.dl is not None:
            fields.append(("dl", self.dl))
        # Always written ("" when absent) so a re-import without them overwrites the old text.
        fields += [("lab", self.lab), ("method", self.method)]
        tags = (("county", self.county), ("item", self.item), ("site", self.site))
        out = encode_line(LAB_MEASUREMENT, tags, fields, self.ts_ms)
        assert out is not None  # below_dl is always storable
        return out


def _number(text: str, what: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a number — write it like 0.05") from None
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{what} {text!r} must be a number ≥ 0 — write the measured value")
    return v


def _when(text: str, tz: ZoneInfo) -> datetime:
    t = text.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", t):
            d = date.fromisoformat(t)
            return datetime(d.year, d.month, d.day, tzinfo=tz)
        dt = datetime.fromisoformat(t)
    except ValueError:
        raise ValueError(
            f"{t!r} is not a date or time — write 2026-11-05 or 2026-11-05 10:30 (local time)"
        ) from None
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=tz)


class LabRow(BaseModel):
    """One CSV row as written, before the registry and the units are applied."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    section: Annotated[str, Field(min_length=1)]
    sampled_at: Annotated[str, Field(min_length=1)]
    item: str
    value: str = ""
    dl: str = ""
    flag: Literal["", "ND", "nd"] = ""
    lab: str = ""
    method: str = ""

    @field_validator("item")
    @classmethod
    def _item(cls, v: str) -> str:
        if v not in LAB_ITEMS:
            raise ValueError(
                f"unknown item {v!r} — use a GB 3838-2002 Table 1 item ({', '.join(LAB_ITEMS)})"
            )
        return v

    def result(self, line: int, county: str, tz: ZoneInfo) -> LabResult:
        """The stored result; ValueError says what is wrong and how to write it."""
        dl = _number(self.dl, "dl") if self.dl else None
        if dl is not None and dl == 0:
            raise ValueError("dl 0 is not a detection limit — write the method's limit, e.g. 0.01")
        value: float | None
        text = self.value
        if self.flag.upper() == "ND" or text.upper() == "ND":
            if dl is None:
                raise ValueError("flag ND needs the detection limit — fill in the dl column")
            if text and text.upper() != "ND":
                raise ValueError(
                    f"value {text!r} with flag ND — leave value empty for a result below the "
                    "detection limit, or drop the flag"
                )
            value = None
        elif (m := _BELOW.match(text)) is not None:
            below = _number(m["dl"] or m["dl2"], "detection limit")
            if below == 0:
                raise ValueError(f"value {text!r} has no detection limit — write it, e.g. <0.01")
            if dl is not None and dl != below:
                raise ValueError(
                    f"value {text!r} and dl {self.dl} differ — give one detection limit"
                )
            value, dl = None, below
        elif not text:
            raise ValueError("value is empty — write the result, <DL, or flag ND with dl")
        else:
            value = _number(text, "value")
        if self.item == "ph" and value is not None and value > 14:
            raise ValueError(f"pH {value:g} is outside 0–14 — check the value")
        ts = _when(self.sampled_at, tz)
        return LabResult(
            line, self.section, county, self.item, int(ts.timestamp() * 1000), value, dl,
            self.lab, self.method,
        )  # fmt: skip


def water_sections(registry: Registry) -> dict[str, str]:
    """Site → county of every surface-water station in the registry (the lab file's sections)."""
    return {d.site: d.county for d in registry.of_kind(water.KIND.name)}


def parse_lab_csv(
    text: str, source: str, sections: Mapping[str, str], tz: ZoneInfo
) -> list[LabResult]:
    """Every result of a lab file, or LabFileError listing every problem: one bad row refuses
    the whole file, so a corrected file is imported whole or not at all."""
    problems: list[str] = []
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff")))
    rows = list(enumerate(reader, 1))
    header_at = next((n for n, r in rows if any(c.strip() for c in r)), None)
    if header_at is None:
        raise LabFileError(f"{source}:1: the file is empty — start it with {HEADER_HINT}")
    header = [c.strip() for c in rows[header_at - 1][1]]
    missing = [c for c in REQUIRED if c not in header]
    unknown = [c for c in header if c not in COLUMNS]
    if missing or unknown or len(set(header)) != len(header):
        what = []
        if missing:
            what.append(f"missing column(s) {', '.join(missing)}")
        if unknown:
            what.append(f"unknown column(s) {', '.join(repr(c) for c in unknown)}")
        if len(set(header)) != len(header):
            what.append("a column is named twice")
        raise LabFileError(
            f"{source}:{header_at}: {'; '.join(what)} — the header line is {HEADER_HINT} "
            "(dl, flag, lab, method optional)"
        )
    out: list[LabResult] = []
    seen: dict[tuple[str, str, int], int] = {}
    for n, raw in rows[header_at:]:
        if not any(c.strip() for c in raw):
            continue
        if len(raw) != len(header):
            problems.append(
                f"{source}:{n}: {len(raw)} fields, the header has {len(header)} — "
                "quote a value that contains a comma, and give every column (empty is fine)"
            )
            continue
        data = dict(zip(header, raw, strict=True))
        try:
            row = LabRow.model_validate(data)
        except ValidationError as e:
            problems += error_lines(
                e,
                where=f"{source}:{n}",
                messages={"literal_error": "not a flag — write ND or leave it empty"},
            )
            continue
        if row.section not in sections:
            known = ", ".join(sorted(sections)[:5]) or "none registered"
            problems.append(
                f"{source}:{n}: section {row.section!r} is not a water station's site in the "
                f"registry — use the registry's site name (e.g. {known})"
            )
            continue
        for name, value in (("section", row.section), ("county", sections[row.section])):
            if (problem := tag_problem(value)) is not None:
                problems.append(f"{source}:{n}: {name} {problem} — change it in the registry")
        try:
            result = row.result(n, sections[row.section], tz)
        except ValueError as e:
            problems.append(f"{source}:{n}: {e}")
            continue
        key = (result.site, result.item, result.ts_ms)
        if (first := seen.get(key)) is not None:
            problems.append(
                f"{source}:{n}: the same section, item and sampling time as line {first} — "
                "keep one of them, or give the sampling time of day"
            )
            continue
        seen[key] = n
        out.append(result)
    if problems:
        raise LabFileError("\n".join(problems))
    if not out:
        raise LabFileError(f"{source}:{header_at}: no results below the header — add rows")
    return out


def lab_lines(results: Sequence[LabResult]) -> list[str]:
    """The results as line protocol, in file order."""
    return [r.line_protocol() for r in results]
