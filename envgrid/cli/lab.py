"""``envgrid lab import FILE``: manual lab results of water sections into InfluxDB (water_lab)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer

from envgrid.cli.common import ConfigOpt, fail, run_async, settings_or_exit

lab_app = typer.Typer(no_args_is_help=True, help="Manual lab results of water sections.")

# Lines per InfluxDB write: a lab file is small, but a year of a city's results need not be.
_BATCH = 5_000


@lab_app.command("import")
def lab_import(
    file: Annotated[Path, typer.Argument(help="Lab results CSV (docs/report.md, Lab results).")],
    config: ConfigOpt = None,
) -> None:
    """Check a lab CSV against the registry and store every result, or refuse the whole file.

    Importing a file again stores each result once (same section, item and sampling time)."""
    from devices.registry import RegistryError, load_registry
    from ingest.writer import InfluxWriter, Outcome
    from report.lab import LAB_MEASUREMENT, LabFileError, lab_lines, parse_lab_csv, water_sections

    settings = settings_or_exit(config)
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise fail(f"{file}: not UTF-8 text — save the CSV as UTF-8") from None
    except OSError as e:
        raise fail(f"{file}: cannot read it ({e.strerror})") from None
    try:
        registry = load_registry(settings.devices.registry)
    except RegistryError as e:
        raise fail(str(e)) from None
    tz = ZoneInfo(settings.standards.timezone)
    try:
        results = parse_lab_csv(text, str(file), water_sections(registry), tz)
    except LabFileError as e:
        raise fail(
            f"{e}\nnothing imported: fix the lines above and import the file again"
        ) from None
    lines = lab_lines(results)

    async def write() -> str | None:
        async with InfluxWriter(settings.influx) as w:
            for i in range(0, len(lines), _BATCH):
                d = await w.deliver(lines[i : i + _BATCH])
                if d.outcome is not Outcome.OK:
                    return d.message or d.outcome.value
                if d.rejected:
                    at, why = d.rejected[0]
                    return f"{file}:{results[i + at].line}: InfluxDB refused the result ({why})"
        return None

    problem = run_async(write)
    if problem is not None:
        # Points already written are the same points a re-run writes: importing again is safe.
        raise fail(f"{problem}; import the file again once InfluxDB takes it", code=1)
    sections = len({r.site for r in results})
    typer.echo(
        f"{file}: {len(results)} lab results of {sections} sections stored in {LAB_MEASUREMENT}"
    )
