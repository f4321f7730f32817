"""The guards on a labelled set (docs/method.md section 6): severe loss, hybrid quality and cost
with no guard, the quality-predict guard, the quality-hypo guard, and both.

Each direction is routed on its own with budget ``p`` (the paper's per-direction evaluation):
the gain ranking selects candidates, a guard vetoes a candidate whose estimated small quality is
at or above its threshold, and the freed budget goes to the next candidates in gain order
(``budget.guards.guarded_allocation``). With both guards, a candidate is vetoed when either
says its small translation is already good; the hypo guard (a small decode and a QE pass) runs
only on the candidates the free predict guard let through.

Thresholds are fitted per direction on the training folds of the fold a segment is in, so no
segment's own label informs its threshold: ``q<quantile>`` is that quantile of the training
guard scores; ``chosen`` is ``choose_guard_threshold`` on the training rows (the lowest
severe-loss threshold whose MeanDelta drops at most ``max_drop``), read on their out-of-fold
gain scores.

Cost per request: large calls (the budget, the same in every row since freed budget is spent
again), guard evaluations, and for the hypo guard the small decodes that were wasted (a
candidate decoded for the guard that then went large anyway; a vetoed one keeps its decode).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from routelmt.budget.guards import (
    GuardResult,
    choose_guard_threshold,
    guard_threshold_quantile,
    guarded_allocation,
)
from routelmt.evaluation.bootstrap import group_bootstrap_weights, percentile_interval
from routelmt.records import ScoredExample
from routelmt.splits import cv_splits

__all__ = [
    "GUARD_ROWS",
    "allocate_units",
    "evaluate_guards",
    "format_guard_table",
    "guard_margin",
]

GUARD_ROWS = ("none", "quality-predict", "quality-hypo", "both")


def allocate_units(
    gain_scores: np.ndarray,
    units: list[np.ndarray],
    p: float,
    margin: np.ndarray | None,
    *,
    leave_unused: bool = False,
) -> GuardResult:
    """One guarded allocation per unit of rows (a direction, or every row as one unit);
    ``margin`` >= 0 vetoes (None: no guard); ``leave_unused``: a vetoed candidate's budget is
    not passed on."""
    n = gain_scores.size
    routed = np.zeros(n, dtype=bool)
    vetoed, examined, budget = [], [], 0
    for unit in units:
        r = guarded_allocation(
            gain_scores[unit],
            p,
            guard_scores=None if margin is None else margin[unit],
            guard_threshold=None if margin is None else 0.0,
            leave_unused=leave_unused,
        )
        routed[unit[r.routed]] = True
        vetoed.append(unit[r.vetoed])
        examined.append(unit[r.examined])
        budget += r.budget
    return GuardResult(routed, np.concatenate(vetoed), np.concatenate(examined), budget)


def _thresholds(
    values: np.ndarray,
    gain_scores: np.ndarray,
    gains: np.ndarray,
    folds: list[tuple[np.ndarray, np.ndarray]],
    units: list[np.ndarray],
    rule: str,
    *,
    p: float,
    quantile: float,
    max_drop: float,
    severe_delta: float,
) -> np.ndarray:
    """Each segment's threshold, fitted on its fold's training rows of its own direction."""
    taus = np.full(values.size, np.inf)
    for train_idx, test_idx in folds:
        for unit in units:
            own = train_idx[np.isin(train_idx, unit)]
            if own.size == 0:
                continue
            if rule == "chosen":
                tau = choose_guard_threshold(
                    gain_scores[own],
                    values[own],
                    gains[own],
                    p,
                    max_mean_delta_drop=max_drop,
                    severe_delta=severe_delta,
                ).threshold
            else:
                tau = guard_threshold_quantile(values[own], quantile)
            taus[np.intersect1d(test_idx, unit)] = tau
    return taus


def guard_margin(values: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """``values - taus``, the veto margin (>= 0 vetoes); -1 where tau is infinite."""
    with np.errstate(invalid="ignore"):
        m = values - taus
    return np.where(np.isfinite(m), m, -1.0)  # tau = inf: never veto


def _row(
    result: GuardResult,
    gains: np.ndarray,
    q_small: np.ndarray,
    severe_delta: float,
    weights: np.ndarray,
    hypo_evals: int,
    hypo_vetoes: int,
) -> dict[str, Any]:
    routed = result.routed
    n = routed.size
    bad = (gains < -severe_delta).astype(float)
    w = weights[:, routed]
    boot = 100.0 * (w * bad[routed]).sum(1) / np.maximum(w.sum(1), 1e-12)
    hybrid = q_small + np.where(routed, gains, 0.0)
    return {
        "n": n,
        "routed": int(routed.sum()),
        "vetoed": int(result.vetoed.size),
        "large_per_request": float(routed.mean()),
        "guard_evaluations_per_request": result.evaluations / n,
        "hypo_evaluations_per_request": hypo_evals / n,
        "wasted_small_decodes_per_request": (hypo_evals - hypo_vetoes) / n,
        "severe_loss": 100.0 * float(bad[routed].mean()) if routed.any() else float("nan"),
        "mean_delta": float(gains[routed].mean()) if routed.any() else float("nan"),
        "hybrid_quality": float(hybrid.mean()),
        "_boot_severe": boot,
        "_boot_hybrid": (weights * hybrid).sum(1) / weights.sum(1),
    }


def _ci(values: np.ndarray) -> list[float]:
    return list(percentile_interval(values))


def _finish_rows(rows: list[dict[str, Any]], per_eval: Mapping[str, float]) -> None:
    """Each row's guard seconds per request, and its intervals (alone, and against the first
    row, no guard, on the same resamples)."""
    base_boot = rows[0]["_boot_severe"]
    base_hybrid = rows[0]["_boot_hybrid"]
    for row in rows:
        predict_evals = row["guard_evaluations_per_request"] - row["hypo_evaluations_per_request"]
        row["guard_seconds_per_request"] = (
            predict_evals * per_eval.get("quality-predict", 0.0)
            + row["hypo_evaluations_per_request"] * per_eval.get("quality-hypo", 0.0)
            + row["wasted_small_decodes_per_request"] * per_eval.get("small_decode", 0.0)
        )
        row["severe_loss_ci"] = _ci(row["_boot_severe"])
        row["severe_loss_diff_ci"] = _ci(row["_boot_severe"] - base_boot)
        row["hybrid_quality_diff_ci"] = _ci(row.pop("_boot_hybrid") - base_hybrid)
        row.pop("_boot_severe")


def evaluate_guards(
    examples: Sequence[ScoredExample],
    gain_scores: Sequence[float],
    predicted_quality: Sequence[float] | None,
    qe_scores: Sequence[float] | None,
    *,
    p: float = 0.3,
    folds: int = 5,
    seed: int = 0,
    quantile: float = 0.8,
    max_drop: float = 0.5,
    severe_delta: float = 10.0,
    n_boot: int = 1000,
    seconds: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Every guard row under both threshold rules; ``predicted_quality`` is the quality head's
    estimate of q_small (higher = better small output), ``qe_scores`` the QE of each small
    translation. ``seconds`` (optional): measured seconds per evaluation of each guard
    (``quality-predict``, ``quality-hypo``) and per small decode (``small_decode``)."""
    gains = np.asarray([ex.gain for ex in examples], dtype=float)
    q_small = np.asarray([ex.q_small for ex in examples], dtype=float)
    scores = np.asarray(gain_scores, dtype=float)
    directions = np.asarray([ex.segment.direction for ex in examples])
    units = [np.flatnonzero(directions == d) for d in np.unique(directions)]
    splits = cv_splits(examples, "kfold", k=folds, seed=seed)
    weights = group_bootstrap_weights([ex.segment.group for ex in examples], n_boot, seed)
    guard_values = {
        "quality-predict": None if predicted_quality is None else np.asarray(predicted_quality),
        "quality-hypo": None if qe_scores is None else np.asarray(qe_scores, dtype=float),
    }
    fit = dict(p=p, quantile=quantile, max_drop=max_drop, severe_delta=severe_delta)
    rows: list[dict[str, Any]] = []
    base = allocate_units(scores, units, p, None)
    rows.append(
        {"guard": "none", "rule": "-", **_row(base, gains, q_small, severe_delta, weights, 0, 0)}
    )
    thresholds: dict[str, dict[str, list[float]]] = {}
    for rule in (f"q{quantile:g}", "chosen"):
        margins: dict[str, np.ndarray] = {}
        for name, values in guard_values.items():
            if values is None:
                continue
            taus = _thresholds(values, scores, gains, splits, units, rule, **fit)
            thresholds.setdefault(name, {})[rule] = sorted({float(t) for t in taus})
            margins[name] = guard_margin(values, taus)
        for name, margin in margins.items():
            result = allocate_units(scores, units, p, margin)
            hypo = name == "quality-hypo"
            evals = result.evaluations if hypo else 0
            vetoes = int(result.vetoed.size) if hypo else 0
            row = _row(result, gains, q_small, severe_delta, weights, evals, vetoes)
            rows.append({"guard": name, "rule": rule, **row})
        if len(margins) == 2:
            both = np.maximum(margins["quality-predict"], margins["quality-hypo"])
            result = allocate_units(scores, units, p, both)
            passed = result.examined[margins["quality-predict"][result.examined] < 0]
            hypo_vetoes = int((margins["quality-hypo"][passed] >= 0).sum())
            row = _row(result, gains, q_small, severe_delta, weights, passed.size, hypo_vetoes)
            rows.append({"guard": "both", "rule": rule, **row})
    per_eval = dict(seconds or {})
    _finish_rows(rows, per_eval)
    return {
        "p": p,
        "n": len(examples),
        "directions": [str(d) for d in np.unique(directions)],
        "severe_delta": severe_delta,
        "quantile": quantile,
        "max_drop": max_drop,
        "bootstrap": n_boot,
        "seconds_per_evaluation": per_eval,
        "small_only": float(q_small.mean()),
        "large_only": float((q_small + gains).mean()),
        "rows": rows,
        "thresholds": thresholds,
    }


