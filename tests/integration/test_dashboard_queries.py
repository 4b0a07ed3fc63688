"""Every query of every dashboard against a real InfluxDB seeded through the real pipeline.

The simulator's readings go through mosquitto into a running IngestService, which writes them
and its own envgrid_stats to InfluxDB; a few alert notifications are written as the alert
engine's InfluxDB notifier writes them. For the Plan targets dashboard (whose range is the
plan's period, 2025) one day of 2025 is back-filled through the pipeline, rolled up by the real
rollups and reported by the real report, which stores its figures in plan_progress. Then every
panel query, template variable and annotation of every built dashboard runs the way Grafana
would send it: with All selected it must return rows holding the columns the panel reads; with
one county, site and device selected every panel must still show something. Grafana itself is
not run (it cannot run here); dashboards.queries is what stands in for its query preparation.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections import Counter
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from dashboards import plan as plan_dashboard
from dashboards import queries as Q
from dashboards.build import Built, build_all
from dashboards.panels import CITY_TZ
from dashboards.schema import AIR_ASSESSMENT, ALERTS, PLAN_PROGRESS, STATS, measurements
from devices.kinds import KINDS
from devices.registry import FLEET, Device, Registry, load_registry
from envgrid.localstack import InfluxQueryError, LocalInfluxDB, LocalMosquitto
from envgrid.settings import Settings
from envgrid.simulator import SimMessage, generate, publish_all
from ingest.pipeline import Accepted, Pipeline
from ingest.topics import TopicMap
from report.figures import PlanReport, Reporter, load_plan, store
from report.period import build_sections, month, store_sections
from report.sections import SectionContext
from rollups.runner import Rollup
from rollups.windows import CITY_AIR_DAILY, WATER_SECTION_DAILY, day_window
from tests.helpers import make_settings, mqtt_client, running_service, wait_for

MIN = 60_000
# The back-filled days of the plan's period (2025): summer days, so the PV pilots generate.
PLAN_DAYS = (date(2025, 6, 16), date(2025, 6, 17))
# GB 3838-2002 Class II on the river and the lake rows (TP 0.02 ≤ 0.025 lake, ≤ 0.1 river).
CLASS_II = {"do_mg_l": 7.0, "codmn_mg_l": 3.0, "nh3n_mg_l": 0.4, "tp_mg_l": 0.02}


def _latest_payload(msgs: Sequence[SimMessage], device_id: str) -> dict[str, Any]:
    last = [m for m in msgs if m.device_id == device_id and not m.expect][-1]
    return dict(json.loads(last.payload))


def _crafted(msgs: Sequence[SimMessage], dev: Device, ts: int, **changes: Any) -> SimMessage:
    """A valid reading of ``dev`` at ``ts``: its latest simulated one with ``changes``."""
    body = _latest_payload(msgs, dev.id) | changes | {"ts": ts}
    return SimMessage(f"envgrid/{dev.kind}/{dev.id}", json.dumps(body).encode(), None, dev.id, ts)


def _alert_lines(devs: Sequence[tuple[Device, str, str, str]], now: int) -> str:
    """Notifications as alerts.notify.InfluxTarget writes them (state is a tag)."""
    lines = []
    for i, (dev, rule, severity, state) in enumerate(devs, start=1):
        for j, st in enumerate(["firing", "resolved"] if state == "resolved" else ["firing"]):
            tags = {
                "rule_id": rule,
                "severity": severity,
                "kind": dev.kind or "",
                "device_id": dev.id,
                "site": dev.site,
                "county": dev.county,
                "state": st,
            }
            tag_text = ",".join(f"{k}={_esc(v)}" for k, v in tags.items())
            msg = f"{rule} {st} on {dev.id}".replace('"', "")
            ts = now - (20 - i - 5 * j) * MIN
            lines.append(f'alerts,{tag_text} value={2.5 + j},message="{msg}",alert_id={i}i {ts}')
    return "\n".join(lines)


def _esc(v: str) -> str:
    return v.replace(" ", "\\ ").replace(",", "\\,").replace("=", "\\=")


def _backfill(devices: Sequence[Device], first: date, days: int) -> list[SimMessage]:
    """Local days of readings, as stations back-filling after an outage would send them: the
    national air stations every minute (a valid GB 3095 day needs ≥ 45 minutes in ≥ 20 hours),
    every water, PV, shore-power and charger device every 5 minutes."""
    start = day_window(first, ZoneInfo(CITY_TZ)).start_ms
    national = [d for d in devices if d.kind == "air" and d.facts.get("assessment") == "national"]
    others = [d for d in devices if d.kind != "air"]
    return [
        *generate(national, days * 24 * 60 * len(national), start_ms=start, step_ms=MIN),
        *generate(others, days * 24 * 12 * len(others), start_ms=start, step_ms=5 * MIN),
    ]


def _changed(m: SimMessage, **changes: Any) -> SimMessage:
    """``m`` with some readings replaced."""
    body = json.loads(m.payload) | changes
    return SimMessage(m.topic, json.dumps(body).encode(), None, m.device_id, m.ts_ms)


async def _seed_plan(
    settings: Settings,
    registry: Registry,
    influxdb: LocalInfluxDB,
    db: str,
    msgs: Sequence[SimMessage],
    first: date,
    last: date,
) -> PlanReport:
    """Store ``msgs`` through the pipeline, roll their days up with the real rollups, report the
    days with the shipped plan and store the figures in plan_progress, as ``report --store``."""
    # The service refuses readings older than ingest.max_age; a back-fill runs with a longer one.
    pipeline = Pipeline(KINDS, registry, TopicMap("envgrid", KINDS), max_age_ms=10**13)
    lines = []
    for m in msgs:
        result = pipeline.process(m.topic, m.payload)
        assert isinstance(result, Accepted), result
        lines.append(result.line)
    for i in range(0, len(lines), 20_000):
        influxdb.write("\n".join(lines[i : i + 20_000]), db)
    tz = ZoneInfo(settings.standards.timezone)
    start = datetime.fromtimestamp(day_window(first, tz).start_ms / 1000, tz)
    end = datetime.fromtimestamp(day_window(last, tz).end_ms / 1000, tz)
    async with Rollup(settings, registry) as rollup:
        done = await rollup.run_range(start, end)
    days = (last - first).days + 1
    assert done.by_measurement[CITY_AIR_DAILY] == days
    assert done.by_measurement[WATER_SECTION_DAILY] >= days
    async with Reporter(settings, registry, load_plan()) as reporter:
        report = await reporter.run(first, last)
        # The period report's sections of the month, as ``report --period month --store``
        # (the Air dashboard's county ranking reads air_assessment).
        ctx = SectionContext(
            client=reporter.client,
            registry=registry,
            settings=settings,
            period=month(first.year, first.month),
            tz=tz,
            now=reporter.now,
        )
        assert await store_sections(settings, await build_sections(ctx)) > 0
    assert await store(settings, report) == sum(f.value is not None for f in report.figures)
    return report


async def _seed_pv_yesterday(
    settings: Settings,
    registry: Registry,
    influxdb: LocalInfluxDB,
    db: str,
    devices: Sequence[Device],
    dirty: Device,
) -> None:
    """Yesterday's PV and met readings, back-filled and rolled up by the PV daily job, with
    ``dirty``'s array producing 40 % less: the PV dashboard's daily panels (last 7 days) get a
    closed day to show, and an underperformer."""
    tz = ZoneInfo(CITY_TZ)
    yesterday = datetime.now(tz).date() - timedelta(days=1)
    pv_met = [d for d in devices if d.kind in ("pv", "met")]
    start = day_window(yesterday, tz).start_ms
    pipeline = Pipeline(KINDS, registry, TopicMap("envgrid", KINDS), max_age_ms=10**13)
    lines = []
    for m in generate(pv_met, 24 * 12 * len(pv_met), start_ms=start, step_ms=5 * MIN):
        if m.device_id == dirty.id:
            body = json.loads(m.payload)
            scaled = ("ac_power_w", "dc_power_w", "energy_total_kwh", "energy_today_kwh")
            m = _changed(m, **{k: round(body[k] * 0.6, 3) for k in scaled if k in body})
        result = pipeline.process(m.topic, m.payload)
        assert isinstance(result, Accepted), result
        lines.append(result.line)
    influxdb.write("\n".join(lines), db)
    begin = datetime.fromtimestamp(start / 1000, tz)
    async with Rollup(settings, registry, kinds=["pv"]) as rollup:
        done = await rollup.run_range(begin, begin + timedelta(days=1))
    assert done.by_measurement["pv_daily"] == sum(d.kind == "pv" for d in devices)


def _run(influxdb: LocalInfluxDB, db: str, q: str) -> list[dict[str, Any]]:
    """Series of the answer: each with its columns, tags and values."""
    out: list[dict[str, Any]] = []
    for result in influxdb.query(q, db).get("results", []):
        out.extend(result.get("series", []))
    return out


class Grafana:
    """Prepares a dashboard's queries as Grafana would for one variable selection."""

    def __init__(self, built: Built, influxdb: LocalInfluxDB, db: str, now: datetime) -> None:
        self.model, self.influxdb, self.db, self.now = built.model, influxdb, db, now
        self.uid = built.uid
        self.variables = {v["name"]: v for v in self.model.get("templating", {}).get("list", [])}

    def resolve(self, selection: dict[str, str]) -> tuple[dict[str, str], list[str]]:
        """Variable texts for a selection (name → value or $__all), and problems found."""
        texts: dict[str, str] = {}
        problems = []
        for name, var in self.variables.items():
            q = Q.interpolate(
                var["query"], variables=texts, start_ms=0, end_ms=0, interval_text="1m"
            )
            values = [row[1] for s in _run(self.influxdb, self.db, q) for row in s["values"]]
            if not values:
                problems.append(f"{self.uid}: variable ${name} has no values ({q})")
            chosen = selection.get(name, Q.ALL)
            if chosen != Q.ALL and chosen not in values:
                problems.append(f"{self.uid}: ${name} offers {values[:5]}…, not {chosen!r}")
            texts[name] = Q.format_variable(chosen, values, var.get("allValue"))
        return texts, problems

    def prepare(self, query: Q.Query, texts: dict[str, str]) -> str:
        """The query text InfluxDB receives."""
        start, end = self.time_range(query)
        return Q.interpolate(
            query.query,
            variables=texts,
            start_ms=start,
            end_ms=end,
            interval_text=Q.interval(end - start, query.min_interval),
        )

    def time_range(self, query: Q.Query) -> tuple[int, int]:
        """The panel's or dashboard's range: relative to now, or absolute (ISO 8601, UTC)."""
        spec = query.time_from or self.model["time"]["from"]
        if spec.startswith("now"):
            return Q.time_range(spec, self.now, self.model["timezone"])
        return _iso_ms(spec), _iso_ms(self.model["time"]["to"])


