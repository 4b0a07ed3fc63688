"""One way to tell a user what is wrong: one line per problem, where it is written, what to do.

Settings, alert rules, the plan file, the device registry and HJ 212 station settings are all
validated with pydantic; :func:`problems` turns a ``ValidationError`` into :class:`Problem` s
(a readable path such as ``targets[1].formula`` and pydantic's message without its
``Value error,`` prefix) and :func:`error_lines` writes each as
``<file>:<line>: <about>: <path>: <message>``. The line finders say where a location is written:
:func:`toml_line` in TOML text, :func:`yaml_line` in a composed YAML node.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError

Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem of a validation: where (``loc``), pydantic's ``type``, the text to show."""

    loc: Loc
    type: str
    message: str
    input: Any

    def path(self, root: str = "") -> str:
        """``loc`` as written by a user, list items in brackets: ``targets[1].formula``.

        ``root`` names the whole document: the path of a problem with no location.
        """
        out = ""
        for part in self.loc:
            if isinstance(part, int):
                out += f"[{part}]"
            else:
                out += f".{part}" if out else str(part)
        return out or root


def problems(error: ValidationError, messages: Mapping[str, str] | None = None) -> list[Problem]:
    """Every problem of ``error``; ``messages`` replaces pydantic's text for an error type.

    For example ``{"extra_forbidden": "unknown key: check its spelling"}`` turns pydantic's
    "Extra inputs are not permitted" into a line that says what to do.
    """
    messages = messages or {}
    return [
        Problem(
            loc=tuple(e["loc"]),
            type=e["type"],
            message=messages.get(e["type"]) or str(e["msg"]).removeprefix("Value error, "),
            input=e.get("input"),
        )
        for e in error.errors()
    ]


def error_lines(
    error: ValidationError,
    *,
    where: str | Callable[[Loc], str] = "",
    about: str = "",
    root: str = "",
    messages: Mapping[str, str] | None = None,
    explain: Callable[[Problem], str | None] | None = None,
) -> list[str]:
    """One line per problem: ``<where>: <about>: <path>: <message>``, empty parts left out.

    ``where`` is a fixed place (``"rules.yaml:4"``) or a function of the problem's location
    (usually ``f"{file}:{line}"``); ``about`` names the thing at fault (``"rule 'do-low'"``).
    ``explain`` may return the whole text for a problem it can say better (no path added).
    """
    lines = []
    for p in problems(error, messages):
        text = explain(p) if explain is not None else None
        if text is None:
            path = p.path(root)
            text = f"{path}: {p.message}" if path else p.message
        place = where(p.loc) if callable(where) else where
        lines.append(": ".join(part for part in (place, about, text) if part))
    return lines


# ------------------------------------------------------------------------ where it is written


def toml_line(text: str, loc: Sequence[str | int], *, header: bool = True) -> int | None:
    """The line of TOML ``text`` where ``loc`` is written: its key, else its table's header.

    ``loc`` is a settings or pydantic location: ``("mqtt", "url")`` is ``url =`` under
    ``[mqtt]``; ``("targets", 2, "threshold")`` is ``threshold =`` in the third
    ``[[targets]]``; ``("alerts", "dingtalk")`` is the ``[alerts.dingtalk]`` header. None when
    it is not written at all (a default, or a setting from the environment); with
    ``header=False`` also None when its table is written but the key is not.
    """
    lines = text.splitlines()
    headers: list[tuple[int, str]] = []  # (line, table name) in file order
    for i, raw in enumerate(lines, 1):
        s = raw.split("#", 1)[0].strip()
        if s.startswith("["):
            headers.append((i, s.strip("[] ")))
    names = [str(p) for p in loc if not isinstance(p, int)]
    index = next((p for p in loc if isinstance(p, int)), 0)
    # The deepest table the location is in: [alerts.dingtalk] before [alerts].
    for depth in range(len(names), 0, -1):
        starts = [ln for ln, h in headers if h == ".".join(names[:depth])]
        if not starts:
            continue
        start = starts[index] if index < len(starts) else starts[0]
        if depth == len(names):
            return start
        end = next((ln for ln, _ in headers if ln > start), len(lines) + 1)
        return _key_line(lines, names[depth], start, end - 1) or (start if header else None)
    # A key of the top-level table, before the first header.
    if names:
        return _key_line(lines, names[0], 0, headers[0][0] - 1 if headers else len(lines))
    return None


def _key_line(lines: list[str], key: str, first: int, last: int) -> int | None:
    """The 1-based line in ``lines[first:last]`` that assigns ``key``."""
    pattern = re.compile(rf"\s*[\"']?{re.escape(key)}[\"']?\s*=")
    for i in range(first, last):
        if pattern.match(lines[i]):
            return i + 1
    return None


def yaml_value(mapping: yaml.Node | None, key: str) -> yaml.Node | None:
    """The value node of ``key`` in a composed YAML mapping (None when absent or no mapping)."""
    if not isinstance(mapping, yaml.MappingNode):
        return None
    for k, v in mapping.value:
        if k.value == key:
            return v
    return None


def yaml_line(node: yaml.Node, loc: Sequence[str | int]) -> int:
    """The line of the deepest YAML node on the path ``loc`` (keys and list indexes)."""
    line: int = node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == str(part):
                    line, node = k.start_mark.line + 1, v
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return line
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


__all__ = ["Loc", "Problem", "error_lines", "problems", "toml_line", "yaml_line", "yaml_value"]
