"""Charts as inline SVG: a line chart (loss per step) and grouped bars (pass rates).

Colours come from CSS classes the page styles (`series-<name>`), so a chart needs no fonts,
scripts or files of its own and prints as it shows.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .markup import Html, join, tag

MARKERS_UP_TO = 60  # points drawn as dots (with their value on hover) when a series has this few
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 44, 40


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    points: tuple[tuple[float, float], ...]  # (x, y), x ascending
    style: str  # CSS class suffix: `series-<style>`
    dashed: bool = False


def css_name(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def line_chart(series: list[Series], *, x_label: str, y_label: str, width: int = 760, height: int = 320) -> Html:
    """Every series on shared axes with five labelled ticks each; a legend on top."""
    points = [p for s in series for p in s.points]
    x_lo, x_hi = min(x for x, _ in points), max(x for x, _ in points)
    y_lo, y_hi = _padded(min(y for _, y in points), max(y for _, y in points))
    x_hi = x_hi if x_hi > x_lo else x_lo + 1
    plot_w, plot_h = width - LEFT - RIGHT, height - TOP - BOTTOM

    def at(x: float, y: float) -> tuple[float, float]:
        return (LEFT + (x - x_lo) / (x_hi - x_lo) * plot_w, TOP + (y_hi - y) / (y_hi - y_lo) * plot_h)

    parts = [_axes(plot_w, plot_h, x_lo, x_hi, y_lo, y_hi, x_label, y_label,
                   whole_x=all(float(x).is_integer() for x, _ in points))]
    for s in series:
        xy = [at(x, y) for x, y in s.points]
        cls = f"line series-{s.style}" + (" dashed" if s.dashed else "")
        parts.append(tag("polyline", "", cls=cls, points=" ".join(f"{x:.1f},{y:.1f}" for x, y in xy),
                         data_series=s.name))
        if len(xy) <= MARKERS_UP_TO:
            parts += [tag("circle", tag("title", f"{s.name}: {x_label} {px:g}, {y_label} {py:.4f}"),
                          cx=f"{x:.1f}", cy=f"{y:.1f}", r="3", cls=f"dot series-{s.style}")
                      for (x, y), (px, py) in zip(xy, s.points)]
    parts.append(_legend([(s.name, s.style, s.dashed) for s in series]))
    return _svg(width, height, parts, f"{y_label} by {x_label}: " + ", ".join(s.name for s in series))


def bar_chart(groups: list[tuple[str, list[tuple[str, float, str]]]], *, y_label: str, height: int = 300) -> Html:
    """Grouped bars of shares (0–1): `groups` is [(group label, [(series, share, hover text)])]."""
    names = list(dict.fromkeys(name for _, bars in groups for name, _, _ in bars))
    bar, gap = 14, 22
    group_w = bar * len(names) + gap
    width = max(LEFT + RIGHT + group_w * len(groups), 480)
    plot_h = height - TOP - BOTTOM - 16  # room for group labels on two lines
    parts = [_axes(width - LEFT - RIGHT, plot_h, None, None, 0.0, 1.0, "", y_label, percent=True)]
    for g, (label, bars) in enumerate(groups):
        x0 = LEFT + gap / 2 + g * group_w
        for name, share, hover in bars:
            k = names.index(name)
            h = max(share, 0.0) * plot_h
            parts.append(tag("rect", tag("title", hover), x=f"{x0 + k * bar:.1f}", y=f"{TOP + plot_h - h:.1f}",
                             width=str(bar - 2), height=f"{h:.1f}", cls=f"bar series-{css_name(name)}"))
        for line, text in enumerate(label.replace("_", " ").split(" ", 1)):
            parts.append(tag("text", text, x=f"{x0 + (group_w - gap) / 2:.1f}", y=str(TOP + plot_h + 16 + 13 * line),
                             cls="tick", text_anchor="middle"))
    parts.append(_legend([(n, css_name(n), False) for n in names]))
    return _svg(width, height, parts, f"{y_label} by group and series")


def _svg(width: int, height: int, parts: list, label: str) -> Html:
    return tag("svg", join(parts), xmlns="http://www.w3.org/2000/svg", viewBox=f"0 0 {width} {height}",
               width=str(width), height=str(height), role="img", aria_label=label, cls="chart")


def _axes(plot_w: float, plot_h: float, x_lo, x_hi, y_lo: float, y_hi: float, x_label: str, y_label: str,
          *, percent: bool = False, whole_x: bool = False) -> Html:
    """Grid lines with y ticks; x ticks when the x axis is numeric; the axis titles."""
    parts = []
    for k in range(5):
        value = y_hi - k * (y_hi - y_lo) / 4
        y = TOP + k * plot_h / 4
        parts.append(tag("line", "", x1=str(LEFT), x2=f"{LEFT + plot_w:.1f}", y1=f"{y:.1f}", y2=f"{y:.1f}", cls="grid"))
        parts.append(tag("text", f"{value:.0%}" if percent else _tick(value, y_hi - y_lo), x=str(LEFT - 6),
                         y=f"{y + 4:.1f}",
                         cls="tick", text_anchor="end"))
    if x_lo is not None:
        ticks = [x_lo + k * (x_hi - x_lo) / 4 for k in range(5)]
        if whole_x:  # steps: label whole numbers only, each where it falls
            ticks = sorted({round(t) for t in ticks})
        for value in ticks:
            x = LEFT + (value - x_lo) / (x_hi - x_lo) * plot_w
            parts.append(tag("text", str(value) if whole_x else _tick(value, x_hi - x_lo), x=f"{x:.1f}",
                             y=f"{TOP + plot_h + 16:.1f}", cls="tick", text_anchor="middle"))
        parts.append(tag("text", x_label, x=f"{LEFT + plot_w / 2:.1f}", y=f"{TOP + plot_h + 34:.1f}", cls="axis-title",
                         text_anchor="middle"))
    parts.append(tag("text", y_label, x=str(LEFT), y=str(TOP - 10), cls="axis-title"))
    parts.append(tag("line", "", x1=str(LEFT), x2=str(LEFT), y1=str(TOP), y2=f"{TOP + plot_h:.1f}", cls="axis"))
    parts.append(tag("line", "", x1=str(LEFT), x2=f"{LEFT + plot_w:.1f}", y1=f"{TOP + plot_h:.1f}",
                     y2=f"{TOP + plot_h:.1f}", cls="axis"))
    return join(parts)


def _legend(entries: list[tuple[str, str, bool]]) -> Html:
    """Entries along the top edge, each a short line in its series' colour."""
    parts, x = [], LEFT
    for name, style, dashed in entries:
        parts.append(tag("line", "", x1=str(x), x2=str(x + 18), y1="14", y2="14",
                         cls=f"line series-{style}" + (" dashed" if dashed else "")))
        parts.append(tag("text", name, x=str(x + 24), y="18", cls="legend"))
        x += 24 + 7 * len(name) + 18
    return tag("g", join(parts), cls="legend")


def _padded(lo: float, hi: float) -> tuple[float, float]:
    """A y range with a little room above and below, never empty."""
    span = hi - lo
    if span <= 0:
        span = abs(hi) * 0.01 or 1.0
    return lo - span * 0.08, hi + span * 0.08


def _tick(value: float, span: float) -> str:
    """A tick label with as many decimals as a fifth of the axis needs to tell ticks apart."""
    step = span / 4
    decimals = max(0, 1 - math.floor(math.log10(step))) if step > 0 else 0
    return f"{value:.{min(decimals, 6)}f}"
