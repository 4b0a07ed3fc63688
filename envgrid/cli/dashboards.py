"""``envgrid dashboards build`` and ``envgrid dashboards push``.

``build`` writes the dashboard JSON that docker-compose provisions into Grafana (and checks it
with ``--check``); ``push`` puts the same dashboards into an existing Grafana over its API.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dashboards import DATASOURCE_UID, FOLDER_TITLE, FOLDER_UID, HERE
from devices.registry import FLEET, Registry, RegistryError, load_registry
from envgrid.cli.common import fail

# dashboards.build and dashboards.push load the Grafana SDK and client: imported in the
# commands, so other envgrid commands do not pay for them.

dashboards_app = typer.Typer(
    no_args_is_help=True, help="Grafana dashboards: build the JSON, push it to a Grafana."
)

RegistryOpt = Annotated[
    Path | None,
    typer.Option(
        "--registry",
        help="Device registry YAML (map positions, PV capacity); default: the shipped fleet.",
    ),
]
DatasourceOpt = Annotated[
    str,
    typer.Option(help="uid of the InfluxDB (InfluxQL) datasource in Grafana."),
]


def _registry(path: Path | None) -> Registry:
    try:
        return load_registry(path or FLEET)
    except RegistryError as e:
        raise fail(str(e)) from None


@dashboards_app.command("build")
def build(
    registry: RegistryOpt = None,
    out: Annotated[Path, typer.Option(help="Folder receiving json/ and gazetteer/.")] = HERE,
    datasource_uid: DatasourceOpt = DATASOURCE_UID,
    check: Annotated[
        bool, typer.Option("--check", help="Only report files that differ (exit 1 if any).")
    ] = False,
) -> None:
    """Write every dashboard as JSON to <out>/json and the device gazetteer to <out>/gazetteer."""
    from dashboards.build import build_all, differences, outputs, write

    reg = _registry(registry)
    files = outputs(build_all(reg, datasource_uid=datasource_uid), reg, out)
    if check:
        diffs = differences(files, out)
        for line in diffs:
            typer.echo(line, err=True)
        if diffs:
            raise fail("dashboard JSON is out of date: run `envgrid dashboards build`", code=1)
        typer.echo(f"{len(files)} files up to date in {out}")
        return
    changed = write(files, out)
    typer.echo(f"{len(files)} files in {out}; {len(changed)} changed")


@dashboards_app.command("push")
def push(
    url: Annotated[
        str, typer.Option(help="Grafana base URL, e.g. http://grafana:3000", envvar="GRAFANA_URL")
    ],
    token: Annotated[
        str | None,
        typer.Option(
            help="Service-account token (Editor); prefer the GRAFANA_TOKEN variable.",
            envvar="GRAFANA_TOKEN",
            show_default=False,
        ),
    ] = None,
    registry: RegistryOpt = None,
    datasource_uid: DatasourceOpt = DATASOURCE_UID,
    folder_uid: Annotated[str, typer.Option(help="Folder uid.")] = FOLDER_UID,
    folder_title: Annotated[str, typer.Option(help="Folder title.")] = FOLDER_TITLE,
) -> None:
    """Create or update the folder and every dashboard in Grafana (unchanged ones are skipped)."""
    from dashboards.build import build_all
    from dashboards.push import PushError
    from dashboards.push import push as do_push

    built = build_all(_registry(registry), datasource_uid=datasource_uid)
    try:
        result = do_push(url, token, built, folder_uid=folder_uid, folder_title=folder_title)
    except PushError as e:
        raise fail(str(e)) from None
    typer.echo(f"folder {folder_uid}: {result.folder}")
    for b in built:
        typer.echo(f"{b.uid} ({b.title}): {result.dashboards[b.uid]}")
