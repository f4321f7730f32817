"""Ablation protocol: candidates in, out-of-fold scores and the paired per-direction table out.

A *candidate* is ``fit_predict(train_rows, test_rows) -> scores of the test rows``; whatever it
chooses (layer, penalty, width) it chooses inside its training rows. ``out_of_fold`` scores
every row by a candidate that never saw it:

- ``kfold``: folds grouped by source (``splits.fold_ids``: every direction of one English source
  shares a fold);
- ``lodo``: leave one direction out, crossed with the same source folds, so a test row's model
  saw neither its direction nor its source text.

``paired_table`` is the ablation tables' statistics, computed by ``evaluation.compare_routers``
(so k, the tie rule, the group bootstrap and the paired differences are the library's, the same
as ``routelmt evaluate``): per direction, HC@p, MeanDelta@p and Spearman with 95% intervals, and
for every router the paired difference to each baseline on the same resamples (``beats`` = the
interval lies above zero); then the mean over directions. ``hc_at`` is the point HC@p that inner
choices (an input set, a guard threshold) use on training rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from routelmt.budget.allocation import budget_count, descending_order, tie_keys
from routelmt.budget.guards import guarded_allocation
from routelmt.errors import ConfigError
from routelmt.evaluation.compare import compare_routers
from routelmt.evaluation.evaluate import headroom_closed
from routelmt.evaluation.ranking import average_ranks, mean_delta
from routelmt.splits import fold_ids

__all__ = [
    "SCHEMES",
    "Candidate",
    "guard_veto_scores",
    "hc_at",
    "markdown_table",
    "out_of_fold",
    "outer_splits",
    "paired_cell",
    "paired_table",
    "ranks_within",
    "split_curve",
]

Candidate = Callable[[np.ndarray, np.ndarray], np.ndarray]
SCHEMES = ("kfold", "lodo")


def outer_splits(
    groups: np.ndarray, directions: np.ndarray, scheme: str = "kfold", folds: int = 5, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train rows, test rows) of every outer split of ``scheme``; the test rows cover each row
    exactly once."""
    if scheme not in SCHEMES:
        raise ConfigError(f"unknown scheme '{scheme}'; expected one of {', '.join(SCHEMES)}")
    fold = fold_ids(np.asarray(groups), folds, seed)
    directions = np.asarray(directions)
    out = []
    for f in range(folds):
        if scheme == "kfold":
            out.append((np.flatnonzero(fold != f), np.flatnonzero(fold == f)))
            continue
        for d in np.unique(directions):
            test = np.flatnonzero((fold == f) & (directions == d))
            out.append((np.flatnonzero((fold != f) & (directions != d)), test))
    return out


def out_of_fold(
    candidate: Candidate,
    groups: np.ndarray,
    directions: np.ndarray,
    scheme: str = "kfold",
    folds: int = 5,
    seed: int = 0,
) -> np.ndarray:
    """Every row's score from the candidate fitted on its outer split's training rows."""
    scores = np.full(len(groups), np.nan)
    for train, test in outer_splits(groups, directions, scheme, folds, seed):
        if test.size:
            scores[test] = candidate(train, test)
    return scores


def hc_at(gains: np.ndarray, scores: np.ndarray, p: float, seed: int = 0) -> float:
    """HC@p in percent of ``scores`` against ``gains`` (one set, no bootstrap): the library's k
    and tie rule; NaN when k is 0 or every gain is equal."""
    gains = np.asarray(gains, dtype=float)
    routed = mean_delta(np.asarray(scores, dtype=float), gains, p, seed=seed)
    best = mean_delta(gains, gains, p, seed=seed)
    return float(headroom_closed(routed, gains.mean(), best))


