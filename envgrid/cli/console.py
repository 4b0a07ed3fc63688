"""``envgrid operators add|list|remove``: who may sign in to the operator console.

The operators file (``ENVGRID_CONSOLE__OPERATORS``) holds a bcrypt hash per operator, never a
password; the running service re-reads it when it changes (docs/console.md).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from console.auth import (
    ROLES,
    Operator,
    OperatorsError,
    check_name,
    check_password,
    hash_password,
    load_operators,
    save_operators,
)
from envgrid.cli.common import ConfigOpt, fail, settings_or_exit

operators_app: typer.Typer = typer.Typer(
    no_args_is_help=True, help="Operators of the console: add, list, remove (bcrypt hashes)."
)

FileOpt = Annotated[
    Path | None,
    typer.Option("--file", "-f", help="Operators file (default: ENVGRID_CONSOLE__OPERATORS)."),
]


def _file(config: Path | None, file: Path | None) -> Path:
    return file if file is not None else settings_or_exit(config).console.operators


def _load(path: Path) -> dict[str, Operator]:
    try:
        return load_operators(path)
    except OperatorsError as e:
        raise fail(str(e)) from None


def _read_password(stdin: bool) -> str:
    if stdin:
        line = sys.stdin.readline()
        if not line:
            raise fail("--password-stdin: nothing on standard input; pipe the password in")
        return line.rstrip("\r\n")
    first = typer.prompt("Password", hide_input=True)
    second = typer.prompt("Repeat the password", hide_input=True)
    if first != second:
        raise fail("the two passwords differ; run the command again")
    return str(first)


@operators_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Sign-in name: letters, digits, . _ - @.")],
    display_name: Annotated[
        str | None, typer.Option("--display-name", "-d", help="Name shown on the console.")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    admin: Annotated[
        bool | None,
        typer.Option(
            "--admin/--no-admin",
            help="Role admin: may send receivers' test messages (--no-admin: role operator).",
        ),
    ] = None,
    role: Annotated[
        str | None,
        typer.Option(
            "--role",
            help="operator, auditor (may review data) or admin (default: unchanged; new: "
            "operator).",
        ),
    ] = None,
    config: ConfigOpt = None,
    file: FileOpt = None,
) -> None:
    """Add an operator, or set a new password (ends their sessions); prompts twice."""
    try:
        check_name(name)
    except ValueError as e:
        raise fail(str(e)) from None
    path = _file(config, file)
    ops = _load(path)
    password = _read_password(password_stdin)
    try:
        check_password(password)
    except ValueError as e:
        raise fail(str(e)) from None
    old = ops.get(name)
    display = display_name or (old.display_name if old else name)
    if role is not None and role not in ROLES:
        raise fail(f"--role must be one of {', '.join(ROLES)}, not {role!r}")
    if role is not None and admin is not None and (role == "admin") != admin:
        raise fail(f"--role {role} and --{'' if admin else 'no-'}admin contradict: give one")
    new_role = role or (
        ("admin" if admin else "operator") if admin is not None else (old.role if old else None)
    )
    ops[name] = Operator(name, display, hash_password(password), role=new_role or "operator")
    is_admin = ops[name].admin
    try:
        save_operators(path, ops)
    except OSError as e:
        raise fail(f"{path}: cannot write the operators file ({e.strerror})") from None
    verb = "password changed for" if old else "added"
    shown = ops[name].role
    typer.echo(
        f"{verb} operator {name} ({display})"
        f"{' (admin)' if is_admin else f' ({shown})' if shown != 'operator' else ''} in {path}"
    )


@operators_app.command("list")
def list_(config: ConfigOpt = None, file: FileOpt = None) -> None:
    """Operators in the file: name and display name (never the hashes)."""
    path = _file(config, file)
    ops = _load(path)
    if not ops:
        typer.echo(f"no operators in {path}: add one with `envgrid operators add NAME`")
        return
    for op in sorted(ops.values(), key=lambda o: o.name):
        typer.echo(
            f"{op.name}\t{op.display_name}" + (f"\t{op.role}" if op.role != "operator" else "")
        )


@operators_app.command("remove")
def remove(
    name: Annotated[str, typer.Argument(help="The operator to remove.")],
    config: ConfigOpt = None,
    file: FileOpt = None,
) -> None:
    """Remove an operator: they cannot sign in, and their open sessions end."""
    path = _file(config, file)
    ops = _load(path)
    if ops.pop(name, None) is None:
        raise fail(f"no operator {name!r} in {path}")
    try:
        save_operators(path, ops)
    except OSError as e:
        raise fail(f"{path}: cannot write the operators file ({e.strerror})") from None
    typer.echo(f"removed operator {name} from {path}")
