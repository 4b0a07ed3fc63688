"""A year (2025) of compact synthetic data with known plan figures, for the report tests.

Water and air go in as station readings and come out through the real rollups
(``rollups.runner.Rollup``); PV, shore power and EV readings are written as the pipeline stores
them. Every expected figure below is worked by hand from the seeded values (GB 3838-2002 limits
and HJ 633-2012 breakpoints as in /work/shared/standards.md), never by calling the code under
test.

Water (30 assessed sections, one reading a day at 10:00 local):

- 20 sections Class II (every item within Class II), 4 Class III whose NH3-N alternates 0.6 / 1.3
  mg/L day by day (daily class III / IV, period mean 0.949 → III), 1 lake section with TP 0.04
  (lake row: III) → 25 at Class III or better;
- 3 worse: NH3-N 1.2 (IV), a lake section with TP 0.08 (lake row IV; II on the river row),
  DO 1.5 with CODMn 12 (劣V, limited by DO);
- 1 section with data on 100 days only (Class II values, too little data: not counted as good),
  1 section registered with no data at all;
- 1 station without an assessment (Class V values): not an assessed section.

→ 优Ⅲ比例 = 25 / 30 = 83.33 %.

Air (national station AQ-N01; hourly station values, HJ 212 CN 2061 style):
5 days without data, 3 days with 12 hours only (invalid, 优 values), 357 valid days: 150 优,
146 良, 30 轻度 (PM2.5), 10 轻度 (O3 8 h), 15 中度 (PM2.5), 6 重度 (PM2.5). A "city" station with
PM2.5 300 µg/m³ must not enter the city figure.

→ 优良天数比率 = 296 / 357 = 82.91 %.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

TZ = ZoneInfo("Asia/Shanghai")
YEAR_START = date(2025, 1, 1)
DAYS = [YEAR_START + timedelta(days=i) for i in range(365)]
COUNTIES = ("清江浦区", "淮安区", "淮阴区", "洪泽区", "涟水县", "盱眙县", "金湖县")
PILOTS = ("淮安区", "洪泽区", "涟水县", "盱眙县", "金湖县")


def ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def at(day: date, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=TZ)


def esc(v: str) -> str:
    return v.replace(" ", "\\ ").replace(",", "\\,").replace("=", "\\=")


def tagset(tags: dict[str, str]) -> str:
    return ",".join(f"{k}={esc(v)}" for k, v in sorted(tags.items()) if v != "")


def fieldset(fields: dict[str, Any]) -> str:
    out = []
    for k, v in fields.items():
        if isinstance(v, bool):
            out.append(f"{k}={'true' if v else 'false'}")
        elif isinstance(v, int):
            out.append(f"{k}={v}i")
        elif isinstance(v, str):
            out.append(f'{k}="{v}"')
        else:
            out.append(f"{k}={v!r}")
    return ",".join(out)


def line(measurement: str, tags: dict[str, str], fields: dict[str, Any], t: datetime) -> str:
    return f"{measurement},{tagset(tags)} {fieldset(fields)} {ms(t)}"


# ------------------------------------------------------------------------------------ water

CLASS_II = {
    "ph": 7.5,
    "do_mg_l": 6.5,
    "codmn_mg_l": 3.5,
    "cod_mg_l": 14.0,
    "bod5_mg_l": 2.5,
    "nh3n_mg_l": 0.4,
    "tp_mg_l": 0.08,
    "tn_mg_l": 0.9,
    "temp_c": 18.0,
}
# Class II values: DO 6.5, CODMn 3.5, NH3-N 0.4 and TP 0.08 (river) are Class II, COD 14 and
# BOD5 2.5 Class I, pH within 6-9: the limiting items are the four in Class II.
LIMITING_II = ("do_mg_l", "codmn_mg_l", "nh3n_mg_l", "tp_mg_l")


@dataclass(frozen=True)
class Section:
    device_id: str
    site: str
    county: str
    section_type: str
    assessment: str | None
    values: dict[str, float]
    alternate_nh3n: tuple[float, float] | None = None
    days: int = 365  # days with data (from 1 January)
    expect_class: int | None = None
    expect_limiting: tuple[str, ...] = ()
    expect_status: str = "ok"


def _sections() -> list[Section]:
    out: list[Section] = []
    n = 0

    def add(**kw: Any) -> None:
        nonlocal n
        n += 1
        county = COUNTIES[n % len(COUNTIES)]
        kw.setdefault("section_type", "river")
        kw.setdefault("assessment", "national" if n % 3 == 0 else "provincial")
        out.append(Section(device_id=f"WQ-T{n:02d}", site=f"测试{n:02d}断面", county=county, **kw))

    for _ in range(20):
        add(values=CLASS_II, expect_class=2, expect_limiting=LIMITING_II)
    for _ in range(4):
        add(
            values=CLASS_II,
            alternate_nh3n=(0.6, 1.3),
            expect_class=3,
            expect_limiting=("nh3n_mg_l",),
        )
    add(
        values={**CLASS_II, "tp_mg_l": 0.04},
        section_type="lake",
        expect_class=3,
        expect_limiting=("tp_mg_l",),
    )
    add(values={**CLASS_II, "nh3n_mg_l": 1.2}, expect_class=4, expect_limiting=("nh3n_mg_l",))
    add(
        values={**CLASS_II, "tp_mg_l": 0.08},
        section_type="lake",
        expect_class=4,
        expect_limiting=("tp_mg_l",),
    )
    add(
        values={**CLASS_II, "do_mg_l": 1.5, "codmn_mg_l": 12.0},
        expect_class=6,
        expect_limiting=("do_mg_l",),
    )
    add(
        values=CLASS_II,
        days=100,
        expect_class=2,
        expect_limiting=LIMITING_II,
        expect_status="insufficient",
    )
    add(values=CLASS_II, days=0, expect_class=None, expect_status="no_data")
    # Not assessed: must not appear among the sections at all.
    add(values={**CLASS_II, "nh3n_mg_l": 1.9}, assessment=None)
    return out


SECTIONS = _sections()
ASSESSED = [s for s in SECTIONS if s.assessment]
EXPECT_WATER = {"good": 25, "assessed": 30, "ratio_pct": 25 / 30 * 100}


def water_lines() -> Iterator[str]:
    for s in SECTIONS:
        tags = {
            "device_id": s.device_id,
            "site": s.site,
            "county": s.county,
            "section_type": s.section_type,
        }
        for i, day in enumerate(DAYS[: s.days]):
            values = dict(s.values)
            if s.alternate_nh3n is not None:
                values["nh3n_mg_l"] = s.alternate_nh3n[i % 2]
            yield line("water_quality", tags, values, at(day, 10))


# -------------------------------------------------------------------------------------- air

GOOD_1 = {
    "pm25_ug_m3": 20.0,
    "pm10_ug_m3": 40.0,
    "so2_ug_m3": 10.0,
    "no2_ug_m3": 20.0,
    "co_mg_m3": 0.5,
    "o3_ug_m3": 60.0,
}
# (category, primary pollutant, values): AQI worked by hand from the HJ 633-2012 tables.
AIR_KINDS: dict[str, tuple[int, str, dict[str, float]]] = {
    "优": (1, "", GOOD_1),  # PM10 40 → IAQI 40 = AQI
    "良": (2, "pm25_ug_m3", {**GOOD_1, "pm25_ug_m3": 60.0}),  # 50 + 25/40·50 = 81.25 → 82
    "轻度": (3, "pm25_ug_m3", {**GOOD_1, "pm25_ug_m3": 100.0}),  # 131.25 → 132
    "中度": (4, "pm25_ug_m3", {**GOOD_1, "pm25_ug_m3": 130.0}),  # 171.4 → 172
    "轻度O3": (3, "o3_8h_ug_m3", {**GOOD_1, "o3_ug_m3": 180.0}),  # 8 h: 100 + 20/55·50 → 119
    "重度": (5, "pm25_ug_m3", {**GOOD_1, "pm25_ug_m3": 200.0}),  # 200 + 50/100·100 = 250
}
MISSING_DAYS = {DAYS[i] for i in (40, 41, 42, 200, 201)}
SHORT_DAYS = {DAYS[i] for i in (100, 250, 330)}


def _air_schedule() -> dict[date, str]:
    kinds = (
        ["优"] * 150 + ["良"] * 146 + ["轻度"] * 30 + ["中度"] * 15 + ["轻度O3"] * 10 + ["重度"] * 6
    )
    random.Random(9).shuffle(kinds)
    valid_days = [d for d in DAYS if d not in MISSING_DAYS and d not in SHORT_DAYS]
    assert len(valid_days) == len(kinds) == 357
    return dict(zip(valid_days, kinds, strict=True))


AIR_SCHEDULE = _air_schedule()
EXPECT_AIR = {
    "good": 296,
    "valid": 357,
    "ratio_pct": 296 / 357 * 100,
    "categories": {1: 150, 2: 146, 3: 40, 4: 15, 5: 6, 6: 0},
    "primary": {"pm25_ug_m3": 51, "o3_8h_ug_m3": 10},
    "missing": sorted(MISSING_DAYS),
    "invalid": sorted(SHORT_DAYS),
}
AIR_STATIONS = {  # id: (site, county, assessment)
    "AQ-N01": ("市监测站", "清江浦区", "national"),
    "AQ-C01": ("城区点位", "淮阴区", "city"),
}


def air_lines() -> Iterator[str]:
    site, county, assessment = AIR_STATIONS["AQ-N01"]
    tags = {
        "device_id": "AQ-N01",
        "site": site,
        "county": county,
        "assessment": assessment,
        "data_kind": "hourly",
    }
    for day in DAYS:
        if day in MISSING_DAYS:
            continue
        hours = range(12) if day in SHORT_DAYS else range(24)
        values = GOOD_1 if day in SHORT_DAYS else AIR_KINDS[AIR_SCHEDULE[day]][2]
        for h in hours:
            yield line("air_quality", tags, values, at(day, h))
    site, county, assessment = AIR_STATIONS["AQ-C01"]
    bad = {**GOOD_1, "pm25_ug_m3": 300.0}
    tags = {**tags, "device_id": "AQ-C01", "site": site, "county": county, "assessment": "city"}
    for day in DAYS[:20]:
        for h in range(24):
            yield line("air_quality", tags, bad, at(day, h))


# --------------------------------------------------------------------------------------- PV


@dataclass(frozen=True)
class Inverter:
    device_id: str
    county: str
    capacity_kw: float
    kwh_per_kwp_day: float
    days: int = 365  # days with a register reading (from 1 January)


INVERTERS = [
    Inverter("PV-T01", "淮安区", 10, 3.0),
    Inverter("PV-T02", "洪泽区", 20, 3.0),
    Inverter("PV-T03", "涟水县", 15, 3.0),
    Inverter("PV-T04", "盱眙县", 30, 3.0),
    Inverter("PV-T05", "金湖县", 50, 3.0),
    Inverter("PV-T06", "金湖县", 8, 1.5),  # low yield: a maintenance candidate
    Inverter("PV-T07", "洪泽区", 10, 3.0, days=100),  # too little data
    Inverter("PV-T08", "清江浦区", 40, 2.5),  # not a pilot county
]
PV_BASE_KWH = 1000.0  # register at the last reading of 2024


def pv_lines() -> Iterator[str]:
    for inv in INVERTERS:
        tags = {
            "device_id": inv.device_id,
            "site": f"{inv.county}屋顶{inv.device_id}",
            "county": inv.county,
            "pilot": "true" if inv.county in PILOTS else "false",
        }
        daily = inv.capacity_kw * inv.kwh_per_kwp_day
        yield line(
            "pv_inverter",
            tags,
            {"energy_total_kwh": PV_BASE_KWH, "status": "SLEEPING"},
            at(date(2024, 12, 31), 20),
        )
        for i, day in enumerate(DAYS[: inv.days]):
            reg = PV_BASE_KWH + daily * (i + 1)
            yield line(
                "pv_inverter",
                tags,
                {"energy_total_kwh": reg, "ac_power_w": 0.0, "status": "SLEEPING"},
                at(day, 20),
            )


def pv_expect() -> dict[str, Any]:
    """Generation per inverter = days × kWp × yield (register Δ from the 2024 baseline)."""
    kwh = {i.device_id: i.capacity_kw * i.kwh_per_kwp_day * i.days for i in INVERTERS}
    return {"kwh": kwh}


# ------------------------------------------------------------------------------ shore power

SHORE = {  # device: (port, berth, county)
    "SP-T01": ("淮安新港", "B1", "淮安区"),
    "SP-T02": ("淮阴港区", "B2", "淮阴区"),
    "SP-T03": ("淮阴港区", "B3", "淮阴区"),  # registered, no data
}


def _shore_calls(device: str) -> list[tuple[int, int, int, str]]:
    """Calls as (start hour of year, berthing hours, connected hours, vessel)."""
    calls: list[tuple[int, int, int, str]] = []
    if device == "SP-T01":
        # 30 calls of 6 h (24 connected for 5 h), then 10 calls of 1 h (2 connected for 1 h).
        for k in range(30):
            calls.append((24 * 7 * k + 8, 6, 5 if k < 24 else 0, f"CNA{k:03d}"))
        for k in range(10):
            calls.append((24 * 7 * k + 80, 1, 1 if k < 2 else 0, f"CNS{k:03d}"))
    elif device == "SP-T02":
        for k in range(10):
            calls.append((24 * 10 * k + 30, 6, 5, f"CNB{k:03d}"))
    return calls


SHORE_KW = 100.0


def shore_lines() -> Iterator[str]:
    start = at(YEAR_START)
    for device in ("SP-T01", "SP-T02"):
        port, berth, county = SHORE[device]
        tags = {"device_id": device, "site": port, "county": county, "berth": berth}
        state: dict[int, tuple[str, bool]] = {}
        for h0, berth_h, conn_h, vessel in _shore_calls(device):
            for j in range(berth_h):
                # Connected from the call's second hour (or its first for a 1 h call).
                first = 0 if berth_h == 1 else 1
                state[h0 + j] = (vessel, conn_h > 0 and first <= j < first + conn_h)
        energy = 5000.0
        for h in range(365 * 24):
            vessel, connected = state.get(h, ("", False))
            fields: dict[str, Any] = {"connected": connected, "energy_kwh": energy}
            if vessel:
                fields["vessel_id"] = vessel
            yield line("shore_power", tags, fields, start + timedelta(hours=h))
            if connected:
                energy += SHORE_KW  # kWh over the next hour


def shore_expect() -> dict[str, Any]:
    t1 = _shore_calls("SP-T01")
    t2 = _shore_calls("SP-T02")
    obliged = [c for c in t1 + t2 if c[1] > 2]
    using = [c for c in obliged if c[2] > 0]
    conn_h = sum(c[2] for c in t1 + t2)
    berth_h = sum(c[1] for c in t1 + t2)
    return {
        "obliged": len(obliged),
        "using_obliged": len(using),
        "calls_ratio_pct": len(using) / len(obliged) * 100,
        "connection_hours": conn_h,
        "berthing_hours": berth_h,
        "hours_ratio_pct": conn_h / berth_h * 100,
        "kwh": conn_h * SHORE_KW,
        "sessions": sum(1 for c in t1 + t2 if c[2] > 0),
        "by_device_kwh": {
            "SP-T01": sum(c[2] for c in t1) * SHORE_KW,
            "SP-T02": sum(c[2] for c in t2) * SHORE_KW,
        },
    }


# --------------------------------------------------------------------------------------- EV

EV = {  # device: (site, county, rated_kw)
    "EV-T01": ("清江浦区充电站", "清江浦区", 60),
    "EV-T02": ("淮安区充电站", "淮安区", 60),  # January only
    "EV-T03": ("淮阴区充电站", "淮阴区", 60),  # registered, no data
}
EV_KW = 50.0
FAULT_HOURS = set(range(24 * 100, 24 * 100 + 48))  # EV-T01 faulted for 48 h from 11 April


def ev_lines() -> Iterator[str]:
    start = at(YEAR_START)
    for device, hours in (("EV-T01", 365 * 24), ("EV-T02", 31 * 24)):
        site, county, _ = EV[device]
        tags = {"device_id": device, "site": site, "county": county, "connector": "1"}
        energy = 2000.0
        for h in range(hours):
            hod = h % 24
            if device == "EV-T01" and h in FAULT_HOURS:
                status = "Faulted"
            elif device == "EV-T01" and hod in (18, 19):
                status = "Charging"
            else:
                status = "Available"
            fields = {"connector_id": 1, "status": status, "energy_kwh": energy}
            yield line("ev_charger", tags, fields, start + timedelta(hours=h))
            if status == "Charging":
                energy += EV_KW


def ev_expect() -> dict[str, Any]:
    hours = 365 * 24
    charging_days = 365 - len({h // 24 for h in FAULT_HOURS if h % 24 in (18, 19)})
    charging_h = 2 * charging_days
    available_t1 = hours - len(FAULT_HOURS)
    available = available_t1 + 31 * 24
    expected = 3 * hours
    return {
        "sessions": charging_days,
        "kwh": charging_h * EV_KW,
        "availability_pct": available / expected * 100,
        "utilisation_pct": charging_h / expected * 100,
    }


# ----------------------------------------------------------------------------------- registry


def registry_entries() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for s in SECTIONS:
        d: dict[str, Any] = {
            "id": s.device_id,
            "kind": "water",
            "site": s.site,
            "county": s.county,
            "section_type": s.section_type,
        }
        if s.assessment:
            d["assessment"] = s.assessment
        out.append(d)
    for device, (site, county, assessment) in AIR_STATIONS.items():
        out.append(
            {"id": device, "kind": "air", "site": site, "county": county, "assessment": assessment}
        )
    for inv in INVERTERS:
        out.append(
            {
                "id": inv.device_id,
                "kind": "pv",
                "site": f"{inv.county}屋顶{inv.device_id}",
                "county": inv.county,
                "capacity_kw": inv.capacity_kw,
                "pilot": inv.county in PILOTS,
            }
        )
    for device, (port, berth, county) in SHORE.items():
        out.append(
            {
                "id": device,
                "kind": "shore_power",
                "site": port,
                "county": county,
                "berth": berth,
                "port": port,
            }
        )
    for device, (site, county, rated) in EV.items():
        out.append(
            {"id": device, "kind": "ev_charger", "site": site, "county": county, "rated_kw": rated}
        )
    return out


def write_registry(path: Path) -> Path:
    path.write_text(
        yaml.safe_dump({"devices": registry_entries()}, allow_unicode=True, sort_keys=False),
        encoding="utf-8",
    )
    return path


def all_lines() -> Iterator[str]:
    yield from water_lines()
    yield from air_lines()
    yield from pv_lines()
    yield from shore_lines()
    yield from ev_lines()
