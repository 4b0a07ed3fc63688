"""Ambient air monitor (环境空气自动监测站): six criteria pollutants and weather.

Each reading carries its real-time AQI per HJ 633 (1 h tables; PM on its 24 h table), with the
edition chosen by the reading's date in the city's time zone and written as tag ``aqi_edition``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar
from zoneinfo import ZoneInfo

from devices.aqi import Edition, aqi_realtime, edition_for
from devices.base import DeviceKind, Reading, rng
from devices.lineproto import FieldValue
from devices.registry import Device


class AirReading(Reading):
    """One air-quality reading; concentrations in µg/m³ except CO in mg/m³."""

    pm25_ug_m3: Annotated[float, rng(0, 2000, "µg/m³")] | None = None
    pm10_ug_m3: Annotated[float, rng(0, 3000, "µg/m³")] | None = None
    so2_ug_m3: Annotated[float, rng(0, 10_000, "µg/m³")] | None = None
    no2_ug_m3: Annotated[float, rng(0, 5000, "µg/m³")] | None = None
    o3_ug_m3: Annotated[float, rng(0, 2000, "µg/m³")] | None = None
    co_mg_m3: Annotated[float, rng(0, 200, "mg/m³")] | None = None
    temp_c: Annotated[float, rng(-60, 60, "°C")] | None = None
    rh_pct: Annotated[float, rng(0, 100, "%")] | None = None
    pressure_hpa: Annotated[float, rng(500, 1100, "hPa")] | None = None
    wind_speed_m_s: Annotated[float, rng(0, 75, "m/s")] | None = None
    wind_dir_deg: Annotated[float, rng(0, 360, "°")] | None = None

    MEASURED: ClassVar[tuple[str, ...]] = (
        "pm25_ug_m3",
        "pm10_ug_m3",
        "so2_ug_m3",
        "no2_ug_m3",
        "o3_ug_m3",
        "co_mg_m3",
        "temp_c",
        "rh_pct",
        "pressure_hpa",
        "wind_speed_m_s",
        "wind_dir_deg",
    )


POLLUTANTS = ("pm25_ug_m3", "pm10_ug_m3", "so2_ug_m3", "no2_ug_m3", "o3_ug_m3", "co_mg_m3")


class Settings:
    """Process-wide AQI settings, set once at start-up from config."""

    timezone: ZoneInfo = ZoneInfo("Asia/Shanghai")
    forced_edition: Edition | None = None


def configure(tz: str = "Asia/Shanghai", forced_edition: Edition | None = None) -> None:
    """Set the city's time zone (it decides a reading's date) and an optional forced edition."""
    Settings.timezone = ZoneInfo(tz)
    Settings.forced_edition = forced_edition


def _edition(r: AirReading) -> Edition:
    ts = datetime.fromtimestamp(r.ts_ms() / 1000, tz=UTC)
    return edition_for(ts.astimezone(Settings.timezone).date(), Settings.forced_edition)


def derive(r: AirReading, device: Device) -> Iterator[tuple[str, FieldValue]]:
    """Real-time AQI, category and primary pollutant(s) of this reading."""
    result = aqi_realtime({p: getattr(r, p) for p in POLLUTANTS}, _edition(r))
    if result is not None:
        yield "aqi", result.aqi
        yield "aqi_category", result.category
        if result.primary:
            yield "primary_pollutant", ",".join(result.primary)


def derive_tags(r: AirReading, device: Device) -> Iterator[tuple[str, str]]:
    """The HJ 633 edition the AQI was computed with."""
    if any(getattr(r, p) is not None for p in POLLUTANTS):
        yield "aqi_edition", _edition(r)


KIND = DeviceKind(
    name="air",
    measurement="air_quality",
    model=AirReading,
    description="Ambient air monitor",
    registry_tags=("assessment",),
    derive=derive,
    derive_tags=derive_tags,
    derived_fields={"aqi": "AQI", "aqi_category": "HJ 633 category 1–6", "primary_pollutant": ""},
)


def simulate(
    device: Device, now: datetime, rnd: random.Random, state: dict[str, Any]
) -> dict[str, Any]:
    """Plausible levels: traffic peaks in NO2 and CO, an afternoon O3 peak, slow PM drift."""
    pm = state["pm"] = min(
        250.0, max(8.0, state.get("pm", rnd.uniform(25, 70)) + rnd.gauss(0, 1.5))
    )
    hour = now.hour + now.minute / 60
    rush = math.exp(-((hour - 8) ** 2) / 3) + math.exp(-((hour - 18) ** 2) / 3)
    sun = max(0.0, math.sin((hour - 7) / 12 * math.pi))
    return {
        "pm25_ug_m3": round(pm, 1),
        "pm10_ug_m3": round(pm * rnd.uniform(1.4, 1.8), 1),
        "so2_ug_m3": round(max(1.0, 8 + rnd.gauss(0, 1)), 1),
        "no2_ug_m3": round(max(2.0, 20 + 35 * rush + rnd.gauss(0, 3)), 1),
        "o3_ug_m3": round(max(2.0, 30 + 120 * sun + rnd.gauss(0, 5)), 1),
        "co_mg_m3": round(max(0.1, 0.5 + 0.6 * rush + rnd.gauss(0, 0.05)), 2),
        "temp_c": round(15 + 8 * sun + rnd.gauss(0, 0.3), 1),
        "rh_pct": round(min(100.0, max(5.0, 70 - 25 * sun + rnd.gauss(0, 2))), 1),
        "pressure_hpa": round(1013 + rnd.gauss(0, 0.5), 1),
        "wind_speed_m_s": round(max(0.0, 2.5 + rnd.gauss(0, 0.8)), 1),
        "wind_dir_deg": round(rnd.uniform(0, 359.9), 0),
    }
