"""The deployment files, checked without Docker: docker-compose.yml against the Compose
Specification schema, healthchecks, restart policies, no inlined secrets, the generated
mosquitto.conf, Grafana provisioning and the Dockerfile.

Regenerate deploy/mosquitto/mosquitto.conf with: ``python -m tests.unit.test_deploy``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from dashboards import DATASOURCE_UID, city
from envgrid.provision import BrokerLayout, broker_conf

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
SCHEMA = ROOT / "tests" / "data" / "compose-spec.json"
SECRET_WORDS = re.compile(r"PASSWORD|TOKEN|SECRET|_KEY\b", re.IGNORECASE)
REFERENCE = re.compile(r"\$\{([A-Z0-9_]+)(?::?[-?][^}]*)?\}")


# The arguments docker-compose.yml's mqtt-provision service gives `envgrid devices provision`.
COMPOSE_LAYOUT = BrokerLayout(
    device_port=1883,
    device_bind=None,
    service_port=1884,
    service_bind=None,
    conf_dir="/fleet",
    persistence_location="/mosquitto/data/",
)


def compose_mosquitto_conf() -> str:
    """mosquitto.conf for the compose broker: what provision writes with the compose arguments."""
    return broker_conf(COMPOSE_LAYOUT, COMPOSE_LAYOUT.conf_dir)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return data


def test_compose_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert not errors, "\n".join(errors)
    # The schema is strict: a misspelt key fails it.
    broken = json.loads(json.dumps(compose))
    broken["services"]["grafana"]["helthcheck"] = broken["services"]["grafana"].pop("healthcheck")
    assert not validator.is_valid(broken)


def test_every_service_has_a_healthcheck_and_a_restart_policy(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) >= {"mosquitto", "influxdb", "grafana", "envgrid", "simulator"}
    for name, svc in services.items():
        check = svc.get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), f"{name}: no healthcheck"
        assert svc.get("restart") in ("always", "unless-stopped", "on-failure"), name
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, (name, dep)
            if dep != "mqtt-provision":
                assert cond["condition"] in ("service_healthy", "service_started"), (name, dep)
    assert services["simulator"]["profiles"] == ["simulator"]
    assert services["influxdb"]["image"].startswith("influxdb:2.7")


def _strings(node: Any, path: str = "") -> list[tuple[str, str]]:
    if isinstance(node, dict):
        return [kv for k, v in node.items() for kv in _strings(v, f"{path}.{k}")]
    if isinstance(node, list):
        return [kv for i, v in enumerate(node) for kv in _strings(v, f"{path}[{i}]")]
    return [(path, str(node))] if node is not None else []


def test_no_secret_is_written_in_the_compose_file(compose: dict[str, Any]) -> None:
    """Secrets come from .env: every secret-named value is a ${VAR} reference, as are URL
    passwords; every referenced variable has an entry in .env.example."""
    problems = []
    for path, value in _strings(compose):
        key = path.rsplit(".", 1)[-1]
        if key.endswith("_FILE") and value.startswith("/"):
            continue  # where a secret is read from (a mounted file), not the secret
        if SECRET_WORDS.search(key) and not re.fullmatch(r"(Token )?\$\{[^}]+\}", value):
            problems.append(f"{path} = {value!r}")
        for userinfo in re.findall(r"://([^/@\s]+)@", value):
            if ":" in userinfo and "${" not in userinfo.split(":", 1)[1]:
                problems.append(f"{path}: password in URL")
    assert not problems, "\n".join(problems)
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    defined = set(re.findall(r"^([A-Z0-9_]+)=", example, re.MULTILINE))
    used = set(REFERENCE.findall(COMPOSE.read_text(encoding="utf-8")))
    assert used <= defined, sorted(used - defined)
    for name in defined:
        if SECRET_WORDS.search(name):
            assert re.search(rf"^{name}=change-me", example, re.MULTILINE), name


def test_mounted_files_exist_and_volumes_are_declared(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        for mount in svc.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), (name, source)
            else:
                assert source in compose["volumes"], (name, source)
    init = ROOT / "deploy" / "influxdb" / "init" / "10-envgrid-dbrp.sh"
    assert os.access(init, os.X_OK)
    script = init.read_text(encoding="utf-8")
    assert "influx v1 dbrp create" in script and "DOCKER_INFLUXDB_INIT_BUCKET_ID" in script


def test_mosquitto_conf_is_the_generated_one(compose: dict[str, Any]) -> None:
    committed = (ROOT / "deploy" / "mosquitto" / "mosquitto.conf").read_text(encoding="utf-8")
    assert committed == compose_mosquitto_conf(), "regenerate: python -m tests.unit.test_deploy"
    assert "max_queued_messages 0" in committed and "persistence true" in committed
    assert committed.count("allow_anonymous false") == 2
    assert "use_username_as_clientid true" in committed
    # The provision service is run with the arguments the committed file was made from.
    command = " ".join(compose["services"]["mqtt-provision"]["command"])
    for arg in ("--conf-dir /fleet", "--data-dir /mosquitto/data/", "--service-bind ''"):
        assert arg in command, arg
    # envgrid and the simulator use the listeners and password files provision made for them.
    env = compose["services"]["envgrid"]["environment"]
    assert env["ENVGRID_MQTT__URL"] == f"mqtt://envgrid@mosquitto:{COMPOSE_LAYOUT.service_port}"
    assert env["ENVGRID_MQTT__PASSWORD_FILE"] == "/fleet/envgrid.password"
    sim = compose["services"]["simulator"]["environment"]
    assert sim["ENVGRID_MQTT__URL"] == f"mqtt://simulator@mosquitto:{COMPOSE_LAYOUT.device_port}"
    assert compose["services"]["mosquitto"]["ports"] == ["${MQTT_PORT:-1883}:1883"]


def test_grafana_is_provisioned_with_the_dashboards(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    mounts = dict(m.split(":")[:2] for m in grafana["volumes"])
    provider = yaml.safe_load(
        (ROOT / "dashboards" / "provisioning" / "dashboards" / "envgrid.yaml").read_text()
    )["providers"][0]
    assert mounts["./dashboards/json"] == provider["options"]["path"]
    assert mounts["./dashboards/provisioning"] == "/etc/grafana/provisioning"
    gazetteer = mounts["./dashboards/gazetteer/envgrid-devices.json"]
    assert gazetteer == "/usr/share/grafana/" + city.GAZETTEER
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{provider['options']['path']}/{city.UID}.json"
    assert (ROOT / "dashboards" / "json" / f"{city.UID}.json").exists()
    ds = yaml.safe_load(
        (ROOT / "dashboards" / "provisioning" / "datasources" / "envgrid.yaml").read_text()
    )["datasources"][0]
    assert ds["uid"] == DATASOURCE_UID and ds["url"] == "http://influxdb:8086"
    assert (
        ds["jsonData"]["dbName"]
        == compose["services"]["influxdb"]["environment"]["ENVGRID_INFLUXQL_DATABASE"]
    )
    assert "INFLUXDB_TOKEN" in grafana["environment"]


def test_dockerfile_is_slim_non_root_and_checks_readiness() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    stages = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert stages and all(s == "python:3.11-slim" for s in stages)
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    health = re.search(r"^HEALTHCHECK .*?(?<!\\)$", text, re.MULTILINE | re.DOTALL)
    assert health and "/readyz" in text[health.start() :].split("\nENTRYPOINT")[0]
    assert re.search(r"^RUN pip install /wheels/\*\.whl", text, re.MULTILINE)
    assert re.search(r'^ENTRYPOINT \["envgrid"\]', text, re.MULTILINE)


if __name__ == "__main__":
    print(compose_mosquitto_conf(), end="")
