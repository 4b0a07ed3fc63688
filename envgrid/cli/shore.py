"""``envgrid shore``: import the vessel register and berthing records (report/shore_csv.py)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer

from envgrid.cli.common import ConfigOpt, fail, run_async, settings_or_exit, setup_logging
from envgrid.settings import Settings

shore_app = typer.Typer(
    no_args_is_help=True,
    help="Shore power as 港口和船舶岸电管理办法 counts it: vessel register and berthing records.",
)
vessels_app = typer.Typer(no_args_is_help=True, help="The vessel register (shore_vessels).")
calls_app = typer.Typer(no_args_is_help=True, help="Berthing records (shore_calls).")
shore_app.add_typer(vessels_app, name="vessels")
shore_app.add_typer(calls_app, name="calls")

FileArg = Annotated[Path, typer.Argument(help="CSV file (UTF-8, a header line first).")]


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise fail(f"{path}: not UTF-8 text; save the CSV as UTF-8") from None
    except OSError as e:
        raise fail(f"{path}: cannot read it ({e.strerror})") from None


def _store(settings: Settings, lines: Sequence[str], what: str) -> None:
    from ingest.writer import InfluxWriter, Outcome

    async def write() -> str | None:
        async with InfluxWriter(settings.influx) as w:
            d = await w.deliver(lines)
        if d.outcome is not Outcome.OK:
            return f"InfluxDB did not take the {what}: {d.message}; nothing is lost, run it again"
        if d.rejected:
            return f"InfluxDB refused a {what} point: {d.rejected[0][1]}"
        return None

    if lines and (problem := run_async(write)) is not None:
        raise fail(problem, code=1)


@vessels_app.command("import")
def vessels_import(path: FileArg, config: ConfigOpt = None) -> None:
    """Import the vessel register: vessel, equipped, liquid_cargo[, name, mmsi, exemption,
    valid_from]. One bad row refuses the file; importing it again stores it once."""
    from report.shore_csv import VESSELS, ShoreCsvError, parse_vessels

    setup_logging("WARNING")
    settings = settings_or_exit(config)
    tz = ZoneInfo(settings.standards.timezone)
    try:
        vessels = parse_vessels(_read(path), str(path))
    except ShoreCsvError as e:
        raise fail(str(e)) from None
    _store(settings, [v.line(tz) for v in vessels], VESSELS)
    typer.echo(f"{path}: {len(vessels)} vessels stored in {VESSELS}")


@calls_app.command("import")
def calls_import(path: FileArg, config: ConfigOpt = None) -> None:
    """Import berthing records: vessel, berth, arrival, departure[, exemption]. The berth is the
    site of its shore-power meter in the device registry. One bad row refuses the file;
    importing it again stores it once."""
    from devices import shore_power
    from devices.registry import RegistryError, load_registry
    from report.shore_csv import CALLS, ShoreCsvError, parse_calls

    setup_logging("WARNING")
    settings = settings_or_exit(config)
    try:
        registry = load_registry(settings.devices.registry)
    except RegistryError as e:
        raise fail(str(e)) from None
    berths: dict[str, str] = {}
    for d in registry.of_kind(shore_power.KIND.name):
        berths[d.site] = d.site
        berths[d.id] = d.site
    if not berths:
        raise fail(
            "the device registry has no shore-power meter: a berthing record names the site of "
            "its berth's meter; set [devices] registry"
        )
    try:
        calls = parse_calls(_read(path), str(path), berths, ZoneInfo(settings.standards.timezone))
    except ShoreCsvError as e:
        raise fail(str(e)) from None
    _store(settings, [c.line() for c in calls], CALLS)
    typer.echo(f"{path}: {len(calls)} calls stored in {CALLS}")
