"""Hourly and daily rollups of air and water readings, and the city figures (pure, no I/O).

The I/O side (``rollups/runner.py``) fetches what InfluxDB holds for a local day, hands it here as
:class:`Station` samples, and writes back the :class:`Point` s this module returns. Everything a
report reads is decided here:

- **Windows.** Hours and days are local to the city's time zone: a day runs from local midnight to
  the next (23 or 25 hours across a DST change), its hours are consecutive 1 h windows from local
  midnight. A rollup point is stamped with its window's start, so recomputing a window overwrites
  the same point (same series, same time).
- **Valid values only.** The normal field names hold valid values only: the HJ 212 intake stores a
  value flagged invalid (F, M, D, C, T, B) as ``<field>_invalid`` with ``<field>_flag``, never under
  ``<field>``. Rollups read the normal names, so flagged values never enter a mean.
- **Hourly value.** The mean of the hour's readings; a station-supplied hourly value (HJ 212
  CN 2061, stored with tag ``data_kind=hourly`` at the start of its hour) replaces it field by
  field. GB 3095-2012 Table 4 (and HJ 663-2013): an air 1 h mean needs ≥ 45 minutes of sampling
  in the hour (``Validity.hour_min_minutes``). Sampling time is *covered time*: each sample counts
  for the device's reporting interval, capped at the gap to its next sample and at the hour's
  end, so a station reporting every 5 minutes, every minute or every 30 s covers its hours with no
  setting changed. The interval is the registry's ``interval`` fact, else learned from the
  device's own spacing (the median gap between its readings in the fetched span), and never
  more than ``Validity.max_sample_interval_ms``: a spot value sent once an hour covers at most
  that, not the hour (a station's own hourly means come as HJ 212 CN 2061 hourly values).
- **Daily value.** The mean of the day's valid hourly values; valid with ≥ 20 of them (GB 3095).
  O3: the 8 h moving mean at hour h is the mean of hours h-7..h, valid with ≥ 6 values (GB 3095);
  the daily maximum 8 h mean is the largest valid one among the windows lying inside the day (end
  hours 08:00..24:00, HJ 663-2013), valid with ≥ 14 such windows.
- **AQI** (HJ 633, ``devices.aqi``): hourly from the 1 h means (real-time AQI), daily from the 24 h
  means and the daily maximum 8 h O3; the edition follows the window's local date unless forced.
  The AQI uses every statistic there is; ``valid`` says whether the window counts (a report of
  good days counts only ``valid`` days).
- **Water class** (GB 3838-2002, ``devices.gb3838``) of the window's mean concentrations, with the
  lake TP row for lake sections.
- **City figures.** ``city_air_daily``: the national method (HJ 663) — each city hourly value is
  the mean of the valid hourly values of the stations whose ``assessment`` is ``national``, and the
  city's day is computed from that series as for a station. ``water_section_daily``: each assessed
  section's daily class and ``meets_iii`` (优Ⅲ), from its stations' daily means.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

from devices import air, water
from devices.aqi import O3, POLLUTANTS, AqiResult, Edition, aqi_daily, aqi_realtime, edition_for
from devices.base import DeviceKind
from devices.gb3838 import ASSESSED_ITEMS, SectionType, section_class
from devices.lineproto import FieldValue, encode_line
from devices.registry import Device

Sample = tuple[int, float]  # (epoch ms, value)

HOUR_MS = 3_600_000
MINUTE_MS = 60_000

# Tag that marks how a stored point was produced; "hourly" = a station's own hourly value
# (HJ 212 CN 2061). Raw readings carry no data_kind, or "rtd" / "minute".
DATA_KIND_TAG = "data_kind"
STATION_HOURLY = "hourly"

AIR_HOURLY = "air_quality_hourly"
AIR_DAILY = "air_quality_daily"
WATER_HOURLY = "water_quality_hourly"
WATER_DAILY = "water_quality_daily"
CITY_AIR_DAILY = "city_air_daily"
WATER_SECTION_DAILY = "water_section_daily"

# Daily O3 statistics. The 8 h key is the one devices.aqi reports the O3 8 h sub-index under.
O3_8H = "o3_8h_ug_m3"
O3_1H_MAX = "o3_1h_max_ug_m3"
# Fields that are angles: averaged as unit vectors, not as numbers (359° and 1° average to 0°).
CIRCULAR_FIELDS = frozenset({"wind_dir_deg"})
# Stations named in a city day's invalid_reason (a string field: kept short for the report).
_REASON_STATIONS = 5
# GB 3095 criteria pollutants whose daily statistics decide whether an air day is valid.
DAILY_CRITERIA = ("so2_ug_m3", "no2_ug_m3", "co_mg_m3", "pm10_ug_m3", "pm25_ug_m3", O3_8H)


@dataclass(frozen=True, slots=True)
class Validity:
    """Data-validity rules; the defaults are GB 3095-2012 Table 4 and HJ 663-2013."""

    hour_min_minutes: int = 45  # air 1 h mean: minutes of the hour its samples cover
    # The most one sample can stand for (envgrid's choice, not a national number; configurable).
    max_sample_interval_ms: int = 15 * MINUTE_MS
    day_min_hours: int = 20  # air 24 h mean: valid hourly values in the day
    o3_8h_min_hours: int = 6  # O3 8 h moving mean: valid hourly values in its 8 hours
    o3_8h_min_windows: int = 14  # daily max 8 h O3: valid 8 h means ending 08:00..24:00
    water_day_min_hours: int = 1  # water daily mean: hours with a value (no national rule)


@dataclass(frozen=True, slots=True)
class Options:
    """How to roll up: the city's time zone, validity rules and a forced HJ 633 edition."""

    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))
    validity: Validity = field(default_factory=Validity)
    forced_edition: Edition | None = None


