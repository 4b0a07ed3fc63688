"""The console's parts that need no server: operators file, sessions, labels, charts, links."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from console import auth
from console.auth import (
    LoginLimiter,
    Operator,
    OperatorBook,
    OperatorsError,
    Sessions,
    hash_password,
    load_operators,
    parse_operators,
    save_operators,
    verify_password,
)
from console.chart import Level, nice_ticks, numeric_chart, state_chart, time_ticks
from console.i18n import FACT_LABELS, LABELS, SEVERITY_LABELS
from console.present import format_value, human_duration
from console.web import safe_next
from devices.kinds import KINDS
from envgrid.cli.main import app

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "console" / "templates"
SVG = "{http://www.w3.org/2000/svg}"


def fast_hash(password: str) -> str:
    return hash_password(password, rounds=4)  # the lowest bcrypt cost: tests need no strength


# ----------------------------------------------------------------------- operators file


def test_operators_file_round_trip_keeps_only_hashes(tmp_path: Path) -> None:
    path = tmp_path / "ops" / "operators.yaml"
    ops = {"li.na": Operator("li.na", "李娜", fast_hash("correct horse"))}
    save_operators(path, ops)
    assert path.stat().st_mode & 0o777 == 0o600
    assert "correct horse" not in path.read_text(encoding="utf-8")
    back = load_operators(path)
    assert back["li.na"].display_name == "李娜"
    assert verify_password("correct horse", back["li.na"].password_hash)
    assert not verify_password("wrong horse", back["li.na"].password_hash)
    assert not verify_password("x" * 100, back["li.na"].password_hash)  # over bcrypt's 72 bytes


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("operators:\n  a:\n    display_name: A\n    password_hash: plain\n", 2, "not a bcrypt"),
        ("operators:\n  ok:\n    password_hash: $2b$04$x\n  bad name:\n    x: 1\n", 4, "not valid"),
        ("operators:\n  a:\n    display_name: A\n    pasword_hash: $2b$\n", 2, "unknown key"),
        ("people:\n  a: {}\n", 1, "top-level 'operators:'"),
        ("operators: [\n", 2, "not valid YAML"),
    ],
)
def test_operators_file_errors_name_the_line(text: str, line: int, words: str) -> None:
    with pytest.raises(OperatorsError) as e:
        parse_operators(text, "ops.yaml")
    msg = str(e.value)
    assert msg.startswith(f"ops.yaml:{line}:"), msg
    assert words in msg and "\n" not in msg


def test_book_rereads_the_file_and_keeps_the_last_good_one(tmp_path: Path) -> None:
    path = tmp_path / "operators.yaml"
    book = OperatorBook(path)
    assert len(book) == 0
    save_operators(path, {"a": Operator("a", "A", fast_hash("password-a"))})
    assert book.get("a") is not None
    path.write_text("operators: [broken\n", encoding="utf-8")
    assert book.get("a") is not None  # a broken edit does not lock everyone out


# ----------------------------------------------------------------------- sessions


def test_session_cookie_is_signed_and_ends_with_the_password_or_the_operator(
    tmp_path: Path,
) -> None:
    path = tmp_path / "operators.yaml"
    save_operators(path, {"a": Operator("a", "A", fast_hash("password-a"))})
    book = OperatorBook(path)
    sessions = Sessions(b"k" * 32, 3600, book)
    op = book.get("a")
    assert op is not None
    cookie, session = sessions.issue(op)
    read = sessions.read(cookie)
    assert read is not None and read.operator.name == "a" and read.csrf == session.csrf
    assert Sessions(b"other-key" * 4, 3600, book).read(cookie) is None
    assert sessions.read(cookie[:-2] + ("A" if cookie[-2] != "A" else "B") + cookie[-1]) is None
    assert sessions.read("") is None and sessions.read("garbage") is None
    # A new password ends the sessions signed before it.
    save_operators(path, {"a": Operator("a", "A", fast_hash("password-b"))})
    assert sessions.read(cookie) is None
    cookie2, _ = sessions.issue(book.get("a"))  # type: ignore[arg-type]
    assert sessions.read(cookie2) is not None
    save_operators(path, {})
    assert sessions.read(cookie2) is None


def test_secret_is_generated_once_and_private(tmp_path: Path) -> None:
    path = tmp_path / "var" / "key"
    first = auth.load_secret(None, path)
    assert len(first) >= 32 and path.stat().st_mode & 0o777 == 0o600
    assert auth.load_secret(None, path) == first
    assert auth.load_secret("x" * 40, path) == b"x" * 40


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_login_limiter_backs_off_per_source_and_name() -> None:
    clock = _Clock()
    lim = LoginLimiter(free=3, base_s=2.0, max_s=60.0, window_s=600, clock=clock)
    for _ in range(3):
        assert lim.wait_s("10.0.0.9", "alice") == 0
        lim.failed("10.0.0.9", "alice")
    # The guesser waits, and each further failure doubles the wait, up to the cap.
    assert lim.wait_s("10.0.0.9", "alice") == 2.0
    clock.now += 2.0
    lim.failed("10.0.0.9", "ALICE")  # names are case-insensitive here
    assert lim.wait_s("10.0.0.9", "alice") == 4.0
    for _ in range(20):
        lim.failed("10.0.0.9", "alice")
    assert lim.wait_s("10.0.0.9", "alice") == 60.0
    # Alice at her own desk is not slowed by someone else's guessing.
    assert lim.wait_s("10.0.0.2", "alice") == 0
    lim.succeeded("10.0.0.2", "alice")
    # The window forgets old failures.
    clock.now += 601
    assert lim.wait_s("10.0.0.9", "alice") == 0


def test_login_limiter_slows_a_source_spraying_names() -> None:
    clock = _Clock()
    lim = LoginLimiter(free=5, source_free=4, base_s=1.0, clock=clock)
    for n in range(4):
        lim.failed("10.0.0.9", f"user{n}")
    assert lim.wait_s("10.0.0.9", "someone-else") == 1.0
    assert lim.wait_s("10.0.0.8", "someone-else") == 0


def test_login_limiter_memory_is_bounded() -> None:
    lim = LoginLimiter(max_keys=100)
    for n in range(1000):
        lim.failed(f"10.0.{n // 256}.{n % 256}", "x")
    assert len(lim._fails) <= 100


def test_signed_out_session_stays_ended_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "operators.yaml"
    save_operators(path, {"a": Operator("a", "A", fast_hash("password-a"))})
    book = OperatorBook(path)
    ended = tmp_path / "key.signed-out"
    sessions = Sessions(b"k" * 32, 3600, book, ended)
    op = book.get("a")
    assert op is not None
    cookie, session = sessions.issue(op)
    other, _ = sessions.issue(op)
    sessions.end(session)
    assert sessions.read(cookie) is None
    assert sessions.read(other) is not None  # only the signed-out session ends
    assert session.csrf not in ended.read_text()  # the file holds digests, not ids
    again = Sessions(b"k" * 32, 3600, book, ended)
    assert again.read(cookie) is None and again.read(other) is not None


@pytest.mark.parametrize(
    ("target", "want"),
    [
        ("/alerts/3?done=acked", "/alerts/3?done=acked"),
        ("//evil.example/x", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("", "/"),
        (None, "/"),
    ],
)
def test_only_local_paths_after_sign_in(target: str | None, want: str) -> None:
    assert safe_next(target) == want


# ----------------------------------------------------------------------- CLI


def test_operators_add_refuses_differing_passwords_and_short_ones(tmp_path: Path) -> None:
    path = tmp_path / "operators.yaml"
    runner = CliRunner()
    args = ["operators", "add", "duty2", "--file", str(path)]
    r = runner.invoke(app, args, input="first-password\nother-password\n")
    assert r.exit_code == 2 and "differ" in r.output and not path.exists()
    r = runner.invoke(app, [*args, "--password-stdin"], input="short\n")
    assert r.exit_code == 2 and "at least 8" in r.output
    r = runner.invoke(app, [*args, "-d", "值班员二"], input="long-enough-1\nlong-enough-1\n")
    assert r.exit_code == 0, r.output
    assert "long-enough-1" not in r.output
    r = runner.invoke(app, ["operators", "list", "--file", str(path)])
    assert r.output.strip() == "duty2\t值班员二"
    r = runner.invoke(app, ["operators", "remove", "nobody", "--file", str(path)])
    assert r.exit_code == 2 and "no operator 'nobody'" in r.output


# ----------------------------------------------------------------------- labels


def test_every_label_used_by_a_template_exists_in_both_languages() -> None:
    used: set[str] = set()
    for f in TEMPLATES.glob("*.html"):
        used |= set(
            re.findall(r"""\bt\(\s*'([a-z0-9_]+)'(?!\s*\+)""", f.read_text(encoding="utf-8"))
        )
    used |= {"scope_rule_device", "scope_device", "scope_rule", "minutes_15", "hour_1"}
    used |= {"hours_4", "hours_24", "online", "offline", "never", "bad_duration", "acked_ok"}
    assert used, "no labels found: the pattern is out of date"
    missing = sorted(used - set(LABELS))
    assert not missing, missing
    for table in (LABELS, FACT_LABELS, SEVERITY_LABELS):
        for key, (zh, en) in table.items():
            assert zh.strip() and en.strip(), key
    for kind in KINDS.values():  # a kind names itself and its facts in both languages
        for label in (kind.title, *kind.fact_labels.values()):
            assert label.zh.strip() and label.en.strip(), kind.name


def test_values_read_as_the_standards_write_them() -> None:
    assert format_value("water", "water_class", 6, "en") == "劣Ⅴ"
    assert format_value("water", "water_class", 3, "zh") == "Ⅲ"
    assert format_value("air", "aqi_category", 3, "zh") == "轻度污染"
    assert format_value("air", "aqi_category", 3, "en") == "轻度污染 (lightly polluted)"
    assert format_value("water", "do_mg_l", 2.5, "zh") == "2.5 mg/L"
    assert format_value("ev_charger", "status", "Faulted", "zh") == "Faulted"
    assert format_value("shore_power", "connected", True, "zh") == "已连接"
    assert format_value("pv", "", 960.0, "en") == "silent for 16 min"
    assert human_duration(5400, "zh") == "90 分钟"


def test_dashboard_links_use_the_uids_the_dashboards_publish() -> None:
    uids = {json.loads(p.read_text())["uid"] for p in (ROOT / "dashboards" / "json").glob("*.json")}
    linked = {k.dashboard for k in KINDS.values() if k.dashboard}
    assert all(k.dashboard for k in KINDS.values()) and linked <= uids


# ----------------------------------------------------------------------- charts


def test_numeric_chart_is_valid_svg_with_labelled_limits_and_breach() -> None:
    pts = [(1_000_000 + i * 60_000, 5.0 - i * 0.1) for i in range(40)]
    svg = numeric_chart(
        pts,
        start_ms=pts[0][0],
        end_ms=pts[-1][0],
        levels=[Level(3.0, "limit 3 mg/L"), Level(3.5, "clears at 3.5 mg/L", "c-clear")],
        breach_ms=pts[21][0],
        breach_label="breach 10:21",
        fmt_time=lambda ms: str(ms),
        title="do_mg_l · WQ-001",
        desc="40 readings",
    )
    root = ET.fromstring(svg)
    assert root.get("role") == "img" and root.find(f"{SVG}title") is not None
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert {"limit 3 mg/L", "clears at 3.5 mg/L", "breach 10:21"} <= set(texts)
    (path,) = [p for p in root.iter(f"{SVG}path") if p.get("class") == "c-line"]
    assert path.get("d", "").count("L") == 39  # one unbroken line through 40 readings
    dashed = [line for line in root.iter(f"{SVG}line") if line.get("class") == "c-limit"]
    assert len(dashed) == 1
    # The limit line sits where 3.0 is on the axis: below the first reading (5.0).
    first_y = float(path.get("d", "").split()[0].split(",")[1])
    assert float(dashed[0].get("y1", 0)) > first_y


def test_numeric_chart_breaks_the_line_over_a_gap() -> None:
    pts = [(i * 60_000, 1.0) for i in range(10)] + [
        (60 * 60_000 + i * 60_000, 2.0) for i in range(10)
    ]
    svg = numeric_chart(pts, start_ms=0, end_ms=80 * 60_000, fmt_time=str, title="t", desc="d")
    (path,) = [p for p in ET.fromstring(svg).iter(f"{SVG}path") if p.get("class") == "c-line"]
    assert path.get("d", "").count("M") == 2


def test_state_chart_hatches_and_names_breaching_states() -> None:
    pts = [(0, "Charging"), (3_600_000, "Faulted")]
    svg = state_chart(
        pts,
        start_ms=0,
        end_ms=7_200_000,
        bad=lambda s: s == "Faulted",
        latest_label="latest: Faulted",
        fmt_time=str,
        title="status",
        desc="2 readings",
    )
    root = ET.fromstring(svg)
    segs = [r for r in root.iter(f"{SVG}rect") if "c-seg" in (r.get("class") or "")]
    assert [s.get("fill") for s in segs] == [None, "url(#hatch)"]
    texts = {t.text for t in root.iter(f"{SVG}text")}
    assert {"Charging", "Faulted", "latest: Faulted"} <= texts


def test_ticks_are_round() -> None:
    assert nice_ticks(0, 10) == [0, 2.5, 5, 7.5, 10]
    assert nice_ticks(2.1, 5.9) == [3, 4, 5]
    ticks = time_ticks(0, 6 * 3_600_000, tz_offset_ms=8 * 3_600_000)
    assert all((t + 8 * 3_600_000) % 3_600_000 == 0 for t in ticks) and 3 <= len(ticks) <= 7


def test_console_problems_never_stop_the_service(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from alerts.engine import AlertEngine
    from alerts.rules import load_rules
    from alerts.store import AlertStore
    from console import build_console
    from devices.registry import Registry
    from envgrid.settings import load_settings

    ops = tmp_path / "operators.yaml"
    ops.write_text("operators:\n  a: {password_hash: plain}\n", encoding="utf-8")
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("", encoding="utf-8")
    settings = load_settings(
        None,
        console={"operators": ops, "session_secret_file": blocker / "key"},  # cannot be created
    )
    engine = AlertEngine(load_rules(None), AlertStore(":memory:"))
    console = build_console(settings, engine, Registry())
    assert console is not None
    assert f"{ops}:2: operator 'a': password_hash is not a bcrypt hash" in caplog.text
    assert "sessions end at restart" in caplog.text
    cookie, _ = console.sessions.issue(Operator("a", "A", "h"))
    assert cookie  # an ephemeral key still signs sessions
    assert (
        build_console(load_settings(None, console={"enabled": False}), engine, Registry()) is None
    )


# ----------------------------------------------------------------------- pages, in-process
# The console's router on a FastAPI app, driven through httpx's ASGI transport: no server, no
# InfluxDB (the pages below read the alert store, the routing and the HJ 212 command store).

ROUTING = """
receivers:
  - {name: duty-dingtalk, type: dingtalk, url: "http://127.0.0.1:9/robot/send?access_token=t"}
routes:
  - {name: all, receivers: [duty-dingtalk], group_wait: 0s}
oncall:
  people: [{id: wang, name: 王工, mobile: "13800000001"}]
  rotas:
    - {name: duty, weekly: {mon: wang, tue: wang, wed: wang, thu: wang, fri: wang,
                            sat: wang, sun: wang}}
"""


class Pages:
    """A console with an alert store, a receivers' dispatcher and an HJ 212 dispatcher."""

    def __init__(self, tmp: Path) -> None:
        from zoneinfo import ZoneInfo

        from fastapi import FastAPI

        from alerts.dispatch import Dispatcher
        from alerts.engine import AlertEngine
        from alerts.receivers import build_receiver
        from alerts.routing import parse_routing
        from alerts.rules import load_rules
        from alerts.store import AlertStore
        from console import build_console
        from devices.registry import FLEET, load_registry
        from envgrid.settings import load_settings
        from hj212.api import create_router
        from hj212.dispatch import Dispatcher as Hj212Dispatcher
        from hj212.intake import load_stations
        from hj212.store import CommandStore

        ops = tmp / "operators.yaml"
        save_operators(
            ops,
            {
                "boss": Operator("boss", "站长", fast_hash("password-boss"), admin=True),
                "duty": Operator("duty", "值班员", fast_hash("password-duty")),
            },
        )
        settings = load_settings(
            None, console={"operators": ops, "session_secret_file": tmp / "key"}
        )
        registry = load_registry(FLEET)
        routing, errors = parse_routing(ROUTING, "routing.yaml")
        assert errors == []
        self.store = AlertStore(tmp / "alerts.db")
        self.engine = AlertEngine(load_rules(None), self.store)
        receivers = {n: build_receiver(c) for n, c in routing.receivers.items()}
        self.notify = Dispatcher(self.store, routing, receivers)
        self.commands = CommandStore(tmp / "commands.db")
        tz = ZoneInfo("Asia/Shanghai")
        self.hj212 = Hj212Dispatcher(
            settings.hj212, load_stations(registry, "Asia/Shanghai"), self.commands, tz
        )
        console = build_console(
            settings, self.engine, registry, notify=self.notify, hj212=lambda: self.hj212
        )
        assert console is not None
        self.console = console
        self.app = FastAPI()
        self.app.include_router(console.router)
        self.app.include_router(create_router(lambda: self.hj212, "tok"))

    def client(self, operator: str | None, lang: str = "zh") -> Any:
        import httpx

        cookies = {"envgrid_lang": lang}
        self.csrf = ""
        if operator is not None:
            op = self.console.book.get(operator)
            assert op is not None
            cookie, session = self.console.sessions.issue(op)
            cookies["envgrid_session"] = cookie
            self.csrf = session.csrf
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url="http://console.test",
            cookies=cookies,
        )


