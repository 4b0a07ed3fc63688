"""Create or update the envgrid folder and dashboards in a running Grafana over its HTTP API.

Idempotent: a dashboard already stored with the same content in the same folder is left alone
(no new version), so running the push twice changes nothing the second time. Uses
grafana-client; the calls are GET/POST /api/folders, GET /api/search,
GET /api/dashboards/uid/<uid> and POST /api/dashboards/db.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException

from dashboards import FOLDER_TITLE, FOLDER_UID
from dashboards.build import Built

Change = Literal["created", "updated", "unchanged"]
# Keys Grafana adds or manages itself when it stores a dashboard.
_VOLATILE = ("id", "version")


class PushError(RuntimeError):
    """The push failed; ``str()`` is one line for the operator (never the token)."""


@dataclass
class PushResult:
    """What the push did to the folder and to each dashboard (by uid)."""

    folder: Change
    dashboards: dict[str, Change] = field(default_factory=dict)

    def changed(self) -> bool:
        """Whether anything was written."""
        return self.folder != "unchanged" or any(c != "unchanged" for c in self.dashboards.values())


def push(
    url: str,
    token: str | None,
    built: list[Built],
    *,
    folder_uid: str = FOLDER_UID,
    folder_title: str = FOLDER_TITLE,
    timeout: float = 15.0,
) -> PushResult:
    """Put ``built`` into the Grafana at ``url``.

    ``token`` is a service-account token; without one, ``user:password@`` in the URL is used.
    """
    api = GrafanaApi.from_url(url, credential=token or None, timeout=timeout)
    try:
        result = PushResult(_ensure_folder(api, folder_uid, folder_title))
        uids = [b.uid for b in built]
        found = api.search.search_dashboards(type_="dash-db", dashboard_uids=uids) or []
        existing = {str(hit["uid"]) for hit in found if hit.get("uid") in uids}
        for b in built:
            result.dashboards[b.uid] = _put(api, b, folder_uid, b.uid in existing)
        return result
    except GrafanaException as e:
        raise PushError(f"Grafana at {_safe(url)} refused: {_reason(e)}") from None
    except OSError as e:  # the HTTP library's connection errors are OSErrors
        raise PushError(f"cannot reach Grafana at {_safe(url)}: {e}") from None


def _ensure_folder(api: GrafanaApi, uid: str, title: str) -> Change:
    try:
        folder = api.folder.get_folder(uid)
    except GrafanaClientError as e:
        if e.status_code != 404:
            raise
        api.folder.create_folder(title, uid=uid)
        return "created"
    if folder.get("title") == title:
        return "unchanged"
    api.folder.update_folder(uid, title=title, overwrite=True)
    return "updated"


def _put(api: GrafanaApi, b: Built, folder_uid: str, exists: bool) -> Change:
    if exists:
        current = api.dashboard.get_dashboard(b.uid)
        stored = {k: v for k, v in current.get("dashboard", {}).items() if k not in _VOLATILE}
        same_folder = current.get("meta", {}).get("folderUid") == folder_uid
        if same_folder and stored == _strip(b.model):
            return "unchanged"
    api.dashboard.update_dashboard(
        {
            "dashboard": _strip(b.model) | {"id": None},
            "folderUid": folder_uid,
            "overwrite": True,
            "message": "envgrid dashboards push",
        }
    )
    return "updated" if exists else "created"


def _strip(model: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in model.items() if k not in _VOLATILE}


def _reason(e: GrafanaException) -> str:
    if e.status_code == 401:
        return "401 unauthorized: check --token (a service-account token with Editor rights)"
    if e.status_code == 403:
        return "403 forbidden: the token needs Editor rights on dashboards and folders"
    return str(e.message).splitlines()[0] if e.message else f"HTTP {e.status_code}"


def _safe(url: str) -> str:
    """The URL without credentials."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc, query=""))
