"""Quality-budget curves as PNG (matplotlib ``Figure`` objects: no pyplot global state).

Every figure draws a router in the same colour (``router_color``), so a reader can follow one
router from the pooled plot to the per-direction panels and to another run's plots. Shaded
bands are the pointwise bootstrap intervals that ``evaluate_routers`` stores with the curves.
"""

from __future__ import annotations

import math
import os
import zlib
from pathlib import Path
from typing import Any

from routelmt.storage import atomic_open

# One colour per registered router, the same in every figure. The reference lines are black and
# grey, so no router uses those.
ROUTER_COLORS: dict[str, str] = {
    "routelmt": "#d62728",
    "routelmt-q": "#ff7f0e",
    "routelmt-lora": "#e377c2",
    "entropy": "#9467bd",
    "external-delta": "#1f77b4",
    "external-difficulty": "#17becf",
    "length": "#2ca02c",
    "random": "#bcbd22",
    "gain-oracle": "#8c564b",
    "quality-oracle": "#7b4173",
}
# for other names (a trained artifact ``routelmt@dir``, a user's router): picked by a stable
# hash of the name, so the colour does not depend on which other routers are drawn
_EXTRA_COLORS = (
    "#393b79",
    "#637939",
    "#8c6d31",
    "#843c39",
    "#3182bd",
    "#e6550d",
    "#31a354",
    "#756bb1",
    "#636363",
    "#9c9ede",
)

_REFERENCE_STYLE = {
    "large_only": {"label": "large only", "color": "black", "linestyle": "--", "linewidth": 1.1},
    "small_only": {"label": "small only", "color": "0.45", "linestyle": "--", "linewidth": 1.1},
    "random": {"label": "random (expected)", "color": "0.45", "linestyle": ":", "linewidth": 1.5},
    # drawn on top of every router: gain-oracle's curve is the same line, drawn wide beneath it
    "oracle": {"label": "oracle (true gain)", "color": "black", "linestyle": "-", "linewidth": 1.1},
}


def router_color(name: str) -> str:
    """The colour of a router in every figure: fixed for registered routers, else by name."""
    if name in ROUTER_COLORS:
        return ROUTER_COLORS[name]
    return _EXTRA_COLORS[zlib.crc32(name.encode("utf-8")) % len(_EXTRA_COLORS)]


def _legend_order(curves: dict[str, Any]) -> list[str]:
    """Routers by the area under their curve, best first: the legend reads top to bottom in the
    order the lines mostly stack."""
    routers = curves["routers"]
    return sorted(routers, key=lambda name: -sum(v for v in routers[name] if v is not None))


def _draw(ax: Any, block: dict[str, Any], *, intervals: bool, fontsize: float) -> None:
    curves = block["curves"]
    x = curves["budgets"]
    for key, style in _REFERENCE_STYLE.items():
        zorder = 5 if key == "oracle" else 1
        ax.plot(x, curves[key], zorder=zorder, **style)
    order = _legend_order(curves)
    for i, name in enumerate(order):
        color = router_color(name)
        oracle_like = name == "gain-oracle"
        ax.plot(
            x,
            curves["routers"][name],
            label=name,
            color=color,
            linewidth=4.0 if oracle_like else 1.6,
            alpha=0.55 if oracle_like else 1.0,
            marker=None if oracle_like else "o",
            markersize=2.5,
            zorder=3,
        )
        if intervals and not oracle_like:
            dodge = (i - (len(order) - 1) / 2) * 0.006  # side by side, not on top of each other
            _error_bars(ax, block["routers"].get(name, {}), color, dodge)
    ax.set_xlim(0, 1)
    ax.grid(True, alpha=0.3)
    ax.tick_params(labelsize=fontsize)


