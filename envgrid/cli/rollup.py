"""``envgrid rollup``: back-fill hourly and daily rollups and the city figures for a period."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

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

rollup_app = typer.Typer(
    help="Hourly/daily rollups (water class, AQI, city figures, PV daily figures) for a period of "
    "local dates."
)


@rollup_app.callback(invoke_without_command=True)
def rollup(
    from_: Annotated[
        str, typer.Option("--from", help="First local date (YYYY-MM-DD), in the city's time zone.")
    ],
    to: Annotated[
        str | None, typer.Option("--to", help="Last local date, inclusive (default: --from).")
    ] = None,
    kind: Annotated[
        str | None,
        typer.Option(
            "--kind", help="Only 'air', 'water' or 'pv' (PV daily figures; default: all)."
        ),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Recompute every closed hour and day from --from to --to (both inclusive) and write them.

    Safe to repeat: a recomputed window overwrites its points.
    """
    from devices.registry import RegistryError, load_registry
    from ingest.influxql import QueryError
    from rollups.runner import KIND_NAMES, Rollup, RollupError, Task

    setup_logging("WARNING")
    first = parse_date("--from", from_)
    last = parse_date("--to", to) if to is not None else first
    if last < first:
        raise fail(f"--to {last} is before --from {first}: give the earlier date first")
    if kind is not None and kind not in KIND_NAMES:
        raise fail(f"--kind {kind!r} is not a rollup kind: use one of {', '.join(KIND_NAMES)}")
    settings = settings_or_exit(config)
    try:
        registry = load_registry(settings.devices.registry)
    except RegistryError as e:
        raise fail(str(e)) from None
    tz = ZoneInfo(settings.standards.timezone)
    start = datetime(first.year, first.month, first.day, tzinfo=tz)
    after = last + timedelta(days=1)
    end = datetime(after.year, after.month, after.day, tzinfo=tz)
    kinds = (kind,) if kind else KIND_NAMES

    async def work() -> tuple[int, dict[str, int]]:
        counts: dict[str, int] = {}
        async with Rollup(settings, registry, kinds=kinds) as r:
            tasks: list[Task] = r.plan(start, end, datetime.now(UTC))
            if not tasks:
                return 0, counts
            console = Console(stderr=True)
            columns = (
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
            )
            # A bar only on a terminal: piped or logged runs get the summary line alone.
            live = console.is_terminal
            with Progress(*columns, console=console, transient=True, disable=not live) as bar:
                job = bar.add_task("rollup", total=len(tasks))
                for t in tasks:
                    bar.update(job, description=t.describe())
                    for p in await r.run_task(t):
                        counts[p.measurement] = counts.get(p.measurement, 0) + 1
                    bar.advance(job)
            return len(tasks), counts

    try:
        n_tasks, counts = run_async(work)
    except (QueryError, RollupError) as e:
        raise fail(str(e), code=1) from None
    period = f"{first}..{last} ({settings.standards.timezone})"
    if n_tasks == 0:
        typer.echo(f"nothing to roll up for {period}: no closed hour in it yet")
        return
    detail = ", ".join(f"{m} {n}" for m, n in sorted(counts.items())) or "no readings found"
    typer.echo(f"rolled up {period}, {'/'.join(kinds)}: {sum(counts.values())} points ({detail})")
