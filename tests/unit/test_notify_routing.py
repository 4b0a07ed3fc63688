"""Routing file checks, the on-call rota, vendor signatures and message rendering (issue 17)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote_plus

import pytest

from alerts.messages import render
from alerts.receivers import build_receiver
from alerts.receivers.dingtalk import dingtalk_sign
from alerts.receivers.feishu import feishu_sign
from alerts.receivers.sms import aliyun_signature
from alerts.routing import check_routing, parse_routing

ROTA = """
receivers:
  - name: duty-dingtalk
    type: dingtalk
    url: https://oapi.dingtalk.com/robot/send?access_token=abc
    secret: SECxyz
    oncall: water-duty
routes:
  - name: water-critical
    severity: critical
    kind: [water]
    receivers: [duty-dingtalk]
oncall:
  people:
    - {id: wang, name: 王工, mobile: "13800000001"}
    - {id: li, name: 李工, mobile: "13800000002"}
  rotas:
    - name: water-duty
      timezone: Asia/Shanghai
      handover: 08:30
      weekly: {mon: wang, tue: li, wed: wang, thu: li, fri: wang, sat: li, sun: wang}
      overrides:
        - {from: 2026-12-24, to: 2026-12-26, person: li}
"""


def test_aliyun_signature_matches_the_documented_example() -> None:
    # Alibaba Cloud's RPC signature documentation works this request through to this value.
    params = {
        "AccessKeyId": "testid",
        "Action": "DescribeRegions",
        "Format": "XML",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
        "SignatureVersion": "1.0",
        "Timestamp": "2016-02-23T12:46:24Z",
        "Version": "2014-05-26",
    }
    assert aliyun_signature("testsecret", "GET", params) == "OLeaidS1JvxuMvnyHOwuJ+uX5qY="


def test_dingtalk_and_feishu_signatures() -> None:
    ts = 1_700_000_000_000
    want = hmac.new(b"SEC1", f"{ts}\nSEC1".encode(), hashlib.sha256).digest()
    assert base64.b64decode(unquote_plus(dingtalk_sign("SEC1", ts))) == want
    key = b"1700000000\nsecret"
    assert (
        feishu_sign("secret", 1_700_000_000)
        == base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
    )


def test_rota_handover_and_override() -> None:
    routing, errors = parse_routing(ROTA, "routing.yaml")
    assert errors == []
    oc = routing.oncall
    # Tuesday 2026-12-01 (UTC+8): before 08:30 Monday's person, after it Tuesday's.
    before = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)  # 08:00 in Shanghai
    after = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
    assert oc.now("water-duty", before).id == "wang"  # type: ignore[union-attr]
    assert oc.now("water-duty", after).id == "li"  # type: ignore[union-attr]
    # Thursday 2026-12-24 10:00 would be li anyway; Friday 25th is wang's day, overridden to li.
    assert oc.now("water-duty", datetime(2026, 12, 25, 4, tzinfo=UTC)).id == "li"  # type: ignore[union-attr]
    assert oc.now("water-duty", datetime(2026, 12, 26, 4, tzinfo=UTC)).id == "li"  # Sat: li
    assert oc.now("water-duty", datetime(2026, 12, 27, 4, tzinfo=UTC)).id == "wang"  # type: ignore[union-attr]


def test_routing_errors_name_file_and_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_SECRET", raising=False)
    f = tmp_path / "routing.yaml"
    f.write_text(
        "receivers:\n"
        "  - name: a\n"
        "    type: dingtalk\n"
        "    url: https://x.example/robot/send\n"
        "    secret_env: NO_SUCH_SECRET\n"
        "  - name: b\n"
        "    type: smss\n"
        "routes:\n"
        "  - name: r\n"
        "    severity: [critcal]\n"
        "    receivers: [a, c]\n"
        "  - name: s\n"
        "    receivers: [c]\n"
        "    escalate_after: 10m\n",
        encoding="utf-8",
    )
    _, errors = check_routing(f)
    text = "\n".join(errors)
    assert f"{f}:5: receiver 'a': environment variable NO_SUCH_SECRET is not set" in text
    assert f"{f}:7: receiver 'b': type:" in text
    assert f"{f}:10: route 'r': severity[0]:" in text
    assert f"{f}:11: route 'r': unknown receiver 'c'" in text
    assert f"{f}:14: route 's': escalate_after needs escalate_to" in text


def test_message_names_device_site_value_limit_standard_and_link() -> None:
    alert = {
        "event": "firing",
        "alert_id": 7,
        "severity": "critical",
        "device_id": "WQ-001",
        "site": "清江浦区断面",
        "county": "清江浦区",
        "field": "do_mg_l",
        "value": 2.1,
        "limit": "do_mg_l < 3",
        "standard": "GB 3838-2002 Table 1",
        "description": "DO low",
        "description_zh": "溶解氧低于 3 mg/L",
    }
    r = render({"alerts": [alert], "console_url": "https://c.example"}, "zh")
    for part in (
        "WQ-001",
        "清江浦区断面",
        "清江浦区",
        "2.1",
        "do_mg_l < 3",
        "GB 3838-2002",
        "https://c.example/alerts/7",
        "溶解氧低于 3 mg/L",
        "严重",
    ):
        assert part in r.markdown
    en = render({"alerts": [alert]}, "en")
    assert "[critical]" in en.title and "DO low" in en.markdown


def test_docs_routing_example_is_valid(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    doc = (Path(__file__).parents[2] / "docs" / "notifications.md").read_text(encoding="utf-8")
    example = doc.split("# routing.yaml (this example is loaded by a test)\n", 1)[1]
    example = example.split("```", 1)[0]
    for var in (
        "DINGTALK_TOKEN",
        "DINGTALK_SECRET",
        "WECOM_KEY",
        "FEISHU_HOOK",
        "SMTP_PASSWORD",
        "ALIYUN_AK",
        "ALIYUN_SK",
    ):
        monkeypatch.setenv(var, "x")
    secret = tmp_path / "feishu"
    secret.write_text("s\n", encoding="utf-8")
    example = example.replace("/run/secrets/feishu", str(secret))
    routing, errors = parse_routing(example, "notifications.md")
    assert errors == []
    assert [r.name for r in routing.routes] == ["water-critical", "everything-else"]
    assert routing.receivers["duty-feishu"].secret == "s"
    event = {"severity": "critical", "kind": "water", "county": "", "site": "", "rule_id": "x"}
    assert [r.name for r in routing.match(event)] == ["water-critical", "everything-else"]
    assert [r.name for r in routing.match({**event, "kind": "pv"})] == ["everything-else"]


def test_a_storm_is_split_into_messages_that_fit() -> None:
    routing, errors = parse_routing(
        "receivers:\n"
        "  - {name: w, type: wecom, url: 'https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k'}\n"
        "  - {name: m, type: email, url: 'smtp://h:25', from: a@b.cn, to: [c@d.cn]}\n"
    )
    assert errors == []
    wecom = build_receiver(routing.receivers["w"])
    mail = build_receiver(routing.receivers["m"])
    alerts = [
        {
            "event": "firing",
            "alert_id": i,
            "severity": "major",
            "device_id": f"WQ-{i:04d}",
            "site": "淮河入海水道清江浦区断面",
            "county": "清江浦区",
            "field": "do_mg_l",
            "value": 2.5,
            "limit": "do_mg_l < 3",
        }
        for i in range(1000)
    ]
    base = {"reason": "notify", "console_url": "https://c.example"}
    chunks = wecom.split(base, alerts)
    assert [a for c in chunks for a in c] == alerts  # all of them, in order, once
    for c in chunks:
        assert len(wecom.rendered({**base, "alerts": c}).markdown.encode()) <= 4096
    assert len(chunks) <= 1000 * 120 // 3500 + 2  # full messages, not one per alert
    assert mail.split(base, alerts) == [alerts]