@dataclass(frozen=True, slots=True)
class Window:
    """A half-open time window [start_ms, end_ms) in epoch milliseconds."""

    start_ms: int
    end_ms: int

    def __contains__(self, ts_ms: object) -> bool:
        return isinstance(ts_ms, int) and self.start_ms <= ts_ms < self.end_ms


@dataclass(frozen=True, slots=True)
class HourValue:
    """One field's value for one hour: the mean, the values behind it, validity, its source."""

    value: float
    n: int
    valid: bool
    station: bool = False  # the station's own hourly value (HJ 212 CN 2061), not our mean
    covered_ms: int | None = None  # time the samples cover (None for a station's value)


@dataclass(frozen=True, slots=True)
class Aggregate:
    """A statistic over hours or 8 h windows: its value, how many valid inputs, validity."""

    value: float
    n: int
    valid: bool


@dataclass(slots=True)
class Station:
    """One station's valid samples for a period, per field, and the tags of its rollups."""

    tags: dict[str, str]
    raw: dict[str, list[Sample]] = field(default_factory=dict)
    hourly: dict[str, list[Sample]] = field(default_factory=dict)  # station-supplied, hour start
    # Registry level of assessment ("national", "provincial", "city"; "" = not assessed). Kept
    # apart from the tags: water points carry no assessment tag, yet sections are chosen by it.
    assessment: str = ""
    # The registry's reporting interval (ms); None: learned from the samples (sample_interval).
    interval_ms: int | None = None
    # Samples a review mark left out: (sample time, field, why), for the points' ``left_out``.
    left_out: list[tuple[int, str, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Interval:
    """What one sample of a station counts for, and where that figure came from."""

    ms: int
    source: str  # "registry", "learned" or "default" (too few samples to learn from)
    capped: bool = False  # the registry or learned figure exceeded max_sample_interval_ms

    def describe(self) -> str:
        """E.g. ``5 min (learned)``, ``60 min learned, counted as 15 min``."""
        if self.capped:
            return f"{self.source} interval over the cap, counted as {_minutes(self.ms)} min"
        return f"{_minutes(self.ms)} min ({self.source})"


def _minutes(ms: int) -> str:
    return f"{ms / MINUTE_MS:g}"


@dataclass(frozen=True, slots=True)
class Point:
    """A rollup result as an InfluxDB point."""

    measurement: str
    tags: dict[str, str]
    fields: dict[str, FieldValue]
    ts_ms: int

    def line(self) -> str | None:
        """The point as line protocol (ms precision); None if it has no storable field."""
        return encode_line(self.measurement, self.tags.items(), self.fields.items(), self.ts_ms)


# ------------------------------------------------------------------------------------ windows


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def day_window(day: date, tz: ZoneInfo) -> Window:
    """The local day ``day`` as a UTC window: local midnight to the next local midnight."""
    start = datetime(day.year, day.month, day.day, tzinfo=tz)
    nxt = day + timedelta(days=1)
    return Window(_ms(start), _ms(datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz)))


def hour_windows(day: date, tz: ZoneInfo) -> list[Window]:
    """The hours of a local day: 1 h windows from local midnight (23 or 25 across DST)."""
    d = day_window(day, tz)
    return [Window(t, min(t + HOUR_MS, d.end_ms)) for t in range(d.start_ms, d.end_ms, HOUR_MS)]


def local_date(ts_ms: int, tz: ZoneInfo) -> date:
    """The local calendar date of an instant."""
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).astimezone(tz).date()


