"""Plan targets: a placeholder until the plan-progress report (issue 9) adds its stat panels.

The report computes the plan's figures from period rollups (``envgrid report``); this dashboard
will show the same figures against their targets. Until then it says where to find them.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db

from dashboards.panels import Ctx, new_dashboard, text_panel

UID = "envgrid-plan"

_TEXT = """\
The city's 2025 green low-carbon targets, measured from the live data:

| figure | target |
|---|---|
| Sections at GB 3838 Class III or better (优Ⅲ比例) | 81.8 % |
| Good air-quality days (优良天数比率) | about 81 % |
| Shore-power use at canal ports | as configured |
| Rooftop PV in the five whole-county pilots | generation, equivalent hours |
| EV charging network | energy, availability, utilisation |

The figures, with their formulas and the data behind each, come from `envgrid report`
(see docs). Stat panels against each target will be added here by the plan-report work.
Live views: **Water quality**, **Air quality**, **PV fleet**, **EV charging**, **Shore power**.
"""


def build(ctx: Ctx) -> db.Dashboard:
    """The Plan targets placeholder dashboard."""
    return new_dashboard(
        ctx,
        UID,
        "Plan targets",
        "The plan's targets and where their figures come from (placeholder).",
        [],
        device_variables=False,
        time_from="now-30d",
        refresh="",
    ).with_panel(text_panel("Plan targets", _TEXT, h=12))