def _iso_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def _missing_columns(query: Q.Query, series: list[dict[str, Any]]) -> list[str]:
    """Columns the panel reads (outer SELECT and GROUP BY) that the answer lacks."""
    have = {c for s in series for c in s["columns"]} | {
        t for s in series for t in s.get("tags", {})
    }
    missing = []
    for col in Q.outer_columns(query.query) + Q.group_tags(query.query):
        if col.startswith("/"):
            pattern = col.strip("/")
            # <function>_<field> for every field the regex matches
            suffixes = [c[i + 1 :] for c in have for i, ch in enumerate(c) if ch == "_"]
            if not any(re.search(pattern, s) for s in suffixes):
                missing.append(col)
        elif col not in have:
            missing.append(col)
    return missing


async def test_every_dashboard_query_returns_rows(
    mosquitto: LocalMosquitto, influxdb: LocalInfluxDB, influx_db: str, tmp_path: Path
) -> None:
    registry: Registry = load_registry(FLEET)
    devices = sorted(registry, key=lambda d: d.id)
    by_kind: dict[str, list[Device]] = {}
    for d in devices:
        by_kind.setdefault(d.kind or "", []).append(d)
    # The last device of each kind falls silent 35 minutes ago: it must count as offline.
    silent = {k: ds[-1] for k, ds in by_kind.items()}
    active = [d for d in devices if d not in silent.values()]
    now = int(time.time() * 1000)
    # Two early rounds for every device, then a reading a minute for 8 minutes for the active
    # ones: the newest is a minute old, so the "today" panels (from the city's midnight) see
    # it unless the test starts in the first minute after midnight in Asia/Shanghai.
    early = list(generate(devices, 2 * len(devices), start_ms=now - 40 * MIN, step_ms=5 * MIN))
    recent = list(
        generate(active, 8 * len(active), start_ms=now - 8 * MIN, step_ms=MIN, bad_fraction=0.05)
    )
    simulated = early + recent
    faulty_pv, faulty_ev = by_kind["pv"][0], by_kind["ev_charger"][0]
    faults = [
        _crafted(simulated, faulty_pv, now - 20_000, status="FAULT", ac_power_w=0.0),
        _crafted(
            simulated,
            faulty_ev,
            now - 20_000,
            status="Faulted",
            power_kw=0.0,
            error_code="GroundFailure",
        ),
    ]
    msgs = simulated + faults
    good = [m for m in msgs if not m.expect]
    # Generated after the live stream so that stream stays as the checks below expect (the
    # simulator keeps each device's state); the back-fill's figures are within-day increases.
    # Known answers over the simulated readings: PM2.5 30 µg/m³ on the first day (a good day),
    # 150 on the second (中度污染); every assessed section at Class II but one single-station
    # section at Class IV (NH3-N 1.3 mg/L) on both days.
    second = day_window(PLAN_DAYS[1], ZoneInfo(CITY_TZ)).start_ms
    stations = Counter(d.site for d in by_kind["water"])
    class_iv = next(
        d
        for d in by_kind["water"]
        if d.facts.get("assessment") in ("national", "provincial") and stations[d.site] == 1
    )

    def known(m: SimMessage) -> SimMessage:
        if m.topic.startswith("envgrid/air/"):
            return _changed(m, pm25_ug_m3=150.0 if m.ts_ms >= second else 30.0, pm10_ug_m3=50.0)
        if m.topic.startswith("envgrid/water/"):
            nh3n = 1.3 if m.device_id == class_iv.id else CLASS_II["nh3n_mg_l"]
            return _changed(m, **(CLASS_II | {"nh3n_mg_l": nh3n}))
        return m

    backfill = [known(m) for m in _backfill(devices, PLAN_DAYS[0], len(PLAN_DAYS))]
    assert any(m.expect for m in msgs), "the stream must hold bad messages (rejects panel)"

    # The plan days hold constant PM values (known() below), which QC's flat-line test would fail.
    settings = make_settings(
        mosquitto,
        influxdb,
        influx_db,
        tmp_path,
        ingest={"stats_interval": 1},
        qc={"enabled": False},
    )
    async with running_service(settings), mqtt_client(mosquitto, client_id="dash-pub") as pub:
        await publish_all(pub, iter(msgs), window=500)
        stored = Counter(KINDS[m.topic.split("/")[1]].measurement for m in good)
        await wait_for(
            lambda: all(influxdb.count(m, influx_db) >= n for m, n in stored.items()),
            60,
            "every valid reading stored",
        )
        # Rates need two buckets of envgrid_stats written after the rejects: wait until the
        # health dashboard's rate panels, prepared as Grafana would, show something.
        health = next(b for b in build_all(registry) if b.uid == "envgrid-health")
        rate_panels = [q for q in Q.queries(health.model) if "non_negative_derivative" in q.query]

        def rates_shown() -> bool:
            g = Grafana(health, influxdb, influx_db, datetime.now().astimezone())
            texts, _ = g.resolve({})
            return all(influxdb.points(g.prepare(q, texts), influx_db) for q in rate_panels)

        await wait_for(rates_shown, 60, "reject and message rates in envgrid_stats")

    # Alert notifications: water DO low still firing, a PV fault resolved, a charger fault firing.
    alerted = by_kind["water"][0]
    influxdb.write(
        _alert_lines(
            [
                (alerted, "water-do-low", "major", "firing"),
                (faulty_pv, "pv-fault", "critical", "resolved"),
                (faulty_ev, "ev-faulted", "major", "firing"),
            ],
            now,
        ),
        influx_db,
    )

    report = await _seed_plan(settings, registry, influxdb, influx_db, backfill, *PLAN_DAYS)
    await _seed_pv_yesterday(settings, registry, influxdb, influx_db, devices, faulty_pv)

    # What was stored is what the dashboards may name: the schema holds every tag and field.
    schema = measurements()
    for name in [
        *stored,
        STATS,
        ALERTS,
        CITY_AIR_DAILY,
        WATER_SECTION_DAILY,
        PLAN_PROGRESS,
        AIR_ASSESSMENT,
    ]:
        fields = {
            r["fieldKey"] for r in influxdb.points(f'SHOW FIELD KEYS FROM "{name}"', influx_db)
        }
        tags = {r["tagKey"] for r in influxdb.points(f'SHOW TAG KEYS FROM "{name}"', influx_db)}
        assert fields <= set(schema[name].fields), (name, fields - set(schema[name].fields))
        assert tags <= set(schema[name].tags), (name, tags - set(schema[name].tags))

    built = build_all(registry)
    at = datetime.now().astimezone()
    host = socket.gethostname()
    shore = next(
        d for d in by_kind["shore_power"]
        if any(m.device_id == d.id and b'"connected": true' in m.payload for m in recent)
    )  # fmt: skip
    focus: dict[str, dict[str, str]] = {
        "envgrid-city": {"county": alerted.county},
        "envgrid-water": _device(alerted),
        "envgrid-air": _device(by_kind["air"][0]),
        "envgrid-pv": _device(faulty_pv),
        "envgrid-ev": _device(faulty_ev),
        "envgrid-shore": _device(shore),
        "envgrid-health": _device(alerted) | {"host": host},
    }
    problems: list[str] = []
    ran = 0
    fields_of = {m: list(s.fields) for m, s in schema.items()}
    for b in built:
        grafana = Grafana(b, influxdb, influx_db, at)
        answers: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for label, selection in (("All", {}), ("one device", focus.get(b.uid, {}))):
            texts, issues = grafana.resolve(selection)
            problems += issues
            shown: dict[str, int] = {}
            for query in Q.queries(b.model):
                if query.origin == "variable":
                    continue
                text = grafana.prepare(query, texts)
                try:
                    series = _run(influxdb, influx_db, text)
                except InfluxQueryError as e:
                    problems.append(f"{query.where} ({label}): {e}")
                    continue
                ran += 1
                rows = sum(len(s.get("values", [])) for s in series)
                shown[query.title] = shown.get(query.title, 0) + rows
                if label == "All":
                    answers[(query.title, query.ref_id)] = series
                    if not rows:
                        problems.append(f"{query.where}: no rows for\n    {text}")
                    elif missing := _missing_columns(query, series):
                        problems.append(f"{query.where}: answer lacks {missing}")
            if label != "All":
                problems += [
                    f"{b.uid} / {title}: no rows with {selection}"
                    for title, n in shown.items()
                    if not n
                ]
        problems += _field_name_problems(b, answers, fields_of)
    assert not problems, "\n".join(problems)
    assert ran > 150

    # The figures mean what they say.
    city = next(b for b in built if b.uid == "envgrid-city")
    grafana = Grafana(city, influxdb, influx_db, at)
    texts, _ = grafana.resolve({})
    for query in Q.queries(city.model):
        if query.origin == "panel" and "reporting" in Q.outer_columns(query.query):
            kind = next(k for k in KINDS.values() if f'FROM "{k.measurement}"' in query.query)
            row = influxdb.points(grafana.prepare(query, texts), influx_db)[0]
            n = len(by_kind[kind.name])
            assert (row["reporting"], row["online"], row["offline"]) == (n, n - 1, 1), kind.name
        if query.origin == "panel" and query.title == "Alerts firing":
            row = influxdb.points(grafana.prepare(query, texts), influx_db)[0]
            assert (row["firing"], row["episodes"]) == (2, 3)
    pv = next(b for b in built if b.uid == "envgrid-pv")
    grafana = Grafana(pv, influxdb, influx_db, at)
    texts, _ = grafana.resolve({})
    table = next(q for q in Q.queries(pv.model) if q.title == "FAULT list")
    in_fault = influxdb.points(grafana.prepare(table, texts), influx_db)
    assert [r["device_id"] for r in in_fault] == [faulty_pv.id]
    assert city.model["timezone"] == CITY_TZ

    # Plan targets: each stat shows the stored report figure and its met state; the live
    # panels give the report's own figures for the one back-filled day.
    plan = next(b for b in built if b.uid == plan_dashboard.UID)
    grafana = Grafana(plan, influxdb, influx_db, at)
    answers = {
        (q.title, q.ref_id): influxdb.points(grafana.prepare(q, {}), influx_db)
        for q in Q.queries(plan.model)
        if q.origin == "panel"
    }
    shipped = load_plan()
    for target in shipped.targets:
        fig = report.figure(target.formula)
        title = f"{target.description_zh} / {target.description_en}"
        (row,) = answers[(title, "A")]
        assert (row["value"], row["met"]) == (pytest.approx(fig.value), fig.met), target.id
    good_days = report.figure("good_days_ratio")
    assert (good_days.value, good_days.met, good_days.coverage.covered) == (50.0, False, 2)
    live = {k[1]: rows[0] for k, rows in answers.items() if "Good days, live" in k[0]}
    assert (live["A"]["good_days_pct"], live["B"]["valid_days"]) == (50.0, 2)
    water = report.figure("sections_iii_ratio")
    n = water.coverage.expected
    assert water.coverage.covered == n > 1  # every assessed section has both days
    assert water.value == pytest.approx((n - 1) / n * 100)  # all but the Class IV one
    (iii,) = next(rows for k, rows in answers.items() if "Section-days" in k[0])
    # Each section has the same class on both days: its share of days is the report's figure.
    assert (iii["iii_pct"], iii["section_days"]) == (pytest.approx(water.value), 2 * n)
    figures = answers[("Stored figures", "A")]
    assert {r["formula"] for r in figures} == {
        f.formula for f in report.figures if f.value is not None
    }
    assert {r["period"] for r in figures} == {"/".join(map(str, PLAN_DAYS))}