@pytest.fixture
def pages(tmp_path: Path) -> Pages:
    return Pages(tmp_path)


def _breach(p: Pages) -> int:
    from alerts.engine import Observation
    from alerts.store import AlertFilter

    # pv-fault fires at once (no `for`): an alert with a description_zh.
    p.engine.observe(
        Observation("pv", "PV-001", "site", "清江浦区", 1_796_090_400_000, {"status": "FAULT"})
    )
    (rec,) = p.engine.alerts(AlertFilter(state="firing"))
    return rec.id


async def test_every_default_rule_has_a_chinese_description_shown_on_a_chinese_page(
    pages: Pages,
) -> None:
    from alerts.rules import load_rules

    rules = load_rules(None).by_id.values()
    assert rules and all(re.search(r"[\u4e00-\u9fff]", r.description_zh) for r in rules)
    alert_id = _breach(pages)
    async with pages.client("duty", "zh") as c:
        zh = (await c.get(f"/alerts/{alert_id}")).text
        index = (await c.get("/")).text
    async with pages.client("duty", "en") as c:
        en = (await c.get(f"/alerts/{alert_id}")).text
    assert "光伏逆变器报告 FAULT（故障）" in zh and "光伏逆变器报告 FAULT（故障）" in index
    # The heading and the rule's description; the stored message stays as the engine wrote it.
    heading = re.search(r"<h1>.*?</h1>", zh, re.S)
    assert heading and "光伏逆变器报告 FAULT（故障）" in heading.group(0)
    assert "<dd>PV inverter reports FAULT</dd>" not in zh
    assert "PV inverter reports FAULT" in en and "光伏逆变器报告" not in en


