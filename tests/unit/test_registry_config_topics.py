"""Registry, settings and topic routing: errors name the file, line and fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from devices.kinds import KINDS
from devices.registry import Device, Registry, RegistryError, load_registry
from envgrid.settings import ConfigError, load_settings
from ingest.config import TopicRoute, redact_url
from ingest.topics import TopicMap


def test_shipped_fleet_loads() -> None:
    reg = load_registry(Path("devices/fleet.yaml"))
    assert len(reg) == 127  # 24 of each kind, and a met station in each of the 7 counties
    assert {d.kind for d in reg} == set(KINDS)
    assert sum(1 for d in reg if d.facts.get("section_type") == "lake") > 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "devices:\n  - {id: A-1, kind: water, site: s, county: c}\n  - {id: A-1, kind: air, "
            "site: s, county: c}\n",
            "reg.yaml:3: device 'A-1' is listed twice (first at line 2)",
        ),
        (
            "devices:\n  - {id: A-1, kind: wind, site: s, county: c}\n",
            "reg.yaml:2: device 'A-1': unknown kind 'wind'; use one of air, ev_charger",
        ),
        (
            "devices:\n  - id: 'bad id'\n    kind: water\n    site: s\n    county: c\n",
            "reg.yaml:2: device 'bad id': id: must match [A-Za-z0-9_.-]{1,64}",
        ),
        (
            "devices:\n  - {id: A-1, kind: water, county: c}\n",
            "reg.yaml:2: device 'A-1': site: Field required",
        ),
        (
            "devices:\n  - {id: A-1, kind: water, site: s, county: c, section_type: sea}\n",
            "reg.yaml:2: device 'A-1': section_type: Input should be 'river' or 'lake'",
        ),
        ("devices: [\n", "reg.yaml:2: not valid YAML"),
        ("stations: []\n", "reg.yaml:1: expected a top-level 'devices:' list"),
    ],
)
def test_registry_errors(text: str, message: str) -> None:
    with pytest.raises(RegistryError) as e:
        Registry.parse(text, "reg.yaml", KINDS)
    assert message in str(e.value)


def test_unknown_ids(tmp_path: Path) -> None:
    reg = Registry()
    d = reg.resolve("PV-NEW.7")
    assert d is not None and d.site == "unknown" and not d.known
    assert reg.resolve("has space") is None
    assert reg.resolve("x" * 65) is None


@pytest.mark.parametrize("device_id", ["PV-NEW.7", "a_b-c.D", "9" * 64])
def test_unregistered_tags_match_the_general_path(device_id: str) -> None:
    """The prebuilt tag set of an unregistered id is what escaping it field by field gives."""
    d = Registry().resolve(device_id)
    assert d is not None
    for kind in KINDS.values():
        assert d.tags_for(kind.registry_tags) == Device(id=device_id).tags_for(kind.registry_tags)


def test_settings_sources_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "envgrid.toml"
    cfg.write_text(
        '[influx]\nurl = "http://db:8086"\ndatabase = "city"\n\n[ingest]\nmax_age = "3d"\n'
    )
    s = load_settings(cfg)
    assert s.influx.url == "http://db:8086" and s.ingest.max_age.days == 3
    monkeypatch.setenv("ENVGRID_INFLUX__DATABASE", "fromenv")
    assert load_settings(cfg).influx.database == "fromenv"  # env beats the file
    monkeypatch.setenv("ENVGRID_INFLUX__API", "v3")
    with pytest.raises(ConfigError) as e:
        load_settings(cfg)
    assert str(e.value) == (
        "config error: influx.api [ENVGRID_INFLUX__API]: Input should be 'v1' or 'v2' (got 'v3')"
    )
    monkeypatch.delenv("ENVGRID_INFLUX__API")
    cfg.write_text('[mqtt]\nurl = "http://broker"\n')
    with pytest.raises(ConfigError, match=rf"ENVGRID_MQTT__URL or {cfg}:2\]: expected mqtt://"):
        load_settings(cfg)
    cfg.write_text("[mqtt\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(cfg)
    cfg.write_text('[influx]\ntokn = "x"\n')
    with pytest.raises(ConfigError, match=r"influx.tokn .*unknown setting"):
        load_settings(cfg)


def test_secrets_are_not_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVGRID_MQTT__URL", "http://user:hunter2@broker")
    with pytest.raises(ConfigError) as e:
        load_settings()
    assert "hunter2" not in str(e.value)
    assert redact_url("mqtt://u:hunter2@h:1883") == "mqtt://u:***@h:1883"


def test_topic_routes() -> None:
    tm = TopicMap("city/envgrid", KINDS, [TopicRoute(pattern="plant/+/inv/{device_id}", kind="pv")])
    assert tm.match("city/envgrid/water/WQ-1") == ("water", "WQ-1")
    assert tm.match("plant/north/inv/INV-9") == ("pv", "INV-9")
    assert tm.match("plant/north/meter/INV-9") is None
    assert tm.match("city/envgrid/noise/N-1") is None
    assert tm.match("city/envgrid/water/") is None
    # The whole prefix (so that a topic outside the routes is dead-lettered, not unheard),
    # the leading-slash mistake, and routes outside the prefix; no overlapping filters.
    assert tm.subscriptions() == ["city/envgrid/#", "/city/envgrid/#", "plant/+/inv/+"]
    shared = TopicMap("envgrid", KINDS, shared_group="ingest")
    assert shared.subscriptions() == ["$share/ingest/envgrid/#", "$share/ingest//envgrid/#"]
    assert tm.is_own("city/envgrid/deadletter/x/y") and tm.is_own("city/envgrid/alerts/major/a")
    assert tm.is_own("city/envgrid/hj212cmd/MN1") and not tm.is_own("city/envgrid/alerts")
    assert tm.deadletter("plant/north/inv/X") == "city/envgrid/deadletter/plant/north/inv/X"
    with pytest.raises(ValueError, match=r"needs a \{device_id\}"):
        TopicRoute(pattern="a/b")
