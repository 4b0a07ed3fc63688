"""``envgrid report --period`` against the real InfluxDB: the air assessment of a seeded month.

Four stations in two counties get daily points in ``air_quality_daily`` as the rollup writes
them (24 h means with their ``_n``, the daily maximum 8 h O3, the day's AQI under the HJ 633
edition in force, ``valid``) for February–March 2026 and March 2025. The JSON report's
statistics are compared with a calculation written here from the standard's formulas (means,
HJ 663 Annex A percentiles, GB/T 8170 rounding, composite index over the GB 3095 grade II
limits), not with ``devices.hj663``. Exceptional-event marks go through the real review store.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from typer.testing import CliRunner

from dashboards.air import RANKING_QUERY
from devices.aqi import aqi_daily, edition_for
from devices.registry import Device, Registry
from envgrid.cli.main import app
from envgrid.localstack import LocalInfluxDB
from envgrid.settings import load_settings
from rollups.review import Mark, ReviewStore
from rollups.runner import Rollup

TZ = ZoneInfo("Asia/Shanghai")
# device -> (site, county, assessment)
STATIONS: dict[str, tuple[str, str, str]] = {
    "AQ-A1": ("甲一站", "甲县", "national"),
    "AQ-A2": ("甲二站", "甲县", "city"),
    "AQ-B1": ("乙一站", "乙县", "national"),
    "AQ-B2": ("乙二站", "乙县", "city"),
}
OFFSET = {"AQ-A1": 0, "AQ-A2": 3, "AQ-B1": 9, "AQ-B2": 14}
MISSING = {("AQ-B2", date(2026, 3, d)) for d in (3, 4)}  # no point: not a valid day
POLLS = ("so2", "no2", "pm10", "pm25", "co", "o3_8h")
FIELD = {
    "so2": "so2_ug_m3",
    "no2": "no2_ug_m3",
    "pm10": "pm10_ug_m3",
    "pm25": "pm25_ug_m3",
    "co": "co_mg_m3",
    "o3_8h": "o3_8h_ug_m3",
}
# GB 3095 grade II: 2012 Table 1; 2026 phase one (from 2026-03-01) PM10 60/120, PM2.5 30/60.
# Annual limits for the means, 24 h limit for CO, 8 h for O3 (the composite index's S_i).
S_2012 = {"so2": 60, "no2": 40, "pm10": 70, "pm25": 35, "co": 4, "o3_8h": 160}
S_2026 = {"so2": 60, "no2": 40, "pm10": 60, "pm25": 30, "co": 4, "o3_8h": 160}
DAY_2012 = {"so2": 150, "no2": 80, "pm10": 150, "pm25": 75, "co": 4, "o3_8h": 160}
DAY_2026 = {"so2": 150, "no2": 80, "pm10": 120, "pm25": 60, "co": 4, "o3_8h": 160}


def values(device: str, day: date) -> dict[str, float]:
    """A station's day: varied, with decimals, PM2.5 around the 60/75 µg/m³ 24 h limits."""
    i = day.toordinal() % 31
    k = OFFSET[device]
    return {
        "so2": 6 + (i * 3 + k) % 7 + 0.4,
        "no2": 18 + (i * 5 + k) % 13 + 0.25,
        "pm10": 55 + (i * 11 + k) % 40 + 0.5,
        "pm25": 30 + (i * 7 + k) % 38 + 0.5,  # 30.5 .. 67.5: over 60 counts from March only
        "co": 0.5 + ((i * 13 + k) % 9) / 10 + 0.05,
        "o3_8h": 60 + (i * 17 + k) % 120 + 0.5,
    }


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


SEEDED = days(date(2026, 2, 1), date(2026, 3, 31)) + days(date(2025, 3, 1), date(2025, 3, 31))


def ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=TZ).timestamp() * 1000)


def aqi_of(v: dict[str, float], day: date) -> tuple[int, int]:
    daily = {FIELD[p]: v[p] for p in ("so2", "no2", "pm10", "pm25", "co")}
    r = aqi_daily(daily, edition_for(day), o3_8h_max=v["o3_8h"])
    assert r is not None
    return r.aqi, r.category


def lines(seeded: list[date] = SEEDED) -> Iterator[str]:
    for device, (site, county, assessment) in STATIONS.items():
        for day in seeded:
            if (device, day) in MISSING:
                continue
            v = values(device, day)
            aqi, category = aqi_of(v, day)
            fields = [f"{FIELD[p]}={v[p]!r}" for p in POLLS]
            fields += [f"{FIELD[p]}_n=24i" for p in POLLS if p != "o3_8h"]
            fields += ["o3_8h_ug_m3_n=17i", f"aqi={aqi}i", f"aqi_category={category}i"]
            fields += ["valid=true", 'left_out=""']
            tags = (
                f"aqi_edition={edition_for(day)},assessment={assessment},county={county},"
                f"device_id={device},site={site}"
            )
            yield f"air_quality_daily,{tags} {','.join(fields)} {ms(day)}"


