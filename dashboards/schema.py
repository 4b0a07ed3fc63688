"""What the dashboards may query: every measurement with its tags and its fields' units.

Device measurements come from the registered kinds (``KINDS``: each kind's ``fields()``,
``tag_keys()`` and ``derived_tag_keys``), so a renamed field breaks the dashboard tests, not a
dashboard in production, and a newly registered kind is in the schema with nothing added here.
``envgrid_stats`` is written by the ingest service and ``alerts`` by the alert engine's InfluxDB
notifier; the city rollups ``city_air_daily`` and ``water_section_daily`` by ``rollups.windows``,
and ``plan_progress`` by ``envgrid report --store`` (``report.figures.progress_points``). Their
lists below mirror those writers, and the dashboard integration test checks them against what
the real service, rollups and report store.
"""

from __future__ import annotations

from dataclasses import dataclass

from devices import air, water
from devices.aqi import O3, POLLUTANTS
from devices.kinds import KINDS
from ingest.pipeline import CATEGORIES
from report import air_assessment
from rollups.pv import (
    PV_DAILY,
    PV_DAILY_FIELDS,
    PV_DAILY_TAGS,
    PV_GRID_DAILY,
    PV_GRID_FIELDS,
    PV_GRID_TAGS,
)
from rollups.windows import CITY_AIR_DAILY, O3_1H_MAX, O3_8H, WATER_SECTION_DAILY

STATS = "envgrid_stats"
ALERTS = "alerts"
PLAN_PROGRESS = "plan_progress"
# The unit of a plan_progress value or threshold is the figure's own (%, kWh, counties …),
# written with each point in its ``unit`` field: a panel sets it per figure (dashboards/plan.py).
FIGURE_UNIT = "the figure's unit (plan_progress.unit)"


@dataclass(frozen=True)
class Measurement:
    """A measurement's tag keys and its fields with their units (schema unit strings)."""

    name: str
    tags: tuple[str, ...]
    fields: dict[str, str]


# ingest.service.IngestService._stats_loop, every stats_interval (10 s by default).
STATS_FIELDS: dict[str, str] = {
    "received": "count",
    "rejected": "count",
    "points_written": "count",
    "spool_bytes": "B",
    "spool_records": "count",
    "queue_depth": "count",
    "write_latency_s": "s",
    "mqtt_connected": "",
    "influx_up": "",
    "paused": "",
    # One counter per rejection category, written once that category has rejected something.
    **{f"rejected_{c}": "count" for c in CATEGORIES},
}

# alerts.notify.InfluxTarget: one point per notification (state is a tag: firing | resolved).
ALERTS_TAGS = ("rule_id", "severity", "kind", "device_id", "site", "county", "state")
ALERTS_FIELDS: dict[str, str] = {"value": "", "message": "", "alert_id": ""}


# report.figures.progress_points: one point per figure of a stored report.
PLAN_PROGRESS_TAGS = ("formula", "target", "scope", "period")
PLAN_PROGRESS_FIELDS: dict[str, str] = {
    "value": FIGURE_UNIT,
    "threshold": FIGURE_UNIT,
    "met": "",
    "covered": "count",
    "expected": "count",
    "unit": "",
}


# report.air_assessment: the period air assessment `envgrid report --period … --store` writes.
AIR_ASSESSMENT = air_assessment.MEASUREMENT


def city_air_daily_fields() -> dict[str, str]:
    """rollups.windows.city_air_daily: the city's daily statistics (24 h means, O3 8 h and 1 h
    maxima) each with its ``_n``, the daily AQI fields, ``valid`` and ``stations``."""
    units = air.KIND.fields()
    daily = {p: units[p] for p in POLLUTANTS if p != O3} | {O3_8H: units[O3], O3_1H_MAX: units[O3]}
    return {
        **daily,
        **{f"{name}_n": "count" for name in daily},
        "aqi": units["aqi"],
        "aqi_category": units["aqi_category"],
        "primary_pollutant": "",
        "good_day": "",
        "valid": "",
        "invalid_reason": "",  # why the day does not count ("" when valid; docs/standards.md)
        "stations": "count",
    }


