"""Which windows a rollup run recomputes (rollups.runner.Rollup.plan), and the rollup settings."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from devices.registry import Registry
from envgrid.settings import ConfigError, load_settings
from ingest.influxql import auth_headers, quote_ident, quote_string, time_literal
from rollups.runner import Rollup, Task, options_from


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_recent_run_recomputes_a_day_closed_within_the_window_and_closed_hours() -> None:
    r = Rollup(load_settings(None), Registry(), kinds=["air"])
    now = at("2026-03-02T01:30+08:00")
    tasks = r.plan(at("2026-03-01T22:30+08:00"), now, now)
    # 1 March closed at midnight: whole day; 2 March: only 00:00-01:00 is closed at 01:30.
    assert tasks == [
        Task("air", date(2026, 3, 1), None, True),
        Task("air", date(2026, 3, 2), (0,), False),
    ]


def test_period_is_capped_at_now_and_future_periods_are_empty() -> None:
    r = Rollup(load_settings(None), Registry())
    now = at("2026-03-02T01:30+08:00")
    tasks = r.plan(at("2026-02-27T00:00+08:00"), at("2026-03-03T00:00+08:00"), now)
    days = [(t.kind, t.day, t.daily) for t in tasks]
    assert days[:2] == [("air", date(2026, 2, 27), True), ("water", date(2026, 2, 27), True)]
    # 27 Feb, 28 Feb, 1 Mar closed; × 3 kinds (air, water and the PV daily job)
    assert len([t for t in tasks if t.daily]) == 9
    assert [t.hours for t in tasks if not t.daily] == [(0,), (0,)]
    assert r.plan(at("2026-03-05T00:00+08:00"), at("2026-03-06T00:00+08:00"), now) == []


def test_time_zone_and_validity_come_from_settings() -> None:
    s = load_settings(
        None,
        standards={"timezone": "Europe/Berlin", "aqi_edition": "2012"},
        rollup={"day_min_hours": 18, "o3_8h_min_windows": 1},
    )
    opts = options_from(s)
    assert str(opts.tz) == "Europe/Berlin" and opts.forced_edition == "2012"
    assert (opts.validity.day_min_hours, opts.validity.o3_8h_min_windows) == (18, 1)
    assert opts.validity.hour_min_minutes == 45


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"day_min_hours": 25}, "day_min_hours"),
        ({"lateness": "0s"}, "positive duration"),
        ({"lateness": "soon"}, "lateness"),
    ],
)
def test_bad_rollup_settings_are_one_clear_line(section: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_settings(None, rollup=section)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert "ENVGRID_ROLLUP__" in str(e.value)


def test_influxql_quoting_and_auth_headers() -> None:
    assert quote_ident('a "b"') == '"a \\"b\\""'
    assert quote_string("it's") == "'it\\'s'"
    assert time_literal(1_772_294_400_000) == "'2026-02-28T16:00:00.000Z'"
    assert time_literal(at("2026-03-01T00:00+08:00")) == "'2026-02-28T16:00:00.000Z'"
    with pytest.raises(ValueError, match="aware"):
        time_literal(datetime(2026, 3, 1))
    assert auth_headers(load_settings(None).influx) == {}
    token = load_settings(None, influx={"token": "s3cret"})
    assert auth_headers(token.influx) == {"Authorization": "Token s3cret"}
    basic = load_settings(None, influx={"username": "u", "password": "p"})
    assert auth_headers(basic.influx) == {"Authorization": "Basic dTpw"}  # base64("u:p")