# ------------------------------------------------------------- independent calculation


def rnd(x: Decimal, digits: int) -> Decimal:
    """GB/T 8170 (四舍六入五成双) on the exact decimal."""
    return x.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_EVEN)


def dec(v: float) -> Decimal:
    return Decimal(repr(v))


def pct(vals: list[Decimal], p: int) -> Decimal:
    """HJ 663 Annex A: k = 1 + (n−1)·p%, X(s) + (X(s+1) − X(s))·(k − s)."""
    xs = sorted(vals)
    k = 1 + (len(xs) - 1) * Decimal(p) / 100
    s = int(k)
    return xs[-1] if s >= len(xs) else xs[s - 1] + (xs[s] - xs[s - 1]) * (k - s)


DIGITS = {"so2": 0, "no2": 0, "pm10": 0, "pm25": 0, "co": 1, "o3_8h": 0}


def expect(day_values: dict[date, dict[str, Decimal]], aqis: dict[date, int], limits_s: Any,
           day_limits: Any) -> dict[str, Any]:  # fmt: skip
    """Statistics of one unit's days (already without excluded days)."""
    stat: dict[str, Decimal] = {}
    for p in POLLS:
        col = [v[p] for v in day_values.values()]
        if p == "co":
            stat[p] = rnd(pct(col, 95), 1)
        elif p == "o3_8h":
            stat[p] = rnd(pct(col, 90), 0)
        else:
            stat[p] = rnd(sum(col, Decimal(0)) / len(col), 0)
    ci = rnd(sum((stat[p] / limits_s[p] for p in POLLS), Decimal(0)), 2)
    cats = [0] * 6
    for a in aqis.values():
        # HJ 633 Table 2: 0-50, 51-100, 101-150, 151-200, 201-300, > 300.
        cats[sum(a > top for top in (50, 100, 150, 200, 300))] += 1
    good = cats[0] + cats[1]
    over = {
        p: sum(1 for d, v in day_values.items() if rnd(v[p], DIGITS[p]) > day_limits(d)[p])
        for p in POLLS
    }
    return {
        "so2": float(stat["so2"]),
        "no2": float(stat["no2"]),
        "pm10": float(stat["pm10"]),
        "pm25": float(stat["pm25"]),
        "co_p95": float(stat["co"]),
        "o3_8h_p90": float(stat["o3_8h"]),
        "composite_index": float(ci),
        "good_day_ratio": float(rnd(Decimal(good * 100) / len(aqis), 1)),
        "valid_days": len(aqis),
        "category_days": cats,
        "over_limit_days": over,
    }


def day_limits(d: date) -> dict[str, int]:
    return DAY_2012 if d < date(2026, 3, 1) else DAY_2026


def station_expect(device: str, period: list[date], excluded: set[date], s: Any) -> dict[str, Any]:
    kept = [d for d in period if (device, d) not in MISSING and d not in excluded]
    vals = {d: {p: dec(x) for p, x in values(device, d).items()} for d in kept}
    aqis = {d: aqi_of(values(device, d), d)[0] for d in kept}
    return expect(vals, aqis, s, day_limits)


def area_expect(members: list[str], period: list[date], excluded: dict[str, set[date]],
                s: Any) -> dict[str, Any]:  # fmt: skip
    vals: dict[date, dict[str, Decimal]] = {}
    aqis: dict[date, int] = {}
    for d in period:
        present = [m for m in members if (m, d) not in MISSING and d not in excluded.get(m, ())]
        if not present:
            continue
        mean = {p: sum((dec(values(m, d)[p]) for m in present), Decimal(0)) / len(present)
                for p in POLLS}  # fmt: skip
        vals[d] = mean
        aqis[d] = aqi_of({p: float(x) for p, x in mean.items()}, d)[0]
    return expect(vals, aqis, s, day_limits)


# ---------------------------------------------------------------------------- fixtures


@dataclass(frozen=True)
class Env:
    db: str
    config: Path
    review: Path


@pytest.fixture
def env(influxdb: LocalInfluxDB, influx_db: str, tmp_path: Path) -> Env:
    influxdb.write("\n".join(lines()), influx_db)
    return configure(influxdb, influx_db, tmp_path)