def water_section_daily_fields() -> dict[str, str]:
    """rollups.windows.water_section_daily: an assessed section's daily GB 3838 class."""
    units = water.KIND.fields()
    return {
        "water_class": units["water_class"],
        "meets_iii": units["meets_iii"],
        "limiting_items": units["limiting_items"],
        "valid": "",
        "stations": "count",
    }


def measurements() -> dict[str, Measurement]:
    """Every measurement a dashboard may read, by name."""
    out = {
        k.measurement: Measurement(k.measurement, (*k.tag_keys(), *k.derived_tag_keys), k.fields())
        for k in KINDS.values()
    }
    out[STATS] = Measurement(STATS, ("host", "worker"), STATS_FIELDS)
    out[ALERTS] = Measurement(ALERTS, ALERTS_TAGS, ALERTS_FIELDS)
    out[CITY_AIR_DAILY] = Measurement(
        CITY_AIR_DAILY, ("assessment", "aqi_edition"), city_air_daily_fields()
    )
    out[WATER_SECTION_DAILY] = Measurement(
        WATER_SECTION_DAILY,
        ("site", "county", "section_type", "assessment"),
        water_section_daily_fields(),
    )
    out[PLAN_PROGRESS] = Measurement(PLAN_PROGRESS, PLAN_PROGRESS_TAGS, PLAN_PROGRESS_FIELDS)
    out[PV_DAILY] = Measurement(PV_DAILY, PV_DAILY_TAGS, PV_DAILY_FIELDS)
    out[AIR_ASSESSMENT] = Measurement(
        AIR_ASSESSMENT, air_assessment.POINT_TAGS, air_assessment.POINT_FIELDS
    )
    out[PV_GRID_DAILY] = Measurement(PV_GRID_DAILY, PV_GRID_TAGS, PV_GRID_FIELDS)
    return out


# Schema unit → Grafana unit id (grafana-data valueFormats categories). "suffix:X" prints X
# after the value for units Grafana has no id for; "none" is a plain number (pH, AQI, classes).
GRAFANA_UNITS: dict[str, str] = {
    "": "none",
    "pH": "none",
    "mg/L": "suffix:mg/L",
    "°C": "celsius",
    "µS/cm": "suffix:µS/cm",
    "NTU": "suffix:NTU",
    "GB 3838 class 1–6": "none",
    "µg/m³": "conμgm3",  # Grafana's id is spelled with the Greek mu (U+03BC)
    "mg/m³": "conmgm3",
    "%": "percent",
    "hPa": "pressurehpa",
    "m/s": "velocityms",
    "W/m²": "Wm2",
    "kWp": "suffix:kWp",
    "kWh/kWp": "suffix:kWh/kWp",
    "kWh/m²": "suffix:kWh/m²",
    "kVA": "kvoltamp",
    "ratio": "percentunit",  # a share 0–1 (PV performance ratio, availability)
    "°": "degree",
    "AQI": "none",
    "HJ 633 category 1–6": "none",
    "W": "watt",
    "kW": "kwatt",
    "V": "volt",
    "A": "amp",
    "Hz": "hertz",
    "kWh": "kwatth",
    "count": "short",
    "B": "bytes",
    "s": "s",
    "h": "h",
    # Units of the plan's figures (report.plan.FORMULAS) besides %, kWh and h above.
    "counties": "suffix:counties",
    "sessions": "suffix:sessions",
    "t": "masst",
}


def grafana_unit(schema_unit: str) -> str:
    """The Grafana unit id of a schema unit: its id, or the unit printed after the value for a
    unit Grafana has no id for (a new kind's dB(A))."""
    return GRAFANA_UNITS.get(schema_unit) or f"suffix:{schema_unit}"


def unit(measurement: str, field: str) -> str:
    """The Grafana unit id of a field; KeyError names an unknown field."""
    m = measurements()[measurement]
    if field not in m.fields:
        raise KeyError(f"{measurement} has no field {field!r}")
    if m.fields[field] == FIGURE_UNIT:
        raise KeyError(f"{measurement}.{field} has each figure's own unit: set it per figure")
    return grafana_unit(m.fields[field])
