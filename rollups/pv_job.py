"""The PV daily job: reads a local day of inverters and met stations, writes ``pv_daily`` (one
point per inverter and day) and ``pv_grid_daily`` (one per transformer area, feeder, substation
and county). The figures are ``rollups.pv`` (pure); see docs/pv.md.

Points are stamped with the day's local midnight and carry the same tags each time, so a
recomputed day (late data, ``envgrid rollup``) overwrites its points. It runs as the rollup
kind ``pv`` of ``rollups.runner``: closed days only.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import defaultdict
from datetime import date, timedelta
from typing import Protocol

from devices import pv
from devices.lineproto import FieldValue
from devices.registry import Device, Registry
from ingest.broker import client_options
from ingest.config import MqttSettings
from ingest.influxql import InfluxQLClient, Series, finite, quote_ident, time_literal
from ingest.mqtt import MqttClient
from rollups.config import RollupSettings
from rollups.pv import (
    PV_DAILY,
    PV_GRID_DAILY,
    Inverter,
    Met,
    PvOptions,
    Sample,
    daily_figures,
    underperformers,
    window_figures,
)
from rollups.windows import Options, Point, Window, day_window

NAME = "pv"
SOURCE = pv.KIND.measurement
MET_SOURCE = "pv_met"
# Grid locations a PV point carries as tags, lowest level first (the grid view's levels).
GRID_LEVELS = ("transformer_area", "feeder", "substation", "county")
# Peak simultaneous output is the largest sum of the inverters' 5-minute mean outputs.
PEAK_BIN_MS = 5 * 60_000
# A verdict goes only to an inverter that reported this recently (PvDaily.publish).
FRESH = timedelta(minutes=5)
# How far back the register's last value before the day is looked for.
_BEFORE = timedelta(days=1)


class Publisher(Protocol):
    """Where the day's verdicts go as readings (an MQTT client of the service's broker)."""

    async def publish(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False
    ) -> None: ...


class MqttPublisher:
    """A publish-only MQTT connection, opened on first use (the rollup task may never need it)."""

    def __init__(self, mqtt: MqttSettings) -> None:
        self.mqtt = mqtt
        self._client: MqttClient | None = None

    async def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        """Publish with QoS 1; connects first when needed."""
        if self._client is None:
            opts = client_options(self.mqtt, f"envgrid-pv-daily-{os.getpid()}")
            client = MqttClient(opts, lambda _m: None)
            await client.start()
            try:
                await client.wait_connected(timeout=self.mqtt.connect_timeout_s)
            except BaseException:
                await client.close()
                raise
            self._client = client
        await self._client.publish(topic, payload, qos=qos, retain=retain)

    async def close(self) -> None:
        """Close the connection, if one was opened."""
        if self._client is not None:
            await self._client.close()
            self._client = None


def pv_options(r: RollupSettings) -> PvOptions:
    """The PV figures' options of these settings."""
    return PvOptions(
        gamma_per_c=r.pv_gamma_per_c, irradiance_threshold_w_m2=r.pv_irradiance_threshold_w_m2
    )


