"""The dashboards as built from code: committed JSON up to date, ids, datasource, schema, units.

What Grafana would only show at run time (a field that does not exist, a column an override
cannot find, a unit missing) is checked here on the JSON; tests/integration/
test_dashboard_queries.py runs every query against a real InfluxDB.
"""

from __future__ import annotations

import copy
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from dashboards import DATASOURCE_UID, city, plan
from dashboards import queries as Q
from dashboards.build import (
    GAZETTEER_FILE,
    HERE,
    Built,
    build_all,
    differences,
    gazetteer,
    outputs,
)
from dashboards.panels import DATASOURCE_TYPE
from dashboards.schema import (
    ALERTS,
    FIGURE_UNIT,
    GRAFANA_UNITS,
    PLAN_PROGRESS,
    Measurement,
    measurements,
)
from devices.registry import FLEET, load_registry
from envgrid.cli.main import app
from report.figures import PROGRESS, load_plan, panel_queries
from report.plan import FORMULAS

PROVISIONING = HERE / "provisioning"


@pytest.fixture(scope="module")
def built() -> list[Built]:
    return build_all()


@pytest.fixture(scope="module")
def schema() -> dict[str, Measurement]:
    return measurements()


def test_committed_json_is_what_the_code_builds(built: list[Built]) -> None:
    diffs = differences(outputs(built, load_registry(FLEET)))
    assert not diffs, "run `envgrid dashboards build` and commit:\n" + "\n".join(diffs)


def test_build_check_reports_drift(tmp_path: Path) -> None:
    runner = CliRunner()
    first = runner.invoke(app, ["dashboards", "build", "--out", str(tmp_path)])
    assert first.exit_code == 0, first.output
    assert sorted(p.name for p in (tmp_path / "json").iterdir()) == sorted(
        p.name for p in (HERE / "json").iterdir()
    )
    assert (
        runner.invoke(app, ["dashboards", "build", "--check", "--out", str(tmp_path)]).exit_code
        == 0
    )
    edited = tmp_path / "json" / "envgrid-water.json"
    edited.write_text(edited.read_text().replace("Water quality", "Hand edited"))
    (tmp_path / "json" / "stray.json").write_text("{}")
    check = runner.invoke(app, ["dashboards", "build", "--check", "--out", str(tmp_path)])
    assert check.exit_code == 1
    assert "envgrid-water.json: differs" in check.output
    assert "stray.json: not built by the code" in check.output
    assert "run `envgrid dashboards build`" in check.output


def test_uids_and_panel_ids_are_unique_and_stable(built: list[Built]) -> None:
    uids = [b.uid for b in built]
    assert len(set(uids)) == len(uids)
    assert all(re.fullmatch(r"envgrid-[a-z]+", u) and len(u) <= 40 for u in uids)
    assert {b.uid: b.title for b in built} == {
        "envgrid-city": "City overview",
        "envgrid-water": "Water quality",
        "envgrid-air": "Air quality",
        "envgrid-pv": "PV fleet",
        "envgrid-ev": "EV charging",
        "envgrid-shore": "Shore power",
        "envgrid-health": "Alerts and ingest health",
        "envgrid-plan": "Plan targets",
    }
    for b in built:
        ids = [p["id"] for p in Q.panels(b.model)]
        assert len(ids) == len(set(ids)), b.uid
        for p in Q.panels(b.model):
            refs = [t["refId"] for t in p.get("targets", [])]
            assert len(refs) == len(set(refs)), (b.uid, p["title"])
            g = p["gridPos"]
            assert g["x"] >= 0 and g["x"] + g["w"] <= 24, (b.uid, p["title"])


