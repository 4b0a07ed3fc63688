"""``envgrid pv underperformers``: the PV inverters flagged in a period, ranked by energy lost."""

from __future__ import annotations

import json
from typing import Annotated
from zoneinfo import ZoneInfo

import typer

from envgrid.cli.common import ConfigOpt, fail, parse_date, run_async, settings_or_exit

pv_app = typer.Typer(help="PV fleet analytics (docs/pv.md).")


@pv_app.command("underperformers")
def underperformers(
    from_: Annotated[str, typer.Option("--from", help="First local date (YYYY-MM-DD).")],
    to: Annotated[
        str | None, typer.Option("--to", help="Last local date, inclusive (default: --from).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Inverters whose daily PR (or specific yield) fell below their peers' median by more than
    rollup.pv_underperformance_margin, from the stored pv_daily points (run `envgrid rollup
    --kind pv` first for days not yet computed), the largest energy lost first."""
    from devices.lineproto import FieldValue
    from ingest.influxql import InfluxQLClient, QueryError
    from rollups.pv_job import ranked_underperformers
    from rollups.windows import Window, day_window

    first = parse_date("--from", from_)
    last = parse_date("--to", to) if to is not None else first
    if last < first:
        raise fail(f"--to {last} is before --from {first}: give the earlier date first")
    settings = settings_or_exit(config)
    tz = ZoneInfo(settings.standards.timezone)
    span = Window(day_window(first, tz).start_ms, day_window(last, tz).end_ms)

    async def work() -> list[dict[str, FieldValue]]:
        client = InfluxQLClient(settings.influx)
        try:
            return list(await ranked_underperformers(client, span))
        finally:
            await client.close()

    try:
        rows = run_async(work)
    except QueryError as e:
        raise fail(str(e), code=1) from None
    if as_json:
        for r in rows:
            typer.echo(json.dumps(r, ensure_ascii=False))
        return
    period = f"{first}..{last} ({settings.standards.timezone})"
    if not rows:
        typer.echo(f"no underperforming inverter in {period}")
        return
    typer.echo(f"underperforming inverters in {period}, largest energy lost first:")
    for r in rows:
        typer.echo(
            f"{r['device_id']:<16} {r['county']:<8} {r['site']:<20} {r['days']:>3} d  "
            f"{float(r['energy_lost_kwh']):10.2f} kWh lost  "
            f"worst {float(r['worst_shortfall']) * 100:5.1f} % below the median"
        )
