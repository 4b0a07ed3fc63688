"""Charger availability that counts silence, against a real InfluxDB.

A month of OCPP statuses every 10 minutes with a fault, a two-day silence and a charger that
stops reporting; the section's hours are checked against a minute-by-minute count in this file
(the last status within the silence threshold decides each minute, none: offline).
"""

from __future__ import annotations

import asyncio
import bisect
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from devices.registry import Registry
from envgrid.localstack import LocalInfluxDB
from envgrid.settings import load_settings
from ingest.influxql import InfluxQLClient
from report.charger_availability import (
    AVAILABLE,
    KEY,
    AvailabilitySpec,
    ChargerAvailabilitySection,
    build,
)
from report.sections import Builder, Period, SectionContext

TZ = ZoneInfo("Asia/Shanghai")
START = datetime(2026, 11, 1, tzinfo=TZ)
END = datetime(2026, 12, 1, tzinfo=TZ)
EVERY = timedelta(minutes=10)
SILENCE = timedelta(minutes=30)
SPEC = AvailabilitySpec(silence=SILENCE, step=EVERY)
CHARGERS = {  # id: (site, county)
    "EV-01": ("站A", "金湖县"),
    "EV-02": ("站A", "金湖县"),
    "EV-03": ("站B", "盱眙县"),
    "EV-04": ("站B", "盱眙县"),  # registered, never reports
}


def status_at(dev: str, at: datetime) -> str | None:
    """What the charger reports at ``at`` (None: it sends nothing)."""
    if dev == "EV-02":
        if datetime(2026, 11, 10, tzinfo=TZ) <= at < datetime(2026, 11, 11, tzinfo=TZ):
            return "Faulted"
        if datetime(2026, 11, 20, tzinfo=TZ) <= at < datetime(2026, 11, 22, tzinfo=TZ):
            return None  # two days of silence
        return "Charging" if at.hour in (18, 19) else "Available"
    if dev == "EV-03":
        return "SuspendedEV" if at < datetime(2026, 11, 25, tzinfo=TZ) else None
    if dev == "EV-01":
        return "Available"
    return None


def readings() -> dict[str, list[tuple[datetime, str]]]:
    out: dict[str, list[tuple[datetime, str]]] = {}
    for dev in CHARGERS:
        at = START
        while at < END:
            if (s := status_at(dev, at)) is not None:
                out.setdefault(dev, []).append((at, s))
            at += EVERY
    return out


def minute_count(rows: list[tuple[datetime, str]]) -> dict[str, float]:
    """Hours available, unavailable and offline, minute by minute."""
    times = [a for a, _ in rows]
    hours = {"available": 0.0, "unavailable": 0.0, "offline": 0.0}
    minute = START
    while minute < END:
        i = bisect.bisect_right(times, minute) - 1
        if i < 0 or minute - times[i] >= SILENCE:
            hours["offline"] += 1 / 60
        elif rows[i][1] in AVAILABLE:
            hours["available"] += 1 / 60
        else:
            hours["unavailable"] += 1 / 60
        minute += timedelta(minutes=1)
    return hours


async def _section(url: str, db: str) -> ChargerAvailabilitySection:
    from devices.registry import Device

    settings = load_settings(None, influx={"url": url, "database": db})
    registry = Registry(
        Device(id=d, kind="ev_charger", site=s, county=c, known=True)
        for d, (s, c) in CHARGERS.items()
    )
    builder: Builder = build
    async with InfluxQLClient(settings.influx) as client:
        section = await builder(
            SectionContext(
                client=client,
                registry=registry,
                settings=settings,
                period=Period(date(2026, 11, 1), date(2026, 11, 30), "2026-11"),
                tz=TZ,
                now=datetime(2026, 12, 2, tzinfo=UTC),
                extra={KEY: SPEC},
            )
        )
    assert isinstance(section, ChargerAvailabilitySection)
    return section


def test_silence_is_offline_not_available(influxdb: LocalInfluxDB, influx_db: str) -> None:
    data = readings()
    lines = [
        f"ev_charger,connector=1,county={CHARGERS[dev][1]},device_id={dev},"
        f'site={CHARGERS[dev][0]} status="{s}",energy_kwh=1.0 {int(at.timestamp() * 1000)}'
        for dev, rows in data.items()
        for at, s in rows
    ]
    influxdb.write("\n".join(lines), influx_db)
    section = asyncio.run(_section(influxdb.url, influx_db))
    got = section.to_json()
    period_h = (END - START).total_seconds() / 3600
    rows = {c["name"]: c for c in got["connectors"]}
    assert set(rows) == {"EV-01#1", "EV-02#1", "EV-03#1", "EV-04"}
    want = {dev: minute_count(data.get(dev, [])) for dev in CHARGERS}
    for dev in CHARGERS:
        row = rows[f"{dev}#1" if dev in data else dev]
        for what in ("available", "unavailable", "offline"):
            assert row[f"{what}_hours"] == pytest.approx(want[dev][what], abs=1e-3), (dev, what)
        assert row["period_hours"] == pytest.approx(period_h)
    # The silent two days lower EV-02's availability and show as unknown, not as available.
    ev2 = rows["EV-02#1"]
    # Last status 19 Nov 23:50, held 30 min: offline from 00:20 to 22 Nov 00:00.
    silent_h = 48 - 20 / 60
    assert ev2["offline_hours"] == pytest.approx(silent_h, abs=1e-3)
    assert ev2["availability_pct"] < ev2["known_availability_pct"] < 100
    assert ev2["unknown_pct"] == pytest.approx(silent_h / period_h * 100, abs=1e-3)
    assert rows["EV-04"]["availability_pct"] == 0 and rows["EV-04"]["unknown_pct"] == 100
    # Stations, counties and the city add the connectors' hours.
    station_a = next(s for s in got["stations"] if s["name"] == "站A")
    a_avail = want["EV-01"]["available"] + want["EV-02"]["available"]
    assert station_a["availability_pct"] == pytest.approx(a_avail / (2 * period_h) * 100, abs=1e-3)
    city = got["city"]
    assert city["connectors"] == 4
    total_off = sum(w["offline"] for w in want.values())
    assert city["offline_hours"] == pytest.approx(total_off, abs=1e-3)
    assert [c["name"] for c in got["counties"]] == ["盱眙县", "金湖县"]
    # points(): connectors, stations, counties and the city, stored once however often.
    points = section.points()
    assert len(points) == 4 + 2 + 2 + 1
    influxdb.write("\n".join(points), influx_db)
    influxdb.write("\n".join(points), influx_db)
    answer = influxdb.query(f'SELECT count("period_h") FROM "{KEY}"', influx_db)
    assert answer["results"][0]["series"][0]["values"][0][1] == len(points)
