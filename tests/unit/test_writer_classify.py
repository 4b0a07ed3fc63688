"""writer.classify: the one place that decides what an InfluxDB answer means for a batch."""

from __future__ import annotations

import pytest

from ingest.writer import Outcome, classify

CONFLICT = (
    'partial write: field type conflict: input field "bod5_mg_l" on measurement '
    '"water_quality" is type float, already exists as type string dropped=1'
)


@pytest.mark.parametrize(
    ("status", "body", "lines", "want"),
    [
        # Stored.
        (204, "", 5000, Outcome.OK),
        (200, "", 1, Outcome.OK),
        # No answer at all (refused, reset, timeout): keep the data, try later.
        (None, "ClientConnectorError: Connect call failed", 5000, Outcome.RETRY),
        # Overloaded: keep the data and slow down.
        (429, "too many requests", 5000, Outcome.THROTTLE),
        (503, "service unavailable", 5000, Outcome.THROTTLE),
        # The server's trouble, not the batch's: keep the data.
        (500, "timeout", 5000, Outcome.RETRY),
        (502, "bad gateway", 5000, Outcome.RETRY),
        (504, "gateway timeout", 5000, Outcome.RETRY),
        # Configuration (token, database): an operator fixes it; nothing is thrown away.
        (401, "authorization failed", 5000, Outcome.RETRY),
        (403, "forbidden", 5000, Outcome.RETRY),
        (404, 'database not found: "envgrid"', 5000, Outcome.RETRY),
        # The batch's fault: bisect to find the refused lines...
        (400, CONFLICT, 5000, Outcome.SPLIT),
        (400, "unable to parse 'water_quality ph=': missing field value", 2, Outcome.SPLIT),
        (413, "request entity too large", 5000, Outcome.SPLIT),
        (422, "points beyond retention policy", 10, Outcome.SPLIT),
        # ...down to one line, which is dead-lettered with InfluxDB's message.
        (400, CONFLICT, 1, Outcome.REJECT),
        (413, "request entity too large", 1, Outcome.REJECT),
        (422, "points beyond retention policy", 1, Outcome.REJECT),
    ],
)
def test_classify(status: int | None, body: str, lines: int, want: Outcome) -> None:
    assert classify(status, body, lines) is want