def local_days(start_ms: int, end_ms: int, tz: ZoneInfo) -> list[date]:
    """The local dates whose day overlaps [start_ms, end_ms), in order."""
    if end_ms <= start_ms:
        return []
    days = []
    d = local_date(start_ms, tz)
    while day_window(d, tz).start_ms < end_ms:
        days.append(d)
        d += timedelta(days=1)
    return days


def edition_of(day: date, opts: Options) -> Edition:
    """The HJ 633 edition for a window on local date ``day`` (forced in config, or by date)."""
    return edition_for(day, opts.forced_edition)


# -------------------------------------------------------------------------------- statistics


def mean(values: Sequence[float]) -> float:
    """Arithmetic mean with an exactly rounded sum (same inputs, same result, any order)."""
    return math.fsum(values) / len(values)


def circular_mean_deg(values: Sequence[float]) -> float:
    """Mean direction of angles in degrees, in [0, 360)."""
    s = math.fsum(math.sin(math.radians(v)) for v in values)
    c = math.fsum(math.cos(math.radians(v)) for v in values)
    deg = math.degrees(math.atan2(s, c)) % 360.0
    return 0.0 if math.isclose(deg, 360.0) else deg


def _average(name: str, values: Sequence[float]) -> float:
    return circular_mean_deg(values) if name in CIRCULAR_FIELDS else mean(values)


def covered_ms(timestamps: Sequence[int], interval_ms: int, end_ms: int | None = None) -> int:
    """Time that samples at ``timestamps`` cover: each counts for ``interval_ms``, capped at the
    gap to the next sample and at ``end_ms`` (the window's end; the last sample + interval
    when None). Two samples with one stamp count once."""
    ts = sorted(set(timestamps))
    total = 0
    for i, t in enumerate(ts):
        span = interval_ms
        if i + 1 < len(ts):
            span = min(span, ts[i + 1] - t)
        if end_ms is not None:
            span = min(span, end_ms - t)
        total += max(span, 0)
    return total


def hour_value(
    name: str,
    samples: Sequence[Sample],
    min_minutes: int,
    station: Sample | None = None,
    *,
    interval_ms: int = MINUTE_MS,
    end_ms: int | None = None,
) -> HourValue | None:
    """One field's hourly value: the station's own value if given, else the samples' mean.

    The mean is valid when the samples cover ≥ ``min_minutes`` of the hour (:func:`covered_ms`,
    each sample standing for ``interval_ms``); ``end_ms`` is the hour's end.
    """
    if station is not None:
        return HourValue(value=station[1], n=1, valid=True, station=True)
    if not samples:
        return None
    values = [v for _, v in samples]
    covered = covered_ms([ts for ts, _ in samples], interval_ms, end_ms)
    return HourValue(
        _average(name, values), len(values), covered >= min_minutes * MINUTE_MS, False, covered
    )


