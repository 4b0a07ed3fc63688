"""``envgrid report``: the plan progress report from the rollups in InfluxDB."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from envgrid.cli.common import (
    ConfigOpt,
    fail,
    parse_date,
    run_async,
    settings_or_exit,
    setup_logging,
)

report_app: typer.Typer = typer.Typer(
    help="Plan progress report: the city's green low-carbon targets measured from the data."
)


@report_app.callback(invoke_without_command=True)
def report(
    from_: Annotated[
        str | None,
        typer.Option("--from", help="First local date (YYYY-MM-DD); default: the plan's."),
    ] = None,
    to: Annotated[
        str | None, typer.Option("--to", help="Last local date, inclusive; default: the plan's.")
    ] = None,
    period_kind: Annotated[
        str | None,
        typer.Option(
            "--period",
            help="month, quarter, year or custom: the period report with the official "
            "statistics (air assessment, ranking); custom takes --from/--to.",
        ),
    ] = None,
    at: Annotated[
        str | None,
        typer.Option(
            "--at", help="Which period: 2026-11, 2026-Q4 or 2026; default: the last closed one."
        ),
    ] = None,
    county: Annotated[
        str | None, typer.Option("--county", help="Only this county's sections and devices.")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table, json, csv or html.")] = "table",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file (default: stdout).")
    ] = None,
    plan_file: Annotated[
        Path | None,
        typer.Option("--plan", help="Plan targets file (TOML); default: the shipped plan.toml."),
    ] = None,
    store: Annotated[
        bool,
        typer.Option(
            "--store",
            help="Also write the figures to InfluxDB (plan_progress, and with --period each "
            "section's measurement, e.g. air_assessment) for Grafana.",
        ),
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Compute every plan figure for a period: value, target, met or not, data coverage; with
    --period also the period's official statistics (air assessment, county ranking)."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from devices.registry import RegistryError, load_registry
    from ingest.influxql import QueryError
    from report.figures import Reporter, ReportError, known_counties, load_plan
    from report.figures import store as store_figures
    from report.period import PeriodError, PeriodReport, build_sections, resolve, store_sections
    from report.plan import PlanError
    from report.render import FORMATS, Report, render
    from report.sections import SectionContext
    from rollups.review import ReviewStore

    setup_logging("WARNING")
    if fmt not in FORMATS:
        raise fail(f"--format {fmt!r} is not a format: use one of {', '.join(FORMATS)}")
    try:
        plan = load_plan(plan_file)
    except PlanError as e:
        raise fail(str(e)) from None
    given_first = parse_date("--from", from_) if from_ is not None else None
    given_last = parse_date("--to", to) if to is not None else None
    settings = settings_or_exit(config)
    tz = ZoneInfo(settings.standards.timezone)
    try:
        period = resolve(period_kind, at, given_first, given_last, datetime.now(tz).date())
    except PeriodError as e:
        raise fail(str(e)) from None
    if period is not None:
        first, last = period.first, period.last
    else:
        first = given_first if given_first is not None else plan.plan.start
        last = given_last if given_last is not None else plan.plan.end
    if last < first:
        raise fail(f"--to {last} is before --from {first}: give the earlier date first")
    try:
        registry = load_registry(settings.devices.registry)
    except RegistryError as e:
        raise fail(str(e)) from None
    counties = known_counties(registry)
    if county is not None and counties and county not in counties:
        raise fail(
            f"--county {county!r} is not in the device registry: use one of {', '.join(counties)}"
        )

    async def work() -> tuple[str, int, int]:
        report: Report
        async with Reporter(settings, registry, plan) as rep:
            console = Console(stderr=True)
            columns = (
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
            )
            # A bar only on a terminal: piped or logged runs get the result alone.
            with Progress(
                *columns, console=console, transient=True, disable=not console.is_terminal
            ) as bar:
                job = bar.add_task("report", total=rep.steps(first, last))

                def tick(label: str) -> None:
                    bar.update(job, description=label, advance=1)

                result = await rep.run(first, last, county, tick)
                report = result
                if period is not None:
                    review = ReviewStore(settings.rollup.review_store)
                    try:
                        ctx = SectionContext(
                            client=rep.client,
                            registry=registry,
                            settings=settings,
                            period=period,
                            tz=tz,
                            now=rep.now,
                            county=county,
                            extra={"review_store": review},
                        )
                        bar.update(job, description="statistics sections")
                        report = PeriodReport(result, period, await build_sections(ctx))
                    finally:
                        review.close()
        stored = await store_figures(settings, result) if store else 0
        points = 0
        if store and isinstance(report, PeriodReport):
            points = await store_sections(settings, report.sections)
        return render(report, fmt), stored, points

    try:
        text, stored, points = run_async(work)
    except (QueryError, ReportError) as e:
        raise fail(str(e), code=1) from None
    if output is None:
        typer.echo(text, nl=False)
    else:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as e:
            raise fail(f"{output}: cannot write the report ({e.strerror})", code=1) from None
        typer.echo(f"wrote the {fmt} report for {first}..{last} to {output}", err=True)
    if store:
        typer.echo(f"stored {stored} figures in plan_progress", err=True)
        if period is not None:
            typer.echo(f"stored {points} statistics points ({period.label})", err=True)