def ranks_within(values: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Each value's average rank within its direction, scaled to (0, 1] (ties share a rank)."""
    values = np.asarray(values, dtype=float)
    out = np.zeros(len(values))
    for d in np.unique(directions):
        rows = np.flatnonzero(np.asarray(directions) == d)
        ones = np.ones((1, rows.size), dtype=np.int64)
        out[rows] = average_ranks(values[rows], ones)[0] / rows.size
    return out


def _stat(cell: Mapping[str, Any] | None) -> tuple[float, list[float]]:
    def num(x: Any) -> float:
        return math.nan if x is None else float(x)

    if cell is None:
        return math.nan, [math.nan, math.nan]
    return num(cell["value"]), [num(cell["ci_low"]), num(cell["ci_high"])]


def _router_block(view: Mapping[str, Any], name: str, key: str, baselines: Sequence[str]) -> dict:
    res = view["routers"][name]
    hc, hc_ci = _stat(res["budgets"][key]["hc"])
    md, _ = _stat(res["budgets"][key]["mean_delta"])
    rho, rho_ci = _stat(res["spearman"])
    entry: dict[str, Any] = {
        "hc": hc,
        "hc_ci": hc_ci,
        "mean_delta": md,
        "spearman": rho,
        "spearman_ci": rho_ci,
        "vs": {},
    }
    for base in baselines:
        diff = view["paired"].get(base, {}).get(name)
        if diff is None:
            continue
        d_hc, d_hc_ci = _stat(diff["budgets"][key]["hc"])
        d_rho, d_rho_ci = _stat(diff["spearman"])
        entry["vs"][base] = {
            "hc": d_hc,
            "hc_ci": d_hc_ci,
            "spearman": d_rho,
            "spearman_ci": d_rho_ci,
            "beats": bool(diff["budgets"][key]["hc"].get("beats")),
        }
    return entry


def paired_table(
    gains: np.ndarray,
    directions: np.ndarray,
    groups: np.ndarray,
    scores: Mapping[str, np.ndarray],
    baselines: Sequence[str] = ("length", "entropy"),
    budget: float = 0.3,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """The ablation table: ``{"budget", "n_boot", "directions": {d: {"n", "routers": {name:
    {"hc", "hc_ci", "mean_delta", "spearman", "spearman_ci", "vs": {baseline: {"hc", "hc_ci",
    "spearman", "spearman_ci", "beats"}}}}}}, "mean_hc": {name: float}, "mean": {name: the same
    fields for the mean over directions}}`` (NaN where a value is undefined)."""
    present = [b for b in baselines if b in scores]
    view = compare_routers(
        dict(scores),
        gains=np.asarray(gains, dtype=float),
        directions=[str(d) for d in directions],
        source_ids=[str(g) for g in groups],
        budgets=(budget,),
        baselines=present,
        n_boot=n_boot,
        seed=seed,
    )
    key = format(budget, "g")
    out: dict[str, Any] = {"budget": budget, "n_boot": n_boot, "directions": {}}
    for d, block in view["per_direction"].items():
        routers = {name: _router_block(block, name, key, present) for name in scores}
        out["directions"][d] = {"n": block["n"], "routers": routers}
    mean = view["mean"]
    out["mean"] = {name: _router_block(mean, name, key, present) for name in scores}
    out["mean_hc"] = {name: out["mean"][name]["hc"] for name in scores}
    return out


def paired_cell(vs: Mapping[str, Any] | None) -> str:
    """A paired difference with its interval, ``**beats**`` when the interval is above zero."""
    if vs is None:
        return "—"
    text = f"{vs['hc']:+.1f} [{vs['hc_ci'][0]:+.1f}, {vs['hc_ci'][1]:+.1f}]"
    return text + (" **beats**" if vs["beats"] else "")


def markdown_table(
    result: Mapping[str, Any],
    order: Sequence[str],
    title: str,
    versus: Sequence[str] = ("length",),
) -> str:
    """Per direction first: HC@p with its interval and the paired difference to each of
    ``versus``; the mean over directions in the second column."""
    lines = [f"### {title}", ""]
    dirs = list(result["directions"])
    head = ["router", "mean HC over directions"]
    for d in dirs:
        head += [f"{d} HC [95% CI]"] + [f"{d} minus {v} (paired)" for v in versus]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in order:
        cells = [name, f"{result['mean_hc'][name]:.1f}"]
        for d in dirs:
            r = result["directions"][d]["routers"][name]
            cells.append(f"{r['hc']:.1f} [{r['hc_ci'][0]:.1f}, {r['hc_ci'][1]:.1f}]")
            cells += [paired_cell(r["vs"].get(base)) for base in versus]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _top(rows: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    return rows[descending_order(scores[rows], tie_keys(rows.size))[:k]]


def split_curve(
    stage1: np.ndarray,
    stage2: np.ndarray,
    gains: np.ndarray,
    directions: np.ndarray,
    p: float,
    alphas: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0),
) -> dict[str, dict[str, Any]]:
    """HC@p per direction when a share ``alpha`` of the budget is spent right after the prefill
    (top by stage 1, no small decode) and the rest after the small decode (top by stage 2 among
    the others); cost per request: small decodes, wasted small decodes, QE passes."""
    out = {}
    for alpha in alphas:
        hcs = {}
        for d in np.unique(directions):
            rows = np.flatnonzero(np.asarray(directions) == d)
            k = budget_count(rows.size, p)
            k1 = budget_count(k, alpha)
            first = _top(rows, stage1, k1)
            rest = np.setdiff1d(rows, first)
            routed = np.zeros(len(gains), dtype=bool)
            routed[first] = True
            routed[_top(rest, stage2, k - k1)] = True
            hcs[str(d)] = hc_at(gains[rows], routed[rows].astype(float), p)
        decoded = 1 - alpha * p
        out[str(alpha)] = {
            "hc": hcs,
            "mean_hc": float(np.mean(list(hcs.values()))),
            "small_decodes_per_request": decoded,
            "wasted_small_decodes_per_request": (1 - alpha) * p,
            "qe_passes_per_request": decoded,
        }
    return out


def guard_veto_scores(
    train: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    p: float,
    quantiles: Sequence[float] = (1.0, *np.arange(0.5, 1.0, 0.05)),
) -> np.ndarray:
    """Scores whose top-p per direction is the guarded allocation (``budget.guards.
    guarded_allocation``): the gain ranking with candidates whose guard value is >= tau vetoed
    (their budget goes to the next). ``train`` = (gain scores, guard values, gains, directions)
    of the training rows, where tau is chosen for the highest MeanDelta@p (quantile 1.0: no
    guard); ``test`` = (gain scores, guard values) of the rows to score."""
    s_tr, v_tr, g_tr, d_tr = (np.asarray(a) for a in train)
    best = (-math.inf, math.inf)
    for q in quantiles:
        tau = math.inf if q >= 1.0 else float(np.quantile(v_tr, q))
        means = []
        for d in np.unique(d_tr):
            rows = d_tr == d
            routed = guarded_allocation(
                s_tr[rows], p, guard_scores=v_tr[rows], guard_threshold=tau
            ).routed
            means.append(g_tr[rows][routed].mean() if routed.any() else 0.0)
        if np.mean(means) > best[0]:
            best = (float(np.mean(means)), tau)
    s_te, v_te = (np.asarray(a, dtype=float) for a in test)
    return s_te - 1e6 * (v_te >= best[1])  # vetoed rows sink below every accepted candidate
