"""The period report: which period (``--period month|quarter|year|custom --at …``), which
statistics sections, and running their builders.

A period is named as the bureau names it: a month ``2026-11``, a quarter ``2026-Q4``, a year
``2026``, or a custom span ``2026-02-15..2026-03-14``. Without ``--at`` it is the last period of
that length that has closed (on 2026-12-03: the month 2026-11, the quarter 2026-Q3, the year
2025), because a statistic of a period still running would change tomorrow.

:data:`BUILDERS` lists the statistics sections (``report.sections``); each is run with one
:class:`~report.sections.SectionContext` and every format renders what it returns.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

from ingest.config import StorageConfig
from ingest.writer import InfluxWriter, Outcome
from report import air_assessment, charger_availability, shore_calls, water_assessment
from report.figures import PlanReport, ReportError
from report.sections import Builder, Period, Section, SectionContext

Kind = Literal["month", "quarter", "year", "custom"]
KINDS: tuple[Kind, ...] = ("month", "quarter", "year", "custom")

# The statistics sections of the period report, in the order every format shows them.
BUILDERS: tuple[Builder, ...] = (
    air_assessment.build,
    water_assessment.build,
    shore_calls.build,
    charger_availability.build,
)

_MONTH = re.compile(r"^(\d{4})-(\d{1,2})$")
_QUARTER = re.compile(r"^(\d{4})-?[Qq]([1-4])$")
_YEAR = re.compile(r"^(\d{4})$")
_CUSTOM = re.compile(r"^\d{4}-\d{2}-\d{2}\.\.\d{4}-\d{2}-\d{2}$")


class PeriodError(ValueError):
    """A period that cannot be named; the message says what to write instead."""


def month(year: int, m: int) -> Period:
    """The calendar month."""
    if not 1 <= m <= 12:
        raise PeriodError(f"month {m} is not 1..12")
    return Period(
        date(year, m, 1), date(year, m, calendar.monthrange(year, m)[1]), f"{year}-{m:02d}"
    )


def quarter(year: int, q: int) -> Period:
    """The calendar quarter (Q1 = January–March)."""
    first = date(year, 3 * q - 2, 1)
    last_month = 3 * q
    last = date(year, last_month, calendar.monthrange(year, last_month)[1])
    return Period(first, last, f"{year}-Q{q}")


def year(y: int) -> Period:
    """The calendar year."""
    return Period(date(y, 1, 1), date(y, 12, 31), f"{y}")


def custom(first: date, last: date) -> Period:
    """Any span of local dates, both inclusive."""
    if last < first:
        raise PeriodError(f"--to {last} is before --from {first}: give the earlier date first")
    return Period(first, last, f"{first.isoformat()}..{last.isoformat()}")


def kind_of(period: Period) -> Kind:
    """``month``, ``quarter``, ``year`` or ``custom``, from the period's label."""
    if _MONTH.match(period.label):
        return "month"
    if _QUARTER.match(period.label):
        return "quarter"
    if _YEAR.match(period.label):
        return "year"
    return "custom"


def last_closed(kind: Kind, today: date) -> Period:
    """The latest period of ``kind`` that ended before ``today``."""
    if kind == "month":
        y, m = (today.year, today.month - 1) if today.month > 1 else (today.year - 1, 12)
        return month(y, m)
    if kind == "quarter":
        q = (today.month - 1) // 3  # the quarter before today's (0: last year's Q4)
        return quarter(today.year, q) if q else quarter(today.year - 1, 4)
    if kind == "year":
        return year(today.year - 1)
    raise PeriodError("--period custom needs --from and --to")


def parse_at(kind: Kind, at: str) -> Period:
    """The period ``--at`` names: ``2026-11`` (month), ``2026-Q4`` (quarter), ``2026`` (year)."""
    text = at.strip()
    if kind == "month" and (m := _MONTH.match(text)):
        return month(int(m[1]), int(m[2]))
    if kind == "quarter" and (m := _QUARTER.match(text)):
        return quarter(int(m[1]), int(m[2]))
    if kind == "year" and (m := _YEAR.match(text)):
        return year(int(m[1]))
    example = {"month": "2026-11", "quarter": "2026-Q4", "year": "2026", "custom": ""}[kind]
    if kind == "custom":
        raise PeriodError("--period custom takes --from and --to, not --at")
    raise PeriodError(f"--at {at!r} is not a {kind}: write e.g. --at {example}")


def resolve(
    kind: str | None,
    at: str | None,
    first: date | None,
    last: date | None,
    today: date,
) -> Period | None:
    """The period the options name, or None for the plain plan report (no ``--period``)."""
    if kind is None:
        if at is not None:
            raise PeriodError("--at needs --period month, quarter or year")
        return None
    if kind not in KINDS:
        raise PeriodError(f"--period {kind!r} is not a period: use one of {', '.join(KINDS)}")
    if kind == "custom":
        if first is None or last is None:
            raise PeriodError("--period custom needs --from and --to")
        if at is not None:
            raise PeriodError("--period custom takes --from and --to, not --at")
        return custom(first, last)
    if first is not None or last is not None:
        raise PeriodError(f"--period {kind} takes --at, not --from/--to (or use --period custom)")
    k: Kind = kind
    return parse_at(k, at) if at is not None else last_closed(k, today)


# ------------------------------------------------------------------------------ running


@dataclass(slots=True)
class PeriodReport:
    """The plan figures of a period and its statistics sections, for every format."""

    plan: PlanReport
    period: Period
    sections: list[Section] = field(default_factory=list)

    @property
    def kind(self) -> Kind:
        """``month``, ``quarter``, ``year`` or ``custom``."""
        return kind_of(self.period)


async def build_sections(
    ctx: SectionContext, builders: Sequence[Builder] = BUILDERS
) -> list[Section]:
    """Every section of the period, in order; two sections with one key are a bug."""
    out: list[Section] = []
    for b in builders:
        s = await b(ctx)
        if any(o.key == s.key for o in out):
            raise ReportError(f"two statistics sections share the key {s.key!r}")
        out.append(s)
    return out


def section_points(sections: Sequence[Section]) -> list[str]:
    """Every section's line protocol, in order."""
    return [line for s in sections for line in s.points()]


async def store_sections(settings: StorageConfig, sections: Sequence[Section]) -> int:
    """Write every section's points to InfluxDB; the number of points written."""
    lines = section_points(sections)
    if not lines:
        return 0
    async with InfluxWriter(settings.influx) as w:
        d = await w.deliver(lines)
    if d.outcome is not Outcome.OK:
        raise ReportError(f"InfluxDB did not take the statistics points: {d.message}")
    if d.rejected:
        raise ReportError(f"InfluxDB refused a statistics point: {d.rejected[0][1]}")
    return len(lines)


__all__ = [
    "BUILDERS",
    "KINDS",
    "PeriodError",
    "PeriodReport",
    "build_sections",
    "custom",
    "kind_of",
    "last_closed",
    "month",
    "parse_at",
    "quarter",
    "resolve",
    "section_points",
    "store_sections",
    "year",
]