def configure(influxdb: LocalInfluxDB, influx_db: str, tmp_path: Path) -> Env:
    registry = tmp_path / "registry.yaml"
    registry.write_text(
        yaml.safe_dump(
            {
                "devices": [
                    {"id": k, "kind": "air", "site": s, "county": c, "assessment": a}
                    for k, (s, c, a) in STATIONS.items()
                ]
                # Registered, never reported: named in the notes, in no county's figures.
                + [{"id": "AQ-C1", "kind": "air", "site": "丙站", "county": "丙县"}]
            },
            allow_unicode=True,
        ),
        encoding="utf-8",
    )
    review = tmp_path / "review.db"
    config = tmp_path / "envgrid.toml"
    config.write_text(
        f'[influx]\nurl = "{influxdb.url}"\ndatabase = "{influx_db}"\n\n'
        f'[devices]\nregistry = "{registry}"\n\n[rollup]\nreview_store = "{review}"\n',
        encoding="utf-8",
    )
    return Env(influx_db, config, review)


def report(env: Env, *args: str) -> str:
    r = CliRunner().invoke(app, ["report", "--config", str(env.config), *args])
    assert r.exit_code == 0, r.output
    return r.stdout


def air(env: Env, *args: str) -> dict[str, Any]:
    data = json.loads(report(env, "--format", "json", *args))
    assert "figures" in data  # the plan figures are still there
    out: dict[str, Any] = data["air_assessment"]
    return out


MARCH = days(date(2026, 3, 1), date(2026, 3, 31))
MARCH_2025 = days(date(2025, 3, 1), date(2025, 3, 31))
COUNTIES = {"甲县": ["AQ-A1", "AQ-A2"], "乙县": ["AQ-B1", "AQ-B2"]}
KEYS = ("so2", "no2", "pm10", "pm25", "co_p95", "o3_8h_p90", "composite_index",
        "good_day_ratio", "valid_days", "category_days", "over_limit_days")  # fmt: skip


def pick(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: obj[k] for k in KEYS}


# ------------------------------------------------------------------------------- tests


def test_month_matches_an_independent_calculation(env: Env) -> None:
    a = air(env, "--period", "month", "--at", "2026-03")
    assert a["period"] == {
        "first": "2026-03-01",
        "last": "2026-03-31",
        "label": "2026-03",
        "kind": "month",
    }
    stations = {s["device_id"]: s for s in a["stations"]}
    for device in STATIONS:
        assert pick(stations[device]) == station_expect(device, MARCH, set(), S_2026), device
    assert stations["AQ-B2"]["valid_days"] == 29
    assert stations["AQ-A1"]["editions"] == ["GB 3095-2026 transition"]

    counties = {c["name"]: c for c in a["counties"]}
    want = {c: area_expect(m, MARCH, {}, S_2026) for c, m in COUNTIES.items()}
    before = {c: area_expect(m, MARCH_2025, {}, S_2012) for c, m in COUNTIES.items()}
    for c in COUNTIES:
        assert pick(counties[c]) == want[c], c
        assert counties[c]["composite_index_last_year"] == before[c]["composite_index"]
        assert counties[c]["good_day_ratio_last_year"] == before[c]["good_day_ratio"]
        assert counties[c]["composite_index_change"] == pytest.approx(
            want[c]["composite_index"] - before[c]["composite_index"], abs=1e-9
        )
        assert counties[c]["good_day_ratio_change"] == pytest.approx(
            want[c]["good_day_ratio"] - before[c]["good_day_ratio"], abs=1e-9
        )
    # Ranked by composite index, ascending (lower is cleaner).
    order = sorted(COUNTIES, key=lambda c: want[c]["composite_index"])
    assert [c["name"] for c in a["counties"]] == order
    assert [c["rank"] for c in a["counties"]] == [1, 2]
    assert want[order[0]]["composite_index"] < want[order[1]]["composite_index"]
    by_ratio = sorted(COUNTIES, key=lambda c: -want[c]["good_day_ratio"])
    if want["甲县"]["good_day_ratio"] != want["乙县"]["good_day_ratio"]:
        assert counties[by_ratio[0]]["rank_good_day_ratio"] == 1

    # The city: the national-assessment stations A1 and B1.
    assert pick(a["city"]) == area_expect(["AQ-A1", "AQ-B1"], MARCH, {}, S_2026)
    assert a["city"]["stations"] == 2
    assert "无数据 Registered stations without a daily point: AQ-C1" in a["notes"]


