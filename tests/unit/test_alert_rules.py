"""Alert rule files: the format, every error with its line and fix, the shipped defaults."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alerts.rules import (
    DEFAULT_RULES,
    RuleError,
    check_rules,
    duration_ms,
    load_rules,
    parse_rules,
)
from devices.kinds import KINDS
from envgrid.cli.main import app

DOCS = Path(__file__).resolve().parents[2] / "docs" / "alerts.md"


def _errors(text: str) -> list[str]:
    with pytest.raises(RuleError) as e:
        parse_rules(text, "rules.yaml")
    return e.value.errors


# ----------------------------------------------------------------------------- the format


def test_threshold_rule_compiles_with_all_its_parts() -> None:
    rs = parse_rules(
        """
rules:
  - id: do-low
    description: DO below 3
    kind: water
    scope:
      devices: [WQ-0*]
      counties: 清江浦区
    when: do_mg_l < 3
    for: 5m
    clear: do_mg_l >= 3.5
    severity: major
    labels: {team: bureau, page: yes}
    standard: GB 3838-2002
"""
    )
    (r,) = rs.rules
    assert (r.id, r.kind, r.severity, r.field, r.for_ms) == (
        "do-low",
        "water",
        "major",
        "do_mg_l",
        300_000,
    )
    assert r.scope.devices == ("WQ-0*",) and r.scope.counties == ("清江浦区",)
    assert r.labels == {"team": "bureau", "page": "true"}
    assert r.unit == "mg/L" and r.standard == "GB 3838-2002"
    assert r.breached(2.99) and not r.breached(3.0)
    # Hysteresis: between 3 and 3.5 the alert neither fires nor clears.
    assert not r.cleared(3.2) and r.cleared(3.5)
    assert r.scope.matches("WQ-001", "any site", "清江浦区")
    assert not r.scope.matches("WQ-101", "any site", "清江浦区")
    assert not r.scope.matches("WQ-001", "any site", "淮安区")


@pytest.mark.parametrize(
    ("kind", "when", "yes", "no"),
    [
        ("air", "aqi > 150", [151], [150, "x"]),
        ("air", "aqi >= 150", [150], [149.9]),
        ("water", "do_mg_l <= 3", [3], [3.01]),
        ("water", "ph == 7", [7.0], [7.1]),
        ("water", "ph != 7", [6.5], [7]),
        ("pv", "ac_voltage_v outside [198.0, 235.4]", [197.9, 235.5], [198.0, 235.4, 220, "x"]),
        ("pv", "status in [FAULT, OFF]", ["OFF", "FAULT"], ["MPPT"]),
        ("pv", "status == OFF", ["OFF"], [False]),  # OFF stays text, not YAML's false
        ("water", "meets_iii == false", [False], [True]),
        ("ev_charger", "status in [Faulted, 'Unavailable']", ["Unavailable"], ["Available"]),
    ],
)
def test_operators(kind: str, when: str, yes: list[object], no: list[object]) -> None:
    rs = parse_rules(f'rules:\n  - {{id: r, kind: {kind}, when: "{when}", severity: info}}\n')
    r = rs.rules[0]
    assert all(r.breached(v) for v in yes), when
    assert not any(r.breached(v) for v in no), when


def test_hysteresis_clears_on_the_good_side() -> None:
    rs = parse_rules(
        """
rules:
  - {id: lo, kind: water, when: do_mg_l < 3, hysteresis: 0.5, severity: major}
  - {id: hi, kind: air, when: aqi > 200, hysteresis: 10, severity: major}
  - id: band
    kind: pv
    when: grid_freq_hz outside [49.8, 50.2]
    hysteresis: 0.05
    severity: major
