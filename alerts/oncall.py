"""The on-call rota: who is on duty at a given moment (``oncall:`` in the routing file).

A rota names a person per weekday; each shift starts at the handover time of its day and runs
until the next day's handover, so at 07:00 on Tuesday with an 08:30 handover Monday's person is
still on duty. Overrides (leave, swaps) cover a date-time range and win over the weekly table;
the latest override listed wins where two overlap.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class Person:
    """Someone who can be on duty, and how to reach them."""

    id: str
    name: str = ""
    mobile: str = ""
    email: str = ""
    feishu_id: str = ""  # open_id (ou_…) or user_id, for a Feishu <at>
    wecom_id: str = ""  # WeCom userid, for a markdown <@userid>

    @property
    def label(self) -> str:
        """The name people read (the id when no name is given)."""
        return self.name or self.id


@dataclass(frozen=True, slots=True)
class Override:
    """``person`` is on duty from ``start`` (inclusive) to ``end`` (exclusive)."""

    start: datetime
    end: datetime
    person: str


@dataclass(frozen=True, slots=True)
class Rota:
    """A weekly rota with a handover time and overrides, in one time zone."""

    name: str
    tz: ZoneInfo
    handover: time
    weekly: tuple[str | None, ...]  # person id per weekday, Monday first (None: nobody)
    overrides: tuple[Override, ...] = ()

    def on_duty(self, at: datetime) -> str | None:
        """The id of the person on duty at ``at`` (an aware datetime), or None."""
        local = at.astimezone(self.tz)
        for o in reversed(self.overrides):
            if o.start <= local < o.end:
                return o.person
        day = local.date()
        if local.timetz().replace(tzinfo=None) < self.handover:
            day -= timedelta(days=1)  # before today's handover: yesterday's shift
        return self.weekly[day.weekday()]

    def next_handover(self, at: datetime) -> datetime:
        """When the current weekly shift ends (for the console's 'until')."""
        local = at.astimezone(self.tz)
        today = datetime.combine(local.date(), self.handover, self.tz)
        return today if local < today else today + timedelta(days=1)


@dataclass(frozen=True, slots=True)
class OnCall:
    """The people and rotas of a routing file."""

    people: dict[str, Person]
    rotas: dict[str, Rota]

    def now(self, rota: str, at: datetime) -> Person | None:
        """The person on duty in ``rota`` at ``at`` (None: nobody, or an unknown rota)."""
        r = self.rotas.get(rota)
        pid = r.on_duty(at) if r else None
        return self.people.get(pid) if pid else None

    def board(self, at: datetime) -> list[tuple[str, Person | None, datetime]]:
        """Every rota with who is on duty now and until when (weekly handover)."""
        return [(name, self.now(name, at), r.next_handover(at)) for name, r in self.rotas.items()]


EMPTY = OnCall({}, {})