def test_a_span_over_2026_03_01_uses_each_edition_by_day(env: Env) -> None:
    a = air(env, "--period", "custom", "--from", "2026-02-15", "--to", "2026-03-14")
    span = days(date(2026, 2, 15), date(2026, 3, 14))
    s = {x["device_id"]: x for x in a["stations"]}["AQ-A1"]
    assert s["editions"] == ["GB 3095-2012", "GB 3095-2026 transition"]
    # Over-limit days by the limits of each day: PM2.5 > 75 before March, > 60 from it.
    want = station_expect("AQ-A1", span, set(), S_2026)
    assert s["over_limit_days"] == want["over_limit_days"]
    feb = sum(1 for d in span if d.month == 2 and values("AQ-A1", d)["pm25"] > 60)
    assert feb > 0  # days between the limits exist in February and are not counted there
    assert pick(s) == want
    # The period is judged by the limits in force when it closes (phase one).
    assert a["period"]["kind"] == "custom"


def test_an_exceptional_event_mark_leaves_the_assessment(env: Env) -> None:
    event = date(2026, 3, 10)
    store = ReviewStore(env.review)
    start = ms(event)
    store.add(Mark("AQ-A1", ("*",), start, start + 86_400_000, "invalidate",
                   "exceptional_event", "auditor", "sand and dust"))  # fmt: skip
    a = air(env, "--period", "month", "--at", "2026-03")
    stations = {s["device_id"]: s for s in a["stations"]}
    assert pick(stations["AQ-A1"]) == station_expect("AQ-A1", MARCH, {event}, S_2026)
    assert stations["AQ-A1"]["excluded_days"] == 1
    assert stations["AQ-A1"]["valid_days"] == 30
    counties = {c["name"]: c for c in a["counties"]}
    without = area_expect(COUNTIES["甲县"], MARCH, {"AQ-A1": {event}}, S_2026)
    assert pick(counties["甲县"]) == without
    assert any("AQ-A1 2026-03-10" in n for n in a["notes"])

    # Restored (same reason): the day counts again.
    store.add(Mark("AQ-A1", ("*",), start, start + 86_400_000, "restore",
                   "exceptional_event", "auditor", "not an event after all"))  # fmt: skip
    store.close()
    a = air(env, "--period", "month", "--at", "2026-03")
    again = {s["device_id"]: s for s in a["stations"]}["AQ-A1"]
    assert pick(again) == station_expect("AQ-A1", MARCH, set(), S_2026)
    assert again["excluded_days"] == 0


def test_every_format_shows_the_ranking_and_store_writes_it(
    env: Env, influxdb: LocalInfluxDB
) -> None:
    args = ("--period", "month", "--at", "2026-03")
    table = report(env, *args)
    assert "县区排名 County ranking" in table and "甲县" in table and "乙县" in table
    assert "环境空气质量评价 Air quality assessment" in table
    html = report(env, *args, "--format", "html")
    assert 'id="air_assessment"' in html and "县区排名 County ranking" in html
    assert "2026-03" in html
    text = report(env, *args, "--format", "csv")
    figures, *blocks = text.split("\n\n")
    assert figures.startswith("formula,")
    rows = [r for b in blocks for r in csv.reader(io.StringIO(b))]
    ranking = [r for r in rows if r[:2] == ["air_assessment", "县区排名 County ranking"]]
    data = json.loads(report(env, *args, "--format", "json"))
    assert [r[3] for r in ranking] == [c["name"] for c in data["air_assessment"]["counties"]]

    r = CliRunner().invoke(app, ["report", "--config", str(env.config), *args, "--store"])
    assert r.exit_code == 0, r.output
    assert r.output.count(" statistics points (2026-03)") == 1, r.output
    air = influxdb.points('SELECT count("composite_index") FROM "air_assessment"', env.db)
    assert air and air[0]["count"] == 7  # city + 2 counties + 4 stations
    got = influxdb.points(
        'SELECT "composite_index", "rank" FROM "air_assessment" '
        'WHERE "level" = \'county\' GROUP BY "county", "period", "label"',
        env.db,
    )
    counties = {c["name"]: c for c in data["air_assessment"]["counties"]}
    assert {g["county"]: (g["composite_index"], g["rank"]) for g in got} == {
        c: (counties[c]["composite_index"], counties[c]["rank"]) for c in COUNTIES
    }
    assert {(g["period"], g["label"], g["time"]) for g in got} == {
        ("month", "2026-03", ms(date(2026, 3, 1)))
    }
    # The Air dashboard's county-ranking panel reads the same ranking back.
    panel = influxdb.points(RANKING_QUERY.replace("$county", ".*"), env.db)
    assert sorted((p["rank"], p["county"], p["composite_index"], p["label"]) for p in panel) == [
        (c["rank"], c["name"], c["composite_index"], "2026-03")
        for c in data["air_assessment"]["counties"]
    ]
    # Re-running overwrites (same timestamp and tags): still one point per county.
    CliRunner().invoke(app, ["report", "--config", str(env.config), *args, "--store"])
    assert len(influxdb.points('SELECT * FROM "air_assessment"', env.db)) == 7


