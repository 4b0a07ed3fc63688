"""Issue 16 on the console: an auditor reviews a suspect hour on the 审核 page (headless Chromium).

``envgrid run`` in a subprocess against the real mosquitto and InfluxDB; the auditor and an
operator are added with ``envgrid operators add --role``. Yesterday's PM2.5 of one station has a
spike of 900 at 10:30 (QC fail) and a smaller one at 06:30 (QC suspect); the real rollup stores
the flags. The auditor finds 10:00 listed first, selects it, invalidates it with a reason, and
sees the mark in the history; the hourly rollup of 10:00 is then left out with that reason (read
from InfluxDB). An operator sees the page read-only and a POST answers 403. The screenshot is
docs/img/console-review.png (the README's) when ENVGRID_UPDATE_SCREENSHOTS=1.
"""

from __future__ import annotations

import math
import os
import random
import re
import shutil
import subprocess
import tempfile
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from PIL import Image, ImageStat
from playwright.async_api import expect

from devices.registry import load_registry
from envgrid.app import DEFAULT_REGISTRY
from envgrid.localstack import LocalInfluxDB, LocalMosquitto
from envgrid.settings import load_settings
from rollups.runner import Rollup
from tests.integration.test_console import CHROMIUM, browser_page
from tests.service_proc import ENVGRID, service

SCREENSHOT = (
    Path(__file__).resolve().parents[2] / "docs" / "img" / "console-review.png"
    if os.environ.get("ENVGRID_UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.mkdtemp(prefix="envgrid-review-")) / "console-review.png"
)
TZ = ZoneInfo("Asia/Shanghai")
DEVICE = "AQ-017"
AUDITOR, AUDITOR_NAME, AUDITOR_PW = "wang.li", "王立", "Huaian-audit-2026"
OPERATOR, OPERATOR_PW = "duty2", "Huaian-duty-2026"

pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None, reason="Debian's chromium is missing: scripts/setup --browser"
)