def _error_bars(ax: Any, router: dict[str, Any], color: str, dodge: float) -> None:
    """The 95% interval of hybrid quality at each evaluated budget (the tables' numbers)."""
    xs, ys, below, above = [], [], [], []
    for key, cell in (router.get("budgets") or {}).items():
        stat = cell.get("hybrid_quality") or {}
        value, low, high = stat.get("value"), stat.get("ci_low"), stat.get("ci_high")
        if value is None or low is None or high is None:
            continue
        xs.append(float(key) + dodge)
        ys.append(value)
        below.append(max(0.0, value - low))
        above.append(max(0.0, high - value))
    if xs:
        ax.errorbar(
            xs,
            ys,
            yerr=[below, above],
            fmt="none",
            ecolor=color,
            elinewidth=1.0,
            capsize=2.0,
            alpha=0.8,
            zorder=4,
        )


def _legend_entries(ax: Any) -> tuple[list[Any], list[str]]:
    """Routers first (by AUC), then the reference lines."""
    handles, labels = ax.get_legend_handles_labels()
    refs = {style["label"] for style in _REFERENCE_STYLE.values()}
    order = [i for i, lab in enumerate(labels) if lab not in refs]
    order += [i for i, lab in enumerate(labels) if lab in refs]
    return [handles[i] for i in order], [labels[i] for i in order]


def _save(fig: Any, path: Path) -> Path:
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=120, bbox_inches="tight")
    return path


def curves_figure(result: dict[str, Any]) -> Any:
    """The pooled quality-budget figure (a matplotlib ``Figure``)."""
    from matplotlib.figure import Figure

    metric = str(result.get("metric", "quality")).split("|")[0]
    fig = Figure(figsize=(9.5, 5.5))
    ax = fig.subplots()
    _draw(ax, result, intervals=True, fontsize=9)
    ax.set_xlabel("budget p (share of segments sent to the large model)")
    ax.set_ylabel(f"hybrid quality ({metric}, mean per segment)")
    systems = f"{', '.join(result.get('small_systems', []))} -> "
    systems += ", ".join(result.get("large_systems", []))
    ax.set_title(f"Quality-budget curves, {systems} (n = {result['n']})", fontsize=11)
    handles, labels = _legend_entries(ax)
    level = (result.get("settings") or {}).get("bootstrap", {}).get("level", 0.95)
    title = "router (best AUC first)"
    if (result.get("settings") or {}).get("bootstrap", {}).get("n"):
        title += f"\nbars: {level:.0%} bootstrap interval"
    ax.legend(
        handles,
        labels,
        title=title,
        title_fontsize=9,
        fontsize=9,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        frameon=False,
        handlelength=2.6,
    )
    return fig


def plot_curves(result: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Hybrid quality against the budget for every router, with the four reference lines."""
    return _save(curves_figure(result), Path(path))


def breakdown_figure(result: dict[str, Any], key: str) -> Any:
    """One small curve panel per breakdown subset (e.g. per direction), one shared legend."""
    from matplotlib.figure import Figure

    subsets = result["breakdowns"][key]
    metric = str(result.get("metric", "quality")).split("|")[0]
    n = max(1, len(subsets))
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(4.2 * cols + 2.2, 3.4 * rows + 0.6))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, (value, block) in zip(axes.ravel(), subsets.items()):
        _draw(ax, block, intervals=False, fontsize=8)  # small panels: lines only
        ax.set_title(f"{key} = {value} (n = {block['n']})", fontsize=10)
        ax.set_xlabel("budget p", fontsize=8)
        ax.set_ylabel(f"hybrid {metric}", fontsize=8)
    for ax in axes.ravel()[len(subsets) :]:
        ax.set_visible(False)
    handles, labels = _legend_entries(axes[0, 0])
    fig.suptitle(f"Quality-budget curves by {key}", fontsize=12)
    right = 1.0 - 2.1 / (4.2 * cols + 2.2)
    fig.tight_layout(rect=(0, 0, right, 0.96))
    fig.legend(
        handles,
        labels,
        loc="center left",
        bbox_to_anchor=(right, 0.5),
        fontsize=8,
        frameon=False,
        handlelength=2.6,
    )
    return fig


def plot_breakdown_curves(result: dict[str, Any], key: str, path: str | os.PathLike[str]) -> Path:
    """One small curve panel per breakdown subset (e.g. per direction), shared legend."""
    return _save(breakdown_figure(result, key), Path(path))
