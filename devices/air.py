"""Ambient air monitor (环境空气自动监测站): six criteria pollutants and weather.

Each reading carries its real-time AQI per HJ 633 (1 h tables; PM on its 24 h table), with the
edition chosen by the reading's date in the city's time zone and written as tag ``aqi_edition``.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, ClassVar
from zoneinfo import ZoneInfo

from devices.aqi import (
    BREAKPOINTS,
    CO,
    EDITION_2026_FROM,
    IAQI_STEPS,
    NO2,
    O3,
    PM10,
    PM25,
    SO2,
    SO2_1H_CEILING_IAQI,
    Averaging,
    Edition,
    aqi_daily,
    category_of,
    edition_for,
    iaqi,
)
from devices.base import DeviceKind, Glance, Label, Reading, rng
from devices.lineproto import FieldValue
from devices.registry import Assessment, Device, Facts


class AirReading(Reading):
    """One air-quality reading; concentrations in µg/m³ except CO in mg/m³."""

    pm25_ug_m3: Annotated[float, rng(0, 2000, "µg/m³")] | None = None
    pm10_ug_m3: Annotated[float, rng(0, 3000, "µg/m³")] | None = None
    so2_ug_m3: Annotated[float, rng(0, 10_000, "µg/m³")] | None = None
    no2_ug_m3: Annotated[float, rng(0, 5000, "µg/m³")] | None = None
    o3_ug_m3: Annotated[float, rng(0, 2000, "µg/m³")] | None = None
    co_mg_m3: Annotated[float, rng(0, 200, "mg/m³")] | None = None
    temp_c: Annotated[float, rng(-60, 60, "°C")] | None = None
    rh_pct: Annotated[float, rng(0, 100, "%")] | None = None
    pressure_hpa: Annotated[float, rng(500, 1100, "hPa")] | None = None
    wind_speed_m_s: Annotated[float, rng(0, 75, "m/s")] | None = None
    wind_dir_deg: Annotated[float, rng(0, 360, "°")] | None = None

    MEASURED: ClassVar[tuple[str, ...]] = (
        "pm25_ug_m3",
        "pm10_ug_m3",
        "so2_ug_m3",
        "no2_ug_m3",
        "o3_ug_m3",
        "co_mg_m3",
        "temp_c",
        "rh_pct",
        "pressure_hpa",
        "wind_speed_m_s",
        "wind_dir_deg",
    )


POLLUTANTS = ("pm25_ug_m3", "pm10_ug_m3", "so2_ug_m3", "no2_ug_m3", "o3_ug_m3", "co_mg_m3")


class Settings:
    """Process-wide AQI settings, set once at start-up from config."""

    timezone: ZoneInfo = ZoneInfo("Asia/Shanghai")
    forced_edition: Edition | None = None


def configure(tz: str = "Asia/Shanghai", forced_edition: Edition | None = None) -> None:
    """Set the city's time zone (it decides a reading's date) and an optional forced edition."""
    Settings.timezone = ZoneInfo(tz)
    Settings.forced_edition = forced_edition


# The first instant of EDITION_2026_FROM in Settings.timezone (epoch ms), for the time zone it
# was computed for: a reading's local date is on or after that day exactly when its timestamp is
# on or after this instant, so the edition needs no datetime per reading (it is asked twice per
# reading; the timing is in docs/performance.md, "Why the code is shaped this way").
_switch: tuple[ZoneInfo | None, int] = (None, 0)


def _edition(r: AirReading) -> Edition:
    global _switch
    if Settings.forced_edition is not None:
        return Settings.forced_edition
    tz = Settings.timezone
    if _switch[0] is not tz:
        start = datetime.combine(EDITION_2026_FROM, time(0), tzinfo=tz)
        _switch = (tz, int(start.timestamp() * 1000))
    return "2026" if r.ts_ms() >= _switch[1] else "2012"


# HJ 633 real-time tables as integer segments (bp_lo, bp_hi, iaqi_lo, iaqi_hi), per edition and
# pollutant, in the order aqi_realtime() assesses them (which is also the primary-pollutant
# order): SO2, NO2, CO, O3 on their 1 h tables, PM10 and PM2.5 on their 24 h tables.
_REALTIME: tuple[tuple[str, Averaging], ...] = (
    (SO2, "1h"),
    (NO2, "1h"),
    (CO, "1h"),
    (O3, "1h"),
    (PM10, "24h"),
    (PM25, "24h"),
)
_SEGMENTS = {
    edition: tuple(
        (
            pollutant,
            tuple(
                (table[k - 1], table[k], IAQI_STEPS[k - 1], IAQI_STEPS[k])
                for k in range(1, len(table))
            ),
        )
        for pollutant, averaging in _REALTIME
        for table in [BREAKPOINTS[edition][(pollutant, averaging)]]
    )
    for edition in BREAKPOINTS
}
_SCALES = (1, 10, 100, 1000, 10_000, 100_000, 1_000_000)


def _iaqi_exact(
    pollutant: str, c: float, segments: tuple[tuple[int, int, int, int], ...], edition: Edition
) -> int:
    """HJ 633 eq. (1) on the decimal the device sent, in integers; the same value as aqi.iaqi.

    aqi.iaqi works in Fractions where its float shortcut is unsafe (at breakpoints, where float
    error would change the rounded-up result); a decimal with up to 6 places is m / 10**d
    exactly, so integers give the same result always, several times faster than
    aqi.aqi_realtime (docs/performance.md, "Why the code is shaped this way"). Other values
    (1/3 …) take aqi.iaqi itself.
    """
    for scale in _SCALES:
        m = round(c * scale)
        if m / scale == c:  # c is the double nearest m / scale: the decimal the device sent
            break
    else:
        return iaqi(pollutant, c, "24h" if pollutant in (PM10, PM25) else "1h", edition)
    for bp_lo, bp_hi, i_lo, i_hi in segments:
        if m <= bp_hi * scale:
            # Rounded up, as HJ 633 requires: ceil(a / b) == -(-a // b) for b > 0.
            num = (i_hi - i_lo) * (m - bp_lo * scale)
            return i_lo - (-num // ((bp_hi - bp_lo) * scale))
    if pollutant == SO2:
        # SO2 1 h above 800 µg/m³ is not interpolated: IAQI 200 (2026; 2012 without a 24 h
        # mean, which a single reading does not have). See aqi.iaqi.
        return SO2_1H_CEILING_IAQI
    return IAQI_STEPS[-1]  # above the top breakpoint


def realtime_aqi(r: AirReading, edition: Edition) -> tuple[int, int, str] | None:
    """(AQI, category, comma-joined primary pollutants) of one reading, or None without any
    pollutant: the same as aqi.aqi_realtime for a single reading (tests compare the two)."""
    best = -1
    primary: list[str] = []
    for pollutant, segments in _SEGMENTS[edition]:
        c = getattr(r, pollutant)
        if c is None:
            continue
        sub = _iaqi_exact(pollutant, c, segments, edition)
        if sub > best:
            best, primary = sub, [pollutant]
        elif sub == best:
            primary.append(pollutant)
    if best < 0:
        return None
    # HJ 633: a primary pollutant is named only when AQI > 50; ties name every pollutant.
    return best, category_of(best), ",".join(primary) if best > 50 else ""


def derive(r: AirReading, device: Device) -> Iterator[tuple[str, FieldValue]]:
    """Real-time AQI, category and primary pollutant(s) of this reading."""
    result = realtime_aqi(r, _edition(r))
    if result is not None:
        yield "aqi", result[0]
        yield "aqi_category", result[1]
        if result[2]:
            yield "primary_pollutant", result[2]


def derive_daily(r: AirReading, device: Device) -> Iterator[tuple[str, FieldValue]]:
    """HJ 633 daily AQI of a day's means (HJ 212 CN 2031): the 24 h tables; a 24 h O3 mean has
    no table of its own."""
    day = datetime.fromtimestamp(r.ts_ms() / 1000, tz=UTC).astimezone(Settings.timezone)
    edition = edition_for(day.date(), Settings.forced_edition)
    result = aqi_daily({p: getattr(r, p) for p in POLLUTANTS}, edition)
    if result is not None:
        yield "aqi", result.aqi
        yield "aqi_category", result.category
        if result.primary:
            yield "primary_pollutant", ",".join(result.primary)


def derive_tags(r: AirReading, device: Device) -> Iterator[tuple[str, str]]:
    """The HJ 633 edition the AQI was computed with."""
    if (
        r.pm25_ug_m3 is not None
        or r.pm10_ug_m3 is not None
        or r.so2_ug_m3 is not None
        or r.no2_ug_m3 is not None
        or r.o3_ug_m3 is not None
        or r.co_mg_m3 is not None
    ):
        yield "aqi_edition", _edition(r)


def simulate(
    device: Device, now: datetime, rnd: random.Random, state: dict[str, Any]
) -> dict[str, Any]:
    """Plausible levels: traffic peaks in NO2 and CO, an afternoon O3 peak, slow PM drift."""
    pm = state["pm"] = min(
        250.0, max(8.0, state.get("pm", rnd.uniform(25, 70)) + rnd.gauss(0, 1.5))
    )
    hour = now.hour + now.minute / 60
    rush = math.exp(-((hour - 8) ** 2) / 3) + math.exp(-((hour - 18) ** 2) / 3)
    sun = max(0.0, math.sin((hour - 7) / 12 * math.pi))
    return {
        "pm25_ug_m3": round(pm, 1),
        "pm10_ug_m3": round(pm * rnd.uniform(1.4, 1.8), 1),
        "so2_ug_m3": round(max(1.0, 8 + rnd.gauss(0, 1)), 1),
        "no2_ug_m3": round(max(2.0, 20 + 35 * rush + rnd.gauss(0, 3)), 1),
        "o3_ug_m3": round(max(2.0, 30 + 120 * sun + rnd.gauss(0, 5)), 1),
        "co_mg_m3": round(max(0.1, 0.5 + 0.6 * rush + rnd.gauss(0, 0.05)), 2),
        "temp_c": round(15 + 8 * sun + rnd.gauss(0, 0.3), 1),
        "rh_pct": round(min(100.0, max(5.0, 70 - 25 * sun + rnd.gauss(0, 2))), 1),
        "pressure_hpa": round(1013 + rnd.gauss(0, 0.5), 1),
        "wind_speed_m_s": round(max(0.0, 2.5 + rnd.gauss(0, 0.8)), 1),
        "wind_dir_deg": round(rnd.uniform(0, 359.9), 0),
    }


@functools.lru_cache(maxsize=512)
def _city_pm25(day: date) -> float:
    """The city's PM2.5 level of a day (µg/m³), the same for every station: a weather cycle of
    about ten days, and on about one day in six a pollution episode; a function of the date,
    so a history written twice is the same history."""
    rnd = random.Random(day.toordinal())
    level = 26 + 14 * math.sin(day.toordinal() * 2 * math.pi / 10.5)
    if rnd.random() < 0.17:
        level += rnd.uniform(45, 85)
    return level


@functools.lru_cache(maxsize=512)
def _sunshine(day: date) -> float:
    """How much of the clear-sky ozone a day makes (cloud, a cool season): 0.5 to 1."""
    return random.Random(day.toordinal() * 5 + 1).uniform(0.5, 1.0)


def history(
    device: Device, now: datetime, rnd: random.Random, state: dict[str, Any], step: timedelta
) -> dict[str, Any]:
    """Readings of the past: the simulator, with its slow PM drift pulled towards the city's
    level of the day (so some days are poor), higher at night and in the morning, when the
    boundary layer is low, and less ozone on cloudy days."""
    site = state.setdefault("site", rnd.uniform(0.85, 1.2))
    hour = now.hour + now.minute / 60
    today, tomorrow = _city_pm25(now.date()), _city_pm25(now.date() + timedelta(days=1))
    level = today + (tomorrow - today) * max(0.0, hour - 18) / 6  # weather changes overnight
    target = level * site * (1 + 0.25 * math.cos((hour - 5) / 24 * 2 * math.pi))
    pull = min(1.0, step.total_seconds() / 3600)
    pm = state.get("pm", target)
    state["pm"] = pm + (target - pm) * pull
    out = simulate(device, now, rnd, state)
    out["o3_ug_m3"] = round(max(2.0, out["o3_ug_m3"] * _sunshine(now.date())), 1)
    return out


class AirFacts(Facts):
    """A monitor's registry facts: the level that assesses it (the city's AQI is computed from
    the ``national`` monitors, HJ 663)."""

    assessment: Assessment | None = None


def facts(device: Device) -> AirFacts:
    """The monitor's typed registry facts."""
    return AirFacts.of(device)


