"""City overview: every device on a map by its latest status, who is online, what is alerting.

For the duty officers of the environment bureau and the power company: their first screen.
"""

from __future__ import annotations

from dataclasses import dataclass

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import geomap
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models.common import FrameGeometrySourceMode, MapLayerOptions
from grafana_foundation_sdk.models.geomap import TooltipMode

from dashboards import alerts_common as ac
from dashboards.influxql import RECENT, TIME_FILTER, group_by, ident, where
from dashboards.panels import (
    AQI_CATEGORIES,
    CONNECTED,
    EV_STATUS,
    GREEN,
    PV_STATUS,
    RED,
    SCOPE,
    WATER_CLASSES,
    Ctx,
    mapped,
    new_dashboard,
    prop,
    row,
    shown,
    stat_panel,
    steps,
    thresholds_prop,
)

UID = "envgrid-city"
# Served by Grafana from its public folder: docker-compose mounts dashboards/gazetteer there.
GAZETTEER = "public/gazetteer/envgrid-devices.json"
Colouring = dict[str, tuple[str, str]]


@dataclass(frozen=True)
class Kind:
    """How one device kind appears on the overview.

    ``presence`` is a float field every reading of the kind carries (online/offline counts);
    ``status`` is the field that colours the device's marker, shown as ``column``.
    """

    title: str
    measurement: str
    presence: str
    column: str
    status: str
    mappings: Colouring
    symbol: str


KINDS: tuple[Kind, ...] = (
    Kind("Water stations", "water_quality", "temp_c", "water_class", "water_class",
         WATER_CLASSES, "circle"),
    Kind("Air stations", "air_quality", "pm25_ug_m3", "aqi_category", "aqi_category",
         AQI_CATEGORIES, "square"),
    Kind("Rooftop PV", "pv_inverter", "ac_power_w", "pv_status", "status", PV_STATUS,
         "star"),
    Kind("EV chargers", "ev_charger", "energy_kwh", "ev_status", "status", EV_STATUS,
         "triangle"),
    Kind("Shore power", "shore_power", "energy_kwh", "connected", "connected", CONNECTED,
         "cross"),
)  # fmt: skip


def presence_query(measurement: str, field: str) -> str:
    """Devices reporting in the dashboard range, online (a reading within 10 min), offline.

    A device is offline when it reported in the range but not in the last 10 minutes. The
    zero-valued ``on`` point of the second subquery keeps the sums defined when none is online.
    """
    m, f = ident(measurement), ident(field)
    scope = where(TIME_FILTER, SCOPE)
    return (
        'SELECT count("seen") AS "reporting", sum("on") AS "online", '
        'count("seen") - sum("on") AS "offline" '
        f'FROM (SELECT last({f}) AS "seen" FROM {m} WHERE {scope} {group_by("device_id")}), '
        f'(SELECT last({f}) * 0.0 AS "on" FROM {m} WHERE {scope}), '
        f'(SELECT last({f}) * 0.0 + 1.0 AS "on" FROM {m} '
        f"WHERE {where(RECENT, SCOPE)} {group_by('device_id')})"
    )


def status_query(kind: Kind) -> str:
    """The latest status of every device of a kind, with its site: one table row per device."""
    return (
        f"SELECT last({ident(kind.status)}) AS {ident(kind.column)}, {ident('site')} "
        f"FROM {ident(kind.measurement)} WHERE {where(TIME_FILTER, SCOPE)} "
        f"{group_by('device_id')}"
    )


def build(ctx: Ctx) -> db.Dashboard:
    """The City overview dashboard."""
    d = new_dashboard(
        ctx,
        UID,
        "City overview",
        "Every envgrid device on the map by its latest status, devices online and offline "
        "(offline: reported in the range but not in the last 10 minutes), and the alerts "
        "firing now.",
        [k.measurement for k in KINDS],
    )
    d.annotation(ac.annotation(ctx))
    d.with_row(row("Devices"))
    for kind in KINDS:
        d.with_panel(
            stat_panel(
                kind.title,
                "Devices that reported in the dashboard range: online (a reading in the last "
                "10 minutes) and offline (none since).",
                "short",
                w=4,
                fields=shown("online", "offline"),
                names=True,
                decimals=0,
            )
            .with_target(ctx.q(presence_query(kind.measurement, kind.presence)))
            .override_by_name("online", [prop("color", {"mode": "fixed", "fixedColor": GREEN})])
            .override_by_name("offline", [thresholds_prop((None, GREEN), (1, RED))])
        )
    d.with_panel(
        stat_panel(
            "Alerts firing",
            "Alert episodes whose latest notification in the last 7 days is 'firing'.",
            "short",
            w=4,
            fields=shown("firing"),
            decimals=0,
            thresholds=steps((None, GREEN), (1, RED)),
        ).with_target(ctx.q(ac.firing_count_query()))
    )
    d.with_row(row("Map and alerts"))
    d.with_panel(_map(ctx))
    d.with_panel(ac.active_table(ctx, w=8, h=16))
    return d


def _map(ctx: Ctx) -> geomap.Panel:
    """One marker layer per kind, placed by device id through the envgrid gazetteer."""
    p = (
        geomap.Panel()
        .title("Devices by latest status")
        .description(
            "Each marker is a device at its registry position (gazetteer "
            f"{GAZETTEER}, written by `envgrid dashboards build` from the device registry), "
            "coloured by its latest status: water class, AQI category, PV state, charger "
            "status, berth connected."
        )
        .span(16)
        .height(16)
        .unit("none")
        .view(_view(ctx))
        .controls(geomap.ControlsOptions().show_zoom(True).mouse_wheel_zoom(True))
        # Grafana's default base map (configurable with geomap_default_baselayer in grafana.ini).
        .basemap(cb.MapLayerOptions().type("default").name("Basemap"))
        .tooltip(geomap.TooltipOptions().mode(TooltipMode.DETAILS))
    )
    layers: list[Builder[MapLayerOptions]] = []
    for ref, kind in zip("ABCDE", KINDS, strict=True):
        p.with_target(ctx.q(status_query(kind), ref, table=True))
        p.override_by_name(kind.column, mapped(kind.mappings))
        layers.append(
            cb.MapLayerOptions()
            .type("markers")
            .name(kind.title)
            .location(
                cb.FrameGeometrySource()
                .mode(FrameGeometrySourceMode.LOOKUP)
                .lookup("device_id")
                .gazetteer(GAZETTEER)
            )
            .filter_data({"id": "byRefId", "options": ref})
            .tooltip(True)
            .config(
                {
                    "showLegend": True,
                    "style": {
                        "color": {"field": kind.column, "fixed": "dark-green"},
                        "opacity": 0.9,
                        "size": {"fixed": 8},
                        "symbol": {
                            "fixed": f"img/icons/marker/{kind.symbol}.svg",
                            "mode": "fixed",
                        },
                    },
                }
            )
        )
    p.layers(layers)
    return p


def _view(ctx: Ctx) -> geomap.MapViewConfig:
    """Centre the map on the registry's devices."""
    lats = [d.lat for d in ctx.registry if d.lat is not None]
    lons = [d.lon for d in ctx.registry if d.lon is not None]
    lat = round(sum(lats) / len(lats)) if lats else 33
    lon = round(sum(lons) / len(lons)) if lons else 119
    return geomap.MapViewConfig().id("coords").lat(lat).lon(lon).zoom(9)
