"""Topic routing: which MQTT topics carry which device kind, and the topics envgrid publishes.

The default scheme is ``<prefix>/<kind>/<device_id>``; a site whose devices publish elsewhere
adds routes in config (``[[mqtt.topics]] pattern = "plant/+/meters/{device_id}" kind = "pv"``).

envgrid subscribes to everything under the prefix (``<prefix>/#``, and ``/<prefix>/#`` for the
leading-slash mistake), not just to the routes, so that a message on a topic no route matches
(``envgrid/PV/x``, ``envgrid/solar/x``, ``envgrid/pv/a/b``, ``envgrid/pv/x/``) is dead-lettered
with its reason instead of never arriving. envgrid's own topics under the prefix (dead letters,
alerts, HJ 212 commands) then arrive too: ``is_own`` names them, and they are acknowledged
without being processed or dead-lettered again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ingest.config import TopicRoute

# Segments after the prefix of the topics envgrid publishes: dead letters (ingest, gateway),
# alerts (alerts/notify.py) and commands to HJ 212 stations (hj212/routing.py).
OWN_SEGMENTS = ("deadletter", "alerts", "hj212cmd")


@dataclass(frozen=True, slots=True)
class _Route:
    segments: tuple[str, ...]
    kind: str | None
    kind_idx: int | None
    id_idx: int


class TopicMap:
    """Maps an incoming topic to (kind, device id) and names the topics envgrid subscribes to."""

    def __init__(
        self,
        prefix: str,
        kinds: Iterable[str],
        routes: Iterable[TopicRoute] = (),
        shared_group: str = "",
        protocols: Iterable[str] = (),
    ) -> None:
        self.prefix = prefix
        # Protocol intakes (e.g. raw HJ 212 on <prefix>/hj212/<MN>) route like kinds: their own
        # decoder turns the payload into a reading of whichever kind it carries.
        self.kinds = (*kinds, *protocols)
        self.shared_group = shared_group
        all_routes = [*routes, TopicRoute(pattern=prefix + "/{kind}/{device_id}")]
        # What envgrid itself publishes under the prefix (ingest, alerts, HJ 212 gateway).
        self._own = tuple(f"{prefix}/{segment}/" for segment in OWN_SEGMENTS)
        self._routes = [self._compile(r) for r in all_routes]
        # Fast path: routes whose only variable is a trailing {device_id} resolve by dict lookup.
        self._heads: dict[str, str] = {}
        for r in reversed(self._routes):
            if r.id_idx != len(r.segments) - 1 or "+" in r.segments:
                continue
            for kind in [r.kind] if r.kind else self.kinds:
                head = [kind if i == r.kind_idx else s for i, s in enumerate(r.segments[:-1])]
                self._heads["/".join(head)] = kind

    def _compile(self, route: TopicRoute) -> _Route:
        segs = tuple(route.pattern.split("/"))
        if route.kind is not None and route.kind not in self.kinds:
            raise ValueError(f"topic route {route.pattern!r}: unknown kind {route.kind!r}")
        kind_idx = segs.index("{kind}") if "{kind}" in segs else None
        return _Route(segs, route.kind, kind_idx, segs.index("{device_id}"))

    def subscriptions(self) -> list[str]:
        """MQTT topic filters covering the whole prefix and every route outside it (through
        ``$share`` when workers split)."""
        wide = [f"{self.prefix}/#", f"/{self.prefix}/#"]
        out: list[str] = (
            [f"$share/{self.shared_group}/{f}" for f in wide] if self.shared_group else wide
        )
        under = self.prefix + "/"
        for r in self._routes:
            for kind in [r.kind] if r.kind else self.kinds:
                f = "/".join(
                    kind if i == r.kind_idx else ("+" if i == r.id_idx else s)
                    for i, s in enumerate(r.segments)
                )
                if f.startswith(under):
                    continue  # <prefix>/# has it; an overlapping filter could deliver it twice
                if self.shared_group:
                    f = f"$share/{self.shared_group}/{f}"
                if f not in out:
                    out.append(f)
        return out

    def match(self, topic: str) -> tuple[str, str] | None:
        """(kind, device id) for a topic, or None when no route matches."""
        head, _sep, device_id = topic.rpartition("/")
        kind = self._heads.get(head)
        if kind is not None and device_id:
            return kind, device_id
        parts = topic.split("/")
        for r in self._routes:
            if len(parts) != len(r.segments):
                continue
            kind_found = r.kind
            for i, s in enumerate(r.segments):
                if i == r.kind_idx:
                    if parts[i] not in self.kinds:
                        break
                    kind_found = parts[i]
                elif s not in ("+", "{device_id}") and s != parts[i]:
                    break
            else:
                if parts[r.id_idx] and kind_found:
                    return kind_found, parts[r.id_idx]
        return None

    def is_own(self, topic: str) -> bool:
        """Whether envgrid published ``topic`` itself (a dead letter, an alert, a command)."""
        return topic.startswith(self._own)

    def deadletter(self, topic: str) -> str:
        """Where a rejected message of ``topic`` is published."""
        return f"{self.prefix}/deadletter/{topic}"
