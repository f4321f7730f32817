"""HC@p of many score vectors on one set of group resamples, averaged over seeds, and their
paired differences: what a learning curve (several random label samples per size) needs.

A "router" here is a list of score vectors (one per seed); its HC on a resample is the mean of
the vectors' HC, so its interval covers both the label sampling and the test segments.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from routelmt.budget.allocation import budget_count, descending_order, tie_keys
from routelmt.evaluation.bootstrap import group_index, group_weights, percentile_interval
from routelmt.evaluation.evaluate import headroom_closed
from routelmt.evaluation.ranking import OrderedWeights


class HCBootstrap:
    """HC@p (percent) of score vectors against ``gains``: the point value (row 0) and ``n_boot``
    group resamples (rows 1..), the same resamples for every router (paired)."""

    def __init__(
        self,
        gains: np.ndarray,
        groups: Sequence[str] | np.ndarray,
        budget: float = 0.3,
        n_boot: int = 1000,
        seed: int = 0,
    ) -> None:
        self.gains = np.asarray(gains, dtype=np.float64)
        index, n_groups = group_index([str(g) for g in groups])
        rng = np.random.default_rng(seed)
        draws = group_weights(index, n_groups, n_boot, rng) if n_boot else None
        ones = np.ones((1, len(self.gains)), dtype=np.int64)
        self.w = ones if draws is None else np.vstack([ones, draws])
        self.keys = tie_keys(len(self.gains), seed)
        total = self.w.sum(axis=1)
        self.k = budget_count(total, budget)[:, None]
        oracle = OrderedWeights(descending_order(self.gains, self.keys), self.w)
        self.oracle_delta = oracle.topk_sums(self.gains, self.k)[:, 0] / self.k[:, 0]
        self.mean_gain = (self.w @ self.gains) / total

    def hc(self, scores: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """HC per row (point, then resamples); a list of vectors gives their mean HC."""
        vectors = [scores] if isinstance(scores, np.ndarray) and scores.ndim == 1 else scores
        out = np.zeros(self.w.shape[0])
        for s in vectors:
            ranked = OrderedWeights(descending_order(np.asarray(s, float), self.keys), self.w)
            delta = ranked.topk_sums(self.gains, self.k)[:, 0] / self.k[:, 0]
            out += headroom_closed(delta, self.mean_gain, self.oracle_delta)
        return out / len(vectors)


def summary(rows: np.ndarray, level: float = 0.95) -> dict[str, Any]:
    """{"value", "ci"} of one HC (or difference) row vector from ``HCBootstrap.hc``."""
    low, high = percentile_interval(rows[1:], level) if len(rows) > 1 else (np.nan, np.nan)
    return {"value": float(rows[0]), "ci": [float(low), float(high)]}


def paired(a: np.ndarray, b: np.ndarray, level: float = 0.95) -> dict[str, Any]:
    """A - B on the same resamples; ``beats`` when the interval lies above zero, ``below``
    when under it."""
    out = summary(a - b, level)
    out["beats"] = bool(out["ci"][0] > 0)
    out["below"] = bool(out["ci"][1] < 0)
    return out
