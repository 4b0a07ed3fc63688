"""The filters a stored MQTT session holds, recorded next to the spool.

MQTT has no way to list a session's subscriptions, and a resumed session keeps every filter it
was ever given: a filter dropped from the config goes on delivering. So the client records, per
broker and client id, the filters of its latest SUBACK; on the next resumed session it
UNSUBSCRIBEs those no longer configured. The file is rewritten atomically (temporary file,
fsync, rename), so a crash leaves the old record or the new one, never a torn one. A missing or
unreadable record means "unknown": nothing is unsubscribed.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

__all__ = ["read_subscriptions", "write_subscriptions"]

log = logging.getLogger("envgrid.mqtt")


def _load(path: Path) -> dict[str, list[str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("ignoring the subscription record %s: %s", path, exc)
        return {}
    sessions = data.get("sessions") if isinstance(data, dict) else None
    if not isinstance(sessions, dict):
        return {}
    return {
        k: [f for f in v if isinstance(f, str)]
        for k, v in sessions.items()
        if isinstance(k, str) and isinstance(v, list)
    }


def read_subscriptions(path: Path, key: str) -> list[str] | None:
    """The filters recorded for ``key`` (``host:port/client id``), or None if none are."""
    return _load(path).get(key)


def write_subscriptions(path: Path, key: str, filters: list[str]) -> None:
    """Record ``filters`` for ``key``, keeping the other sessions' records."""
    sessions = _load(path)
    if sessions.get(key) == filters:
        return
    sessions[key] = list(filters)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"sessions": sessions}, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