# HJ 633 AQI categories as the standard names them; English glosses for the en console.
CATEGORY_NAMES = {
    1: Label("优", "good"),
    2: Label("良", "moderate"),
    3: Label("轻度污染", "lightly polluted"),
    4: Label("中度污染", "moderately polluted"),
    5: Label("重度污染", "heavily polluted"),
    6: Label("严重污染", "severely polluted"),
}
PRIMARY_LABEL = Label("首要污染物", "primary pollutant")


def category_text(v: FieldValue, lang: str) -> str:
    """HJ 633 category name (Chinese as in the standard; with an English gloss in en)."""
    if isinstance(v, int | float) and not isinstance(v, bool) and int(v) in CATEGORY_NAMES:
        name = CATEGORY_NAMES[int(v)]
        return name.zh if lang == "zh" else f"{name.zh} ({name.en})"
    return str(v)


def summary(g: Glance) -> list[str]:
    """The latest AQI with its category, and the primary pollutant(s)."""
    out = []
    if (a := g.value("aqi")) is not None:
        category = g.value("aqi_category")
        out.append(
            f"AQI {g.number(float(a or 0))} "
            + ("—" if category is None else category_text(category, g.lang))
        )
    if pp := g.value("primary_pollutant"):
        out.append(f"{PRIMARY_LABEL.pick(g.lang)} {pp}")
    return out


KIND = DeviceKind(
    name="air",
    measurement="air_quality",
    model=AirReading,
    description="Ambient air monitor",
    registry_tags=("assessment",),
    derive=derive,
    derive_tags=derive_tags,
    derived_fields={"aqi": "AQI", "aqi_category": "HJ 633 category 1–6", "primary_pollutant": ""},
    derived_tag_keys=("aqi_edition",),
    derive_daily=derive_daily,
    label=Label("空气自动站", "Air station"),
    facts_model=AirFacts,
    fact_labels={"assessment": Label("考核级别", "Assessment")},
    key_fields=("aqi", "aqi_category", "primary_pollutant", "pm25_ug_m3"),
    summary=summary,
    value_texts={"aqi_category": category_text},
    dashboard="envgrid-air",
    simulate=simulate,
    bad_sample={"pm25_ug_m3": -3.0},
    history=history,
)