def format_guard_table(result: Mapping[str, Any]) -> str:
    """A Markdown table of ``evaluate_guards``'s rows."""
    lines = [
        "| guard | threshold | severe loss % [95%] | vs none | hybrid chrF | vs none | MeanDelta "
        "| large calls / req | guard evals / req | wasted small decodes / req | guard s / req |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    base = result["rows"][0]
    for row in result["rows"]:
        sev = "{:.2f} [{:.2f}, {:.2f}]".format(row["severe_loss"], *row["severe_loss_ci"])
        d_sev = "{:+.2f} [{:+.2f}, {:+.2f}]".format(
            row["severe_loss"] - base["severe_loss"], *row["severe_loss_diff_ci"]
        )
        d_hyb = "{:+.2f} [{:+.2f}, {:+.2f}]".format(
            row["hybrid_quality"] - base["hybrid_quality"], *row["hybrid_quality_diff_ci"]
        )
        if row is base:
            d_sev = d_hyb = "—"
        lines.append(
            f"| {row['guard']} | {row['rule']} | {sev} | {d_sev} | {row['hybrid_quality']:.2f} | "
            f"{d_hyb} | {row['mean_delta']:.2f} | {row['large_per_request']:.3f} | "
            f"{row['guard_evaluations_per_request']:.3f} | "
            f"{row['wasted_small_decodes_per_request']:.3f} | "
            f"{row['guard_seconds_per_request']:.4f} |"
        )
    return "\n".join(lines)