def _datasources(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        found = [node["datasource"]] if isinstance(node.get("datasource"), dict) else []
        return found + [d for v in node.values() for d in _datasources(v)]
    if isinstance(node, list):
        return [d for v in node for d in _datasources(v)]
    return []


def test_every_query_uses_the_provisioned_datasource(built: list[Built]) -> None:
    provisioned = yaml.safe_load((PROVISIONING / "datasources" / "envgrid.yaml").read_text())
    (ds,) = provisioned["datasources"]
    assert (ds["uid"], ds["type"]) == (DATASOURCE_UID, DATASOURCE_TYPE)
    assert ds["jsonData"]["version"] == "InfluxQL"
    assert ds["secureJsonData"]["httpHeaderValue1"] == "Token ${INFLUXDB_TOKEN}"  # from env
    for b in built:
        refs = _datasources(b.model)
        assert all(r == {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID} for r in refs), b.uid
        for p in Q.panels(b.model):
            for t in p.get("targets", []):
                assert t["datasource"]["uid"] == DATASOURCE_UID and t["rawQuery"] is True
    assert len(build_all(datasource_uid="other")[0].model["templating"]["list"]) == 3
    assert all(
        r["uid"] == "other"
        for b in build_all(datasource_uid="other")
        for r in _datasources(b.model)
    )


def test_every_name_a_query_uses_exists_in_the_schema(
    built: list[Built], schema: dict[str, Measurement]
) -> None:
    problems = []
    for b in built:
        for q in Q.queries(b.model):
            n = Q.names(q.query)
            unknown = n.measurements - set(schema)
            if unknown or not n.measurements:
                problems.append(f"{q.where}: measurements {sorted(unknown)} in {q.query}")
                continue
            known = set().union(
                *(set(schema[m].fields) | set(schema[m].tags) for m in n.measurements)
            )
            if bad := n.identifiers - known - n.aliases:
                problems.append(f"{q.where}: {sorted(bad)} not in {sorted(n.measurements)}")
            if n.tag_key and not any(n.tag_key in schema[m].tags for m in n.measurements):
                problems.append(f"{q.where}: tag key {n.tag_key} unknown")
            fields = [f for m in n.measurements for f in schema[m].fields]
            for rx in n.field_regexes:
                if not any(re.search(rx, f) for f in fields):
                    problems.append(f"{q.where}: /{rx}/ matches no field")
    assert not problems, "\n".join(problems)


def test_the_schema_check_catches_a_misspelt_field(schema: dict[str, Measurement]) -> None:
    n = Q.names('SELECT mean("do_mgl") AS "x" FROM "water_quality" WHERE "site" =~ /^$site$/')
    known = set(schema["water_quality"].fields) | set(schema["water_quality"].tags)
    assert n.identifiers - known == {"do_mgl"}


def _override(panel: dict[str, Any], column: str, prop: str) -> Any:
    for o in panel["fieldConfig"]["overrides"]:
        if o["matcher"] == {"id": "byName", "options": column}:
            for p in o["properties"]:
                if p["id"] == prop:
                    return p["value"]
    return None


def test_units_on_every_field(built: list[Built], schema: dict[str, Measurement]) -> None:
    """Every panel has a unit; a column named after a field shows that field's unit."""
    problems = []
    for b in built:
        for p in Q.panels(b.model):
            if not p.get("targets"):
                continue
            default = p["fieldConfig"]["defaults"].get("unit")
            if not default:
                problems.append(f"{b.uid} / {p['title']}: no unit")
            for t in p["targets"]:
                n = Q.names(t["query"])
                for col in Q.outer_columns(t["query"]):
                    for m in n.measurements:
                        # plan_progress values carry each figure's unit: checked per target in
                        # test_plan_targets_show_each_target_against_its_threshold.
                        if col in schema[m].fields and schema[m].fields[col] != FIGURE_UNIT:
                            want = GRAFANA_UNITS[schema[m].fields[col]]
                            got = _override(p, col, "unit") or default
                            if got != want:
                                problems.append(
                                    f"{b.uid} / {p['title']}: {col} in {got}, not {want}"
                                )
    assert not problems, "\n".join(problems)
    assert all(
        u in GRAFANA_UNITS or u == FIGURE_UNIT for m in schema.values() for u in m.fields.values()
    )
    assert all(f.unit in GRAFANA_UNITS for f in FORMULAS.values())


# How Grafana names the fields of an InfluxQL answer, which every by-name reference in a panel
# must match. Grafana's InfluxDB backend (pkg/tsdb/influxdb/influxql/util/util.go,
# FormatFrameName and BuildFrameNameFromQuery; used by buffered/response_parser.go and
# converter/converter.go) sets each field's displayNameFromDS:
# - time_series: "<measurement>.<column>" (+ " { tag: value, … }" with GROUP BY tags) when the
#   target has no alias; with an alias, the alias with $m/$measurement, $col, $tag_<key>, $<n>
#   and [[…]] replaced. A subquery's answer carries the inner measurement's name.
# - table: the column's own name, tags by their key; the alias is ignored.
# Overrides (byName: display name or field name, byRegexp: display name, matchers/
# nameMatcher.ts) and transformations match these names; reduceOptions.fields is matched after
# the overrides, on their displayName (field/fieldDisplay.ts, "Field overrides are applied
# already"). dashboards.queries implements the rule; the test below pins it to the expectations
# of Grafana's own pkg/tsdb/influxdb/influxql/response_parser_test.go.


def test_field_names_follow_grafanas_influxql_backend() -> None:
    tags = {"datacenter": "America"}
    # Grafana's response_parser_test.go: measurement "cpu.upc", columns mean and sum.
    assert Q.series_name("cpu", "mean", tags) == "cpu.mean { datacenter: America }"
    assert Q.series_name("cpu.upc", "mean", {}) == "cpu.upc.mean"
    assert Q.series_name("cpu.upc", "mean", tags, "alias $col") == "alias mean"
    assert Q.series_name("cpu.upc", "sum", tags, "alias [[col]]") == "alias sum"
    assert Q.series_name("cpu.upc", "mean", tags, "alias $m $measurement") == (
        "alias cpu.upc cpu.upc"
    )
    assert Q.series_name("cpu.upc", "mean", tags, "alias $tag_datacenter") == "alias America"
    assert Q.series_name("cpu.upc", "mean", tags, "alias [[tag_datacenter]]") == "alias America"
    assert Q.series_name("cpu.upc", "mean", tags, "alias $0 $1 $2 $3 $4") == (
        "alias cpu upc $2 $3 $4"
    )
    assert Q.series_name("cpu.upc", "mean", tags, "series alias") == "series alias"
    assert Q.series_name("cpu.upc", "mean", tags, "alias $tag_host") == "alias $tag_host"
    assert Q.series_name("cpu", "mean", tags, "alias $col", "table") == "mean"
    # InfluxDB's column names (tests/integration/test_dashboard_queries.py checks them live).
    query = (
        'SELECT last("a") AS "x", "site", max("b"), non_negative_derivative(max(/^r_/), 1s) '
        'FROM (SELECT "a" FROM "m") GROUP BY "site"'
    )
    assert Q.column_names(query, ["a", "r_x", "r_y", "b"]) == [
        "x",
        "site",
        "max",
        "non_negative_derivative_r_x",
        "non_negative_derivative_r_y",
    ]
    target = {"refId": "A", "query": query.replace("(max(/^r_/), 1s)", '("b")')}
    assert [f.display for f in Q.predicted_fields(target, {})] == [
        "Time",
        "m.x { site: <site> }",
        "m.site { site: <site> }",
        "m.max { site: <site> }",
        "m.non_negative_derivative { site: <site> }",
    ]
    assert [f.display for f in Q.predicted_fields(target | {"resultFormat": "table"}, {})] == [
        "Time",
        "site",
        "x",
        "site",
        "max",
        "non_negative_derivative",
    ]
    with pytest.raises(ValueError, match="AS alias"):
        Q.column_names('SELECT "a" + "b" FROM "m"', [])


def _field_problems(panel: dict[str, Any], schema: dict[str, Measurement]) -> list[str]:
    """By-name references of a panel that no field Grafana makes of its queries matches."""
    fields_of = {m: list(s.fields) for m, s in schema.items()}
    problems, fields = [], []
    for t in panel.get("targets", []):
        if t.get("hide"):
            continue
        try:
            own = Q.predicted_fields(t, fields_of)
        except ValueError as e:
            problems.append(f"[{t['refId']}] {e}")
            continue
        fields += own
        problems += [
            f"[{t['refId']}] {f.display!r}: unresolved alias" for f in own if "$" in f.display
        ]
        tags = Q.group_tags(t["query"])
        alias = t.get("alias") or ""
        if (
            t["resultFormat"] == "time_series"
            and tags
            and not any(f"tag_{g}" in alias for g in tags)
        ):
            # Every series of the target would get the same name.
            problems.append(f"[{t['refId']}] alias {alias!r} names none of {tags}")
    return problems + Q.reference_problems(panel, fields)


def test_every_field_reference_matches_a_field_grafana_names(
    built: list[Built], schema: dict[str, Measurement]
) -> None:
    """Overrides, reduceOptions.fields, transformations, the table sort and the map layers name
    only fields Grafana gives the panel's queries (the rule above)."""
    problems = [
        f"{b.uid} / {p['title']}: {problem}"
        for b in built
        for p in Q.panels(b.model)
        for problem in _field_problems(p, schema)
    ]
    assert not problems, "\n".join(problems)
    checked = [p for b in built for p in Q.panels(b.model) if p.get("targets")]
    assert sum(len(p["fieldConfig"]["overrides"]) for p in checked) > 40


def test_the_field_check_catches_a_column_grafana_renames(
    built: list[Built], schema: dict[str, Measurement]
) -> None:
    """Without its alias a stat's query yields "<measurement>.<column>"; an override renaming a
    field hides it from a reduceOptions.fields regex that names the column."""
    (overview,) = [b for b in built if b.uid == city.UID]
    stat = copy.deepcopy(
        next(p for p in Q.panels(overview.model) if p["title"] == "Water stations")
    )
    assert _field_problems(stat, schema) == []
    del stat["targets"][0]["alias"]
    assert _field_problems(stat, schema) == [
        "override byName 'online': no field",
        "override byName 'offline': no field",
        "reduceOptions.fields /^(online|offline)$/: picks no field",
        "reduceOptions.fields /^(online|offline)$/: no field shown as 'online'",
        "reduceOptions.fields /^(online|offline)$/: no field shown as 'offline'",
    ]
    stat["targets"][0]["alias"] = "$col"
    stat["fieldConfig"]["overrides"][0]["properties"].append({"id": "displayName", "value": "up"})
    assert _field_problems(stat, schema) == [
        "reduceOptions.fields /^(online|offline)$/: no field shown as 'online'"
    ]
    stat["targets"][0]["alias"] = "$tag_site"
    assert "unresolved alias" in _field_problems(stat, schema)[0]
    table = copy.deepcopy(next(p for p in Q.panels(overview.model) if p["type"] == "table"))
    table["transformations"][0]["options"]["renameByName"]["Time"] = "raised"
    assert _field_problems(table, schema) == ["sortBy 'fired at': no such column"]


def test_geomap_places_every_device_through_the_gazetteer(built: list[Built]) -> None:
    registry = load_registry(FLEET)
    places = gazetteer(registry)
    assert {p["key"] for p in places} == {d.id for d in registry if d.lat is not None}
    assert all(32 < p["latitude"] < 35 and 118 < p["longitude"] < 120 for p in places)
    (overview,) = [b for b in built if b.uid == city.UID]
    (geo,) = [p for p in Q.panels(overview.model) if p["type"] == "geomap"]
    refs = {t["refId"]: t for t in geo["targets"]}
    assert geo["options"]["basemap"]["type"] == "default"
    layers = geo["options"]["layers"]
    assert len(layers) == len(city.KINDS) == len(refs)
    for layer in layers:
        assert layer["location"] == {
            "mode": "lookup",
            "lookup": "device_id",
            "gazetteer": city.GAZETTEER,
        }
        target = refs[layer["filterData"]["options"]]
        assert target["resultFormat"] == "table" and "device_id" in Q.group_tags(target["query"])
        assert layer["config"]["style"]["color"]["field"] in Q.outer_columns(target["query"])
    assert GAZETTEER_FILE.name == Path(city.GAZETTEER).name


def test_every_device_dashboard_filters_by_county_site_and_device(built: list[Built]) -> None:
    for b in built:
        names = [v["name"] for v in b.model["templating"]["list"]]
        if b.uid == "envgrid-plan":
            assert names == []
            continue
        assert names[:3] == ["county", "site", "device"], b.uid
        for v in b.model["templating"]["list"]:
            assert v["query"].startswith("SHOW TAG VALUES") and v["allValue"] == ".*"
            assert v["multi"] and v["includeAll"]
        for q in Q.queries(b.model):
            # The fleet's equivalent hours divide by the whole fleet's capacity: unfiltered.
            if q.origin == "panel" and "envgrid_stats" not in q.query and "(fleet)" not in q.title:
                assert "$county" in q.query, q.where
    counts = Counter(q.origin for b in built for q in Q.queries(b.model))
    assert counts["panel"] > 70 and counts["variable"] == 22 and counts["annotation"] == 2


def test_interpolation_follows_grafana() -> None:
    assert Q.format_variable(Q.ALL, ["a", "b"], ".*") == ".*"
    assert Q.format_variable(Q.ALL, ["a", "b"], None) == "(a|b)"
    assert Q.format_variable(["淮安区", "x.y"], [], None) == "(淮安区|x\\.y)"
    assert Q.format_variable("B1/2", [], None) == "B1\\/2"
    assert Q.interval(24 * 3_600_000, None) == "1m"
    assert Q.interval(3_600_000, "10s") == "10s"
    assert Q.interval(7 * 86_400_000, "1m") == "10m"
    text = Q.interpolate(
        'SELECT 1 FROM "m" WHERE $timeFilter AND "site" =~ /^$site$/ GROUP BY time($__interval)',
        variables={"site": "(a|b)"},
        start_ms=1,
        end_ms=2,
        interval_text="1m",
    )
    assert text == (
        'SELECT 1 FROM "m" WHERE time >= 1ms and time <= 2ms AND "site" =~ /^(a|b)$/ '
        "GROUP BY time(1m)"
    )


def test_alerts_schema_matches_the_alert_engines_writer() -> None:
    """The alerts measurement the dashboards read is the one alerts.notify writes."""
    notify = pytest.importorskip("alerts.notify")
    event = {
        "rule_id": "do-low",
        "severity": "major",
        "kind": "water",
        "device_id": "WQ-001",
        "site": "s",
        "county": "c",
        "state": "firing",
        "value": 2.5,
        "message": "DO low",
        "alert_id": 7,
        "ts_ms": 1,
    }
    line = notify.InfluxTarget(write=None).line(event)
    head, rest = re.split(r"(?<!\\) ", line, maxsplit=1)
    fields = rest.rsplit(" ", 1)[0]
    measurement, *tags = head.split(",")
    schema = measurements()[ALERTS]
    assert measurement == ALERTS
    assert {t.split("=")[0] for t in tags} <= set(schema.tags)
    assert {f.split("=")[0] for f in re.split(r",(?=[a-z_]+=)", fields)} <= set(schema.fields)


def _steps(panel: dict[str, Any]) -> list[tuple[float | None, str]]:
    return [
        (s["value"], s["color"]) for s in panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    ]


def test_plan_targets_show_each_target_against_its_threshold(built: list[Built]) -> None:
    """One stat per target of the shipped plan: its stored figure and met state, in the
    figure's unit, red below and green from the threshold; the range is the plan's period."""
    shipped = load_plan()
    assert PLAN_PROGRESS == PROGRESS
    (dash,) = [b for b in built if b.uid == plan.UID]
    stats = {p["title"]: p for p in Q.panels(dash.model) if p["type"] == "stat"}
    specs = panel_queries(shipped)
    assert len(stats) == len(specs) + 1  # and the live Class III section-days
    for target, spec in zip(shipped.targets, specs, strict=False):
        p = stats[spec.title]
        (t,) = p["targets"]
        assert f"\"target\" = '{target.id}'" in t["query"] and "\"scope\" = 'city'" in t["query"]
        assert Q.outer_columns(t["query"]) == ["value", "met"] and t["alias"] == "$col"
        assert p["options"]["reduceOptions"]["fields"] == "/^(value|met)$/"
        assert p["fieldConfig"]["defaults"]["unit"] == GRAFANA_UNITS[FORMULAS[target.formula].unit]
        assert target.direction == ">="  # the shipped plan's targets are all "at least"
        assert _steps(p) == [(None, "red"), (target.threshold, "green")]
        (mapping,) = _override(p, "met", "mappings")
        assert {k: (v["text"], v["color"]) for k, v in mapping["options"].items()} == {
            "true": ("达标 met", "green"),
            "false": ("未达标 not met", "red"),
        }
        assert "envgrid report --store" in p["fieldConfig"]["defaults"]["noValue"]
    live = stats[specs[-1].title]
    assert live["targets"][0]["query"] == specs[-1].query
    air = shipped.target_for("good_days_ratio")
    assert air is not None and _steps(live) == [(None, "red"), (air.threshold, "green")]
    # Local midnight of the plan's first day to the last millisecond of its last day.
    assert dash.model["time"] == {
        "from": "2024-12-31T16:00:00.000Z",
        "to": "2025-12-31T15:59:59.999Z",
    }
    texts = [p["options"]["content"] for p in Q.panels(dash.model) if p["type"] == "text"]
    assert len(texts) == 1 and "envgrid report --store" in texts[0]


def test_plan_thresholds_colour_both_directions() -> None:
    """At least: red below, green from the threshold; at most: green up to and at it, red above."""
    at_least = plan.target_steps(80.0, ">=").build().steps
    assert [(s.value, s.color) for s in at_least] == [(None, "red"), (80.0, "green")]
    at_most = plan.target_steps(80.0, "<=").build().steps
    (base, red) = at_most
    assert (base.value, base.color, red.color) == (None, "green", "red")
    assert red.value is not None and 80.0 < red.value < 80.000001  # 80 itself stays green
    assert [s.color for s in plan.target_steps(None, None).build().steps] == ["blue"]