class PvDaily:
    """Computes and writes one local day's PV figures."""

    def __init__(
        self,
        client: InfluxQLClient,
        registry: Registry,
        settings: RollupSettings,
        opts: Options,
        chunk: int | None = None,
        publisher: Publisher | None = None,
        prefix: str = "envgrid",
        max_age: timedelta = timedelta(days=7),
    ) -> None:
        self.client = client
        self.publisher = publisher
        self.prefix = prefix
        self.max_age = max_age  # the service refuses older readings (ingest.max_age)
        self.registry = registry
        self.settings = settings
        self.opts = opts
        self.pv_opts = pv_options(settings)
        self.chunk = chunk

    async def _series(self, q: str) -> list[Series]:
        return await self.client.series(q, chunk_size=self.chunk)

    def _where(self, span: Window) -> str:
        return f"WHERE time >= {time_literal(span.start_ms)} AND time < {time_literal(span.end_ms)}"

    async def compute(self, day: date) -> tuple[list[Point], dict[str, dict[str, FieldValue]]]:
        """The day's ``pv_daily`` and ``pv_grid_daily`` points, and the judged inverters' rows
        (those with three or more peers to compare with)."""
        span = day_window(day, self.opts.tz)
        inverters, tags, power = await self._inverters(span)
        if not inverters:
            return [], {}
        mets = await self._mets(span)
        rows: dict[str, dict[str, FieldValue]] = {}
        for dev_id, inv in inverters.items():
            met = mets.get(self._met_of(dev_id, tags[dev_id]) or "")
            rows[dev_id] = daily_figures(inv, met, span.end_ms, self.pv_opts)
        judged = await self._flag(day, rows, inverters, tags)
        points = [Point(PV_DAILY, tags[d], rows[d], span.start_ms) for d in sorted(rows)]
        points += self._grid(span, rows, inverters, tags, power)
        return points, {d: rows[d] for d in judged}

    async def publish(self, day: date, verdicts: dict[str, dict[str, FieldValue]]) -> int:
        """Send each judged inverter's verdict as a PV reading stamped a second before the day
        ends, so the alert rules of kind ``pv`` see it (``underperforming``, ``pr_shortfall``).
        The same day sent again is the same reading: stored once, no new alert."""
        ts = day_window(day, self.opts.tz).end_ms - 1000
        now_ms = int(time.time() * 1000)
        if self.publisher is None or not verdicts:
            return 0
        if ts < now_ms - self.max_age.total_seconds() * 1000:
            return 0  # a back-filled old day: the service would dead-letter the verdicts
        # Any reading tells the alert engine its device is alive (it ends an offline episode),
        # so only inverters that reported in the last few minutes get their verdict now; the
        # others get it on a later pass over the day, once they report again.
        since = now_ms - int(FRESH.total_seconds() * 1000)
        q = (
            f'SELECT count("ac_power_w") AS "p", count("status") AS "s" FROM {quote_ident(SOURCE)} '
            f"WHERE time >= {time_literal(since)} GROUP BY device_id"
        )
        alive = {
            s.tags.get("device_id", "")
            for s in await self._series(q)
            if any(isinstance(v, int) and v > 0 for row in s.values for v in row[1:])
        }
        sent = 0
        for d, row in sorted(verdicts.items()):
            if d not in alive:
                continue
            sent += 1
            body: dict[str, object] = {"ts": ts, "underperforming": bool(row["underperforming"])}
            shortfall = row.get("shortfall")
            if isinstance(shortfall, float):
                body["pr_shortfall"] = round(shortfall, 6)
            payload = json.dumps(body).encode()
            await self.publisher.publish(f"{self.prefix}/{NAME}/{d}", payload, qos=1)
        return sent

    # --------------------------------------------------------------------------- reading

    async def _inverters(
        self, span: Window
    ) -> tuple[dict[str, Inverter], dict[str, dict[str, str]], dict[str, list[Sample]]]:
        fields = ("ac_power_w", "energy_total_kwh", "energy_today_kwh", "status")
        q = (
            f"SELECT {', '.join(quote_ident(f) for f in fields)} FROM {quote_ident(SOURCE)} "
            f"{self._where(span)} GROUP BY *"
        )
        inverters: dict[str, Inverter] = {}
        tags: dict[str, dict[str, str]] = {}
        for s in await self._series(q):
            dev_id = s.tags.get("device_id", "")
            if not dev_id:
                continue
            inv = inverters.get(dev_id)
            if inv is None:
                device = self.registry.get(dev_id)
                kwp = pv.facts(device).capacity_kwp if device is not None else None
                inv = inverters[dev_id] = Inverter(dev_id, kwp)
                tags[dev_id] = self._tags(dev_id, device, s.tags)
            col = {c: i for i, c in enumerate(s.columns)}
            for row in s.values:
                ts = row[col["time"]]
                if not isinstance(ts, int):
                    continue
                for name in ("ac_power_w", "energy_total_kwh", "energy_today_kwh"):
                    v = finite(row[col[name]]) if name in col else None
                    if v is not None:
                        getattr(inv, name).append((ts, v))
                st = row[col["status"]] if "status" in col else None
                if isinstance(st, str):
                    inv.status.append((ts, st))
        before = Window(span.start_ms - int(_BEFORE.total_seconds() * 1000), span.start_ms)
        for name, attr in (
            ("energy_total_kwh", "total_before"),
            ("energy_today_kwh", "today_before"),
        ):
            q = (
                f"SELECT last({quote_ident(name)}) FROM {quote_ident(SOURCE)} "
                f"{self._where(before)} GROUP BY device_id"
            )
            for s in await self._series(q):
                inv = inverters.get(s.tags.get("device_id", ""))
                if inv is None or not s.values:
                    continue
                ts, v = s.values[0][0], finite(s.values[0][1])
                if isinstance(ts, int) and v is not None:
                    setattr(inv, attr, (ts, v))
        power = {d: inv.ac_power_w for d, inv in inverters.items()}
        return inverters, tags, power

    async def _mets(self, span: Window) -> dict[str, Met]:
        q = (
            f'SELECT "poa_w_m2", "module_temp_c" FROM {quote_ident(MET_SOURCE)} '
            f"{self._where(span)} GROUP BY device_id"
        )
        out: dict[str, Met] = {}
        for s in await self._series(q):
            dev_id = s.tags.get("device_id", "")
            met = out.setdefault(dev_id, Met())
            col = {c: i for i, c in enumerate(s.columns)}
            for row in s.values:
                ts = row[col["time"]]
                if not isinstance(ts, int):
                    continue
                for name in ("poa_w_m2", "module_temp_c"):
                    v = finite(row[col[name]]) if name in col else None
                    if v is not None:
                        getattr(met, name).append((ts, v))
        return out

    def _tags(self, dev_id: str, device: Device | None, raw: dict[str, str]) -> dict[str, str]:
        """device_id, site, county and the grid location (the registry's, else the raw tags)."""
        if device is None:
            out = {k: raw[k] for k in ("device_id", "site", "county") if raw.get(k)}
            return out
        f = pv.facts(device)
        out = {"device_id": dev_id, "site": device.site, "county": device.county}
        for key in ("transformer_area", "feeder", "substation"):
            v = getattr(f, key)
            if v:
                out[key] = str(v)
        out["pilot"] = "true" if f.pilot else "false"
        if f.irradiance_from:
            out["met"] = f.irradiance_from
        return {k: v for k, v in out.items() if v != ""}

    def _met_of(self, dev_id: str, tags: dict[str, str]) -> str | None:
        """The met station whose irradiance applies: the registry's ``irradiance_from``, else
        the one met station registered at the inverter's site."""
        if "met" in tags:
            return tags["met"]
        site = tags.get("site")
        same = [d.id for d in self.registry.of_kind("met") if d.site == site]
        return same[0] if len(same) == 1 else None

    # ---------------------------------------------------------------------- underperformers

    async def _flag(
        self,
        day: date,
        rows: dict[str, dict[str, FieldValue]],
        inverters: dict[str, Inverter],
        tags: dict[str, dict[str, str]],
    ) -> set[str]:
        """Mark underperformers (window of ``pv_underperformance_days`` ending with the day);
        the inverters judged (three or more peers with the metric)."""
        days = self.settings.pv_underperformance_days
        history: dict[str, list[dict[str, FieldValue]]] = defaultdict(list)
        if days > 1:
            first = day_window(day - timedelta(days=days - 1), self.opts.tz)
            span = Window(first.start_ms, day_window(day, self.opts.tz).start_ms)
            q = (
                f'SELECT "energy_kwh", "h_poa_kwh_m2" FROM {quote_ident(PV_DAILY)} '
                f"{self._where(span)} GROUP BY device_id"
            )
            for s in await self._series(q):
                for r in s.rows():
                    history[s.tags.get("device_id", "")].append(dict(r))  # type: ignore[arg-type]
        capacity = {d: inv.capacity_kwp for d, inv in inverters.items()}
        window = {d: window_figures([*history[d], rows[d]], capacity[d]) for d in rows}
        groups: dict[str, list[str]] = defaultdict(list)
        for d, t in tags.items():
            met = self._met_of(d, t)
            if met and "pr" in window[d]:
                groups[f"met:{met}"].append(d)
            if t.get("transformer_area"):
                groups[f"area:{t['transformer_area']}"].append(d)
        judged = {
            m
            for members in groups.values()
            if sum(1 for m in members if window[m]) >= 3
            for m in members
            if window[m]
        }
        found = {
            u.device_id: u
            for u in underperformers(
                window, groups, capacity, self.settings.pv_underperformance_margin
            )
        }
        for d, row in rows.items():
            u = found.get(d)
            row["underperforming"] = u is not None
            if u is not None:
                row["shortfall"] = u.shortfall
                row["energy_lost_kwh"] = u.energy_lost_kwh
                row["peer_median"] = u.median
        return judged

    # ----------------------------------------------------------------------------- grid view

    def _grid(
        self,
        span: Window,
        rows: dict[str, dict[str, FieldValue]],
        inverters: dict[str, Inverter],
        tags: dict[str, dict[str, str]],
        power: dict[str, list[Sample]],
    ) -> list[Point]:
        """Per transformer area, feeder, substation and county: installed kWp, energy, peak
        simultaneous output and, where the area's rating is known, peak ÷ rated_kva."""
        bins: dict[str, dict[int, float]] = {}
        for d, samples in power.items():
            acc: dict[int, list[float]] = defaultdict(list)
            for ts, w in samples:
                acc[(ts - span.start_ms) // PEAK_BIN_MS].append(w)
            bins[d] = {b: math.fsum(v) / len(v) / 1000 for b, v in acc.items()}
        ratings: dict[str, float] = {}
        for d in inverters:
            device = self.registry.get(d)
            if device is not None:
                f = pv.facts(device)
                if f.transformer_area and f.rated_kva:
                    ratings[f.transformer_area] = f.rated_kva
        points: list[Point] = []
        for level in GRID_LEVELS:
            members: dict[str, list[str]] = defaultdict(list)
            for d, t in tags.items():
                if t.get(level):
                    members[t[level]].append(d)
            for name, ids in sorted(members.items()):
                fields: dict[str, FieldValue] = {
                    "inverters": len(ids),
                    "installed_kwp": math.fsum(inverters[d].capacity_kwp or 0.0 for d in ids),
                }
                energy = [
                    float(v) for d in ids if isinstance(v := rows[d].get("energy_kwh"), float)
                ]
                if energy:
                    fields["energy_kwh"] = math.fsum(energy)
                total: dict[int, float] = defaultdict(float)
                for d in ids:
                    for b, kw in bins[d].items():
                        total[b] += kw
                if total:
                    fields["peak_kw"] = max(total.values())
                rated = ratings.get(name) if level == "transformer_area" else None
                if level != "transformer_area":
                    areas = {tags[d].get("transformer_area") for d in ids} - {None}
                    if areas and all(a in ratings for a in areas):
                        rated = math.fsum(ratings[a] for a in areas if a)
                if rated:
                    fields["rated_kva"] = rated
                    if "peak_kw" in fields:
                        fields["peak_to_rated"] = float(fields["peak_kw"]) / rated
                # The county tag lets the dashboards' county filter apply (one county: its name).
                counties = {tags[d].get("county", "") for d in ids}
                tag = {"level": level, "name": name}
                if len(counties) == 1 and (county := counties.pop()):
                    tag["county"] = county
                points.append(Point(PV_GRID_DAILY, tag, fields, span.start_ms))
        return points


async def ranked_underperformers(
    client: InfluxQLClient, span: Window
) -> list[dict[str, FieldValue]]:
    """Inverters flagged in ``pv_daily`` within the window, with their days flagged and energy
    lost summed, the largest loss first (the CLI's list; the dashboard's table shows days)."""
    q = (
        'SELECT "energy_lost_kwh", "shortfall", "pr", "site", "county" '
        f"FROM {quote_ident(PV_DAILY)} "
        f"WHERE time >= {time_literal(span.start_ms)} AND time < {time_literal(span.end_ms)} "
        'AND "underperforming" = true GROUP BY "device_id"'
    )
    out: list[dict[str, FieldValue]] = []
    for s in await client.series(q):
        rows = s.rows()
        lost = [float(v) for r in rows if isinstance(v := r.get("energy_lost_kwh"), int | float)]
        worst = max(
            (float(v) for r in rows if isinstance(v := r.get("shortfall"), int | float)),
            default=0.0,
        )
        last = rows[-1] if rows else {}
        out.append(
            {
                "device_id": s.tags.get("device_id", ""),
                "site": str(last.get("site") or ""),
                "county": str(last.get("county") or ""),
                "days": len(rows),
                "energy_lost_kwh": math.fsum(lost),
                "worst_shortfall": worst,
            }
        )
    return sorted(out, key=lambda r: (-float(r["energy_lost_kwh"]), str(r["device_id"])))
