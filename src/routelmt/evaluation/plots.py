"""Quality-budget curves as PNG (matplotlib ``Figure`` objects: no pyplot global state)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from routelmt.storage import atomic_open

_REFERENCE_STYLE = {
    "large_only": {"label": "large only", "color": "black", "linestyle": "--", "linewidth": 1.2},
    "small_only": {"label": "small only", "color": "grey", "linestyle": "--", "linewidth": 1.2},
    "oracle": {"label": "oracle (true gain)", "color": "black", "linestyle": "-", "linewidth": 2},
    "random": {"label": "random (expected)", "color": "grey", "linestyle": ":", "linewidth": 1.5},
}


_ROUTER_LINES = ("-", "-.", (0, (5, 1)))


def _draw(ax: Any, block: dict[str, Any], *, legend: bool, fontsize: float) -> None:
    curves = block["curves"]
    x = curves["budgets"]
    for key, style in _REFERENCE_STYLE.items():
        ax.plot(x, curves[key], **style)
    for i, (name, ys) in enumerate(curves["routers"].items()):
        style = _ROUTER_LINES[(i // 10) % len(_ROUTER_LINES)]
        ax.plot(
            x,
            ys,
            label=name,
            color=f"C{i % 10}",
            linestyle=style,
            linewidth=1.6,
            marker="o",
            markersize=2.5,
        )
    ax.set_xlim(0, 1)
    ax.grid(True, alpha=0.3)
    ax.tick_params(labelsize=fontsize)
    if legend:
        ax.legend(fontsize=fontsize, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def _save(fig: Any, path: Path) -> Path:
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=120, bbox_inches="tight")
    return path


def plot_curves(result: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Hybrid quality against the budget for every router, with the four reference lines."""
    from matplotlib.figure import Figure

    metric = str(result.get("metric", "quality")).split("|")[0]
    fig = Figure(figsize=(9.5, 5.5))
    ax = fig.subplots()
    _draw(ax, result, legend=True, fontsize=9)
    ax.set_xlabel("budget p (share of segments sent to the large model)")
    ax.set_ylabel(f"hybrid quality ({metric}, mean per segment)")
    systems = f"{', '.join(result.get('small_systems', []))} -> "
    systems += ", ".join(result.get("large_systems", []))
    ax.set_title(f"Quality-budget curves, {systems} (n = {result['n']})", fontsize=11)
    return _save(fig, Path(path))


def plot_breakdown_curves(result: dict[str, Any], key: str, path: str | os.PathLike[str]) -> Path:
    """One small curve panel per breakdown subset (e.g. per direction), shared legend."""
    from matplotlib.figure import Figure

    subsets = result["breakdowns"][key]
    metric = str(result.get("metric", "quality")).split("|")[0]
    n = max(1, len(subsets))
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(4.2 * cols + 2.0, 3.4 * rows + 0.6))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, (value, block) in zip(axes.ravel(), subsets.items()):
        _draw(ax, block, legend=False, fontsize=8)
        ax.set_title(f"{key} = {value} (n = {block['n']})", fontsize=10)
        ax.set_xlabel("budget p", fontsize=8)
        ax.set_ylabel(f"hybrid {metric}", fontsize=8)
    for ax in axes.ravel()[len(subsets) :]:
        ax.set_visible(False)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.suptitle(f"Quality-budget curves by {key}", fontsize=12)
    right = 1.0 - 1.9 / (4.2 * cols + 2.0)
    fig.tight_layout(rect=(0, 0, right, 0.96))
    fig.legend(
        handles, labels, loc="center left", bbox_to_anchor=(right, 0.5), fontsize=8, frameon=False
    )
    return _save(fig, Path(path))
