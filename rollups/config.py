"""The rollups' settings section (``[rollup]``)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Protocol

from pydantic import (
    Field,
)

from devices.config import PositiveDuration, Section
from ingest.config import StorageConfig


class RollupSettings(Section):
    """Hourly/daily rollups: the service's background task and the validity rules.

    Defaults are GB 3095-2012 Table 4 and HJ 663-2013 (see docs/standards.md).
    """

    enabled: bool = Field(
        default=True, description="run the rollup task in `envgrid run` (first worker only)"
    )
    interval: PositiveDuration = Field(
        default=timedelta(minutes=10), description="how often recent windows are recomputed"
    )
    lateness: PositiveDuration = Field(
        default=timedelta(hours=3), description="windows closed this recently are recomputed"
    )
    startup_lookback: PositiveDuration = Field(
        default=timedelta(hours=48), description="recomputed once when the service starts"
    )
    hour_min_minutes: int = Field(
        default=45,
        ge=1,
        le=60,
        description="air 1 h mean valid when its samples cover this many minutes (GB 3095-2012 "
        "Table 4); each sample counts for the device's reporting interval",
    )
    max_sample_interval: PositiveDuration = Field(
        default=timedelta(minutes=15),
        description="the most one sample counts for in an hour's covered time, whatever the "
        "registry `interval` or the learned spacing says (envgrid's choice, docs/standards.md)",
    )
    review_store: Path = Field(
        default=Path("var/review.db"),
        description="SQLite file of the review (审核) marks; rollups leave out what they "
        "invalidate (docs/review.md)",
    )
    day_min_hours: int = Field(
        default=20, ge=1, le=24, description="air 24 h mean valid with this many valid hours"
    )
    o3_8h_min_hours: int = Field(
        default=6, ge=1, le=8, description="O3 8 h mean valid with this many valid hours"
    )
    o3_8h_min_windows: int = Field(
        default=14, ge=1, le=17, description="daily max 8 h O3 valid with this many 8 h means"
    )
    water_day_min_hours: int = Field(
        default=1, ge=1, le=24, description="water daily mean valid with this many hours"
    )

    pv_gamma_per_c: float = Field(
        default=-0.0047,
        ge=-0.02,
        le=0,
        description="PV module P_max temperature coefficient (1/°C) of the temperature-corrected "
        "PR; default: PVWatts v5 'standard' modules (docs/pv.md)",
    )
    pv_irradiance_threshold_w_m2: float = Field(
        default=50.0,
        ge=0,
        le=500,
        description="POA irradiance above which PV availability counts the time (not fixed by "
        "IEC 61724-1; docs/pv.md)",
    )
    pv_underperformance_margin: float = Field(
        default=0.15,
        gt=0,
        lt=1,
        description="a PV inverter is an underperformer when its PR (or specific yield) is this "
        "share below its peers' median",
    )
    pv_underperformance_days: int = Field(
        default=1, ge=1, le=31, description="days the underperformance comparison sums over"
    )


class QcSettings(Section):
    """Automatic quality control of closed windows before the rollups (docs/review.md)."""

    enabled: bool = Field(
        default=True, description="flag suspect and failed values before each rollup (QARTOD tests)"
    )

    config: Path | None = Field(
        default=None,
        description="YAML of QC thresholds per kind, field and device; unset: the shipped "
        "rollups/qc.yaml",
    )


class RollupConfig(StorageConfig, Protocol):
    """The sections the rollup job reads."""

    @property
    def rollup(self) -> RollupSettings: ...
