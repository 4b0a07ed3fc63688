"""``envgrid dashboards push`` against a local HTTP server implementing the Grafana API calls it
makes (folders, search, dashboards by uid, dashboards/db).

This is the one part not exercised against a real Grafana here (no Grafana runs on these
machines): the server follows Grafana's documented request and answer shapes, keeps versions
as Grafana does, and refuses a wrong token with 401.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from typer.testing import CliRunner

from dashboards import FOLDER_UID
from dashboards.build import build_all
from dashboards.push import PushError, push
from envgrid.cli.main import app

TOKEN = "glsa_test-token"


@dataclass
class FakeGrafana:
    """Grafana's folder and dashboard store, and a log of the writes it received."""

    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    writes: list[str] = field(default_factory=list)

    def app(self) -> web.Application:
        a = web.Application(middlewares=[self._auth])
        a.router.add_get("/api/folders/{uid}", self.get_folder)
        a.router.add_post("/api/folders", self.create_folder)
        a.router.add_put("/api/folders/{uid}", self.update_folder)
        a.router.add_get("/api/search", self.search)
        a.router.add_get("/api/dashboards/uid/{uid}", self.get_dashboard)
        a.router.add_post("/api/dashboards/db", self.post_dashboard)
        return a

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"message": "invalid API key"}, status=401)
        return await handler(request)

    async def get_folder(self, request: web.Request) -> web.Response:
        folder = self.folders.get(request.match_info["uid"])
        if folder is None:
            return web.json_response({"message": "folder not found"}, status=404)
        return web.json_response(folder)

    async def create_folder(self, request: web.Request) -> web.Response:
        body = await request.json()
        uid = body.get("uid") or f"f{len(self.folders)}"
        if uid in self.folders:
            return web.json_response({"message": "a folder with that uid exists"}, status=409)
        self.folders[uid] = {
            "id": len(self.folders) + 1,
            "uid": uid,
            "title": body["title"],
            "version": 1,
        }
        self.writes.append(f"POST /api/folders {uid}")
        return web.json_response(self.folders[uid])

    async def update_folder(self, request: web.Request) -> web.Response:
        uid, body = request.match_info["uid"], await request.json()
        folder = self.folders[uid]
        folder.update(title=body["title"], version=folder["version"] + 1)
        self.writes.append(f"PUT /api/folders/{uid}")
        return web.json_response(folder)

    async def search(self, request: web.Request) -> web.Response:
        wanted = set(request.query.getall("dashboardUIDs", []))
        assert request.query.get("type") == "dash-db"
        hits = [
            {
                "uid": uid,
                "title": d["dashboard"]["title"],
                "type": "dash-db",
                "folderUid": d["meta"]["folderUid"],
            }
            for uid, d in self.dashboards.items()
            if not wanted or uid in wanted
        ]
        return web.json_response(hits)

    async def get_dashboard(self, request: web.Request) -> web.Response:
        d = self.dashboards.get(request.match_info["uid"])
        if d is None:
            return web.json_response({"message": "Dashboard not found"}, status=404)
        return web.json_response(d)

    async def post_dashboard(self, request: web.Request) -> web.Response:
        body = await request.json()
        dash, folder_uid = body["dashboard"], body.get("folderUid", "")
        if folder_uid and folder_uid not in self.folders:
            return web.json_response({"message": "folder not found"}, status=400)
        uid = dash["uid"]
        old = self.dashboards.get(uid)
        if old is not None and not body.get("overwrite"):
            return web.json_response({"message": "version-mismatch"}, status=412)
        version = old["dashboard"]["version"] + 1 if old else 1
        stored = copy.deepcopy(dash) | {
            "id": old["dashboard"]["id"] if old else len(self.dashboards) + 1,
            "version": version,
        }
        self.dashboards[uid] = {
            "dashboard": stored,
            "meta": {"folderUid": folder_uid, "version": version},
        }
        self.writes.append(f"POST /api/dashboards/db {uid}")
        return web.json_response(
            {
                "id": stored["id"],
                "uid": uid,
                "status": "success",
                "version": version,
                "url": f"/d/{uid}",
            }
        )


@pytest.fixture
async def grafana() -> AsyncIterator[tuple[FakeGrafana, str]]:
    fake = FakeGrafana()
    runner = web.AppRunner(fake.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield fake, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_push_creates_then_changes_nothing(
    grafana: tuple[FakeGrafana, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, url = grafana
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    built = build_all()
    first = await asyncio.to_thread(push, url, TOKEN, built)
    assert first.folder == "created"
    assert set(first.dashboards.values()) == {"created"}
    assert set(fake.dashboards) == {b.uid for b in built}
    assert all(d["meta"]["folderUid"] == FOLDER_UID for d in fake.dashboards.values())
    stored = fake.dashboards["envgrid-water"]["dashboard"]
    assert {k: v for k, v in stored.items() if k not in ("id", "version")} == {
        k: v
        for k, v in next(b for b in built if b.uid == "envgrid-water").model.items()
        if k != "id"
    }
    writes = len(fake.writes)

    second = await asyncio.to_thread(push, url, TOKEN, build_all())
    assert not second.changed()
    assert len(fake.writes) == writes, fake.writes[writes:]  # idempotent: no new versions
    assert {d["dashboard"]["version"] for d in fake.dashboards.values()} == {1}

    # A dashboard edited in Grafana is put back; the others stay untouched.
    fake.dashboards["envgrid-air"]["dashboard"]["title"] = "edited by hand"
    third = await asyncio.to_thread(push, url, TOKEN, build_all())
    assert third.dashboards["envgrid-air"] == "updated"
    assert [c for c in third.dashboards.values() if c != "unchanged"] == ["updated"]
    assert fake.dashboards["envgrid-air"]["dashboard"]["title"] == "Air quality"
    assert fake.dashboards["envgrid-air"]["dashboard"]["version"] == 2


async def test_push_reports_a_bad_token_and_an_unreachable_grafana_in_one_line(
    grafana: tuple[FakeGrafana, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, url = grafana
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with pytest.raises(PushError) as bad:
        await asyncio.to_thread(push, url, "wrong", build_all())
    assert "401" in str(bad.value) and "wrong" not in str(bad.value)
    assert not fake.writes

    runner = CliRunner()
    result = await asyncio.to_thread(
        runner.invoke,
        app,
        ["dashboards", "push", "--url", "http://127.0.0.1:9"],
        env={"GRAFANA_TOKEN": TOKEN, "NO_PROXY": "127.0.0.1"},
    )
    assert result.exit_code == 2
    assert result.output.startswith("envgrid: cannot reach Grafana at http://127.0.0.1:9")
    assert TOKEN not in result.output and "Traceback" not in result.output

    ok = await asyncio.to_thread(
        runner.invoke, app, ["dashboards", "push", "--url", url], env={"GRAFANA_TOKEN": TOKEN}
    )
    assert ok.exit_code == 0, ok.output
    assert "envgrid-city (City overview): created" in ok.output