"""
    )
    lo, hi, band = rs.rules
    assert not lo.cleared(3.49) and lo.cleared(3.5)
    assert not hi.cleared(191) and hi.cleared(190)
    assert not band.cleared(49.84) and band.cleared(49.85) and band.cleared(50.15)
    assert not band.cleared(50.16)


def test_nodata_rule() -> None:
    (r,) = parse_rules(
        "rules:\n  - {id: pv-off, kind: pv, nodata: {interval: 90s}, severity: warning}\n"
    ).rules
    assert r.nodata_ms == 90_000 and r.when is None and r.field is None


@pytest.mark.parametrize(
    ("text", "ms"),
    [("500ms", 500), ("30s", 30_000), ("5m", 300_000), ("2h", 7_200_000), (90, 90_000)],
)
def test_durations(text: str | int, ms: int) -> None:
    assert duration_ms(text) == ms


def test_folder_of_files_and_duplicate_ids(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "rules:\n  - {id: x, kind: pv, when: status == FAULT, severity: major}\n"
    )
    (tmp_path / "b.yaml").write_text(
        "rules:\n  - {id: y, kind: pv, when: status == OFF, severity: minor}\n"
    )
    assert [r.id for r in load_rules(tmp_path).rules] == ["x", "y"]
    (tmp_path / "c.yaml").write_text(
        "# again\nrules:\n  - {id: x, kind: air, when: aqi > 1, severity: info}\n"
    )
    _, errors = check_rules(tmp_path)
    assert errors == [
        f"{tmp_path / 'c.yaml'}:3: rule 'x' is defined twice (first at {tmp_path / 'a.yaml'}:2); "
        "give each rule its own id"
    ]


# ----------------------------------------------------------------------------- errors


def test_unknown_operator_names_line_and_operators() -> None:
    errors = _errors(
        """rules:
  - id: ok
    kind: water
    when: do_mg_l < 3
    severity: major

  - id: do-low
    kind: water
    when: do_mg_l => 3
    severity: major
"""
    )
    assert errors == [
        "rules.yaml:9: rule 'do-low': unknown operator '=>' — use one of "
        ">, >=, <, <=, ==, !=, outside, in"
    ]


def test_every_problem_is_reported_with_its_own_line() -> None:
    errors = _errors(
        """rules:
  - id: a
    kind: water
    when: do_mgl < 3
    severty: major
  - id: b
    kind: pv
    when: status == Fault
    severity: critcal
  - id: c
    kind: pv
    when: ac_voltage_v outside [235.4, 198]
    severity: minor
    scope: {device: [PV-1]}
    for: 5 minutes
  - id: d
    kind: ev
    nodata: {interval: 5m}
    severity: info
  - id: e
    kind: air
    when: aqi > high
    severity: info
  - id: f
    kind: pv
    when: status == FAULT
    hysteresis: 1
    severity: info
  - id: g
    kind: water
    when: do_mg_l < 3
    clear: ph > 7
    severity: info
  - kind: air
    when: aqi > 1
    severity: info
