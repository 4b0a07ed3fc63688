"""Small inline SVG charts for an alert's readings: a line for numbers, a strip for states.

Drawn on the server (no chart library, nothing fetched by the browser). Limits are dashed
lines with a text label and the breach a labelled vertical line, so nothing depends on colour;
the page also offers every reading as a table.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

W, H = 880, 300
LEFT, RIGHT, TOP, BOTTOM = 72, 24, 28, 44
PLOT_W, PLOT_H = W - LEFT - RIGHT, H - TOP - BOTTOM
_TIME_STEPS_MS = [
    m * 60_000 for m in (1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880, 10080)
]


@dataclass(frozen=True, slots=True)
class Level:
    """A horizontal line on a numeric chart: a rule's limit or its clear threshold."""

    value: float
    label: str
    css: str = "c-limit"  # c-limit (dashed) or c-clear (dotted)


def _svg_open(title: str, desc: str, ident: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {W} {H}" role="img" '
        f'aria-labelledby="{ident}-t {ident}-d" preserveAspectRatio="xMidYMid meet">'
        f'<title id="{ident}-t">{escape(title)}</title><desc id="{ident}-d">{escape(desc)}</desc>'
    )


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values (1, 2, 5 × 10^k steps) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    out = []
    v = first
    while v <= hi + step * 1e-9:
        out.append(round(v, 10))
        v += step
    return out


