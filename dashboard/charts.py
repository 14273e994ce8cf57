"""Charts drawn on the server as inline SVG: no script, no library, readable at any width (they scale with the
page), with labelled axes, a title and a text alternative for screen readers.

`stacked_bars` draws counts per time slot stacked by series (jobs finished per minute by outcome);
`line_with_limit` draws one series against a horizontal limit (requests per second against the plan's).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

_W, _H = 640, 220
_LEFT, _RIGHT, _TOP, _BOTTOM = 48, 12, 12, 44
COLOURS = {
    "PROCESSED": "#2e7d32",
    "FAILED": "#c62828",
    "FAILURE": "#8e24aa",
    "CANCELLED": "#757575",
    "NEEDS_REVIEW": "#ef6c00",
    "REJECTED": "#5d4037",
    "granted": "#1565c0",
    "limit": "#c62828",
}


@dataclass(frozen=True)
class Axes:
    """The labels of a chart's axes and its title (also its text alternative's first words)."""

    title: str
    x_label: str
    y_label: str


def stacked_bars(axes: Axes, starts: Sequence[float], series: Mapping[str, Sequence[int]]) -> Markup:
    """Bars per slot (`starts`: unix seconds of each slot), each stacked by the series in order."""
    totals = [sum(values[i] for values in series.values()) for i in range(len(starts))]
    top = _nice_top(max(totals, default=0))
    width = (_W - _LEFT - _RIGHT) / max(len(starts), 1)
    parts = [_frame(axes, top), *_time_ticks(starts, width)]
    for i in range(len(starts)):
        base = 0
        for name, values in series.items():
            if values[i]:
                parts.append(_bar(i, width, base, values[i], top, COLOURS.get(name, "#455a64")))
                base += values[i]
    summary = ", ".join(f"{name} {sum(values)}" for name, values in series.items() if sum(values))
    return _svg(axes, parts, f"{axes.title}: {summary or 'none'} over {len(starts)} minutes", series.keys())


def line_with_limit(axes: Axes, seconds: Sequence[int], values: Sequence[int], limit: float | None) -> Markup:
    """One series over `seconds` (unix), with the limit as a dashed line when there is one."""
    top = _nice_top(max([*values, limit or 0], default=0))
    step = (_W - _LEFT - _RIGHT) / max(len(seconds) - 1, 1)
    points = " ".join(f"{_LEFT + i * step:.1f},{_y(value, top):.1f}" for i, value in enumerate(values))
    parts = [_frame(axes, top), *_time_ticks(seconds, step, every_s=30)]
    parts.append(f'<polyline fill="none" stroke="{COLOURS["granted"]}" stroke-width="2" points="{points}"/>')
    if limit is not None:
        y = _y(limit, top)
        parts.append(
            f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="{COLOURS["limit"]}" '
            f'stroke-dasharray="6 4"/><text x="{_W - _RIGHT}" y="{y - 4:.1f}" text-anchor="end" '
            f'class="limit">limit {limit:g}/s</text>'
        )
    peak = max(values, default=0)
    alt = f"{axes.title}: peak {peak}/s" + (f" against a limit of {limit:g}/s" if limit is not None else "")
    return _svg(axes, parts, alt, ["granted", *(["limit"] if limit is not None else [])])


def _svg(axes: Axes, parts: list[str], alt: str, legend: object) -> Markup:
    keys = list(legend)  # type: ignore[call-overload]
    items = "".join(
        f'<li><span class="swatch" style="background:{COLOURS.get(k, "#455a64")}"></span>{escape(k)}</li>' for k in keys
    )
    body = "".join(parts)
    return Markup(
        f'<figure class="chart"><svg viewBox="0 0 {_W} {_H}" role="img" aria-label="{escape(alt)}" '
        f'preserveAspectRatio="xMidYMid meet"><title>{escape(axes.title)}</title>{body}</svg>'
        f'<figcaption><ul class="legend">{items}</ul></figcaption></figure>'
    )


def _frame(axes: Axes, top: int) -> str:
    bottom, right = _H - _BOTTOM, _W - _RIGHT
    ticks = []
    for k in range(5):
        value = top * k / 4
        y = _y(value, top)
        ticks.append(
            f'<line x1="{_LEFT}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{value:g}</text>'
        )
    return (
        "".join(ticks)
        + f'<line x1="{_LEFT}" x2="{_LEFT}" y1="{_TOP}" y2="{bottom}" class="axis"/>'
        + f'<line x1="{_LEFT}" x2="{right}" y1="{bottom}" y2="{bottom}" class="axis"/>'
        + f'<text x="{(_LEFT + right) / 2}" y="{_H - 6}" text-anchor="middle" class="label">'
        f"{escape(axes.x_label)}</text>" + f'<text x="14" y="{(_TOP + bottom) / 2}" text-anchor="middle" class="label" '
        f'transform="rotate(-90 14 {(_TOP + bottom) / 2})">{escape(axes.y_label)}</text>'
    )


def _time_ticks(starts: Sequence[float], step: float, every_s: int = 600) -> list[str]:
    """Clock labels (UTC, HH:MM) on the x axis, one every `every_s` seconds of the slots."""
    ticks = []
    for i, at in enumerate(starts):
        if int(at) % every_s == 0:
            x = _LEFT + i * step
            label = time.strftime("%H:%M:%S" if every_s < 60 else "%H:%M", time.gmtime(at))
            ticks.append(f'<text x="{x:.1f}" y="{_H - _BOTTOM + 16}" text-anchor="middle">{label}</text>')
    return ticks


def _bar(i: int, width: float, base: int, value: int, top: int, colour: str) -> str:
    y0, y1 = _y(base, top), _y(base + value, top)
    x = _LEFT + i * width + 1
    return (
        f'<rect x="{x:.1f}" y="{y1:.1f}" width="{max(width - 2, 1):.1f}" height="{y0 - y1:.1f}" fill="{colour}">'
        f"<title>{value}</title></rect>"
    )


def _y(value: float, top: int) -> float:
    return _H - _BOTTOM - (_H - _BOTTOM - _TOP) * (value / top)


def _nice_top(peak: float) -> int:
    """The y axis's top: at least 4 (so ticks are whole), rounded up to 1, 2 or 5 times a power of ten."""
    if peak <= 4:
        return 4
    power = 10 ** math.floor(math.log10(peak))
    for factor in (1, 2, 4, 5, 10):
        if factor * power >= peak:
            return int(factor * power)
    return int(10 * power)