"""
    )
    lines = [int(re.match(r"rules\.yaml:(\d+):", e).group(1)) for e in errors]  # type: ignore[union-attr]
    assert lines == sorted(lines)
    text = "\n".join(errors)
    expected = [
        "rules.yaml:2: rule 'a': 'severity' is missing; add severity: one of critical, major, "
        "minor, warning, info",
        "rules.yaml:4: rule 'a': unknown water field 'do_mgl'; did you mean 'do_mg_l'?",
        "rules.yaml:5: rule 'a': unknown key 'severty'; did you mean 'severity'?",
        "rules.yaml:8: rule 'b': status is never 'Fault'; did you mean 'FAULT'?",
        "rules.yaml:9: rule 'b': unknown severity 'critcal'; did you mean 'critical'?",
        "rules.yaml:12: rule 'c': 'outside [235.4, 198]': lo must be below hi",
        "rules.yaml:14: rule 'c': unknown key 'device'; did you mean 'devices'?",
        "rules.yaml:15: rule 'c': for: '5 minutes' is not a duration; write e.g. 30s, 5m",
        "rules.yaml:17: rule 'd': unknown kind 'ev'; did you mean 'ev_charger'?",
        "rules.yaml:22: rule 'e': '>' compares numbers; 'high' is not a number",
        "rules.yaml:27: rule 'f': hysteresis needs <, <=, >, >= or outside",
        "rules.yaml:32: rule 'g': 'clear' must test the same field as 'when' (do_mg_l), not ph",
        "rules.yaml:34: rule: 'id' is missing; add id: a-short-name",
    ]
    for want in expected:
        assert want in text, want
    assert len(errors) == len(expected), text


def test_yaml_syntax_error_names_its_line() -> None:
    errors = _errors("rules:\n  - id: a\n    kind: [water\n    when: x\n")
    assert len(errors) == 1 and re.match(r"rules\.yaml:\d: not valid YAML", errors[0])


def test_yaml_booleans_are_explained() -> None:
    (err,) = _errors("rules:\n  - {id: off, kind: pv, when: status == OFF, severity: info}\n")
    assert (
        err == "rules.yaml:2: rule: id: YAML reads the value as False, not text; put it in quotes"
    )


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("", "rules.yaml:1: empty rule file; expected a top-level 'rules:' list"),
        ("- id: x\n", "rules.yaml:1: expected a top-level 'rules:' list"),
        ("rules: {id: x}\n", "rules.yaml:1: 'rules' must be a list"),
        ("rule:\n  - {}\nrules: []\n", "rules.yaml:1: unknown top-level key 'rule'"),
        ("rules:\n  - just text\n", "rules.yaml:2: each rule must be a mapping"),
        (
            "rules:\n  - {id: x, kind: pv, severity: info}\n",
            "rules.yaml:2: rule 'x': needs 'when: <field> <op> <value>'",
        ),
        (
            "rules:\n  - {id: x, kind: pv, nodata: {interval: 5m}, when: status == OFF, "
            "severity: info}\n",
            "rules.yaml:2: rule 'x': 'when' does not apply to a nodata rule; remove it",
        ),
    ],
)
def test_structural_errors(text: str, want: str) -> None:
    errors = _errors(text)
    assert errors[0].startswith(want), errors


def test_missing_file_says_which_setting() -> None:
    _, errors = check_rules(Path("/nonexistent/rules.yaml"))
    assert errors == [
        "/nonexistent/rules.yaml: no such rule file or folder; set ENVGRID_ALERTS__RULES"
    ]


# ----------------------------------------------------------------------------- defaults and docs


def test_shipped_defaults_cover_every_kind_with_a_citation() -> None:
    rs = load_rules()
    assert rs.sources == (str(DEFAULT_RULES),)
    assert {r.kind for r in rs.rules} == set(KINDS)
    assert all(r.standard for r in rs.rules)
    # Each kind has a no-data rule, and the thresholds are there.
    assert {r.kind for r in rs.rules if r.nodata_ms} == set(KINDS)
    texts = {r.id: (r.when.text if r.when else "") for r in rs.rules}
    assert texts["water-do-low"] == "do_mg_l < 3"
    assert texts["water-nh3n-above-iii"] == "nh3n_mg_l > 1.0"
    assert texts["water-class-iv-or-worse"] == "water_class >= 4"
    assert texts["air-aqi-moderate"] == "aqi > 150" and texts["air-aqi-heavy"] == "aqi > 200"
    assert texts["pv-ac-voltage"] == "ac_voltage_v outside [198.0, 235.4]"
    assert texts["pv-grid-frequency"] == "grid_freq_hz outside [49.8, 50.2]"
    assert texts["pv-fault"] == "status == FAULT"
    assert texts["ev-faulted"] == "status == Faulted"
    assert texts["shore-frequency"] == "frequency_hz outside [49.5, 50.5]"
    # A comment above every rule says where its number comes from.
    lines = DEFAULT_RULES.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith("- id:"):
            assert lines[i - 1].strip().startswith("#") or "offline" in line, line


def _doc_blocks() -> list[str]:
    text = DOCS.read_text(encoding="utf-8")
    return re.findall(r"```yaml\n(.*?)```", text, re.S)


def test_docs_examples_load() -> None:
    blocks = [b for b in _doc_blocks() if b.lstrip().startswith(("rules:", "#"))]
    assert blocks, "docs/alerts.md has no rule example"
    for b in blocks:
        rs = parse_rules(b, "docs/alerts.md")
        assert len(rs) >= 1


def test_docs_payload_example_has_the_real_keys() -> None:
    from alerts.engine import event_payload
    from alerts.store import AlertRecord

    text = DOCS.read_text(encoding="utf-8")
    (block,) = re.findall(r"```json\n(.*?)```", text, re.S)
    example = json.loads(block)
    rec = AlertRecord(
        1,
        "r",
        "water",
        "WQ-001",
        "",
        "s",
        "c",
        "major",
        "firing",
        "do_mg_l",
        2.8,
        "m",
        "d",
        "std",
        {},
        0,
        0,
        1,
        None,
        1,
        0,
    )
    real = json.loads(event_payload(rec, "firing", 2, 1))
    assert list(example) == list(real)


def test_docs_table_lists_every_default_rule() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for r in load_rules().rules:
        assert f"`{r.id}`" in text, r.id


# ----------------------------------------------------------------------------- CLI


def test_rules_check_cli(tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["rules", "check", str(DEFAULT_RULES)])
    assert ok.exit_code == 0, ok.output
    assert "20 rules OK" in ok.output
    broken = tmp_path / "rules.yaml"
    broken.write_text(
        "rules:\n  - id: do-low\n    kind: water\n    when: do_mg_l => 3\n    severity: major\n"
    )
    bad = runner.invoke(app, ["rules", "check", str(broken)])
    assert bad.exit_code == 1
    assert f"{broken}:4: rule 'do-low': unknown operator '=>'" in bad.output
    assert "Traceback" not in bad.output
