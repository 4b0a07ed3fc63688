"""MQTT settings → client options: the service, HJ 212 gateway and simulator connect alike."""

from __future__ import annotations

import ssl
from pathlib import Path

from envgrid.settings import load_settings
from ingest.broker import client_options


def test_subscriber_keeps_its_session_publisher_starts_clean(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    m = load_settings(
        None,
        mqtt={
            "url": "mqtt://ingest@broker.example:1884",
            "password_file": pw,
            "session_expiry": "1h",
            "receive_maximum": 500,
            "keepalive_s": 30,
        },
    ).mqtt
    sub = client_options(m, "envgrid-a", ["envgrid/pv/+"])
    assert (sub.host, sub.port, sub.username, sub.password) == (
        "broker.example",
        1884,
        "ingest",
        "s3cret",
    )
    assert not sub.clean_start and sub.session_expiry_s == 3600
    assert sub.subscriptions == ["envgrid/pv/+"] and sub.receive_maximum == 500
    assert sub.keepalive_s == 30 and sub.ssl is None
    assert "s3cret" not in repr(sub)
    # An ingest role with nothing to subscribe yet still keeps its session.
    assert not client_options(m, "envgrid-b", []).clean_start
    pub = client_options(m, "envgrid-hj212")
    assert pub.clean_start and pub.session_expiry_s == 0 and pub.subscriptions == []
    assert pub.password == "s3cret"


def test_mqtts_gets_a_verifying_context_unless_told_otherwise() -> None:
    m = load_settings(None, mqtt={"url": "mqtts://broker.example"}).mqtt
    opts = client_options(m, "sim")  # the simulator too: it used to connect without TLS
    assert opts.port == 8883 and isinstance(opts.ssl, ssl.SSLContext)
    assert opts.ssl.verify_mode is ssl.CERT_REQUIRED and opts.ssl.check_hostname
    loose = load_settings(None, mqtt={"url": "mqtts://broker.example", "tls_insecure": True}).mqtt
    ctx = client_options(loose, "sim").ssl
    assert ctx is not None and ctx.verify_mode is ssl.CERT_NONE and not ctx.check_hostname
