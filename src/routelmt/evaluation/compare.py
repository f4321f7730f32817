"""Does a router beat the free baselines? Headroom closed and paired differences, per direction
first (the paper's averaging), then pooled.

``compare_routers`` takes any score arrays (an ablation's out-of-fold predictions, a baseline's
scores) with the gains, directions and source ids of the same segments, and answers with the
numbers of docs/method.md section 4 that decide the question: HC@p, MeanDelta@p and Spearman per
direction, their mean over directions and their pooled values, each with a 95% group-bootstrap
interval, and for every router the paired difference against each baseline, computed on the
same resamples, with ``beats`` = the interval lies above zero. ``headline`` extracts the same
view from a full ``evaluate_routers`` result (``metrics.json``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from routelmt.errors import InputError
from routelmt.evaluation.evaluate import (
    DEFAULT_BASELINES,
    MEAN_BUDGET_FIELDS,
    evaluate_arrays,
    evaluate_routers,
)
from routelmt.records import ScoredExample

__all__ = ["DEFAULT_BASELINES", "compare_routers", "headline"]


def _routers_view(routers: Mapping[str, Any]) -> dict[str, Any]:
    return {
        name: {
            "spearman": res["spearman"],
            "budgets": {
                key: {f: cell[f] for f in MEAN_BUDGET_FIELDS if f in cell}
                for key, cell in res["budgets"].items()
            },
        }
        for name, res in routers.items()
    }


def _block_view(block: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "n": block["n"],
        "n_groups": block["n_groups"],
        "mean_gain": block["reference"]["mean_gain"],
        "oracle_mean_delta": {
            key: cell["mean_delta"] for key, cell in block["reference"]["oracle"].items()
        },
        "routers": _routers_view(block["routers"]),
        "paired": block.get("paired", {}),
    }


def headline(result: Mapping[str, Any]) -> dict[str, Any]:
    """The per-direction / mean / pooled view of an evaluation result.

    ``{"n", "n_groups", "budgets", "baselines", "directions": [str],
    "mean": {"mean_gain", "oracle_mean_delta", "routers", "paired"} | None,
    "per_direction": {direction: {"n", "n_groups", "mean_gain", "oracle_mean_delta",
    "routers", "paired"}}, "pooled": {...the same}}``, where ``routers[name]`` holds
    ``spearman`` and ``budgets[p]`` with ``hc``, ``mean_delta``, ``hit_rate`` stats, and
    ``paired[baseline][router]`` the diffs (``spearman``, ``budgets[p].hc / .mean_delta``, each
    with ``beats``). ``mean`` is None when the result has no direction breakdown.
    """
    by_direction = (result.get("breakdowns") or {}).get("direction") or {}
    mean = result.get("direction_mean")
    settings = result.get("settings", {}).get("paired", {})
    return {
        "n": result["n"],
        "n_groups": result["n_groups"],
        "budgets": list(result["budgets"]),
        "baselines": list(settings.get("baselines", [])),
        "directions": list(by_direction),
        "mean": None
        if mean is None
        else {
            "mean_gain": mean["reference"]["mean_gain"],
            "oracle_mean_delta": {
                key: cell["mean_delta"] for key, cell in mean["reference"]["oracle"].items()
            },
            "routers": _routers_view(mean["routers"]),
            "paired": mean.get("paired", {}),
        },
        "per_direction": {d: _block_view(block) for d, block in by_direction.items()},
        "pooled": _block_view(result),
    }


def compare_routers(
    scores: Mapping[str, Any],
    *,
    examples: Sequence[ScoredExample] | None = None,
    gains: Any = None,
    directions: Sequence[str] | None = None,
    source_ids: Sequence[str] | None = None,
    budgets: Iterable[float] = (0.3,),
    baselines: Sequence[str] = DEFAULT_BASELINES,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """HC@p, MeanDelta@p and Spearman per direction, mean and pooled, with paired differences
    against ``baselines`` (those among ``scores``); see ``headline`` for the shape.

    Give either ``examples`` (their gains, directions and source groups are used) or
    ``gains`` with ``source_ids`` (the resampling unit: the same source text in several
    directions must share one id) and optionally ``directions`` (default: one direction).
    The same ``seed`` gives the same resamples as ``evaluate_routers``, so the pooled numbers
    equal those of ``metrics.json`` for the same data and scores.
    """
    if examples is not None:
        if gains is not None or source_ids is not None or directions is not None:
            raise InputError("give either examples, or gains with source_ids (not both)")
        result = evaluate_routers(
            examples,
            scores,
            budgets,
            n_boot=n_boot,
            seed=seed,
            level=level,
            breakdowns=("direction",),
            cpt_levels=(),
            baselines=baselines,
        )
        return headline(result)
    if gains is None or source_ids is None:
        raise InputError("compare_routers needs examples, or gains and source_ids")
    g = np.asarray(gains, dtype=float)
    if g.ndim != 1:
        raise InputError(f"gains must be one-dimensional, got shape {g.shape}")
    dirs = ["all"] * g.size if directions is None else [str(d) for d in directions]
    result = evaluate_arrays(
        np.zeros(g.size),
        g,
        list(source_ids),
        scores,
        budgets,
        attributes={"direction": dirs},
        baselines=baselines,
        n_boot=n_boot,
        seed=seed,
        level=level,
        cpt_levels=(),
        metric="gain",
    )
    return headline(result)