async def test_new_pages_render_in_both_languages_with_on_call_now(pages: Pages) -> None:
    mn = next(iter(pages.hj212.stations))
    for lang, words in (
        ("zh", ("通知记录", "通知渠道与值班", "HJ 212 监测站", "补传小时数据", "轮值在岗")),
        ("en", ("Notifications", "Receivers and on-call", "HJ 212 stations", "Re-request hours")),
    ):
        alert_id = _breach(pages) if lang == "zh" else 1
        async with pages.client("duty", lang) as c:
            bodies = [
                (await c.get(path)).text
                for path in (f"/alerts/{alert_id}", "/receivers", "/stations", f"/stations/{mn}")
            ]
        text = "\n".join(bodies)
        for w in words:
            assert w in text, (lang, w)
        assert "王工" in bodies[1]  # the rota's person on duty, in the header and the table
    async with pages.client(None) as c:
        for path in ("/receivers", "/stations", f"/stations/{mn}"):
            r = await c.get(path)
            assert r.status_code == 303 and r.headers["location"].startswith("/login")
        r = await c.post(f"/stations/{mn}/sync-clock", data={"csrf": "x"})
        assert r.status_code == 401


async def test_test_message_is_for_admins_only(pages: Pages) -> None:
    def tests_queued() -> int:
        return int(
            pages.store.db.execute(
                "SELECT COUNT(*) FROM notify_sent WHERE reason = 'test'"
            ).fetchone()[0]
        )

    async with pages.client("duty") as c:
        page = (await c.get("/receivers")).text
        assert 'id="test-duty-dingtalk"' not in page and 'id="admin-hint"' in page
        r = await c.post("/receivers/duty-dingtalk/test", data={"csrf": pages.csrf})
        assert r.status_code == 403 and "只有管理员" in r.text
    assert tests_queued() == 0
    async with pages.client("boss") as c:
        assert 'id="test-duty-dingtalk"' in (await c.get("/receivers")).text
        r = await c.post("/receivers/duty-dingtalk/test", data={"csrf": "wrong"})
        assert r.status_code == 403 and tests_queued() == 0
        r = await c.post("/receivers/nobody/test", data={"csrf": pages.csrf})
        assert r.status_code == 404
        r = await c.post("/receivers/duty-dingtalk/test", data={"csrf": pages.csrf})
        assert r.status_code == 303
        assert tests_queued() == 1
        page = (await c.get(r.headers["location"])).text
        assert "duty-dingtalk" in page and 'id="done"' in page


