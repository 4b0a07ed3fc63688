"""The registered device kinds. A new kind is one module plus one line in ``_MODULES``.

Every package reads the kinds from ``KINDS`` when it needs them (the topic map, the registry
loader, the console, the simulator, the dashboards' schema), so a kind registered with
:func:`register` (a plug-in, or a test's synthetic kind) is served by all of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from devices import air, ev_charger, met, pv, shore_power, water
from devices.base import DeviceKind

_MODULES = (water, air, shore_power, pv, ev_charger, met)

KINDS: dict[str, DeviceKind] = {m.KIND.name: m.KIND for m in _MODULES}


def register(kind: DeviceKind) -> None:
    """Add a kind; its name must be new (a kind's name is its topic segment)."""
    if kind.name in KINDS:
        raise ValueError(f"device kind {kind.name!r} is registered already")
    KINDS[kind.name] = kind


def unregister(name: str) -> None:
    """Remove a kind added with :func:`register`."""
    KINDS.pop(name, None)


@contextmanager
def registered(kind: DeviceKind) -> Iterator[DeviceKind]:
    """The kind registered for the ``with`` block only."""
    register(kind)
    try:
        yield kind
    finally:
        unregister(kind.name)
