"""Shore-power calls as 港口和船舶岸电管理办法 Art. 11 counts them, against a real InfluxDB.

A register and a month of berthing records go in through ``envgrid shore … import``, berth
meter readings as line protocol; the ``shore_power_calls`` section's obliged calls, usage rate,
connection hours and kWh are checked against a calculation in this file that restates the
article on the seed (CALLS and VESSELS below), not the builder's code.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from devices.registry import load_registry
from envgrid.cli.main import app
from envgrid.localstack import LocalInfluxDB
from envgrid.settings import load_settings
from ingest.influxql import InfluxQLClient
from report.sections import Builder, Period, SectionContext
from report.shore_calls import KEY, ShoreCallsSection, build

TZ = ZoneInfo("Asia/Shanghai")
B1, B2 = "金湖港1号泊位", "盱眙港2号泊位"
REGISTRY = f"""devices:
  - {{id: SP-01, kind: shore_power, site: {B1}, county: 金湖县, port: 金湖港, berth: B1}}
  - {{id: SP-02, kind: shore_power, site: {B2}, county: 盱眙县, port: 盱眙港, berth: B2,
     waters: coastal}}
"""
# Art. 11: 2 h inland (the default waters), 3 h coastal (SP-02's berth).
THRESHOLD_H = {B1: 2.0, B2: 3.0}


@dataclass(frozen=True)
class Ship:
    vessel: str
    equipped: bool
    liquid_cargo: bool


VESSELS = [
    Ship("413000001", True, False),
    Ship("413000002", True, True),  # a tanker: liquid cargo, outside Art. 11
    Ship("413000003", True, False),
    Ship("413000004", False, False),  # not equipped to take shore power
    Ship("413000005", True, False),
]
SHIPS = {s.vessel: s for s in VESSELS}


def t(day: int, hh: int, mm: int = 0, month: int = 11) -> datetime:
    return datetime(2026, month, day, hh, mm, tzinfo=TZ)


@dataclass(frozen=True)
class Visit:
    vessel: str
    berth: str
    arrival: datetime
    departure: datetime
    exemption: str = ""
    plugged: tuple[datetime, datetime] | None = None  # the meter's connected stretch
    kw: float = 0.0


CALLS = [
    Visit("413000001", B1, t(3, 8), t(3, 14), plugged=(t(3, 9), t(3, 13)), kw=100.0),
    Visit("413000002", B1, t(4, 8), t(4, 20)),  # tanker, 12 h, not connected
    Visit("413000001", B1, t(5, 8), t(5, 9, 30)),  # 1.5 h: not over 2 h
    Visit("413000003", B1, t(6, 8), t(6, 16)),  # obliged, never connected
    Visit("413000004", B1, t(7, 8), t(7, 12)),  # not equipped
    Visit("413000003", B1, t(7, 14), t(7, 20), exemption="bad_weather"),
    # 2.5 h at a coastal berth: under its 3 h, though connected.
    Visit("413000005", B2, t(6, 8), t(6, 10, 30), plugged=(t(6, 8, 30), t(6, 10)), kw=50.0),
    Visit("413000005", B2, t(8, 6), t(8, 18), plugged=(t(8, 7), t(8, 17)), kw=80.0),
    Visit("413000001", B1, t(31, 20, month=10), t(31, 23, month=10)),  # October: not counted
]


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def _hours(a: datetime, b: datetime) -> float:
    return (b - a).total_seconds() / 3600


def expected() -> dict[str, object]:
    """Art. 11 restated on the seed: obliged = equipped, not liquid cargo, no excuse, berthing
    over the berth's threshold; connected = the meter's connected stretch overlaps the call."""
    calls = [c for c in CALLS if c.arrival.month == 11]
    obliged, connected = [], []
    hours: dict[tuple[str, datetime], float] = {}
    kwh: dict[tuple[str, datetime], float] = {}
    for c in calls:
        ship = SHIPS[c.vessel]
        h = 0.0
        if c.plugged:
            a, b = max(c.plugged[0], c.arrival), min(c.plugged[1], c.departure)
            h = max(0.0, _hours(a, b))
        hours[(c.vessel, c.arrival)] = h
        kwh[(c.vessel, c.arrival)] = h * c.kw
        if (
            ship.equipped
            and not ship.liquid_cargo
            and not c.exemption
            and _hours(c.arrival, c.departure) > THRESHOLD_H[c.berth]
        ):
            obliged.append(c)
            if h > 0:
                connected.append(c)
    return {
        "calls": len(calls),
        "obliged": len(obliged),
        "connected": len(connected),
        "rate": len(connected) / len(obliged) * 100,
        "hours": hours,
        "kwh": kwh,
    }


def meter_lines() -> list[str]:
    """Every 5 minutes, 1–9 November: connected or not, and the register of energy so far."""
    lines = []
    for dev, berth, site, county in (
        ("SP-01", "B1", B1, "金湖县"),
        ("SP-02", "B2", B2, "盱眙县"),
    ):
        plugs = [(c.plugged, c.kw) for c in CALLS if c.berth == site and c.plugged]
        at = t(1, 0)
        while at < t(10, 0):
            on = any(p[0] <= at < p[1] for p, _ in plugs)
            energy = 5000.0 + sum(
                kw * max(0.0, _hours(p[0], min(p[1], at))) for p, kw in plugs if p[0] < at
            )
            lines.append(
                f"shore_power,berth={berth},county={county},device_id={dev},site={site} "
                f"connected={'true' if on else 'false'},energy_kwh={energy} {_ms(at)}"
            )
            at += timedelta(minutes=5)
    return lines


@pytest.fixture
def setup(influxdb: LocalInfluxDB, influx_db: str, tmp_path: Path) -> tuple[Path, Path]:
    registry = tmp_path / "registry.yaml"
    registry.write_text(REGISTRY, encoding="utf-8")
    config = tmp_path / "envgrid.toml"
    config.write_text(
        f'[influx]\nurl = "{influxdb.url}"\ndatabase = "{influx_db}"\n\n'
        f'[devices]\nregistry = "{registry}"\n',
        encoding="utf-8",
    )
    influxdb.write("\n".join(meter_lines()), influx_db)
    vessels = tmp_path / "vessels.csv"
    vessels.write_text(
        "vessel,equipped,liquid_cargo\n"
        + "".join(
            f"{s.vessel},{'yes' if s.equipped else 'no'},{'yes' if s.liquid_cargo else 'no'}\n"
            for s in VESSELS
        ),
        encoding="utf-8",
    )
    calls = tmp_path / "calls.csv"
    calls.write_text(
        "vessel,berth,arrival,departure,exemption\n"
        + "".join(
            f"{c.vessel},{c.berth},{c.arrival:%Y-%m-%d %H:%M},{c.departure:%Y-%m-%d %H:%M},"
            f"{c.exemption}\n"
            for c in CALLS
        ),
        encoding="utf-8",
    )
    return config, tmp_path


def _import(config: Path, what: str, path: Path) -> str:
    result = CliRunner().invoke(app, ["shore", what, "import", str(path), "-c", str(config)])
    assert result.exit_code == 0, result.output
    return result.output


def _count(influxdb: LocalInfluxDB, db: str, measurement: str, field: str) -> int:
    answer = influxdb.query(f'SELECT count("{field}") FROM "{measurement}"', db)
    series = answer["results"][0].get("series") or []
    return int(sum(s["values"][0][1] for s in series))


async def _section(config: Path) -> ShoreCallsSection:
    settings = load_settings(config)
    builder: Builder = build
    async with InfluxQLClient(settings.influx) as client:
        section = await builder(
            SectionContext(
                client=client,
                registry=load_registry(settings.devices.registry),
                settings=settings,
                period=Period(date(2026, 11, 1), date(2026, 11, 30), "2026-11"),
                tz=TZ,
                now=datetime(2026, 12, 2, tzinfo=UTC),
            )
        )
    assert isinstance(section, ShoreCallsSection)
    return section


def test_obliged_calls_and_usage_rate_follow_art_11(
    influxdb: LocalInfluxDB, influx_db: str, setup: tuple[Path, Path]
) -> None:
    config, tmp = setup
    for _ in range(2):  # importing twice stores once
        assert "5 vessels stored" in _import(config, "vessels", tmp / "vessels.csv")
        assert f"{len(CALLS)} calls stored" in _import(config, "calls", tmp / "calls.csv")
    assert _count(influxdb, influx_db, "shore_vessels", "equipped") == len(VESSELS)
    assert _count(influxdb, influx_db, "shore_calls", "departure_ms") == len(CALLS)

    section = asyncio.run(_section(config))
    want = expected()
    data = section.to_json()
    assert section.key == KEY
    city = data["city"]
    assert city["calls"] == want["calls"]  # October's call is another period's
    assert city["obliged"] == want["obliged"] == 3
    assert city["obliged_connected"] == want["connected"] == 2
    # 2 of 3: one obliged call idle (JSON rounds to 3 decimals)
    assert city["usage_rate_pct"] == pytest.approx(want["rate"], abs=5e-4)
    # The tanker's call and the short one are not in the denominator; their reasons are listed.
    reasons = {(c["vessel"], c["arrival"][:10]): c for c in data["calls"]}
    tanker = reasons[("413000002", "2026-11-04")]
    assert not tanker["obliged"] and "liquid-cargo" in tanker["reason"]
    short = reasons[("413000001", "2026-11-05")]
    assert not short["obliged"] and "threshold" in short["reason"]
    coastal = reasons[("413000005", "2026-11-06")]
    assert not coastal["obliged"] and coastal["threshold_hours"] == 3.0 and coastal["connected"]
    assert reasons[("413000003", "2026-11-07")]["reason"].startswith("恶劣气候")
    hours, kwh = want["hours"], want["kwh"]
    assert isinstance(hours, dict) and isinstance(kwh, dict)
    for c in data["calls"]:
        arrival = datetime.fromisoformat(c["arrival"])
        assert c["connection_hours"] == pytest.approx(hours[(c["vessel"], arrival)], abs=5e-4)
        assert c["kwh"] == pytest.approx(kwh[(c["vessel"], arrival)], abs=5e-4)
    assert city["kwh"] == pytest.approx(sum(kwh.values()), abs=5e-4)
    ports = {g["name"]: g for g in data["groups"] if g["level"] == "port"}
    assert ports["金湖港"]["usage_rate_pct"] == pytest.approx(50.0)
    assert ports["盱眙港"]["obliged"] == 1 and ports["盱眙港"]["usage_rate_pct"] == 100.0
    # points(): one per port and the city, re-stored at the same instant.
    lines = section.points()
    assert len(lines) == 3 and all(line.startswith("shore_power_calls,") for line in lines)
    influxdb.write("\n".join(lines), influx_db)
    influxdb.write("\n".join(lines), influx_db)
    assert _count(influxdb, influx_db, "shore_power_calls", "calls") == 3


def test_a_refused_file_stores_nothing(
    influxdb: LocalInfluxDB, influx_db: str, setup: tuple[Path, Path]
) -> None:
    config, tmp = setup
    bad = tmp / "bad.csv"
    text = (tmp / "calls.csv").read_text(encoding="utf-8")
    bad.write_text(text + f"413000001,{B1},2026-11-09 10:00,2026-11-09 09:00,\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["shore", "calls", "import", str(bad), "-c", str(config)])
    assert result.exit_code == 2
    assert f"{bad}:{len(CALLS) + 2}: departure is not after arrival" in result.output
    assert _count(influxdb, influx_db, "shore_calls", "departure_ms") == 0
