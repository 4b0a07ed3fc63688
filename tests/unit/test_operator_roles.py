"""Operator roles (issue 16): operator, auditor, admin; ``admin: true`` reads as role admin."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from console.auth import Operator, OperatorsError, load_operators, parse_operators
from envgrid.cli.main import app
from envgrid.review import role_of

HASH = "$2b$04$abcdefghijklmnopqrstuu"


def test_role_is_the_one_source_and_admin_follows_it() -> None:
    assert Operator("a", "A").role == "operator" and not Operator("a", "A").admin
    assert Operator("a", "A", admin=True).role == "admin"  # the earlier flag still works
    assert Operator("a", "A", role="admin").admin
    auditor = Operator("a", "A", role="auditor")
    assert (auditor.admin, role_of(auditor)) == (False, "auditor")
    ops = parse_operators(
        f"operators:\n  old: {{password_hash: {HASH}, admin: true}}\n"
        f"  aud: {{password_hash: {HASH}, role: auditor}}\n",
        "ops.yaml",
    )
    assert (ops["old"].role, ops["aud"].role) == ("admin", "auditor")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("role: boss", r"ops.yaml:2: .*role must be one of operator, auditor, admin"),
        ("role: auditor, admin: true", r"ops.yaml:2: .*admin: true contradicts role: auditor"),
    ],
)
def test_bad_roles_name_the_line(entry: str, message: str) -> None:
    with pytest.raises(OperatorsError, match=message):
        parse_operators(f"operators:\n  a: {{password_hash: {HASH}, {entry}}}\n", "ops.yaml")


def test_operators_add_with_a_role(tmp_path: Path) -> None:
    path = tmp_path / "operators.yaml"
    runner = CliRunner()
    args = ["operators", "add", "ann", "--password-stdin", "--file", str(path)]
    r = runner.invoke(app, [*args, "--role", "auditor"], input="long-enough-1\n")
    assert r.exit_code == 0 and "(auditor)" in r.output, r.output
    assert "role: auditor" in path.read_text(encoding="utf-8")
    # A new password keeps the role.
    assert runner.invoke(app, args, input="long-enough-2\n").exit_code == 0
    assert load_operators(path)["ann"].role == "auditor"
    r = runner.invoke(app, [*args, "--role", "chief"], input="long-enough-3\n")
    assert r.exit_code != 0 and "--role must be one of operator, auditor, admin" in r.output
    listed = runner.invoke(app, ["operators", "list", "--file", str(path)])
    assert "ann\tann\tauditor" in listed.output