def test_bad_period_options_are_one_line_errors(env: Env) -> None:
    for args, text in (
        (("--period", "month", "--at", "2026-13"), "month 13 is not 1..12"),
        (("--period", "quarter", "--at", "2026-11"), "--at '2026-11' is not a quarter"),
        (("--period", "week"), "--period 'week' is not a period"),
        (("--period", "custom"), "--period custom needs --from and --to"),
        (("--at", "2026-11"), "--at needs --period"),
    ):
        r = CliRunner().invoke(app, ["report", "--config", str(env.config), *args])
        assert r.exit_code == 2, r.output
        assert text in r.output
        assert "Traceback" not in r.output


def test_a_year_has_its_three_year_moving_average(
    influxdb: LocalInfluxDB, influx_db: str, tmp_path: Path
) -> None:
    years = {y: days(date(y, 1, 1), date(y, 12, 31)) for y in (2023, 2024, 2025)}
    influxdb.write("\n".join(lines([d for ds in years.values() for d in ds])), influx_db)
    env = configure(influxdb, influx_db, tmp_path)
    a = air(env, "--period", "year", "--at", "2025")
    assert a["period"]["kind"] == "year"
    county = {c["name"]: c for c in a["counties"]}["乙县"]
    annual = {y: area_expect(COUNTIES["乙县"], ds, {}, S_2012) for y, ds in years.items()}
    assert pick(county) == annual[2025]
    avg = county["three_year_average"]
    assert (avg["first_year"], avg["last_year"], avg["edition"]) == (2023, 2025, "GB 3095-2012")
    stats: dict[str, Decimal] = {}
    for p, name in zip(POLLS, KEYS, strict=False):  # so2 … o3_8h_p90
        mean = sum((Decimal(repr(annual[y][name])) for y in years), Decimal(0)) / 3
        stats[p] = rnd(mean, DIGITS[p])
        assert avg[name] == float(stats[p]), name
    ci = rnd(sum((stats[p] / S_2012[p] for p in POLLS), Decimal(0)), 2)
    assert avg["composite_index"] == float(ci)
    # The month of March alone has none (only calendar years are averaged).
    march = air(env, "--period", "month", "--at", "2025-03")
    assert all(c["three_year_average"] is None for c in march["counties"])


async def test_the_rollups_ignore_an_exceptional_event_mark(
    influxdb: LocalInfluxDB, influx_db: str, tmp_path: Path
) -> None:
    """Real rollup over a day of minute readings: an exceptional-event mark keeps every hour
    (the data are valid), a maintenance mark over the same hours takes them out."""
    day = datetime(2026, 3, 2, tzinfo=TZ)
    influxdb.write(
        "\n".join(
            "air_quality,device_id=AQ-A1,site=S,county=C pm25_ug_m3=30,pm10_ug_m3=50,"
            f"so2_ug_m3=8,no2_ug_m3=20,co_mg_m3=0.6,o3_ug_m3=60 {ms_at(day, m)}"
            for m in range(1440)
        ),
        influx_db,
    )
    registry = Registry(
        [Device(id="AQ-A1", kind="air", site="S", county="C", facts={"assessment": "national"})]
    )
    store = ReviewStore(tmp_path / "review.db")
    settings = load_settings(
        None,
        influx={"url": influxdb.url, "database": influx_db},
        rollup={"review_store": str(store.path)},
        qc={"enabled": False},  # constant synthetic values
    )
    ten, noon = ms_at(day, 600), ms_at(day, 720)
    store.add(Mark("AQ-A1", ("*",), ten, noon, "invalidate", "exceptional_event", "a", "dust"))

    async def daily() -> tuple[int, str]:
        async with Rollup(settings, registry, kinds=["air"]) as rollup:
            await rollup.run_range(day, day + timedelta(days=1))
        (row,) = influxdb.points('SELECT * FROM "air_quality_daily"', influx_db)
        return row["pm25_ug_m3_n"], row["left_out"]

    assert await daily() == (24, "")
    store.add(Mark("AQ-A1", ("*",), ten, noon, "invalidate", "maintenance", "a", "cleaned"))
    n, left_out = await daily()
    assert n == 22 and "maintenance" in left_out
    store.close()


def ms_at(day: datetime, minute: int) -> int:
    return int((day + timedelta(minutes=minute)).timestamp() * 1000)
