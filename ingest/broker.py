"""envgrid's MQTT settings as client options: one place for TLS, credentials and sessions.

The ingest service, the HJ 212 gateway and the simulator each open their own connection; they
differ only in client id and in whether the session persists.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from pathlib import Path

from ingest.config import MqttSettings
from ingest.mqtt import MqttOptions


def tls_context(m: MqttSettings) -> ssl.SSLContext | None:
    """The TLS context the settings ask for (None: plain TCP)."""
    if not m.tls:
        return None
    ctx = ssl.create_default_context(cafile=str(m.tls_ca) if m.tls_ca else None)
    if m.tls_insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def client_options(
    m: MqttSettings,
    client_id: str,
    subscriptions: Sequence[str] | None = None,
    subscriptions_file: Path | None = None,
) -> MqttOptions:
    """Options for one connection: with subscriptions a persistent session that survives
    restarts (unacked messages wait for us); without, a publish-only clean session.
    ``subscriptions_file`` records the session's filters, so dropped ones are unsubscribed."""
    persistent = subscriptions is not None
    return MqttOptions(
        host=m.host,
        port=m.port,
        client_id=client_id,
        username=m.username,
        password=m.password(),
        ssl=tls_context(m),
        keepalive_s=m.keepalive_s,
        clean_start=not persistent,
        session_expiry_s=int(m.session_expiry.total_seconds()) if persistent else 0,
        receive_maximum=m.receive_maximum,
        subscriptions=list(subscriptions or []),
        connect_timeout_s=m.connect_timeout_s,
        subscriptions_file=subscriptions_file if persistent else None,
    )
