"""The console and the JSON API under abuse (issue 20), served by the real uvicorn server.

The app is the one envgrid serves (health routes, the alerts API, the console) over a real
alert store; the HTTP server is ingest.http.HttpServer on a loopback port, so X-Forwarded-For
is handled exactly as in production.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from prometheus_client import CollectorRegistry
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from alerts.api import create_router
from alerts.engine import AlertEngine
from alerts.notify_api import create_notify_router
from alerts.rules import load_rules
from alerts.store import AlertRecord, AlertStore
from console.auth import Operator, OperatorBook, Sessions, hash_password, save_operators
from console.web import Console
from devices.registry import Registry
from envgrid.settings import Settings, load_settings
from ingest.http import HttpServer, create_app
from ingest.influxql import InfluxQLClient

OPERATOR, PASSWORD = "duty1", "Huaian-duty-2026"
TOKEN = "abuse-test-token"
HUGE = "99999999999999999999"


def firing_alert(store: AlertStore) -> int:
    """One firing alert in the store, as the engine would have written it."""
    now = int(time.time() * 1000)
    rec = AlertRecord(
        0, "ev_fault", "ev_charger", "EV-005", "", "site", "county", "major", "firing",
        "status", "Faulted", "EV-005 faulted", "", "OCPP 1.6", {}, now, now, now, None, now, now,
    )  # fmt: skip
    with store.transaction():
        return store.insert_alert(rec)


def build_app(tmp: Path, trusted: Sequence[str] = ()) -> tuple[FastAPI, Console, Settings]:
    """envgrid's HTTP app (health, alerts API, console) over a real store with one alert."""
    ops = tmp / "operators.yaml"
    save_operators(ops, {OPERATOR: Operator(OPERATOR, "值班员一", hash_password(PASSWORD, 4))})
    settings = load_settings(
        None,
        console={"operators": ops, "session_secret_file": tmp / "key"},
        http={"port": 0, "trusted_proxies": list(trusted)},
    )
    store = AlertStore(tmp / "alerts.db")
    firing_alert(store)  # id 1
    engine = AlertEngine(load_rules(), store)
    book = OperatorBook(ops)
    sessions = Sessions(b"s" * 32, 3600, book, tmp / "key.signed-out")
    console = Console(settings, engine, Registry(), book, sessions, InfluxQLClient(settings.influx))
    routers = [create_router(engine, TOKEN), create_notify_router(store, None, TOKEN)]
    app = create_app(CollectorRegistry(), lambda: (True, []), [*routers, console.router])
    return app, console, settings


@contextlib.asynccontextmanager
async def serving(tmp: Path, trusted: Sequence[str] = ()) -> AsyncIterator[httpx.AsyncClient]:
    app, console, settings = build_app(tmp, trusted)
    http = HttpServer(app, "127.0.0.1", 0, settings.http.trusted_proxies)
    await http.start()
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{http.port}", trust_env=False, timeout=10
        ) as client:
            yield client
    finally:
        await console.close()
        await http.stop()


async def sign_in(
    web: httpx.AsyncClient, password: str, forwarded_for: str | None = None
) -> httpx.Response:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    web.cookies.clear()
    form = await web.get("/login", headers=headers)
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token is not None
    return await web.post(
        "/login",
        data={"name": OPERATOR, "password": password, "csrf": token.group(1)},
        headers=headers,
    )


async def test_signing_out_ends_the_session_on_the_server(tmp_path: Path) -> None:
    async with serving(tmp_path) as web:
        r = await sign_in(web, PASSWORD)
        assert r.status_code == 303
        cookie = web.cookies["envgrid_session"]
        page = await web.get("/")
        assert page.status_code == 200
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf is not None
        r = await web.post("/logout", data={"csrf": csrf.group(1)})
        assert r.status_code == 303
        # A copy of the old cookie (kept by an attacker, or a shared machine) is refused.
        web.cookies.clear()
        web.cookies.set("envgrid_session", cookie)
        assert (await web.get("/")).status_code == 303
        r = await web.post("/alerts/1/ack", data={"comment": "x", "csrf": csrf.group(1)})
        assert r.status_code == 401


async def test_a_guesser_cannot_lock_the_operator_out_nor_forge_addresses(tmp_path: Path) -> None:
    async with serving(tmp_path) as web:
        for _ in range(5):
            assert (await sign_in(web, "wrong-password")).status_code == 401
        r = await sign_in(web, "wrong-password")
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
        # X-Forwarded-For from loopback is not believed without TRUSTED_PROXIES: a new
        # header value is no fresh allowance.
        assert (await sign_in(web, "wrong-password", "198.51.100.23")).status_code == 429


