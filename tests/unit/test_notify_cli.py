"""`envgrid rules check` on a routing file (issue 17)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from envgrid.cli.main import app


def test_rules_check_reads_a_routing_file(tmp_path: Path) -> None:
    good = tmp_path / "routing.yaml"
    good.write_text(
        "receivers:\n"
        "  - {name: g, type: wecom, url: 'https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k'}\n"
        "routes:\n"
        "  - {name: all, receivers: [g]}\n",
        encoding="utf-8",
    )
    res = CliRunner().invoke(app, ["rules", "check", str(good)])
    assert res.exit_code == 0, res.output
    assert "routing OK (1 receivers, 1 routes, 0 rotas)" in res.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("receivers: []\nroutes:\n  - {name: all, receivers: [nope]}\n", encoding="utf-8")
    res = CliRunner().invoke(app, ["rules", "check", str(bad)])
    assert res.exit_code == 1
    assert f"{bad}:3: route 'all': unknown receiver 'nope'" in res.output
