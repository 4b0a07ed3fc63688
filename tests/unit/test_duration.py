"""The one duration grammar (devices.config) and the places that read it: settings, rules, plan."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerts.rules import duration_ms, parse_rules
from devices.config import ACCEPTED, parse_duration
from envgrid.settings import ConfigError, load_settings
from report import plan as P
from tests.unit.test_plan import shipped_text

H, M, S = 3600, 60, 1


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("15m", 15 * M),
        ("15min", 15 * M),
        ("1h30m", H + 30 * M),
        ("1h 30m", H + 30 * M),
        ("1.5h", H + 30 * M),
        ("7d", 7 * 24 * H),
        ("2w", 14 * 24 * H),
        ("500ms", 0.5),
        ("1d12h", 36 * H),
        ("90", 90),
        (" 1.25 ", 1.25),
        (90, 90),
        (0.5, 0.5),
        ("PT1H30M", H + 30 * M),
        ("pt1h30m", H + 30 * M),
        ("P7D", 7 * 24 * H),
        ("P2W", 14 * 24 * H),
        ("P1DT12H", 36 * H),
        ("PT0.5S", 0.5),
        ("01:30:00", H + 30 * M),
        ("0", 0),
    ],
)
def test_accepted_forms(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("5 minutes", ACCEPTED),
        ("", ACCEPTED),
        ("h", ACCEPTED),
        ("1e3", ACCEPTED),
        ("30m1h", "largest first"),
        ("1h1h", "largest first"),
        ("P1M", "no fixed length"),
        ("P1Y", "no fixed length"),
        ("PT", ACCEPTED),
        ("P1DT", ACCEPTED),
        ("-5s", "never negative"),
        ("-P1D", "never negative"),
        (-1, "never negative"),
        (float("nan"), "finite"),
        (True, ACCEPTED),
        ("99999999999w", "longer than"),
    ],
)
def test_refused_forms_say_what_is_accepted(text: str | float, says: str) -> None:
    with pytest.raises(ValueError) as e:
        parse_duration(text)
    assert says in str(e.value)


def test_error_names_the_accepted_forms() -> None:
    with pytest.raises(ValueError) as e:
        parse_duration("soon")
    for form in ("30s", "5m", "1h30m", "7d", "2w", "500ms", "PT1H30M", "P7D", "seconds"):
        assert form in str(e.value)


_parts = st.tuples(*(st.integers(0, 400) for _ in range(6)))


@given(_parts)
def test_unit_and_iso_forms_agree(parts: tuple[int, int, int, int, int, int]) -> None:
    w, d, h, m, s, ms = parts
    want = timedelta(weeks=w, days=d, hours=h, minutes=m, seconds=s, milliseconds=ms)
    units = "".join(
        f"{n}{u}" for n, u in zip(parts, ("w", "d", "h", "m", "s", "ms"), strict=True) if n
    )
    assert parse_duration(units or "0") == want
    iso = f"P{w}W{d}DT{h}H{m}M{s + ms / 1000:.3f}S"
    assert parse_duration(iso) == want


@given(st.integers(0, 10**9))
def test_a_number_is_seconds_as_text_or_number(n: int) -> None:
    assert parse_duration(n) == parse_duration(str(n)) == timedelta(seconds=n)


@given(st.text(max_size=12))
def test_any_text_is_a_duration_or_a_value_error(text: str) -> None:
    try:
        d = parse_duration(text)
    except ValueError as e:
        assert text.strip() == "" or repr(text) in str(e)
    else:
        assert d >= timedelta(0)


def test_settings_rules_and_plan_read_the_same_grammar() -> None:
    settings = load_settings(
        None,
        ingest={"flush_interval": "PT0.5S", "max_age": "1w"},
        mqtt={"session_expiry": "1d12h"},
    )
    assert settings.ingest.flush_interval == timedelta(milliseconds=500)
    assert settings.ingest.max_age == timedelta(days=7)
    assert settings.mqtt.session_expiry == timedelta(hours=36)

    (rule,) = parse_rules(
        "rules:\n  - {id: a, kind: water, when: do_mg_l < 3, for: 1h30m, severity: info}\n"
    ).rules
    assert rule.for_ms == 90 * 60_000
    assert duration_ms("PT2H") == 2 * 3_600_000

    text = shipped_text().replace('step = "5m"', 'step = "PT10M"', 1)
    plan = P.parse_plan(text.replace('max_gap = "15m"', 'max_gap = "1h30m"', 1), "plan.toml")
    assert plan.shore_power.step == timedelta(minutes=10)
    assert plan.shore_power.max_gap == timedelta(minutes=90)
    assert plan.pv.baseline_lookback == timedelta(days=7)


def test_a_bad_setting_names_the_grammar() -> None:
    with pytest.raises(ConfigError) as e:
        load_settings(None, ingest={"max_age": "a week"})
    msg = str(e.value)
    assert msg.startswith("config error: ingest.max_age [ENVGRID_INGEST__MAX_AGE]: 'a week'")
    assert "1h30m" in msg and "P7D" in msg


def test_the_readme_examples_parse() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    start = readme.index("Durations, here as in alert rules")
    sentence = readme[start : readme.index(".\n", start)]
    examples = [x for x in re.findall(r"`([^`]+)`", sentence) if not x.endswith(".py")]
    assert len(examples) >= 9, examples
    for text in examples:
        assert parse_duration(text) > timedelta(0), text


def test_positive_durations_refuse_zero() -> None:
    with pytest.raises(ConfigError) as e:
        load_settings(None, alerts={"tick_interval": "0s"}, console={"lookback": "PT0S"})
    assert str(e.value).splitlines() == [
        "config error: alerts.tick_interval [ENVGRID_ALERTS__TICK_INTERVAL]: must be a positive "
        "duration, e.g. 30s, 10m, 12h (got '0s')",
        "config error: console.lookback [ENVGRID_CONSOLE__LOOKBACK]: must be a positive "
        "duration, e.g. 30s, 10m, 12h (got 'PT0S')",
    ]
    settings = load_settings(None, console={"session_lifetime": "1h30m"})
    assert settings.console.session_lifetime == timedelta(minutes=90)