def sample_interval(station: Station, max_ms: int) -> Interval:
    """What one of the station's samples counts for: the registry's interval, else the median
    gap between its distinct sample times (all fields together), capped at ``max_ms``. With
    fewer than two sample times there is nothing to learn from: one minute, the finest
    resolution GB 3095's minute count speaks of."""
    if station.interval_ms is not None:
        ms, source = station.interval_ms, "registry"
    else:
        stamps = sorted({ts for samples in station.raw.values() for ts, _ in samples})
        gaps = sorted(b - a for a, b in pairwise(stamps))
        if not gaps:
            return Interval(MINUTE_MS, "default")
        ms, source = gaps[len(gaps) // 2], "learned"
    return Interval(max_ms, source, True) if ms > max_ms else Interval(ms, source)


def hourly_values(
    station: Station,
    hours: Sequence[Window],
    fields: Iterable[str],
    min_minutes: int,
    interval_ms: int = MINUTE_MS,
) -> list[dict[str, HourValue]]:
    """Per hour (in ``hours`` order), each field's :class:`HourValue`; absent fields left out.

    ``interval_ms``: what one sample counts for (:func:`sample_interval`).
    """
    starts = [h.start_ms for h in hours]
    out: list[dict[str, HourValue]] = [{} for _ in hours]

    def index(ts: int) -> int | None:
        i = bisect_right(starts, ts) - 1
        return i if i >= 0 and ts in hours[i] else None

    for name in fields:
        buckets: list[list[Sample]] = [[] for _ in hours]
        for s in station.raw.get(name, ()):
            if (i := index(s[0])) is not None:
                buckets[i].append(s)
        supplied: list[Sample | None] = [None] * len(hours)
        for s in sorted(station.hourly.get(name, ())):
            if (i := index(s[0])) is not None:
                supplied[i] = s  # several for one hour (a resend): the latest stamp wins
        for i in range(len(hours)):
            hv = hour_value(
                name,
                buckets[i],
                min_minutes,
                supplied[i],
                interval_ms=interval_ms,
                end_ms=hours[i].end_ms,
            )
            if hv is not None:
                out[i][name] = hv
    return out


def daily_mean(name: str, hours: Sequence[HourValue | None], min_hours: int) -> Aggregate | None:
    """The day's mean of the valid hourly values; valid with ≥ ``min_hours`` of them."""
    values = [h.value for h in hours if h is not None and h.valid]
    if not values:
        return None
    return Aggregate(_average(name, values), len(values), len(values) >= min_hours)


def moving_8h(hourly: Sequence[float | None], min_hours: int) -> list[Aggregate | None]:
    """8 h moving means: item h is the mean of hours h-7..h that have a value (None for h < 7).

    Valid with ≥ ``min_hours`` values (GB 3095); None when none of the 8 hours has one.
    """
    out: list[Aggregate | None] = [None] * min(7, len(hourly))
    for h in range(7, len(hourly)):
        values = [v for v in hourly[h - 7 : h + 1] if v is not None]
        out.append(
            Aggregate(mean(values), len(values), len(values) >= min_hours) if values else None
        )
    return out


def daily_max_8h(
    hourly: Sequence[float | None], min_hours: int, min_windows: int
) -> Aggregate | None:
    """The day's maximum valid 8 h moving mean over the windows inside the day (h = 7..).

    ``hourly`` holds the day's valid hourly values (None where there is none); ``n`` is the
    number of valid windows, valid with ≥ ``min_windows`` of them (HJ 663: 14).
    """
    windows = [w for w in moving_8h(hourly, min_hours)[7:] if w is not None and w.valid]
    if not windows:
        return None
    return Aggregate(max(w.value for w in windows), len(windows), len(windows) >= min_windows)


def _valid_series(hours: Sequence[Mapping[str, HourValue]], name: str) -> list[float | None]:
    out: list[float | None] = []
    for h in hours:
        hv = h.get(name)
        out.append(hv.value if hv is not None and hv.valid else None)
    return out


# ----------------------------------------------------------------------------- field writing


def _aqi_fields(result: AqiResult | None) -> dict[str, FieldValue]:
    if result is None:
        return {}
    # primary_pollutant is always written ("" when AQI ≤ 50): a recomputed point must overwrite
    # an earlier primary pollutant, and InfluxDB keeps fields a rewrite leaves out.
    return {
        "aqi": result.aqi,
        "aqi_category": result.category,
        "primary_pollutant": ",".join(result.primary),
        "good_day": result.good,
    }


def _hour_fields(values: Mapping[str, HourValue], fields: Sequence[str]) -> dict[str, FieldValue]:
    out: dict[str, FieldValue] = {}
    for name in fields:
        hv = values.get(name)
        if hv is not None:
            out[name] = hv.value
            out[f"{name}_n"] = hv.n
            if hv.covered_ms is not None:
                out[f"{name}_covered_min"] = round(hv.covered_ms / MINUTE_MS, 2)
    return out


def _source(values: Mapping[str, HourValue]) -> str:
    kinds = {hv.station for hv in values.values()}
    return "mixed" if len(kinds) > 1 else "station" if True in kinds else "computed"


def _air_hour_point(
    measurement: str,
    tags: Mapping[str, str],
    window: Window,
    values: Mapping[str, HourValue],
    fields: Sequence[str],
    edition: Edition,
    interval: Interval | None = None,
) -> Point:
    out = _hour_fields(values, fields)
    result = aqi_realtime({p: values[p].value for p in POLLUTANTS if p in values}, edition)
    out.update(_aqi_fields(result))
    out.pop("good_day", None)  # 优良天 is a daily notion
    out["valid"] = all(p in values and values[p].valid for p in POLLUTANTS)
    out["source"] = _source(values)
    if interval is not None:
        out["interval_s"] = interval.ms / 1000
    return Point(measurement, {**tags, "aqi_edition": edition}, out, window.start_ms)


def _day_reason(
    stats: Mapping[str, Aggregate],
    hours: Sequence[Mapping[str, HourValue]],
    v: Validity,
    interval: Interval | None,
) -> str:
    """Why an air day is not valid, one clause per criterion that fails ("" when valid): how
    many valid hours (or 8 h means) there were of how many needed and, where hours had data yet
    too little covered time, the most any hour covered and what a sample counted for."""
    parts = []
    for c in DAILY_CRITERIA:
        agg = stats.get(c)
        if agg is not None and agg.valid:
            continue
        n = agg.n if agg is not None else 0
        if c == O3_8H:
            parts.append(f"{c}: {n} valid 8 h means of {v.o3_8h_min_windows} needed")
            continue
        text = f"{c}: {n} valid hours of {v.day_min_hours} needed"
        short = [hv.covered_ms for h in hours if (hv := h.get(c)) and not hv.valid]
        covered = [ms for ms in short if ms is not None]
        if covered:
            text += (
                f" ({len(covered)} h with data cover at most {_minutes(max(covered))} of "
                f"{v.hour_min_minutes} min"
                + (f"; a sample counts {interval.describe()}" if interval else "")
                + ")"
            )
        parts.append(text)
    return "; ".join(parts)


def _air_day_fields(
    hours: Sequence[Mapping[str, HourValue]],
    fields: Sequence[str],
    edition: Edition,
    v: Validity,
    interval: Interval | None = None,
) -> dict[str, FieldValue]:
    out: dict[str, FieldValue] = {}
    stats: dict[str, Aggregate] = {}
    for name in fields:
        if name == O3:
            continue  # O3 has no 24 h statistic: its daily figures are the 8 h and 1 h maxima
        agg = daily_mean(name, [h.get(name) for h in hours], v.day_min_hours)
        if agg is not None:
            stats[name] = agg
    o3 = _valid_series(hours, O3)
    if (o3_8h := daily_max_8h(o3, v.o3_8h_min_hours, v.o3_8h_min_windows)) is not None:
        stats[O3_8H] = o3_8h
    o3_values = [x for x in o3 if x is not None]
    if o3_values:
        stats[O3_1H_MAX] = Aggregate(max(o3_values), len(o3_values), True)
    for name, agg in stats.items():
        out[name] = agg.value
        out[f"{name}_n"] = agg.n
    result = aqi_daily(
        {p: stats[p].value for p in POLLUTANTS if p in stats},
        edition,
        o3_8h_max=stats[O3_8H].value if O3_8H in stats else None,
        o3_1h_max=stats[O3_1H_MAX].value if O3_1H_MAX in stats else None,
    )
    out.update(_aqi_fields(result))
    out["valid"] = all(c in stats and stats[c].valid for c in DAILY_CRITERIA)
    # Always written ("" when valid) so a recomputed day overwrites an earlier reason.
    out["invalid_reason"] = _day_reason(stats, hours, v, interval)
    return out


# ------------------------------------------------------------------------------ review marks


def left_out_by_hour(station: Station, hours: Sequence[Window]) -> list[list[tuple[str, str]]]:
    """Per hour, the (field, why) pairs a review mark left out, in first-seen order."""
    starts = [h.start_ms for h in hours]
    out: list[list[tuple[str, str]]] = [[] for _ in hours]
    for ts, name, why in station.left_out:
        i = bisect_right(starts, ts) - 1
        if i >= 0 and ts in hours[i] and (name, why) not in out[i]:
            out[i].append((name, why))
    return out


def _hour_text(pairs: Sequence[tuple[str, str]]) -> str:
    return "; ".join(f"{name}: {why}" for name, why in pairs)


def _day_left_out(
    per_hour: Sequence[Sequence[tuple[str, str]]], hours: Sequence[Window], tz: ZoneInfo
) -> str:
    """The hours left out in a day, e.g. ``pm25_ug_m3 10:00-12:00: maintenance (mark 3 by a)``:
    per field and reason, runs of consecutive local hours."""
    runs: dict[tuple[str, str], list[list[int]]] = {}
    for i, pairs in enumerate(per_hour):
        for key in pairs:
            spans = runs.setdefault(key, [])
            if spans and spans[-1][1] == i:
                spans[-1][1] = i + 1
            else:
                spans.append([i, i + 1])

    def clock(ms: int, end: bool = False) -> str:
        text = datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone(tz).strftime("%H:%M")
        return "24:00" if end and text == "00:00" else text

    parts = []
    for (name, why), spans in runs.items():
        ranges = ", ".join(
            f"{clock(hours[a].start_ms)}-{clock(hours[b - 1].end_ms, True)}" for a, b in spans
        )
        parts.append(f"{name} {ranges}: {why}")
    return "; ".join(parts)


# ------------------------------------------------------------------------------------- air


def air_rollup(
    stations: Sequence[Station],
    day: date,
    opts: Options,
    hours: Collection[int] | None = None,
    daily: bool = True,
) -> list[Point]:
    """Hourly points (for hour indexes ``hours``, all when None) and, with ``daily``, the daily
    points of every station and the city's daily figure, for local date ``day``."""
    windows = hour_windows(day, opts.tz)
    edition = edition_of(day, opts)
    fields = AIR_FIELDS
    v = opts.validity
    points: list[Point] = []
    per_station: list[tuple[Station, list[dict[str, HourValue]]]] = []
    reasons: dict[str, str] = {}  # national stations' daily invalid_reason, by device
    for st in stations:
        interval = sample_interval(st, v.max_sample_interval_ms)
        values = hourly_values(st, windows, fields, v.hour_min_minutes, interval.ms)
        per_station.append((st, values))
        left = left_out_by_hour(st, windows)
        for i, w in enumerate(windows):
            if hours is not None and i not in hours:
                continue
            if values[i]:
                p = _air_hour_point(AIR_HOURLY, st.tags, w, values[i], fields, edition, interval)
                p.fields["left_out"] = _hour_text(left[i])
                points.append(p)
            elif left[i]:  # every value of the hour left out: say so, with no figures
                tags = {**st.tags, "aqi_edition": edition}
                out_h: dict[str, FieldValue] = {"valid": False, "left_out": _hour_text(left[i])}
                points.append(Point(AIR_HOURLY, tags, out_h, w.start_ms))
        if daily and (any(values) or any(left)):
            out = _air_day_fields(values, fields, edition, v, interval)
            out["left_out"] = _day_left_out(left, windows, opts.tz)
            if st.assessment == "national" and out["invalid_reason"]:
                reasons[st.tags.get("device_id", "?")] = str(out["invalid_reason"])
            start = day_window(day, opts.tz).start_ms
            points.append(Point(AIR_DAILY, {**st.tags, "aqi_edition": edition}, out, start))
    if daily:
        city = city_air_daily(
            [vals for st, vals in per_station if st.assessment == "national"],
            day,
            opts,
            reasons,
        )
        if city is not None:
            points.append(city)
    return points


def city_hourly(
    stations: Sequence[Sequence[Mapping[str, HourValue]]],
) -> list[dict[str, HourValue]]:
    """The city's hourly series: per hour and pollutant, the mean of the stations' valid values.

    ``n`` of each city hour is the number of stations behind it.
    """
    n_hours = max((len(s) for s in stations), default=0)
    out: list[dict[str, HourValue]] = [{} for _ in range(n_hours)]
    for i in range(n_hours):
        for p in POLLUTANTS:
            values = [hv.value for s in stations if (hv := s[i].get(p)) is not None and hv.valid]
            if values:
                out[i][p] = HourValue(mean(values), len(values), True)
    return out


def city_air_daily(
    stations: Sequence[Sequence[Mapping[str, HourValue]]],
    day: date,
    opts: Options,
    station_reasons: Mapping[str, str] | None = None,
) -> Point | None:
    """The city's daily AQI by the national method from its national stations' hourly values.

    Tags ``assessment=national`` and ``aqi_edition``; ``stations`` counts the stations with data.
    An invalid day's ``invalid_reason`` is the city's own, then its stations' (``station_reasons``
    by device id), so a report can say why a day did not count.
    """
    series = city_hourly(stations)
    if not any(h for s in stations for h in s):
        return None  # no national station sent anything: the day is missing, not invalid
    edition = edition_of(day, opts)
    out = _air_day_fields(series, POLLUTANTS, edition, opts.validity)
    out["stations"] = sum(
        1 for s in stations if any((hv := h.get(p)) and hv.valid for h in s for p in POLLUTANTS)
    )
    if out["invalid_reason"] and station_reasons:
        named = sorted(station_reasons.items())
        parts = [f"city: {out['invalid_reason']}"]
        parts += [f"{device}: {why}" for device, why in named[:_REASON_STATIONS]]
        if len(named) > _REASON_STATIONS:
            parts.append(f"and {len(named) - _REASON_STATIONS} more stations")
        out["invalid_reason"] = " | ".join(parts)
    tags = {"assessment": "national", "aqi_edition": edition}
    return Point(CITY_AIR_DAILY, tags, out, day_window(day, opts.tz).start_ms)


# ----------------------------------------------------------------------------------- water


def _section_type(tags: Mapping[str, str]) -> SectionType:
    return "lake" if tags.get("section_type") == "lake" else "river"


def _water_class_fields(means: Mapping[str, float], section: SectionType) -> dict[str, FieldValue]:
    result = section_class({k: means.get(k) for k in ASSESSED_ITEMS}, section)
    if result is None:
        return {}
    # limiting_items always written ("" for Class I) so a recomputed point overwrites it.
    return {
        "water_class": result.water_class,
        "meets_iii": result.meets_iii,
        "limiting_items": ",".join(result.limiting_items),
    }


def water_rollup(
    stations: Sequence[Station],
    day: date,
    opts: Options,
    hours: Collection[int] | None = None,
    daily: bool = True,
) -> list[Point]:
    """Hourly and daily water points with the GB 3838 class of the mean concentrations, and
    (with ``daily``) the daily class of every assessed section."""
    windows = hour_windows(day, opts.tz)
    fields = WATER_FIELDS
    v = opts.validity
    points: list[Point] = []
    dailies: list[tuple[Station, dict[str, Aggregate]]] = []
    for st in stations:
        section = _section_type(st.tags)
        # A water hour is valid with any value: stations sample every few hours (HJ 915).
        values = hourly_values(st, windows, fields, 0)
        left = left_out_by_hour(st, windows)
        for i, w in enumerate(windows):
            if hours is not None and i not in hours:
                continue
            if not values[i]:
                if left[i]:  # every value of the hour left out: say so, with no figures
                    out_h: dict[str, FieldValue] = {"valid": False, "left_out": _hour_text(left[i])}
                    points.append(Point(WATER_HOURLY, dict(st.tags), out_h, w.start_ms))
                continue
            hour_out = _hour_fields(values[i], fields)
            hour_out.update(
                _water_class_fields({k: hv.value for k, hv in values[i].items()}, section)
            )
            hour_out["valid"] = all(hv.valid for hv in values[i].values())
            hour_out["source"] = _source(values[i])
            hour_out["left_out"] = _hour_text(left[i])
            points.append(Point(WATER_HOURLY, dict(st.tags), hour_out, w.start_ms))
        if not daily or not (any(values) or any(left)):
            continue
        stats = {
            name: agg
            for name in fields
            if (agg := daily_mean(name, [h.get(name) for h in values], v.water_day_min_hours))
        }
        dailies.append((st, stats))
        out: dict[str, FieldValue] = {}
        for name, agg in stats.items():
            out[name] = agg.value
            out[f"{name}_n"] = agg.n
        out.update(_water_class_fields({k: a.value for k, a in stats.items()}, section))
        out["valid"] = bool(stats) and all(a.valid for a in stats.values())
        out["left_out"] = _day_left_out(left, windows, opts.tz)
        points.append(Point(WATER_DAILY, dict(st.tags), out, day_window(day, opts.tz).start_ms))
    if daily:
        points.extend(water_section_daily(dailies, day, opts))
    return points


def water_section_daily(
    dailies: Sequence[tuple[Station, Mapping[str, Aggregate]]], day: date, opts: Options
) -> list[Point]:
    """Per assessed section (stations with an ``assessment``, grouped by site): daily class and
    ``meets_iii`` from the mean of its stations' daily means (usually one station)."""
    by_site: dict[str, list[tuple[Station, Mapping[str, Aggregate]]]] = {}
    for st, stats in dailies:
        if st.assessment:
            by_site.setdefault(st.tags.get("site", ""), []).append((st, stats))
    points = []
    for site, members in sorted(by_site.items()):
        first = members[0][0].tags
        means = {
            item: mean(vals)
            for item in ASSESSED_ITEMS
            if (vals := [s[item].value for _, s in members if item in s])
        }
        out = _water_class_fields(means, _section_type(first))
        if not out:
            continue
        out["valid"] = all(a.valid for _, s in members for k, a in s.items() if k in ASSESSED_ITEMS)
        out["stations"] = len(members)
        tags = {k: first[k] for k in ("county", "section_type") if first.get(k)}
        tags["site"] = site
        tags["assessment"] = members[0][0].assessment
        points.append(Point(WATER_SECTION_DAILY, tags, out, day_window(day, opts.tz).start_ms))
    return points


# ------------------------------------------------------------------------------- kind specs

AIR_FIELDS: tuple[str, ...] = air.AirReading.MEASURED
WATER_FIELDS: tuple[str, ...] = water.WaterReading.MEASURED

Compute = Callable[[Sequence[Station], date, Options, Collection[int] | None, bool], list[Point]]


@dataclass(frozen=True)
class RollupKind:
    """What the I/O side needs to roll up one device kind: where to read, what, how. Names,
    measurement and tags are the device kind's own."""

    kind: DeviceKind
    fields: tuple[str, ...]  # numeric fields to read (valid values only, see module notes)
    outputs: tuple[str, ...]  # measurements written
    compute: Compute
    # The level that assesses a station (its kind's typed registry fact; None: not assessed).
    assessment: Callable[[Device], str | None]

    @property
    def name(self) -> str:
        """The device kind's name."""
        return self.kind.name

    @property
    def source(self) -> str:
        """Measurement of the raw readings."""
        return self.kind.measurement

    @property
    def tag_keys(self) -> tuple[str, ...]:
        """Registry facts carried as tags, besides device_id/site/county."""
        return self.kind.registry_tags


_ROLLUPS = (
    RollupKind(
        air.KIND,
        AIR_FIELDS,
        (AIR_HOURLY, AIR_DAILY, CITY_AIR_DAILY),
        air_rollup,
        lambda d: air.facts(d).assessment,
    ),
    RollupKind(
        water.KIND,
        WATER_FIELDS,
        (WATER_HOURLY, WATER_DAILY, WATER_SECTION_DAILY),
        water_rollup,
        lambda d: water.facts(d).assessment,
    ),
)
ROLLUP_KINDS: dict[str, RollupKind] = {r.name: r for r in _ROLLUPS}
