"""The operator console: alerts, acknowledgement, silences and devices in a browser.

Served from the service's own HTTP server when alerts are enabled (docs/console.md).
"""

from __future__ import annotations

import logging

from alerts.engine import AlertEngine
from devices.registry import Registry
from ingest.alerting import AlertSetupError
from ingest.config import Settings
from ingest.console.auth import OperatorBook, OperatorsError, Sessions, load_secret
from ingest.console.web import Console
from ingest.influxql import InfluxQLClient

log = logging.getLogger("envgrid.console")

__all__ = ["Console", "ConsoleSetupError", "build_console"]


class ConsoleSetupError(AlertSetupError):
    """The console cannot start (unreadable operators file, no session key); one clear line."""


def build_console(settings: Settings, engine: AlertEngine, registry: Registry) -> Console | None:
    """The console over an alert engine, or None when ``console.enabled`` is false."""
    cfg = settings.console
    if not cfg.enabled:
        return None
    try:
        book = OperatorBook(cfg.operators)
    except OperatorsError as e:
        raise ConsoleSetupError(str(e)) from None
    try:
        secret = load_secret(
            cfg.session_secret.get_secret_value() if cfg.session_secret else None,
            cfg.session_secret_file,
        )
    except OSError as e:
        raise ConsoleSetupError(
            f"console: cannot keep a session key in {cfg.session_secret_file} ({e}); "
            "set ENVGRID_CONSOLE__SESSION_SECRET or ENVGRID_CONSOLE__SESSION_SECRET_FILE"
        ) from None
    sessions = Sessions(secret, cfg.session_lifetime.total_seconds(), book)
    if len(book) == 0:
        log.warning(
            "console: no operators in %s: nobody can sign in until `envgrid operators add NAME`",
            cfg.operators,
        )
    influx = InfluxQLClient(settings.influx, timeout_s=min(settings.influx.timeout_s, 5.0))
    return Console(settings, engine, registry, book, sessions, influx)
