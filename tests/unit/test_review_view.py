"""The 审核 page's pure parts: hours to review, invalidated ranges, the mark a form asks for."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from console.chart import numeric_chart
from console.data import Flagged
from console.present import Clock
from console.review_view import (
    HOUR_MS,
    MAX_DAYS,
    Period,
    hour_rows,
    invalidated,
    local_input,
    mark_of,
)
from rollups.review import ALL_FIELDS, Mark

CLOCK = Clock(ZoneInfo("Asia/Shanghai"))
T0 = int(datetime(2026, 3, 2, tzinfo=CLOCK.tz).timestamp() * 1000)  # local midnight
MIN = 60_000


def mark(
    i: int, a: int, b: int, action: str = "invalidate", fields: tuple[str, ...] = ("x",)
) -> Mark:
    return Mark("D", fields, T0 + a * HOUR_MS, T0 + b * HOUR_MS, action, "maintenance", "u", id=i)  # type: ignore[arg-type]


def test_hours_to_review_are_grouped_by_local_hour_newest_first() -> None:
    flags = [
        Flagged("D", "pm25", T0 + 10 * HOUR_MS + 30 * MIN, 4, "spike"),
        Flagged("D", "pm25", T0 + 6 * HOUR_MS + 5 * MIN, 3, "flat_line"),
        Flagged("D", "pm25", T0 + 6 * HOUR_MS + 10 * MIN, 3, "flat_line"),
        Flagged("D", "pm25", T0 + 6 * HOUR_MS + 15 * MIN, 0, "below_range"),
        Flagged("E", "pm25", T0 + 10 * HOUR_MS + 1 * MIN, 3, "spike"),
    ]
    rows = hour_rows(flags, CLOCK)
    assert [(r.device_id, r.hour_ms - T0) for r in rows] == [
        ("D", 10 * HOUR_MS),  # same hour: the one with a fail first
        ("E", 10 * HOUR_MS),
        ("D", 6 * HOUR_MS),
    ]
    six = rows[2]
    assert (six.suspect, six.fail, six.invalid, six.why) == (2, 0, 1, {"flat_line", "below_range"})


def test_invalidated_ranges_follow_the_newest_covering_mark() -> None:
    marks = [mark(1, 10, 14), mark(2, 12, 13, "restore"), mark(3, 14, 15)]
    assert invalidated(marks, "D", "x") == [
        (T0 + 10 * HOUR_MS, T0 + 12 * HOUR_MS),
        (T0 + 13 * HOUR_MS, T0 + 15 * HOUR_MS),
    ]
    assert invalidated(marks, "D", "other") == []
    assert invalidated([mark(4, 1, 2, fields=(ALL_FIELDS,))], "D", "other") == [
        (T0 + HOUR_MS, T0 + 2 * HOUR_MS)
    ]


def test_a_form_becomes_a_mark_in_local_time_or_says_what_is_missing() -> None:
    form = {
        "from": "2026-03-02T10:00",
        "to": "2026-03-02T11:00",
        "field_pm25": "1",
        "action": "invalidate",
        "reason": "calibration",
        "comment": " zero check ",
    }
    m = mark_of(form, "D", ("pm25", "pm10"), CLOCK, "wang.li")
    assert isinstance(m, Mark)
    assert (m.fields, m.from_ms - T0, m.to_ms - T0, m.comment) == (
        ("pm25",),
        10 * HOUR_MS,
        11 * HOUR_MS,
        "zero check",
    )
    everything = mark_of({**form, "field_*": "1"}, "D", ("pm25",), CLOCK, "a")
    assert isinstance(everything, Mark) and everything.fields == (ALL_FIELDS,)
    assert mark_of({**form, "from": "yesterday"}, "D", ("pm25",), CLOCK, "a") == "bad_time"
    assert mark_of({**form, "field_pm25": ""}, "D", ("pm25",), CLOCK, "a") == "no_fields_chosen"
    assert local_input(T0 + 10 * HOUR_MS, CLOCK) == "2026-03-02T10:00"


def test_the_period_defaults_to_three_days_and_is_capped() -> None:
    now = T0 + 10 * HOUR_MS + 20 * MIN
    p = Period.parse({}, CLOCK, now)
    assert (p.end_ms - T0, p.end_ms - p.start_ms) == (11 * HOUR_MS, 3 * 24 * HOUR_MS)
    long = Period.parse({"from": "2025-01-01T00:00", "to": "2026-03-02T00:00"}, CLOCK, now)
    assert long.end_ms == T0 and long.end_ms - long.start_ms == MAX_DAYS * 24 * HOUR_MS


def test_the_chart_draws_flags_as_shapes_and_invalidated_ranges() -> None:
    pts = [(T0 + i * 5 * MIN, 40.0 + i) for i in range(12)]
    svg = numeric_chart(
        pts,
        start_ms=T0,
        end_ms=T0 + HOUR_MS,
        fmt_time=CLOCK.hm,
        title="t",
        desc="d",
        bands=[(T0 + 10 * MIN, T0 + 20 * MIN)],
        flagged=[(pts[3][0], pts[3][1], 3), (pts[5][0], pts[5][1], 4)],
    )
    assert svg.count('class="c-band"') == 1
    assert svg.count('class="c-suspect"') == 1 and svg.count('class="c-fail"') == 1
