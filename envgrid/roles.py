"""What one envgrid process does (``envgrid run --role``)."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """``all``: ingest and alerts in one process. ``ingest``: no alert engine. ``alerts``: the
    engine alone, subscribed without sharing (every reading of every device reaches it) and
    writing no readings, so ingest workers can scale out with ``$share``."""

    ALL = "all"
    INGEST = "ingest"
    ALERTS = "alerts"

    @property
    def ingests(self) -> bool:
        """Writes readings, dead letters and rollups."""
        return self is not Role.ALERTS

    @property
    def evaluates(self) -> bool:
        """Runs the alert engine (when alerts are enabled)."""
        return self is not Role.INGEST
