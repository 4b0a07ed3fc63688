"""PV fleet: rooftop inverters of the whole-county pilots: power, energy, equivalent hours, faults.

For the power company's distribution department: what the fleet produces now and today, which
inverters are in FAULT, and whether grid voltage and frequency at the inverters stay in limits.

Equivalent utilisation hours = kWh ÷ installed kWp (standards.md, "Rooftop PV"). Installed
capacity lives in the device registry, not in InfluxDB, so it is written into the query as a
constant when the dashboards are built: rebuild them (``envgrid dashboards build --registry``)
when capacities change. The figure is per county and for the fleet, and ignores the site and
device filters, since the capacity behind it is the whole county's.
"""

from __future__ import annotations

from collections import defaultdict

from grafana_foundation_sdk.builders import dashboard as db

from dashboards.influxql import (
    INTERVAL,
    RECENT,
    TIME_FILTER,
    count_latest,
    group_by,
    ident,
    literal,
    matches,
    where,
)
from dashboards.panels import (
    GREEN,
    PV_STATUS,
    RED,
    SCOPE,
    Ctx,
    bargauge_panel,
    new_dashboard,
    organize,
    prop,
    row,
    shown,
    stat_panel,
    steps,
    table_panel,
    timeline_panel,
    timeseries_panel,
    unit_overrides,
    value_mappings,
)
from dashboards.schema import unit
from devices import pv
from devices.registry import Registry
from rollups.pv import PV_DAILY, PV_GRID_DAILY

UID = "envgrid-pv"
M = "pv_inverter"
TODAY = "now/d"  # panel time override: from the city's midnight to now
WEEK = "now-7d"  # the daily figures' panels: the last seven closed days
MET = "pv_met"
DAILY_SCOPE = SCOPE  # pv_daily carries device_id, site and county like the raw points
COUNTY_ONLY = matches("county", "county")

# GB/T 12325: 220 V single-phase supply within +7 % / −10 %; GB/T 15945: 50 Hz ± 0.2 Hz.
VOLTAGE_LIMITS = (198.0, 235.4)
FREQUENCY_LIMITS = (49.8, 50.2)


def capacity_by_county(registry: Registry) -> dict[str, float]:
    """Installed kWp of the registry's inverters, per county (sorted by county)."""
    out: dict[str, float] = defaultdict(float)
    for d in registry.of_kind("pv"):
        out[d.county] += pv.facts(d).capacity_kwp or 0.0
    return {c: round(kw, 3) for c, kw in sorted(out.items()) if kw > 0}


def energy_today(extra: str = "", by: tuple[str, ...] = ()) -> str:
    """Σ of each inverter's latest energy_today_kwh (the inverter resets it at midnight)."""
    return (
        f'SELECT sum("e") AS {ident("energy_today_kwh")} FROM (SELECT last('
        f'{ident("energy_today_kwh")}) AS "e" FROM {ident(M)} WHERE {where(TIME_FILTER, extra)} '
        f"{group_by('device_id', *by)}) {group_by(*by)}"
    )


def equivalent_hours(county: str | None, kwp: float) -> str:
    """Energy today ÷ installed kWp of a county (None: the whole fleet)."""
    scope = (
        where(f"{ident('county')} = {literal(county)}", matches("county", "county"))
        if county
        else ""
    )
    return (
        f'SELECT sum("e") / {kwp:g} AS {ident("equivalent_hours")} FROM (SELECT last('
        f'{ident("energy_today_kwh")}) AS "e" FROM {ident(M)} WHERE {where(TIME_FILTER, scope)} '
        f"{group_by('device_id')})"
    )


