"""`envgrid rules check` on a routing file (issue 17)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alerts.dispatch import Dispatcher
from alerts.engine import AlertEngine, Observation
from alerts.receivers import build_receiver
from alerts.routing import parse_routing
from alerts.rules import parse_rules
from alerts.store import AlertStore
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


def test_alerts_notifications_lists_what_was_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    routing, errors = parse_routing(
        "receivers:\n"
        "  - {name: duty, type: wecom, url: 'https://q.example/cgi-bin/webhook/send?key=k'}\n"
        "routes:\n"
        "  - {name: all, receivers: [duty], group_wait: 30s}\n"
    )
    assert errors == []
    now = [1_796_090_400.0]
    store = AlertStore(tmp_path / "alerts.db")
    rules = parse_rules(
        "rules:\n  - {id: do, kind: water, when: do_mg_l < 2, severity: critical}\n"
    )
    engine = AlertEngine(rules, store, targets=["route"], clock=lambda: now[0])
    dispatcher = Dispatcher(
        store, routing, {"duty": build_receiver(routing.receivers["duty"])}, clock=lambda: now[0]
    )
    for dev in ("WQ-1", "WQ-2"):
        engine.observe(Observation("water", dev, "s", "c", int(now[0] * 1000), {"do_mg_l": 1.0}))
    for (payload,) in store.db.execute("SELECT payload FROM outbox WHERE target = 'route'"):
        dispatcher.accept(json.loads(payload))
    now[0] += 31
    assert dispatcher.tick() == 1
    store.close()
    monkeypatch.setenv("ENVGRID_ALERTS__STORE", str(tmp_path / "alerts.db"))
    res = CliRunner().invoke(app, ["alerts", "notifications", "1"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert any("route" in line and "event" in line and "queued" in line for line in lines)
    assert any(
        "duty" in line and "notify" in line and "one message for 2" in line for line in lines
    )