def add(path: Path, name: str, password: str, *extra: str) -> None:
    """``envgrid operators add`` with the password on standard input, as an admin would."""
    out = subprocess.run(
        [ENVGRID, "operators", "add", name, "--password-stdin", *extra],
        input=password + "\n",
        env={"ENVGRID_CONSOLE__OPERATORS": str(path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr


def ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def seed(influxdb: LocalInfluxDB, db: str, day: datetime) -> None:
    """A day of 5-minute PM2.5 with two spikes: 900 at 10:30 (fail), +200 at 06:30 (suspect)."""
    rnd = random.Random(7)
    lines = []
    for i in range(288):
        t = day + timedelta(minutes=5 * i)
        v = round(45 + 15 * math.sin(i / 288 * 2 * math.pi) + rnd.gauss(0, 2), 1)
        if (t.hour, t.minute) == (10, 30):
            v = 900.0
        elif (t.hour, t.minute) == (6, 30):
            v += 200
        lines.append(f"air_quality,device_id={DEVICE},site=S,county=C pm25_ug_m3={v} {ms(t)}")
    influxdb.write("\n".join(lines), db)


async def sign_in(web: httpx.AsyncClient, name: str, password: str) -> None:
    page = await web.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token is not None
    r = await web.post("/login", data={"name": name, "password": password, "csrf": token[1]})
    assert r.status_code == 303, r.text


@pytest.mark.slow
async def test_auditor_invalidates_a_suspect_hour_on_the_review_page(
    mosquitto: LocalMosquitto, influxdb: LocalInfluxDB, influx_db: str, tmp_path: Path
) -> None:
    ops = tmp_path / "operators.yaml"
    add(ops, AUDITOR, AUDITOR_PW, "--role", "auditor", "--display-name", AUDITOR_NAME)
    add(ops, OPERATOR, OPERATOR_PW)
    day = datetime.now(TZ).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    seed(influxdb, influx_db, day)
    review_db = tmp_path / "var" / "review.db"
    settings = load_settings(
        None,
        influx={"url": influxdb.url, "database": influx_db},
        rollup={"review_store": str(review_db)},
    )
    async with Rollup(settings, load_registry(DEFAULT_REGISTRY), kinds=["air"]) as rollup:
        await rollup.run_range(day, day + timedelta(days=1))  # QC flags, hourly and daily points
    ten = ms(day + timedelta(hours=10))
    hourly_q = f"SELECT * FROM air_quality_hourly WHERE device_id = '{DEVICE}' AND time = {ten}ms"
    (before,) = influxdb.points(hourly_q, influx_db)
    assert before["pm25_ug_m3_n"] == 11 and before["left_out"] == "pm25_ug_m3: qc fail (spike)"

    env = {
        "mqtt__topic_prefix": f"r{uuid.uuid4().hex[:8]}",
        "console__operators": str(ops),
        "rollup__review_store": str(review_db),
    }
    async with (
        service(tmp_path, mosquitto, influxdb.url, influx_db, **env) as svc,
        browser_page() as page,
    ):
        base = str(svc.http.base_url).rstrip("/")
        await page.goto(base + "/review")
        await page.get_by_label("值班员账号").fill(AUDITOR)
        await page.get_by_label("密码").fill(AUDITOR_PW)
        await page.get_by_role("button", name="登录").click()
        await page.wait_for_url(base + "/review")
        await expect(page.get_by_role("link", name="审核", exact=True)).to_have_attribute(
            "aria-current", "page"
        )

        # ---- the period: yesterday (the page opens on the last three days)
        await page.get_by_label("从", exact=True).fill(day.strftime("%Y-%m-%dT00:00"))
        await page.get_by_label("到", exact=True).fill(
            (day + timedelta(days=1)).strftime("%Y-%m-%dT00:00")
        )
        await page.get_by_role("button", name="显示").click()
        await page.wait_for_url(re.compile(r"/review\?from="))

        # ---- data to review: the failed hour first (newest), then the suspect one
        rows = page.locator("#suspect tbody tr")
        await expect(rows).to_have_count(2)
        first = rows.first
        assert await first.get_attribute("data-device") == DEVICE
        assert await first.get_attribute("data-field") == "pm25_ug_m3"
        await expect(first.locator("time")).to_have_text(day.strftime("%Y-%m-%d") + " 10:00")
        await expect(first).to_contain_text("尖峰")
        assert await rows.nth(1).get_attribute("data-hour") == (day + timedelta(hours=6)).isoformat(
            timespec="seconds"
        )

        # ---- selecting the hour fills the range; the chart marks the flagged values
        await first.get_by_role("link", name="选择此小时").click()
        await page.wait_for_url(re.compile(rf"/review/{DEVICE}\?"))
        await expect(page.get_by_label("开始时间")).to_have_value(
            day.strftime("%Y-%m-%dT") + "10:00"
        )
        await expect(page.get_by_label("结束时间（不含）")).to_have_value(
            day.strftime("%Y-%m-%dT") + "11:00"
        )
        chart = page.locator("svg.chart")
        await expect(chart).to_be_visible()
        await expect(chart.locator("path.c-fail")).to_have_count(1)
        await expect(chart.locator("path.c-suspect")).to_have_count(1)
        await expect(chart.locator("rect.c-band")).to_have_count(0)
        await expect(page.locator('input[name="field_pm25_ug_m3"]')).to_be_checked()
        await expect(page.locator("#no-marks")).to_be_visible()

        # ---- "other" without a comment is refused, the form kept; nothing recorded
        await page.get_by_label("原因").select_option("other")
        await page.get_by_role("button", name="提交审核").click()
        await expect(page.locator("#form-error")).to_contain_text('"other" needs a comment')
        await expect(page.get_by_label("开始时间")).to_have_value(
            day.strftime("%Y-%m-%dT") + "10:00"
        )
        await expect(page.get_by_label("从", exact=True)).to_have_value(
            day.strftime("%Y-%m-%dT00:00")
        )
        assert (await svc.http.get("/api/review/marks")).json() == []

        # ---- invalidate with a reason; the history says who, what and why
        await page.get_by_label("标记无效").check()
        await page.get_by_label("原因").select_option("instrument_fault")
        await page.get_by_label("说明").fill("分析仪采样泵故障")
        await page.get_by_role("button", name="提交审核").click()
        await page.wait_for_url(re.compile(r"done=1"))
        await expect(page.locator("#done")).to_contain_text("标记 #1 已记录")
        mark = page.locator('#marks tr[data-mark="1"]')
        for text in (f"{AUDITOR_NAME} ({AUDITOR})", "标记无效", "pm25_ug_m3", "仪器故障"):
            await expect(mark).to_contain_text(text)
        await expect(mark).to_contain_text("分析仪采样泵故障")
        await expect(mark).to_contain_text(day.strftime("%Y-%m-%d") + " 10:00")
        await expect(chart.locator("rect.c-band")).to_have_count(1)
        await expect(page.get_by_label("从", exact=True)).to_have_value(
            day.strftime("%Y-%m-%dT00:00")
        )
        await page.screenshot(path=str(SCREENSHOT), full_page=True)

        listed = (await svc.http.get("/api/review/marks", params={"device_id": DEVICE})).json()
        assert [(m["actor"], m["reason"], m["action"], m["fields"]) for m in listed] == [
            (AUDITOR, "instrument_fault", "invalidate", ["pm25_ug_m3"])
        ]

        # ---- an operator may look, not mark
        async with httpx.AsyncClient(base_url=base, trust_env=False) as web:
            await sign_in(web, OPERATOR, OPERATOR_PW)
            r = await web.get(f"/review/{DEVICE}")
            assert r.status_code == 200 and 'id="mark-form"' not in r.text
            assert 'id="readonly-hint"' in r.text and 'data-mark="1"' in r.text
            csrf = re.search(r'name="csrf" value="([^"]+)"', r.text)
            assert csrf is not None  # the sign-out form's: a valid token, and still refused
            form = {
                "csrf": csrf[1],
                "from": day.strftime("%Y-%m-%dT") + "12:00",
                "to": day.strftime("%Y-%m-%dT") + "13:00",
                "field_*": "1",
                "action": "invalidate",
                "reason": "maintenance",
            }
            r = await web.post(f"/review/{DEVICE}/marks", data=form)
            assert r.status_code == 403 and "只有审核员或管理员" in r.text
            web.cookies.set("envgrid_lang", "en")
            r = await web.get("/review")
            assert r.status_code == 200 and "Data to review" in r.text
            assert f'data-device="{DEVICE}"' in r.text and "Only an auditor" in r.text
        assert len((await svc.http.get("/api/review/marks")).json()) == 1

    # ---- the mark recomputed the day: 10:00 has no PM2.5 mean, and says why
    (after,) = influxdb.points(hourly_q, influx_db)
    assert after.get("pm25_ug_m3") is None and after["valid"] is False
    assert "pm25_ug_m3: instrument_fault (mark 1 by wang.li): 分析仪采样泵故障" in after["left_out"]
    (daily,) = influxdb.points(
        f"SELECT left_out FROM air_quality_daily WHERE device_id = '{DEVICE}'", influx_db
    )
    assert "pm25_ug_m3 10:00-11:00: instrument_fault (mark 1 by wang.li)" in daily["left_out"]

    img = Image.open(SCREENSHOT)
    assert img.size[0] == 1280 and img.size[1] >= 860
    gray = ImageStat.Stat(img.convert("L"))
    assert gray.stddev[0] > 20, "the screenshot is (nearly) blank"
    assert len(img.convert("RGB").getcolors(1 << 20) or []) > 200
