"""A connector's timeline: a status holds until the next or the silence threshold, whichever
comes first; connector 0 down takes the charge point's connectors down."""

from __future__ import annotations

from report.charger_availability import overlay_unavailable, timeline

M = 60_000


def test_a_status_holds_for_the_silence_then_the_connector_is_offline() -> None:
    line = timeline([(10 * M, "Available"), (100 * M, "Faulted")], 0, 120 * M, 30 * M)
    assert line == [
        (0, 10 * M, "offline"),  # nothing known before the first status
        (10 * M, 40 * M, "available"),
        (40 * M, 100 * M, "offline"),
        (100 * M, 120 * M, "unavailable"),
    ]


def test_a_status_from_before_the_period_holds_into_it() -> None:
    line = timeline([(-10 * M, "Charging")], 0, 60 * M, 30 * M)
    assert line == [(0, 20 * M, "available"), (20 * M, 60 * M, "offline")]


def test_a_status_outside_ocpp_is_not_counted_as_available() -> None:
    assert timeline([(0, "Sleeping")], 0, 10 * M, 30 * M) == [(0, 10 * M, "offline")]


def test_connector_0_faulted_takes_the_connectors_down() -> None:
    line = [(0, 60 * M, "available")]
    down = [(0, 20 * M, "available"), (20 * M, 30 * M, "unavailable")]
    assert overlay_unavailable(line, down) == [
        (0, 20 * M, "available"),
        (20 * M, 30 * M, "unavailable"),
        (30 * M, 60 * M, "available"),
    ]