async def test_station_page_queues_commands_the_api_lists_with_the_operator(
    pages: Pages,
) -> None:
    mn = next(iter(pages.hj212.stations))
    async with pages.client("duty", "en") as c:
        r = await c.post(
            f"/stations/{mn}/rerequest",
            data={"csrf": pages.csrf, "begin": "2026-12-01T08:00", "end": "2026-12-01T11:00"},
        )
        assert r.status_code == 303, r.text
        r = await c.post(f"/stations/{mn}/sync-clock", data={"csrf": pages.csrf})
        assert r.status_code == 303
        r = await c.post(f"/stations/{mn}/sync-clock", data={"csrf": pages.csrf})
        assert r.headers["location"].endswith("done=clock_waiting")  # one 1012 waiting is enough
        bad = await c.post(
            f"/stations/{mn}/rerequest",
            data={"csrf": pages.csrf, "begin": "2026-12-02T08:00", "end": "2026-12-01T08:00"},
        )
        assert bad.status_code == 422 and "BeginTime is after EndTime" in bad.text
        listed = (await c.get("/api/hj212/commands", params={"mn": mn})).json()
        page = (await c.get(f"/stations/{mn}")).text
    assert [(x["cn"], x["status"], x["requested_by"]) for x in listed] == [
        ("1012", "queued", "operator:duty"),
        ("2061", "queued", "operator:duty"),
    ]
    assert listed[1]["params"] == {"BeginTime": "20261201080000", "EndTime": "20261201110000"}
    assert listed[0]["qn"] in page and "值班员 (duty)" in page
    assert re.search(r'id="open-commands">2<', page)


