"""Water quality: the nine automatic-station indicators against GB 3838-2002 Class III, by section.

For the environment bureau's water division: which sections meet Class III (the plan's 优Ⅲ
target counts them), which item limits a section, and how the indicators move.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db

from dashboards.influxql import INTERVAL, TIME_FILTER, count_latest, group_by, ident, where
from dashboards.panels import (
    GREEN,
    ORANGE,
    RED,
    SCOPE,
    WATER_CLASSES,
    YES_NO,
    Ctx,
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
from devices.gb3838 import PH_RANGE, class_limit

UID = "envgrid-water"
M = "water_quality"
III = 3
# The columns of the Class III share and the names they are displayed under.
SHARE_III = {
    "share_iii_pct": "share ≤ III",
    "class_i_iii": "sections ≤ III",
    "sections": "sections",
}

# The nine basic indicators of an automatic station (standards.md, GB 3838 section) with what
# GB 3838-2002 Table 1 sets for Class III, drawn as threshold lines.
_LAKE_TP_III = class_limit("tp_mg_l", III, "lake")
INDICATORS: tuple[tuple[str, str, str, db.ThresholdsConfig | None], ...] = (
    ("temp_c", "Water temperature", "No GB 3838 class limit.", None),
    (
        "ph",
        "pH",
        f"Every class requires pH {PH_RANGE[0]:g}–{PH_RANGE[1]:g} (GB 3838-2002 Table 1).",
        steps((None, RED), (PH_RANGE[0], GREEN), (PH_RANGE[1], RED)),
    ),
    (
        "do_mg_l",
        "Dissolved oxygen",
        f"Class III needs DO ≥ {class_limit('do_mg_l', III):g} mg/L (GB 3838-2002 Table 1).",
        steps((None, RED), (class_limit("do_mg_l", III), GREEN)),
    ),
    ("conductivity_us_cm", "Conductivity", "No GB 3838 class limit.", None),
    ("turbidity_ntu", "Turbidity", "No GB 3838 class limit.", None),
    (
        "codmn_mg_l",
        "Permanganate index (CODMn)",
        f"Class III: ≤ {class_limit('codmn_mg_l', III):g} mg/L (GB 3838-2002 Table 1).",
        steps((None, GREEN), (class_limit("codmn_mg_l", III), RED)),
    ),
    (
        "nh3n_mg_l",
        "Ammonia nitrogen (NH3-N)",
        f"Class III: ≤ {class_limit('nh3n_mg_l', III):g} mg/L (GB 3838-2002 Table 1).",
        steps((None, GREEN), (class_limit("nh3n_mg_l", III), RED)),
    ),
    (
        "tp_mg_l",
        "Total phosphorus (TP)",
        f"Class III: ≤ {class_limit('tp_mg_l', III):g} mg/L on rivers, ≤ {_LAKE_TP_III:g} mg/L "
        "on lakes and reservoirs (GB 3838-2002 Table 1): the orange line is the lake limit, "
        "the red line the river limit.",
        steps((None, GREEN), (_LAKE_TP_III, ORANGE), (class_limit("tp_mg_l", III), RED)),
    ),
    (
        "tn_mg_l",
        "Total nitrogen (TN)",
        f"Class III: ≤ {class_limit('tn_mg_l', III):g} mg/L (lakes and reservoirs; TN does not "
        "decide a section's class, 环办[2011]22号).",
        steps((None, GREEN), (class_limit("tn_mg_l", III), RED)),
    ),
)


def indicator_query(field: str) -> str:
    """The mean of one indicator per bucket and section."""
    return (
        f"SELECT mean({ident(field)}) AS {ident(field)} FROM {ident(M)} "
        f"WHERE {where(TIME_FILTER, SCOPE)} {group_by('site', interval=INTERVAL)} fill(none)"
    )


def build(ctx: Ctx) -> db.Dashboard:
    """The Water quality dashboard."""
    d = new_dashboard(
        ctx,
        UID,
        "Water quality",
        "Surface-water automatic stations: GB 3838-2002 class per section (single-factor "
        "method), and the nine basic indicators against their Class III limits.",
        [M],
    )
    class_map = value_mappings(WATER_CLASSES)
    d.with_row(row("GB 3838-2002 class"))
    d.with_panel(
        stat_panel(
            "Sections at Class III or better",
            "Share of sections whose latest reading in the range is Class I–III (the plan's "
            "优Ⅲ比例 uses period means: see `envgrid report`).",
            "percent",
            w=6,
            h=8,
            fields=shown(*SHARE_III.values()),
            names=True,
            decimals=1,
            thresholds=steps((None, RED), (81.8, GREEN)),
        )
        .with_target(
            ctx.q(
                count_latest(
                    M,
                    value="water_class",
                    condition=f"<= {III}",
                    scope=where(TIME_FILTER, SCOPE),
                    series=("device_id",),
                    hits="class_i_iii",
                    total="sections",
                    share="share_iii_pct",
                )
            )
        )
        .override_by_name("share_iii_pct", [prop("displayName", SHARE_III["share_iii_pct"])])
        .override_by_name(
            "class_i_iii",
            [
                prop("unit", "short"),
                prop("decimals", 0),
                prop("displayName", SHARE_III["class_i_iii"]),
            ],
        )
        .override_by_name(
            "sections",
            [
                prop("unit", "short"),
                prop("decimals", 0),
                prop("displayName", SHARE_III["sections"]),
            ],
        )
    )
    d.with_panel(
        timeline_panel(
            "Class by section",
            "Worst GB 3838 class of each section per time bucket.",
            class_map,
            w=18,
            h=8,
        ).with_target(
            ctx.q(
                f"SELECT max({ident('water_class')}) AS {ident('water_class')} FROM {ident(M)} "
                f"WHERE {where(TIME_FILTER, SCOPE)} {group_by('site', interval=INTERVAL)} "
                "fill(none)",
                alias="$tag_site",
            )
        )
    )
    cols = ("water_class", "meets_iii", "limiting_items")
    d.with_panel(
        table_panel(
            "Latest class of every section",
            "The latest reading of each section in the range: its class, whether it meets "
            "Class III and the items that set the class.",
            h=9,
            units=unit_overrides(M, cols),
            coloured={"water_class": WATER_CLASSES, "meets_iii": YES_NO},
            titles={"water_class": "class", "meets_iii": "≤ III", "limiting_items": "limiting"},
            transformations=[
                organize(
                    ["site", "device_id", "county", "section_type", "Time", *cols],
                    {"Time": "reading at"},
                )
            ],
            sort="class",
        ).with_target(
            ctx.q(
                f"SELECT last({ident('water_class')}) AS {ident('water_class')}, "
                f"{ident('meets_iii')}, {ident('limiting_items')}, {ident('section_type')}, "
                f"{ident('county')} FROM {ident(M)} WHERE {where(TIME_FILTER, SCOPE)} "
                f"{group_by('site', 'device_id')}",
                table=True,
            )
        )
    )
    d.with_row(row("Indicators (mean per bucket, one line per section)"))
    for field, title, note, limits in INDICATORS:
        d.with_panel(
            timeseries_panel(
                title,
                note,
                unit(M, field),
                w=8,
                thresholds=limits,
                interval="1m",
            ).with_target(ctx.q(indicator_query(field), alias="$tag_site"))
        )
    return d