def build(ctx: Ctx) -> db.Dashboard:
    """The PV fleet dashboard."""
    capacity = capacity_by_county(ctx.registry)
    fleet_kwp = round(sum(capacity.values()), 3)
    d = new_dashboard(
        ctx,
        UID,
        "PV fleet",
        "Rooftop PV inverters: fleet power now, energy and equivalent hours today, inverters in "
        "FAULT, grid voltage and frequency against GB/T 12325 and GB/T 15945 limits.",
        [M],
    )
    d.with_row(row("Now and today"))
    d.with_panel(
        stat_panel(
            "Fleet AC power now",
            "Σ of each inverter's latest AC power in the last 10 minutes.",
            unit(M, "ac_power_w"),
        ).with_target(
            ctx.q(
                f'SELECT sum("p") AS {ident("ac_power_w")} FROM (SELECT last('
                f'{ident("ac_power_w")}) AS "p" FROM {ident(M)} WHERE {where(RECENT, SCOPE)} '
                f"{group_by('device_id')})"
            )
        )
    )
    d.with_panel(
        stat_panel(
            "Energy today",
            "Σ of each inverter's energy-today register since the city's midnight.",
            unit(M, "energy_today_kwh"),
        )
        .time_from(TODAY)
        .with_target(ctx.q(energy_today(SCOPE)))
    )
    d.with_panel(
        stat_panel(
            "Equivalent hours today (fleet)",
            f"Energy today ÷ installed capacity ({fleet_kwp:g} kWp in the device registry when "
            "the dashboards were built). Ignores the site and device filters.",
            "h",
            decimals=2,
        )
        .time_from(TODAY)
        .with_target(ctx.q(equivalent_hours(None, fleet_kwp or 1)))
    )
    d.with_panel(
        stat_panel(
            "Inverters in FAULT",
            "Inverters whose latest SunSpec state in the range is FAULT (St = 7).",
            "short",
            fields=shown("in_fault"),
            decimals=0,
            thresholds=steps((None, GREEN), (1, RED)),
        ).with_target(
            ctx.q(
                count_latest(
                    M,
                    value="status",
                    condition="= " + literal("FAULT"),
                    scope=where(TIME_FILTER, SCOPE),
                    series=("device_id",),
                    hits="in_fault",
                    total="inverters",
                )
            )
        )
    )
    d.with_panel(
        timeseries_panel(
            "AC power by county",
            "Σ of the inverters' mean AC power per bucket, stacked by county.",
            unit(M, "ac_power_w"),
            w=12,
            stacked=True,
            interval="1m",
        ).with_target(
            ctx.q(
                f'SELECT sum("p") AS {ident("ac_power_w")} FROM (SELECT mean('
                f'{ident("ac_power_w")}) AS "p" FROM {ident(M)} WHERE {where(TIME_FILTER, SCOPE)} '
                f"{group_by('device_id', 'county', interval=INTERVAL)}) WHERE {TIME_FILTER} "
                f"{group_by('county', interval=INTERVAL)} fill(none)",
                alias="$tag_county",
            )
        )
    )
    d.with_panel(
        bargauge_panel(
            "Energy today by county",
            "Σ of the inverters' energy-today registers, per county.",
            unit(M, "energy_today_kwh"),
            w=6,
        )
        .time_from(TODAY)
        .with_target(ctx.q(energy_today(SCOPE, ("county",)), alias="$tag_county"))
    )
    hours = bargauge_panel(
        "Equivalent hours today by county",
        "Energy today ÷ the county's installed kWp from the device registry ("
        + ", ".join(f"{c} {kw:g}" for c, kw in capacity.items())
        + "). Follows the county filter only.",
        "h",
        w=6,
        decimals=2,
    ).time_from(TODAY)
    for i, (county, kwp) in enumerate(capacity.items()):
        hours.with_target(ctx.q(equivalent_hours(county, kwp), _ref(i), alias=county))
    d.with_panel(hours)
    d.with_row(row("Faults and state"))
    cols = ("status", "ac_power_w", "temp_c")
    d.with_panel(
        table_panel(
            "FAULT list",
            "Inverters whose latest state in the range is FAULT, with their latest power and "
            "temperature.",
            w=10,
            units=unit_overrides(M, cols),
            coloured={"status": PV_STATUS},
            transformations=[
                organize(["device_id", "site", "county", "Time", *cols], {"Time": "since"})
            ],
            no_value="No inverter in FAULT",
        ).with_target(
            ctx.q(
                f'SELECT "s" AS {ident("status")}, {ident("ac_power_w")}, {ident("temp_c")}, '
                f"{ident('site')}, {ident('county')} FROM (SELECT last({ident('status')}) AS "
                f'"s", {ident("ac_power_w")}, {ident("temp_c")}, {ident("site")}, '
                f"{ident('county')} FROM {ident(M)} WHERE {where(TIME_FILTER, SCOPE)} "
                f'{group_by("device_id")}) WHERE "s" = {literal("FAULT")} {group_by("device_id")}',
                table=True,
            )
        )
    )
    d.with_panel(
        timeline_panel(
            "Inverter state",
            "SunSpec operating state of each inverter (MPPT: producing).",
            value_mappings(PV_STATUS),
            w=14,
        ).with_target(
            ctx.q(
                f"SELECT last({ident('status')}) AS {ident('status')} FROM {ident(M)} "
                f"WHERE {where(TIME_FILTER, SCOPE)} {group_by('device_id', interval=INTERVAL)} "
                "fill(none)",
                alias="$tag_device_id",
            )
        )
    )
    _performance(ctx, d)
    d.with_row(row("Grid at the inverters"))
    lo, hi = VOLTAGE_LIMITS
    d.with_panel(
        timeseries_panel(
            "Grid voltage (fleet lowest and highest)",
            f"AC voltage at the inverters against GB/T 12325 (220 V +7 % / −10 %: {lo:g}–"
            f"{hi:g} V).",
            unit(M, "ac_voltage_v"),
            w=12,
            thresholds=steps((None, RED), (lo, GREEN), (hi, RED)),
            threshold_style="line+area",
            decimals=1,
            interval="1m",
        )
        .with_target(ctx.q(_min_max("ac_voltage_v")))
        .override_by_name("ac_voltage_v_max", [prop("displayName", "highest")])
        .override_by_name("ac_voltage_v_min", [prop("displayName", "lowest")])
    )
    flo, fhi = FREQUENCY_LIMITS
    d.with_panel(
        timeseries_panel(
            "Grid frequency (fleet lowest and highest)",
            f"Grid frequency at the inverters against GB/T 15945 (50 Hz ± 0.2 Hz: {flo:g}–"
            f"{fhi:g} Hz).",
            unit(M, "grid_freq_hz"),
            w=12,
            thresholds=steps((None, RED), (flo, GREEN), (fhi, RED)),
            threshold_style="line+area",
            decimals=3,
            interval="1m",
        )
        .with_target(ctx.q(_min_max("grid_freq_hz")))
        .override_by_name("grid_freq_hz_max", [prop("displayName", "highest")])
        .override_by_name("grid_freq_hz_min", [prop("displayName", "lowest")])
    )
    return d


