"""The period report's statistics sections: one interface, so each statistic is one module.

``envgrid report --period month --at 2026-11`` shows, beside the plan figures, the official
statistics of the period (air assessment, water-section statistics, shore-power calls, charger
availability). Each is built by an async :data:`Builder` from a :class:`SectionContext` and
returns a :class:`Section`, which every format renders the same way: JSON under its ``key``,
its :class:`Table` list in the terminal table, CSV and HTML, and its ``points`` (line protocol)
written to InfluxDB by ``--store``.
"""

from __future__ import annotations

import calendar
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from devices.registry import Registry
from ingest.config import StorageConfig
from ingest.influxql import InfluxQLClient

Cell = str | float | int | None


@dataclass(frozen=True, slots=True)
class Period:
    """An assessment period: inclusive local dates in the city's time zone."""

    first: date
    last: date  # inclusive
    label: str  # "2026-11", "2026-Q4", "2026", or "2026-11-01..2026-11-30"

    @property
    def days(self) -> int:
        """Calendar days in the period."""
        return (self.last - self.first).days + 1

    def dates(self) -> list[date]:
        """Every local date of the period, in order."""
        return [self.first + timedelta(days=i) for i in range(self.days)]

    def year_earlier(self) -> Period:
        """The same period one year earlier (29 February becomes 28 February)."""
        return Period(_year_back(self.first), _year_back(self.last), f"{self.label} −1y")


def _year_back(d: date) -> date:
    day = min(d.day, calendar.monthrange(d.year - 1, d.month)[1])
    return date(d.year - 1, d.month, day)


@dataclass(slots=True)
class Table:
    """One table of a section, as the terminal, CSV and HTML show it."""

    title: str  # bilingual, e.g. "县区排名 County ranking"
    columns: list[str]
    rows: list[list[Cell]]


class Section(Protocol):
    """What a statistics section gives every format."""

    @property
    def key(self) -> str:
        """Its key in the JSON report (``air_assessment``, ``water_assessment``, …)."""
        ...

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types only."""
        ...

    def tables(self) -> Sequence[Table]:
        """The tables the terminal, CSV and HTML formats show, in order."""
        ...

    def points(self) -> Sequence[str]:
        """Line protocol written by ``envgrid report --store`` (may be empty)."""
        ...

    def notes(self) -> Sequence[str]:
        """Plain sentences on what the section could not count and why."""
        ...


@dataclass(slots=True)
class SectionContext:
    """What a builder may read: one InfluxDB, the registry, the settings and the period."""

    client: InfluxQLClient
    registry: Registry
    settings: StorageConfig
    period: Period
    tz: ZoneInfo
    now: datetime
    county: str | None = None  # only this county's stations and devices
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. the review store, from the root


Builder = Callable[[SectionContext], Awaitable[Section]]