def time_ticks(start_ms: int, end_ms: int, tz_offset_ms: int = 0, n: int = 6) -> list[int]:
    """Round local times (every 1 min … 1 week) between start and end, at most about ``n``."""
    span = max(end_ms - start_ms, 1)
    step = next((s for s in _TIME_STEPS_MS if span / s <= n), _TIME_STEPS_MS[-1])
    first = ((start_ms + tz_offset_ms) // step + 1) * step - tz_offset_ms
    return list(range(first, end_ms + 1, step))


def fmt_num(v: float) -> str:
    """A number for an axis or label: no trailing zeros, at most 4 significant digits."""
    if v == 0:
        return "0"
    text = f"{v:.4g}"
    return text if "e" not in text else f"{v:.2e}"


def _thin(points: Sequence[tuple[int, float]], start_ms: int, span: int) -> list[tuple[int, float]]:
    """At most two points (min and max) per horizontal pixel, in time order."""
    if len(points) <= PLOT_W * 2:
        return list(points)
    buckets: dict[int, list[tuple[int, float]]] = {}
    for p in points:
        buckets.setdefault(int((p[0] - start_ms) * PLOT_W / span), []).append(p)
    out: list[tuple[int, float]] = []
    for col in sorted(buckets):
        b = buckets[col]
        lo, hi = min(b, key=lambda p: p[1]), max(b, key=lambda p: p[1])
        out.extend(sorted({lo, hi}))
    return out


def numeric_chart(
    points: Sequence[tuple[int, float]],
    *,
    start_ms: int,
    end_ms: int,
    levels: Sequence[Level] = (),
    breach_ms: int | None = None,
    breach_label: str = "",
    fmt_time: Callable[[int], str],
    tz_offset_ms: int = 0,
    title: str,
    desc: str,
    ident: str = "chart",
    bands: Sequence[tuple[int, int]] = (),
    flagged: Sequence[tuple[int, float, int]] = (),
) -> str:
    """An SVG line chart of (time ms, value) points with limit lines and the breach marked.

    ``bands`` are shaded time ranges (with a dashed outline), e.g. the ranges a review invalidated;
    ``flagged`` are (time, value, QC flag) points drawn as a shape per flag over the line: a
    diamond for 3 (suspect), a cross for 4 (fail), so the flag does not rest on colour."""
    span = max(end_ms - start_ms, 1)
    values = [v for _, v in points] + [lv.value for lv in levels]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    if hi - lo < 1e-9:
        lo, hi = lo - 1, hi + 1
    pad = (hi - lo) * 0.08
    lo, hi = lo - pad, hi + pad

    def x(t: int) -> float:
        return LEFT + (t - start_ms) * PLOT_W / span

    def y(v: float) -> float:
        return TOP + (hi - v) * PLOT_H / (hi - lo)

    parts = [_svg_open(title, desc, ident)]
    parts.append(f'<rect class="c-plot" x="{LEFT}" y="{TOP}" width="{PLOT_W}" height="{PLOT_H}"/>')
    for b0, b1 in bands:
        x1, x2 = x(max(b0, start_ms)), x(min(b1, end_ms))
        if x2 > x1:
            parts.append(
                f'<rect class="c-band" x="{x1:.1f}" y="{TOP}" width="{max(x2 - x1, 2):.1f}" '
                f'height="{PLOT_H}"/>'
            )
    for v in nice_ticks(lo, hi):
        yy = y(v)
        parts.append(
            f'<line class="c-grid" x1="{LEFT}" x2="{LEFT + PLOT_W}" y1="{yy:.1f}" y2="{yy:.1f}"/>'
            f'<text class="c-tick" x="{LEFT - 8}" y="{yy + 5:.1f}" text-anchor="end">'
            f"{escape(fmt_num(v))}</text>"
        )
    for t in time_ticks(start_ms, end_ms, tz_offset_ms):
        xx = x(t)
        parts.append(
            f'<line class="c-grid" x1="{xx:.1f}" x2="{xx:.1f}" y1="{TOP}" y2="{TOP + PLOT_H}"/>'
            f'<text class="c-tick" x="{xx:.1f}" y="{H - 14}" text-anchor="middle">'
            f"{escape(fmt_time(t))}</text>"
        )
    for lv in levels:
        yy = y(lv.value)
        parts.append(
            f'<line class="{lv.css}" x1="{LEFT}" x2="{LEFT + PLOT_W}" y1="{yy:.1f}" y2="{yy:.1f}"/>'
            f'<text class="c-label" x="{LEFT + PLOT_W - 6}" y="{yy - 6:.1f}" text-anchor="end">'
            f"{escape(lv.label)}</text>"
        )
    if breach_ms is not None and start_ms <= breach_ms <= end_ms:
        xx = x(breach_ms)
        anchor = "start" if xx < LEFT + PLOT_W * 0.7 else "end"
        dx = 6 if anchor == "start" else -6
        parts.append(
            f'<line class="c-breach" x1="{xx:.1f}" x2="{xx:.1f}" y1="{TOP}" y2="{TOP + PLOT_H}"/>'
            f'<text class="c-label" x="{xx + dx:.1f}" y="{TOP + 18}" text-anchor="{anchor}">'
            f"{escape(breach_label)}</text>"
        )
    pts = sorted(p for p in points if start_ms <= p[0] <= end_ms)
    pts = _thin(pts, start_ms, span)
    if pts:
        steps = sorted(b[0] - a[0] for a, b in itertools.pairwise(pts))
        typical = steps[len(steps) // 2] if steps else span
        gap = max(typical * 5, 1)
        d: list[str] = []
        prev: int | None = None
        for t, v in pts:
            cmd = "M" if prev is None or t - prev > gap else "L"
            d.append(f"{cmd}{x(t):.1f},{y(v):.1f}")
            prev = t
        parts.append(f'<path class="c-line" d="{" ".join(d)}"/>')
        if len(pts) <= 80:
            parts.extend(
                f'<circle class="c-dot" cx="{x(t):.1f}" cy="{y(v):.1f}" r="4"/>' for t, v in pts
            )
    for t, v, flag in flagged:
        if not start_ms <= t <= end_ms:
            continue
        cx, cy = x(t), y(v)
        if flag >= 4:
            parts.append(
                f'<path class="c-fail" d="M{cx - 7:.1f},{cy - 7:.1f} L{cx + 7:.1f},{cy + 7:.1f} '
                f'M{cx - 7:.1f},{cy + 7:.1f} L{cx + 7:.1f},{cy - 7:.1f}"/>'
            )
        else:
            parts.append(
                f'<path class="c-suspect" d="M{cx:.1f},{cy - 7:.1f} L{cx + 7:.1f},{cy:.1f} '
                f'L{cx:.1f},{cy + 7:.1f} L{cx - 7:.1f},{cy:.1f} Z"/>'
            )
    parts.append("</svg>")
    return "".join(parts)


def state_chart(
    points: Sequence[tuple[int, str]],
    *,
    start_ms: int,
    end_ms: int,
    bad: Callable[[str], bool],
    latest_label: str = "",
    breach_ms: int | None = None,
    breach_label: str = "",
    fmt_time: Callable[[int], str],
    tz_offset_ms: int = 0,
    title: str,
    desc: str,
    ident: str = "chart",
) -> str:
    """An SVG strip of states over time (e.g. OCPP status); breaching states hatched and named.

    ``latest_label`` (e.g. "latest: Faulted") is written above the strip's right end: the state
    in force now may have begun too recently to show as a labelled segment.
    """
    span = max(end_ms - start_ms, 1)
    band_top, band_h = TOP + 40, 96

    def x(t: int) -> float:
        return LEFT + (min(max(t, start_ms), end_ms) - start_ms) * PLOT_W / span

    parts = [
        _svg_open(title, desc, ident).replace(f'viewBox="0 0 {W} {H}"', f'viewBox="0 0 {W} 220"'),
        '<defs><pattern id="hatch" width="12" height="12" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect class="c-bad" width="12" height="12"/>'
        '<line class="c-hatch" x1="0" y1="0" x2="0" y2="12"/></pattern></defs>',
        f'<rect class="c-plot" x="{LEFT}" y="{band_top}" width="{PLOT_W}" height="{band_h}"/>',
    ]
    pts = sorted(p for p in points if p[0] <= end_ms)
    # The state in force at the window's start is the last one before it.
    before = [p for p in pts if p[0] < start_ms]
    pts = ([(start_ms, before[-1][1])] if before else []) + [p for p in pts if p[0] >= start_ms]
    merged: list[tuple[int, str]] = []
    for t, v in pts:
        if not merged or merged[-1][1] != v:
            merged.append((t, v))
    # Each state its own shade, so neighbouring segments differ even where no label fits.
    shades = {v: i % 4 for i, v in enumerate(dict.fromkeys(v for _, v in merged))}
    for i, (t, v) in enumerate(merged):
        t2 = merged[i + 1][0] if i + 1 < len(merged) else end_ms
        x1, x2 = x(t), x(t2)
        is_bad = bad(v)
        shade = f" c-shade-{shades[v]}" if shades[v] else ""
        css = 'fill="url(#hatch)" class="c-seg c-seg-bad"' if is_bad else f'class="c-seg{shade}"'
        parts.append(
            f'<rect {css} x="{x1:.1f}" y="{band_top}" width="{max(x2 - x1, 2):.1f}" '
            f'height="{band_h}"/>'
        )
        if x2 - x1 > len(v) * 10 + 12:
            label_css = "c-seg-text c-seg-text-bad" if is_bad else "c-seg-text"
            mid, base = (x1 + x2) / 2, band_top + band_h / 2 + 6
            parts.append(
                f'<text class="{label_css}" x="{mid:.1f}" y="{base}" text-anchor="middle">'
                f"{escape(v)}</text>"
            )
    for t in time_ticks(start_ms, end_ms, tz_offset_ms):
        xx = x(t)
        parts.append(
            f'<line class="c-grid" x1="{xx:.1f}" x2="{xx:.1f}" y1="{band_top}" '
            f'y2="{band_top + band_h}"/>'
            f'<text class="c-tick" x="{xx:.1f}" y="{band_top + band_h + 28}" '
            f'text-anchor="middle">{escape(fmt_time(t))}</text>'
        )
    if latest_label:
        parts.append(
            f'<text class="c-label" x="{LEFT + PLOT_W}" y="{band_top - 12}" text-anchor="end">'
            f"{escape(latest_label)}</text>"
        )
    if breach_ms is not None and start_ms <= breach_ms <= end_ms:
        xx = x(breach_ms)
        anchor = "start" if xx < LEFT + PLOT_W * 0.6 else "end"
        dx = 6 if anchor == "start" else -6
        parts.append(
            f'<line class="c-breach" x1="{xx:.1f}" x2="{xx:.1f}" y1="{TOP + 4}" '
            f'y2="{band_top + band_h}"/>'
            f'<text class="c-label" x="{xx + dx:.1f}" y="{TOP - 4}" text-anchor="{anchor}">'
            f"{escape(breach_label)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)
