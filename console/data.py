"""What the console reads from InfluxDB: each device's latest values, and an alert's readings.

One request per devices page, holding one ``SELECT last(<field>) … GROUP BY device_id``
statement per key field (a single selector per statement, so each row's time is the time of
that field's newest point: the newest of them is the device's last reading). Answers are kept
for a few seconds: a wall of tablets refreshing does not multiply the queries.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from devices.base import NOT_NUMBER
from devices.kinds import KINDS
from ingest.influxql import (
    InfluxQLClient,
    QueryError,
    Value,
    quote_ident,
    quote_string,
    time_literal,
)


def series_tags(kind: str) -> tuple[str, ...]:
    """Payload tags that split one device of this kind into several series (connectors)."""
    return tuple(KINDS[kind].payload_tags.values())


@dataclass(slots=True)
class DeviceState:
    """A device's newest values: per series ('' for the device itself, 'connector=2' …)."""

    last_seen_ms: int | None = None
    series: dict[str, dict[str, Value]] = field(default_factory=dict)

    def value(self, name: str) -> Value:
        """The newest value of a field over all series (None when never reported)."""
        best: tuple[int, Value] | None = None
        for vals in self.series.values():
            if name in vals and vals[name] is not None:
                t = vals.get(f"{name}@")
                ts = t if isinstance(t, int) else 0
                if best is None or ts > best[0]:
                    best = (ts, vals[name])
        return best[1] if best else None


@dataclass(slots=True)
class Snapshot:
    """Every device's state, or why InfluxDB could not say."""

    devices: dict[str, DeviceState]
    error: str | None = None
    taken: float = 0.0


def latest_query(kind: str, lookback_s: int) -> list[str]:
    """The statements that give a kind's latest key values per device (and series): one per
    key field of the kind (``DeviceKind.key_fields``)."""
    k = KINDS[kind]
    m = quote_ident(k.measurement)
    group = ", ".join(quote_ident(t) for t in ("device_id", *series_tags(kind)))
    return [
        f"SELECT last({quote_ident(f)}) AS {quote_ident('v')} FROM {m} "
        f"WHERE time > now() - {lookback_s}s GROUP BY {group}"
        for f in k.key_fields
    ]


class Latest:
    """Cached latest values of every device from InfluxDB."""

    def __init__(self, client: InfluxQLClient, lookback_s: int, max_age_s: float = 5.0) -> None:
        self.client = client
        self.lookback_s = lookback_s
        self.max_age_s = max_age_s
        self._snap: Snapshot | None = None
        self._lock = asyncio.Lock()

    async def snapshot(self) -> Snapshot:
        """The latest values, at most ``max_age_s`` old."""
        async with self._lock:
            snap = self._snap
            if snap is not None and time.monotonic() - snap.taken < self.max_age_s:
                return snap
            snap = await self._query()
            self._snap = snap
            return snap

    async def _query(self) -> Snapshot:
        plan: list[tuple[str, str]] = []
        statements: list[str] = []
        for kind, k in KINDS.items():
            for f, stmt in zip(k.key_fields, latest_query(kind, self.lookback_s), strict=True):
                plan.append((kind, f))
                statements.append(stmt)
        devices: dict[str, DeviceState] = {}
        try:
            results = await self.client.results("; ".join(statements))
        except QueryError as e:
            return Snapshot({}, e.message, time.monotonic())
        for res in results:
            if res.statement_id >= len(plan):
                continue
            kind, fname = plan[res.statement_id]
            tags = series_tags(kind)
            for row in res.rows():
                dev = str(row.get("device_id") or "")
                if not dev:
                    continue
                state = devices.setdefault(dev, DeviceState())
                series = ",".join(f"{t}={row[t]}" for t in tags if row.get(t))
                vals = state.series.setdefault(series, {})
                vals[fname] = row.get("v")
                ts = row.get("time")
                if isinstance(ts, int):
                    vals[f"{fname}@"] = ts
                    if state.last_seen_ms is None or ts > state.last_seen_ms:
                        state.last_seen_ms = ts
        return Snapshot(devices, None, time.monotonic())