def _min_max(field: str) -> str:
    f = ident(field)
    return (
        f"SELECT min({f}) AS {ident(field + '_min')}, max({f}) AS {ident(field + '_max')} "
        f"FROM {ident(M)} WHERE {where(TIME_FILTER, SCOPE)} {group_by(interval=INTERVAL)} "
        "fill(none)"
    )


def _ref(i: int) -> str:
    return chr(ord("A") + i)


def _performance(ctx: Ctx, d: db.Dashboard) -> None:
    """IEC 61724-1 daily figures (rollups/pv_job.py, docs/pv.md), underperformers, curtailment
    and the grid view, over the last seven closed days."""
    d.with_row(row("Performance (IEC 61724-1), last 7 days"))
    week = where(TIME_FILTER, DAILY_SCOPE)
    d.with_panel(
        stat_panel(
            "Fleet PR (7 days)",
            "Performance ratio of the inverters with irradiance: Σ energy ÷ Σ (P0 × Yr), "
            "IEC 61724-1 (PR = Yf / Yr, summed quantities, not a mean of ratios).",
            unit(PV_DAILY, "pr"),
            decimals=1,
        )
        .time_from(WEEK)
        .with_target(
            ctx.q(
                f'SELECT sum("e") / sum("ref") AS {ident("pr")} FROM (SELECT '
                f'{ident("energy_kwh")} AS "e", {ident("p0_kwp")} * {ident("yr_h")} AS "ref" '
                f"FROM {ident(PV_DAILY)} WHERE {where(week, ident('yr_h') + ' > 0')})"
            )
        )
    )
    d.with_panel(
        timeseries_panel(
            "PR per inverter (daily)",
            "Each inverter's daily performance ratio; absent on days without irradiance.",
            unit(PV_DAILY, "pr"),
            w=18,
            decimals=2,
        )
        .time_from(WEEK)
        .with_target(
            ctx.q(
                f"SELECT {ident('pr')} FROM {ident(PV_DAILY)} WHERE {week} {group_by('device_id')}",
                alias="$tag_device_id",
            )
        )
    )
    d.with_panel(
        bargauge_panel(
            "Specific yield by county (kWh/kWp per day)",
            "Σ energy ÷ Σ installed kWp of the county's inverter-days: the mean daily final "
            "yield Yf; for pilot counties it is the plan's equivalent hours.",
            unit(PV_DAILY, "yf_kwh_kwp"),
            w=8,
            decimals=2,
        )
        .time_from(WEEK)
        .with_target(
            ctx.q(
                f'SELECT sum("e") / sum("p") AS {ident("yf_kwh_kwp")} FROM (SELECT '
                f'{ident("energy_kwh")} AS "e", {ident("p0_kwp")} AS "p" FROM {ident(PV_DAILY)} '
                f"WHERE {where(week, ident('p0_kwp') + ' > 0', ident('energy_kwh') + ' >= 0')} "
                f"{group_by('county')}) {group_by('county')}",
                alias="$tag_county",
            )
        )
    )
    cols = ("availability", "curtailed_h", "curtailed_kwh", "fault_h", "energy_kwh")
    d.with_panel(
        table_panel(
            "Availability, curtailment and faults",
            "Per inverter over the days: mean availability (time producing or THROTTLED while "
            "the sun is up), hours and estimated energy held back while THROTTLED, hours in "
            "FAULT, energy.",
            w=16,
            units=unit_overrides(PV_DAILY, cols),
            transformations=[organize(["device_id", *cols])],
            sort="curtailed_kwh",
        )
        .time_from(WEEK)
        .with_target(
            ctx.q(
                f"SELECT mean({ident('availability')}) AS {ident('availability')}, "
                + ", ".join(f"sum({ident(c)}) AS {ident(c)}" for c in cols[1:])
                + f" FROM {ident(PV_DAILY)} WHERE {week} {group_by('device_id')}",
                table=True,
            )
        )
    )
    lost = ("energy_lost_kwh", "shortfall", "pr", "peer_median")
    d.with_panel(
        table_panel(
            "Underperformers (ranked by energy lost)",
            "Inverter-days whose PR (or, without irradiance, specific yield) was below the "
            "median of their peers (same met station or transformer area) by more than "
            "rollup.pv_underperformance_margin; energy lost = (median − PR) × P0 × Yr. These "
            "raise the alert pv-underperforming.",
            w=24,
            units=unit_overrides(PV_DAILY, lost),
            transformations=[organize(["Time", "device_id", "site", "county", *lost])],
            no_value="No underperformer",
            sort="energy_lost_kwh",
        )
        .time_from(WEEK)
        .with_target(
            ctx.q(
                f"SELECT {', '.join(ident(c) for c in lost)}, {ident('site')}, "
                f"{ident('county')} FROM {ident(PV_DAILY)} WHERE "
                f"{where(week, ident('underperforming') + ' = true')} {group_by('device_id')}",
                table=True,
            )
        )
    )
    grid = ("installed_kwp", "energy_kwh", "peak_kw", "rated_kva", "peak_to_rated")
    d.with_panel(
        table_panel(
            "Grid view: transformer areas, feeders, substations, counties",
            "Latest closed day per grid location: installed kWp, energy, peak simultaneous "
            "output (largest Σ of the inverters' 5-minute mean outputs) and that peak ÷ the "
            "transformer area's rated_kva (feeders and substations: Σ of their areas' ratings, "
            "where all are known). Near or above 1: reverse power flow is likely. Follows the "
            "county filter only.",
            w=24,
            units=[*unit_overrides(PV_GRID_DAILY, grid)],
            transformations=[organize(["level", "name", *grid])],
            sort="peak_to_rated",
        )
        .time_from(WEEK)
        .with_target(
            ctx.q(
                f"SELECT {', '.join(f'last({ident(c)}) AS {ident(c)}' for c in grid)} "
                f"FROM {ident(PV_GRID_DAILY)} WHERE {where(TIME_FILTER, COUNTY_ONLY)} "
                f"{group_by('level', 'name')}",
                table=True,
            )
        )
    )
    d.with_panel(
        timeseries_panel(
            "Plane-of-array irradiance (met stations)",
            "POA irradiance at each county's PV met station (follows the county filter only).",
            unit(MET, "poa_w_m2"),
            w=24,
            interval="1m",
        ).with_target(
            ctx.q(
                f"SELECT mean({ident('poa_w_m2')}) AS {ident('poa_w_m2')} FROM {ident(MET)} "
                f"WHERE {where(TIME_FILTER, COUNTY_ONLY)} "
                f"{group_by('device_id', interval=INTERVAL)} fill(none)",
                alias="$tag_device_id",
            )
        )
    )