async def test_behind_a_trusted_proxy_throttling_is_per_client(tmp_path: Path) -> None:
    async with serving(tmp_path, trusted=["127.0.0.1"]) as web:
        attacker, operator = "203.0.113.9", "198.51.100.7"
        for _ in range(5):
            assert (await sign_in(web, "wrong-password", attacker)).status_code == 401
        assert (await sign_in(web, "wrong-password", attacker)).status_code == 429
        # The operator, at another address behind the same proxy, signs in at once.
        r = await sign_in(web, PASSWORD, operator)
        assert r.status_code == 303 and r.headers["location"] == "/"


async def test_huge_numbers_and_foreign_names_are_refused_with_a_message(tmp_path: Path) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with serving(tmp_path) as web:
        for path in (
            f"/api/alerts?offset={HUGE}",
            f"/api/alerts/{HUGE}",
            f"/api/alerts/{HUGE}/notifications",
        ):
            r = await web.get(path)
            assert r.status_code == 422, (path, r.text)
            assert "less than or equal" in r.text
        r = await web.post(f"/api/alerts/{HUGE}/ack", json={}, headers=auth)
        assert r.status_code == 422
        r = await web.delete(f"/api/silences/{HUGE}", headers=auth)
        assert r.status_code == 422
        matchers = {"devices": ["WQ-001"]}
        for body in (
            {"matchers": matchers, "duration": "99999999999999d"},
            {"matchers": matchers, "duration": "31d"},  # longer than the console allows
            {"matchers": matchers, "ends_at": "9999-12-31T00:00:00+00:00"},
            {"matchers": {}, "duration": "1h"},
        ):
            r = await web.post("/api/silences", json=body, headers=auth)
            assert r.status_code == 422, (body, r.text)
            assert isinstance(r.json()["detail"], list) and r.json()["detail"][0]["msg"]
        # The token acts for a machine: "alice" is recorded as api:alice, not as alice.
        r = await web.post(
            "/api/silences",
            json={"matchers": matchers, "duration": "2h", "created_by": "alice"},
            headers=auth,
        )
        assert r.status_code == 201 and r.json()["created_by"] == "api:alice"
        r = await web.post("/api/alerts/1/ack", json={"by": "alice"}, headers=auth)
        assert r.status_code == 200 and r.json()["acked_by"] == "api:alice"
        # No third-party scripts on the console's origin.
        assert (await web.get("/docs")).status_code == 404
        assert (await web.get("/redoc")).status_code == 404
        assert (await web.get("/openapi.json")).status_code == 200


@pytest.mark.parametrize("text", ["99999999999999d", "9" * 400 + "d", "1e400h"])
async def test_console_custom_silence_never_500s(tmp_path: Path, text: str) -> None:
    async with serving(tmp_path) as web:
        assert (await sign_in(web, PASSWORD)).status_code == 303
        page = await web.get("/")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf is not None
        form = {"csrf": csrf.group(1), "duration": "custom", "custom": text}
        r = await web.post("/alerts/1/silence", data=form)
        assert r.status_code == 422 and "EV-005" in r.text  # the page again, with the error
        assert not (await web.get("/api/silences")).json()
        r = await web.post(f"/alerts/{HUGE}/silence", data=form)
        assert r.status_code == 404
        r = await web.get(f"/alerts/{HUGE}")
        assert r.status_code == 404


# ------------------------------------------------------------ the schema, fuzzed (bounded)


# What the answers must be: no 500, a documented status, content type, headers and shape.
# Not checked here: that every schema-valid request is accepted (a silence ending in the past
# is valid JSON Schema but refused with a reason), and ignored_auth, which re-sends through
# schemathesis's requests transport (see below); the tests above check 401 and 403.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def test_the_api_keeps_to_its_schema(tmp_path: Path) -> None:
    """Generated requests per operation: no 500, every answer documented and of its shape."""
    app, _, _ = build_app(tmp_path)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 6

    # Sent with Starlette's test client (httpx): schemathesis's own requests transport trips
    # over urllib3-future, which this environment has in urllib3's place.
    client = TestClient(app, raise_server_exceptions=False)
    failures: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25,
            deadline=None,
            derandomize=True,  # the same cases each run: a failure reproduces
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case) -> None:
            kwargs = case.as_transport_kwargs(base_url="http://testserver", headers=auth)
            response = client.request(**kwargs)
            assert response.status_code < 500, f"{kwargs['method']} {kwargs['url']}: 500"
            case.validate_response(response, checks=CHECKS)

        try:
            check()
        except Exception as e:  # every operation is tried; the report names each failure
            failures.append(f"{operation.method.upper()} {operation.path}: {str(e)[:1500]}")
    assert not failures, "\n\n".join(failures)