def series_where(series: str) -> str:
    """InfluxQL conditions for an alert's series ('connector=2' → "connector" = '2')."""
    conds = []
    for part in filter(None, series.split(",")):
        k, _, v = part.partition("=")
        conds.append(f" AND {quote_ident(k)} = {quote_string(v)}")
    return "".join(conds)


async def readings(
    client: InfluxQLClient,
    kind: str,
    device_id: str,
    series: str,
    field_name: str,
    start_ms: int,
    end_ms: int,
    limit: int = 5000,
) -> list[tuple[int, Value]]:
    """(time ms, value) of one field of one device (and series) between two times, oldest first.

    The newest ``limit`` points when there are more (the chart thins them to its pixels).
    """
    m = quote_ident(KINDS[kind].measurement)
    q = (
        f"SELECT {quote_ident(field_name)} FROM {m} "
        f"WHERE {quote_ident('device_id')} = {quote_string(device_id)}{series_where(series)} "
        f"AND time >= {time_literal(start_ms)} AND time <= {time_literal(end_ms)} "
        f"ORDER BY time DESC LIMIT {int(limit)}"
    )
    rows = await client.query(q)
    out = [
        (int(t), r.get(field_name))
        for r in rows
        if isinstance(t := r.get("time"), int) and r.get(field_name) is not None
    ]
    out.reverse()
    return out


@dataclass(frozen=True, slots=True)
class Flagged:
    """A value QC flagged (``flag`` 3 or 4, ``why`` the test) or set apart as invalid
    (``flag`` 0, ``why`` its reason code)."""

    device_id: str
    field: str
    ts_ms: int
    flag: int
    why: str


def _span(start_ms: int, end_ms: int, device_id: str | None) -> str:
    where = f"time >= {time_literal(start_ms)} AND time < {time_literal(end_ms)}"
    if device_id is not None:
        where += f" AND {quote_ident('device_id')} = {quote_string(device_id)}"
    return where


async def qc_flags(
    client: InfluxQLClient,
    measurement: str,
    start_ms: int,
    end_ms: int,
    device_id: str | None = None,
    limit: int = 50_000,
) -> list[Flagged]:
    """The QC flags the rollups stored in ``measurement`` (``<field>_qc`` = 3 or 4 and
    ``<field>_qc_test``, docs/review.md), newest first."""
    q = (
        f"SELECT * FROM {quote_ident(measurement)} WHERE {_span(start_ms, end_ms, device_id)} "
        f"GROUP BY {quote_ident('device_id')} ORDER BY time DESC LIMIT {int(limit)}"
    )
    out: list[Flagged] = []
    for row in await client.query(q):
        ts, dev = row.get("time"), row.get("device_id")
        if not isinstance(ts, int) or not dev:
            continue
        for key, v in row.items():
            if key.endswith("_qc") and isinstance(v, int | float) and not isinstance(v, bool):
                name = key[: -len("_qc")]
                out.append(Flagged(str(dev), name, ts, int(v), str(row.get(f"{key}_test") or "")))
    return out


async def invalid_values(
    client: InfluxQLClient,
    measurement: str,
    start_ms: int,
    end_ms: int,
    device_id: str | None = None,
    limit: int = 50_000,
) -> list[Flagged]:
    """Values ingest set apart (``<field>_invalid`` with ``<field>_flag``, or a flag alone for a
    value that was not a number), newest first."""
    q = (
        f"SELECT /_invalid$|_flag$/ FROM {quote_ident(measurement)} "
        f"WHERE {_span(start_ms, end_ms, device_id)} "
        f"GROUP BY {quote_ident('device_id')} ORDER BY time DESC LIMIT {int(limit)}"
    )
    out: list[Flagged] = []
    for row in await client.query(q):
        ts, dev = row.get("time"), row.get("device_id")
        if not isinstance(ts, int) or not dev:
            continue
        for key, v in row.items():
            if key.endswith("_invalid") and v is not None:
                name = key[: -len("_invalid")]
                out.append(Flagged(str(dev), name, ts, 0, str(row.get(f"{name}_flag") or "")))
            elif key.endswith("_flag") and v == NOT_NUMBER:
                out.append(Flagged(str(dev), key[: -len("_flag")], ts, 0, NOT_NUMBER))
    return out
