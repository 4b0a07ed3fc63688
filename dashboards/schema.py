"""What the dashboards may query: every measurement with its tags and its fields' units.

Device measurements come from the device modules (``KINDS[…].fields()``, ``tag_keys()``), so a
renamed field breaks the dashboard tests, not a dashboard in production. ``envgrid_stats`` is
written by the ingest service and ``alerts`` by the alert engine's InfluxDB notifier; their
lists below mirror those writers, and the dashboard integration test checks them against
what the real service stores.
"""

from __future__ import annotations

from dataclasses import dataclass

from devices.kinds import KINDS
from ingest.pipeline import CATEGORIES

STATS = "envgrid_stats"
ALERTS = "alerts"


@dataclass(frozen=True)
class Measurement:
    """A measurement's tag keys and its fields with their units (schema unit strings)."""

    name: str
    tags: tuple[str, ...]
    fields: dict[str, str]


# Tags written by a kind's derive_tags hook, which tag_keys() does not list.
_DERIVED_TAGS: dict[str, tuple[str, ...]] = {"air_quality": ("aqi_edition",)}

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


def measurements() -> dict[str, Measurement]:
    """Every measurement a dashboard may read, by name."""
    out = {
        k.measurement: Measurement(
            k.measurement, (*k.tag_keys(), *_DERIVED_TAGS.get(k.measurement, ())), k.fields()
        )
        for k in KINDS.values()
    }
    out[STATS] = Measurement(STATS, ("host", "worker"), STATS_FIELDS)
    out[ALERTS] = Measurement(ALERTS, ALERTS_TAGS, ALERTS_FIELDS)
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
}


def unit(measurement: str, field: str) -> str:
    """The Grafana unit id of a field; KeyError names an unknown field or unmapped unit."""
    m = measurements()[measurement]
    if field not in m.fields:
        raise KeyError(f"{measurement} has no field {field!r}")
    return GRAFANA_UNITS[m.fields[field]]
