"""The one error formatter (devices.errors): one line per problem, with where it is written."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from devices.errors import Problem, error_lines, problems, toml_line, yaml_line, yaml_value
from envgrid.settings import ConfigError, load_settings


class _Item(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    size: int = Field(ge=0)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v.islower():
            raise ValueError("write it in lower case, e.g. 'pump'")
        return v


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[_Item]


def _error(data: object) -> ValidationError:
    with pytest.raises(ValidationError) as e:
        _Doc.model_validate(data)
    return e.value


def test_one_line_per_problem_with_place_subject_path_and_message() -> None:
    e = _error({"items": [{"name": "ok", "size": 1}, {"name": "Pump", "size": -1, "colour": 1}]})
    lines = error_lines(e, where="plant.yaml:7", about="plant 'north'")
    assert lines == [
        "plant.yaml:7: plant 'north': items[1].name: write it in lower case, e.g. 'pump'",
        "plant.yaml:7: plant 'north': items[1].size: Input should be greater than or equal to 0",
        "plant.yaml:7: plant 'north': items[1].colour: Extra inputs are not permitted",
    ]


def test_messages_by_type_where_by_location_and_explain() -> None:
    e = _error({"items": [{"size": 1, "colour": 1}]})
    lines = error_lines(
        e,
        where=lambda loc: f"f.toml:{len(loc)}",
        messages={"extra_forbidden": "unknown key: check its spelling"},
        explain=lambda p: "'name' is missing; add name:" if p.type == "missing" else None,
    )
    assert lines == [
        "f.toml:3: 'name' is missing; add name:",
        "f.toml:3: items[0].colour: unknown key: check its spelling",
    ]


def test_a_problem_without_location_is_named_by_root() -> None:
    e = _error([1, 2])
    assert error_lines(e, root="plan") == [
        "plan: Input should be a valid dictionary or instance of _Doc"
    ]
    (p,) = problems(e)
    assert p == Problem(loc=(), type="model_type", message=p.message, input=[1, 2])
    assert p.path() == "" and p.path("plan") == "plan"


TOML = """\
top = 1
[mqtt]
url = "x"   # a comment
[alerts]
[alerts.dingtalk]
secret = "s"
[[targets]]
id = "a"
[[targets]]
id = "b"
"threshold" = 3
"""


@pytest.mark.parametrize(
    ("loc", "line"),
    [
        (("top",), 1),
        (("mqtt",), 2),
        (("mqtt", "url"), 3),
        (("mqtt", "keepalive_s"), 2),  # not written: its table's header
        (("alerts", "dingtalk"), 5),
        (("alerts", "dingtalk", "secret"), 6),
        (("targets", 0, "id"), 8),
        (("targets", 1, "id"), 10),
        (("targets", 1, "threshold"), 11),
        (("targets", 1), 9),
        (("nowhere", "key"), None),
        ((), None),
    ],
)
def test_toml_line(loc: tuple[str | int, ...], line: int | None) -> None:
    assert toml_line(TOML, loc) == line


def test_toml_line_without_header_fallback() -> None:
    assert toml_line(TOML, ("mqtt", "keepalive_s"), header=False) is None
    assert toml_line(TOML, ("mqtt", "url"), header=False) == 3


def test_yaml_line_and_value() -> None:
    root = yaml.compose("rules:\n  - id: a\n    scope:\n      devices: [x]\n")
    items = yaml_value(root, "rules")
    assert isinstance(items, yaml.SequenceNode)
    assert yaml_line(root, ("rules", 0, "scope", "devices")) == 4
    assert yaml_line(root, ("rules", 0, "nothing")) == 2
    assert yaml_line(root, ("rules", 5)) == 1
    assert yaml_value(root, "missing") is None
    assert yaml_value(yaml.compose("- a\n"), "rules") is None


def test_settings_name_the_line_of_an_array_table(tmp_path: Path) -> None:
    config = tmp_path / "envgrid.toml"
    config.write_text(
        '[mqtt]\nurl = "mqtt://127.0.0.1"\n\n[[mqtt.topics]]\npattern = "a/{kind}"\n'
        "\n[ingest]\nbatch_size = 0\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as e:
        load_settings(config)
    lines = str(e.value).splitlines()
    assert lines == [
        f"config error: mqtt.topics[0] [ENVGRID_MQTT__TOPICS or {config}:4]: "
        "pattern needs a {device_id} segment",
        f"config error: ingest.batch_size [ENVGRID_INGEST__BATCH_SIZE or {config}:8]: "
        "Input should be greater than or equal to 1 (got 0)",
    ]
