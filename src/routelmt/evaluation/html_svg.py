"""Quality-budget curves as inline SVG text: no plotting library, nothing to fetch.

The same picture as ``evaluation.plots`` draws as PNG, for a report that must open offline
from one file: a router keeps its colour (``plots.router_color``) in every chart; the shaded
band joins the 95% bootstrap interval of hybrid quality at each evaluated budget, and a bar
marks each interval (the tables' numbers).
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from typing import Any

from routelmt.evaluation.plots import router_color

REFERENCE_LINES = (  # key, label, colour, dash pattern
    ("large_only", "large only", "#000000", "6 4"),
    ("small_only", "small only", "#737373", "6 4"),
    ("random", "random (expected)", "#737373", "2 3"),
    ("oracle", "oracle (true gain)", "#000000", ""),
)


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]."""
    span = hi - lo or 1.0
    raw = span / count
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 2.5, 5, 10) if raw <= m * step)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _interval(router: dict[str, Any]) -> list[tuple[float, float, float, float]]:
    """(budget, value, low, high) of hybrid quality at each evaluated budget, by budget."""
    out = []
    for key, cell in (router.get("budgets") or {}).items():
        stat = cell.get("hybrid_quality") or {}
        value, low, high = stat.get("value"), stat.get("ci_low"), stat.get("ci_high")
        if value is not None and low is not None and high is not None:
            out.append((float(key), float(value), float(low), float(high)))
    return sorted(out)


def _value_range(block: dict[str, Any]) -> tuple[float, float]:
    curves = block["curves"]
    values = [v for key, *_ in REFERENCE_LINES for v in curves[key] if v is not None]
    values += [v for line in curves["routers"].values() for v in line if v is not None]
    for router in block.get("routers", {}).values():
        values += [x for _, _, low, high in _interval(router) for x in (low, high)]
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.05 or 1.0
    return lo - pad, hi + pad


def _path(points: list[tuple[float, float]]) -> str:
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in points)


def _axes(x: Callable, y: Callable, lo: float, hi: float, size: tuple[int, int]) -> list[str]:
    width, height = size
    parts = []
    for v in _ticks(lo, hi):
        yy = y(v)
        parts.append(
            f'<line x1="{x(0):.1f}" x2="{x(1):.1f}" y1="{yy:.1f}" y2="{yy:.1f}" class="grid"/>'
        )
        parts.append(
            f'<text x="{x(0) - 6:.1f}" y="{yy + 4:.1f}" class="tick" text-anchor="end">{v:g}</text>'
        )
    for p in (0, 0.2, 0.4, 0.6, 0.8, 1.0):
        parts.append(
            f'<line x1="{x(p):.1f}" x2="{x(p):.1f}" y1="{y(lo):.1f}" y2="{y(hi):.1f}" '
            'class="grid"/>'
        )
        parts.append(
            f'<text x="{x(p):.1f}" y="{height - 22}" class="tick" text-anchor="middle">{p:g}</text>'
        )
    parts.append(
        f'<text x="{(x(0) + x(1)) / 2:.1f}" y="{height - 5}" class="label" text-anchor="middle">'
        "budget p (share sent to the large model)</text>"
    )
    return parts


def _router_marks(
    name: str, block: dict[str, Any], x: Callable, y: Callable, dodge: float
) -> list[str]:
    """A router's band, interval bars (moved ``dodge`` pixels aside, so that routers' bars
    stand side by side) and line."""
    colour = router_color(name)
    attr = f'data-router="{html.escape(name)}" stroke="{colour}"'
    budgets = block["curves"]["budgets"]
    line = [
        (x(p), y(v)) for p, v in zip(budgets, block["curves"]["routers"][name]) if v is not None
    ]
    intervals = _interval(block.get("routers", {}).get(name, {}))
    parts = []
    if len(intervals) >= 2:
        band = [(x(p), y(high)) for p, _, _, high in intervals]
        band += [(x(p), y(low)) for p, _, low, _ in reversed(intervals)]
        parts.append(f'<polygon class="band" fill="{colour}" {attr} points="{_path(band)}"/>')
    for p, value, low, high in intervals:
        parts.append(
            f'<line class="ci" {attr} data-p="{p:g}" data-value="{value}" data-low="{low}" '
            f'data-high="{high}" x1="{x(p) + dodge:.1f}" x2="{x(p) + dodge:.1f}" y1="{y(low):.1f}" '
            f'y2="{y(high):.1f}"/>'
        )
    width = 4 if name == "gain-oracle" else 1.8
    parts.append(
        f'<polyline class="curve" fill="none" stroke-width="{width}" {attr} '
        f'points="{_path(line)}"/>'
    )
    return parts


def curves_svg(block: dict[str, Any], *, width: int = 640, height: int = 360) -> str:
    """One quality-budget chart (a result or a breakdown block) as an ``<svg>`` element."""
    lo, hi = _value_range(block)
    left, right, top, bottom = 56, 12, 10, 40

    def x(p: float) -> float:
        return left + p * (width - left - right)

    def y(v: float) -> float:
        return top + (1 - (v - lo) / (hi - lo)) * (height - top - bottom)

    parts = [f'<svg class="curves" viewBox="0 0 {width} {height}" role="img">']
    parts += _axes(x, y, lo, hi, (width, height))
    curves = block["curves"]
    order = sorted(curves["routers"], key=lambda n: -sum(v or 0.0 for v in curves["routers"][n]))
    for i, name in enumerate(order):
        parts += _router_marks(name, block, x, y, (i - (len(order) - 1) / 2) * 3.0)
    for key, label, colour, dash in REFERENCE_LINES:
        pts = [(x(p), y(v)) for p, v in zip(curves["budgets"], curves[key]) if v is not None]
        parts.append(
            f'<polyline class="reference" data-line="{key}" fill="none" stroke="{colour}" '
            f'stroke-dasharray="{dash}" points="{_path(pts)}"><title>{label}</title></polyline>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def legend_html(names: list[str]) -> str:
    """The routers' colours, then the reference lines."""
    items = [
        f'<li><span class="swatch" style="background:{router_color(n)}"></span>'
        f"{html.escape(n)}</li>"
        for n in names
    ]
    for _, label, colour, dash in REFERENCE_LINES:
        style = "dashed" if dash else "solid"
        items.append(
            f'<li><span class="swatch line" style="border-top:2px {style} {colour}"></span>'
            f"{label}</li>"
        )
    return '<ul class="legend">' + "".join(items) + "</ul>"
