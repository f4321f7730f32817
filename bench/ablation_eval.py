"""Out-of-fold scoring schemes and the per-direction, paired evaluation of the ablations.

A candidate is ``fit(train_rows) -> predict(test_rows)``; everything it chooses (layer, penalty,
width) it chooses inside its training rows. Schemes:
- ``kfold``: 5 folds grouped by source (all directions of one English source share a fold);
- ``lodo``: leave one direction out, crossed with the same source folds, so a test row's model
  saw neither its direction nor its source text.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.stats import spearmanr

from routelmt.evaluation.evaluate import headroom_closed
from routelmt.splits import fold_ids

Candidate = Callable[[np.ndarray, np.ndarray], np.ndarray]


def out_of_fold(
    candidate: Candidate,
    groups: np.ndarray,
    directions: np.ndarray,
    scheme: str = "kfold",
    folds: int = 5,
    seed: int = 0,
) -> np.ndarray:
    fold = fold_ids(groups, folds, seed)
    scores = np.full(len(groups), np.nan)
    for f in range(folds):
        if scheme == "kfold":
            test = np.flatnonzero(fold == f)
            train = np.flatnonzero(fold != f)
            scores[test] = candidate(train, test)
        else:
            for d in np.unique(directions):
                test = np.flatnonzero((fold == f) & (directions == d))
                train = np.flatnonzero((fold != f) & (directions != d))
                scores[test] = candidate(train, test)
    return scores


def _metrics(g: np.ndarray, s: np.ndarray, budget: float) -> tuple[float, float, float]:
    """(HC@p in percent, MeanDelta@p, Spearman) of scores ``s`` against gains ``g``."""
    k = max(1, round(budget * len(g)))
    top = np.argsort(-s, kind="stable")[:k]
    best = np.sort(g)[::-1][:k].mean()
    md = g[top].mean()
    return float(headroom_closed(md, g.mean(), best)), md, float(spearmanr(s, g).statistic)


def evaluate(
    gains: np.ndarray,
    directions: np.ndarray,
    groups: np.ndarray,
    scores: dict[str, np.ndarray],
    baselines: tuple[str, ...] = ("length", "entropy"),
    budget: float = 0.3,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """Per direction (budget applied within each direction, as the paper): HC@p, MeanDelta@p,
    Spearman with 95% bootstrap intervals (resampling source groups), and for every router the
    paired difference to each baseline on the same resamples; plus the mean over directions."""
    rng = np.random.default_rng(seed)
    out: dict = {"directions": {}, "budget": budget, "n_boot": n_boot}
    names = list(scores)
    mean_hc = {name: [] for name in names}
    for d in np.unique(directions):
        rows = np.flatnonzero(directions == d)
        g = gains[rows]
        point = {name: _metrics(g, scores[name][rows], budget) for name in names}
        uniq, inverse = np.unique(groups[rows], return_inverse=True)
        members = [np.flatnonzero(inverse == u) for u in range(len(uniq))]
        boot = {name: np.zeros((n_boot, 3)) for name in names}
        for b in range(n_boot):
            pick = rng.integers(0, len(uniq), len(uniq))
            idx = np.concatenate([members[p] for p in pick])
            for name in names:
                boot[name][b] = _metrics(g[idx], scores[name][rows][idx], budget)
        block = {}
        for name in names:
            lo, hi = np.nanpercentile(boot[name], [2.5, 97.5], axis=0)
            entry = {
                "hc": point[name][0],
                "hc_ci": [lo[0], hi[0]],
                "mean_delta": point[name][1],
                "spearman": point[name][2],
                "spearman_ci": [lo[2], hi[2]],
                "vs": {},
            }
            for base in baselines:
                if base not in scores or base == name:
                    continue
                diff = boot[name] - boot[base]
                dlo, dhi = np.nanpercentile(diff, [2.5, 97.5], axis=0)
                entry["vs"][base] = {
                    "hc": point[name][0] - point[base][0],
                    "hc_ci": [dlo[0], dhi[0]],
                    "spearman": point[name][2] - point[base][2],
                    "spearman_ci": [dlo[2], dhi[2]],
                    "beats": bool(dlo[0] > 0),
                }
            block[name] = entry
            mean_hc[name].append(point[name][0])
        out["directions"][str(d)] = {"n": len(rows), "routers": block}
    out["mean_hc"] = {name: float(np.mean(v)) for name, v in mean_hc.items()}
    return out
