"""The operator console: alerts, acknowledgement, silences and devices in a browser.

Served from the service's own HTTP server when alerts are enabled (docs/console.md).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable

from alerts.dispatch import Dispatcher as NotifyDispatcher
from alerts.engine import AlertEngine
from console.auth import OperatorBook, Sessions, load_secret
from console.config import ConsoleConfig
from console.web import Console
from devices.registry import Registry
from hj212.dispatch import Dispatcher as Hj212Dispatcher
from ingest.influxql import InfluxQLClient

log = logging.getLogger("envgrid.console")

__all__ = ["Console", "build_console"]


def build_console(
    settings: ConsoleConfig,
    engine: AlertEngine,
    registry: Registry,
    *,
    notify: NotifyDispatcher | None = None,
    hj212: Callable[[], Hj212Dispatcher | None] | None = None,
) -> Console | None:
    """The console over an alert engine, or None when ``console.enabled`` is false.

    ``notify`` (the receivers' dispatcher) gives the receivers page and the on-call line;
    ``hj212()`` is the gateway's command dispatcher, None while it does not run here.

    A console problem never stops the service (readings and alerts matter more): a broken
    operators file is logged and re-read when it changes; a key file that cannot be written
    gives sessions that end at the next restart.
    """
    cfg = settings.console
    if not cfg.enabled:
        return None
    book = OperatorBook(cfg.operators)
    if book.problem:
        log.error("console: %s; nobody can sign in until it is fixed", book.problem)
    elif len(book) == 0:
        log.warning(
            "console: no operators in %s: nobody can sign in until `envgrid operators add NAME`",
            cfg.operators,
        )
    try:
        secret = load_secret(
            cfg.session_secret.get_secret_value() if cfg.session_secret else None,
            cfg.session_secret_file,
        )
    except OSError as e:
        log.warning(
            "console: cannot keep a session key in %s (%s): sessions end at restart; set "
            "ENVGRID_CONSOLE__SESSION_SECRET or ENVGRID_CONSOLE__SESSION_SECRET_FILE",
            cfg.session_secret_file,
            e.strerror or e,
        )
        secret = secrets.token_urlsafe(48).encode()
    # Next to the key: sessions signed out stay ended across restarts (console/auth.py).
    signed_out = cfg.session_secret_file.with_name(cfg.session_secret_file.name + ".signed-out")
    sessions = Sessions(secret, cfg.session_lifetime.total_seconds(), book, signed_out)
    influx = InfluxQLClient(settings.influx, timeout_s=min(settings.influx.timeout_s, 5.0))
    return Console(settings, engine, registry, book, sessions, influx, notify=notify, hj212=hj212)
