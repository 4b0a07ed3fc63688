"""A simulated city fleet modelled on Huai'an (淮安): seven county-level districts, stations on
the Grand Canal, the Huai River and Hongze Lake, PV in the five whole-county pilots, chargers and
shore-power berths at canal ports. Pure data: the CLI writes it as a registry file.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

# County-level districts with an approximate centre (lat, lon).
COUNTIES: dict[str, tuple[float, float]] = {
    "清江浦区": (33.55, 119.03),
    "淮安区": (33.50, 119.14),
    "淮阴区": (33.63, 119.03),
    "洪泽区": (33.29, 118.87),
    "涟水县": (33.78, 119.26),
    "盱眙县": (33.00, 118.54),
    "金湖县": (33.02, 119.02),
}
# 整县屋顶分布式光伏 pilots (five whole-county pilots in the plan).
PV_PILOTS = ("淮安区", "洪泽区", "涟水县", "盱眙县", "金湖县")
RIVERS = ("京杭运河", "淮河入海水道", "盐河", "古黄河", "二河", "淮沭新河", "苏北灌溉总渠")
LAKES = ("洪泽湖", "白马湖", "高邮湖")
PORTS = ("淮安新港", "淮阴港区", "洪泽港区", "金湖港区", "涟水港区")
PREFIX = {"water": "WQ", "air": "AQ", "shore_power": "SP", "pv": "PV", "ev_charger": "EV"}
# HJ 212-2017 system code (ST) of the stations that report over HJ 212.
HJ212_ST = {"water": "21", "air": "22"}
# Field quirks the HJ 212 intake is configured for (docs/hj212.md), one station each.
HJ212_QUIRKS: dict[str, dict[str, Any]] = {
    "WQ-004": {"crc": "modbus"},
    "AQ-005": {
        "units": {"a34004": "ng/m3", "a34002": "ng/m3"},
        "aliases": {"PM25": "a34004", "PM10": "a34002"},
    },
    "AQ-010": {"short_mn": True},
}


def fleet(per_kind: int = 24, seed: int = 7) -> list[dict[str, Any]]:
    """Registry entries for ``per_kind`` devices of each kind, the same for the same seed."""
    rnd = random.Random(seed)
    counties = list(COUNTIES)
    out: list[dict[str, Any]] = []
    for kind, prefix in PREFIX.items():
        for i in range(1, per_kind + 1):
            county = counties[(i - 1) % len(counties)]
            lat0, lon0 = COUNTIES[county]
            d: dict[str, Any] = {
                "id": f"{prefix}-{i:03d}",
                "kind": kind,
                "county": county,
                "lat": round(lat0 + rnd.uniform(-0.08, 0.08), 5),
                "lon": round(lon0 + rnd.uniform(-0.08, 0.08), 5),
            }
            if kind == "water":
                lake = county in ("洪泽区", "盱眙县", "金湖县") and i % 2 == 0
                water = LAKES[i % len(LAKES)] if lake else RIVERS[i % len(RIVERS)]
                d.update(
                    site=f"{water}{county}断面",
                    name=f"{water} {county} 自动站",
                    section_type="lake" if lake else "river",
                    assessment="national" if i % 3 == 0 else "provincial",
                )
            elif kind == "air":
                d.update(
                    site=f"{county}监测站{i}",
                    name=f"{county} 空气自动站 {i}",
                    assessment="national" if i <= max(1, per_kind // 3) else "city",
                )
            elif kind == "pv":
                d.update(
                    site=f"{county}屋顶光伏{i}",
                    capacity_kwp=rnd.choice([8, 10, 15, 30, 50]),
                    pilot=county in PV_PILOTS,
                    **_grid(county, i, per_kind),
                )
            elif kind == "ev_charger":
                d.update(site=f"{county}充电站{(i + 1) // 2}", rated_kw=rnd.choice([7, 60, 120]))
            else:
                port = PORTS[i % len(PORTS)]
                d.update(site=port, berth=f"B{(i - 1) % 9 + 1}", port=port, voltage="380V/50Hz")
            if kind in HJ212_ST:
                d.update(_hj212(d["id"], kind, i))
            out.append(d)
    out += _met_stations()
    return out


def _met_id(county: str) -> str:
    return f"MET-{list(COUNTIES).index(county) + 1:03d}"


def _met_stations() -> list[dict[str, Any]]:
    """One PV met station per county, at its centre: the irradiance its inverters are judged by
    (the simulator gives both the county's weather, devices.met.weather)."""
    return [
        {
            "id": _met_id(county),
            "kind": "met",
            "county": county,
            "lat": lat,
            "lon": lon,
            "site": f"{county}光伏气象站",
            "tilt_deg": 25,
            "azimuth_deg": 180,
        }
        for county, (lat, lon) in COUNTIES.items()
    ]


def _grid(county: str, i: int, per_kind: int) -> dict[str, Any]:
    """An inverter's met station and grid location: two transformer areas (台区) per county on
    one 10 kV feeder each, under the county's substation; derived from the index, not from the
    random stream, so adding them moved no coordinates."""
    n = (i - 1) // len(COUNTIES)  # the inverter's rank among its county's
    area = f"{county}台区{n % 2 + 1}"
    return {
        "irradiance_from": _met_id(county),
        "substation": f"{county}110kV变",
        "feeder": f"{county}10kV{n % 2 + 1}线",
        "transformer_area": area,
        "rated_kva": 200 if n % 2 == 0 else 400,
        "customer_number": f"3208{list(COUNTIES).index(county) + 1:02d}{i:06d}",
        "commissioned": f"202{3 + i % 3}-0{i % 9 + 1}-15",
    }


def _hj212(device_id: str, kind: str, i: int) -> dict[str, Any]:
    """MN (320800 = Huai'an's division code, the ST, a serial), PW and quirks of a station."""
    quirks = HJ212_QUIRKS.get(device_id)
    mn = f"320800{HJ212_ST[kind]}{i:016d}"
    if quirks and quirks.get("short_mn"):
        mn = f"HA{HJ212_ST[kind]}{i:06d}"  # older loggers with a 10-character MN
    # Derived from the id, not from the shared random stream, so adding it moved no coordinates.
    pw = f"{int(hashlib.sha256(device_id.encode()).hexdigest(), 16) % 1_000_000:06d}"
    out: dict[str, Any] = {"mn": mn, "pw": pw}
    if quirks:
        out["hj212"] = quirks
    return out