def _field_name_problems(
    built: Built,
    answers: dict[tuple[str, str], list[dict[str, Any]]],
    fields_of: dict[str, list[str]],
) -> list[str]:
    """Name Grafana's fields from the real answers (dashboards.queries: Grafana's InfluxQL
    naming rule): every by-name reference of a panel matches one, and the unit test's names
    predicted from the query text cover each (tag values stand for any value)."""
    problems = []
    for panel in Q.panels(built.model):
        targets = [t for t in panel.get("targets", []) if not t.get("hide")]
        fields: list[Q.Field] = []
        for t in targets:
            got = Q.answer_fields(t, answers.get((panel["title"], t["refId"]), []))
            patterns = [
                re.sub(r"<\w+>", ".+", re.escape(f.display))  # <key>: any tag value
                for f in Q.predicted_fields(t, fields_of)
            ]
            problems += [
                f"{built.uid} / {panel['title']} [{t['refId']}]: {f.display!r} not predicted"
                for f in got
                if not any(re.fullmatch(p, f.display) for p in patterns)
            ]
            fields += got
        problems += [
            f"{built.uid} / {panel['title']}: {problem}"
            for problem in Q.reference_problems(panel, fields)
        ]
    return problems


def _device(d: Device) -> dict[str, str]:
    return {"county": d.county, "site": d.site, "device": d.id}