async def test_devices_view_links_a_station_to_its_page(pages: Pages) -> None:
    mn = next(iter(pages.hj212.stations))
    device = pages.hj212.stations[mn].device.id
    async with pages.client("duty") as c:
        page = (await c.get("/devices")).text  # InfluxDB is not there: the page says so
    row = page[page.index(f'id="dev-{device}"') :]
    assert f'href="/stations/{mn}"' in row[: row.index("</tr>")]
    pv = page[page.index('id="dev-PV-001"') :]
    assert 'href="/stations/' not in pv[: pv.index("</tr>")]  # not an HJ 212 station


def test_admin_flag_round_trips_and_the_cli_sets_and_keeps_it(tmp_path: Path) -> None:
    path = tmp_path / "operators.yaml"
    runner = CliRunner()
    r = runner.invoke(
        app, ["operators", "add", "boss", "--admin", "--password-stdin", "--file", str(path)],
        input="long-enough-1\n",
    )  # fmt: skip
    assert r.exit_code == 0 and "(admin)" in r.output, r.output
    assert "role: admin" in path.read_text(encoding="utf-8")  # the role is the one source
    # A new password keeps the flag; --no-admin takes it back.
    args = ["operators", "add", "boss", "--password-stdin", "--file", str(path)]
    assert runner.invoke(app, args, input="long-enough-2\n").exit_code == 0
    assert load_operators(path)["boss"].admin
    assert runner.invoke(app, [*args, "--no-admin"], input="long-enough-3\n").exit_code == 0
    assert not load_operators(path)["boss"].admin
    with pytest.raises(OperatorsError, match=r"ops.yaml:2: .*admin must be true or false"):
        parse_operators("operators:\n  a: {password_hash: $2b$04$x, admin: 'yes'}\n", "ops.yaml")


def test_demo_operator_gets_a_fresh_password_kept_only_as_a_hash(tmp_path: Path) -> None:
    from envgrid.demo import DEMO_OPERATOR, demo_operator

    path = tmp_path / "operators.yaml"
    first = demo_operator(path)
    second = demo_operator(path)
    assert first != second and len(second) >= 12
    text = path.read_text(encoding="utf-8")
    assert first not in text and second not in text
    op = load_operators(path)[DEMO_OPERATOR]
    assert op.admin and verify_password(second, op.password_hash)
    assert not verify_password(first, op.password_hash)
