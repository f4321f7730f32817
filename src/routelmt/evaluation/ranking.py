"""Ranking metrics of docs/method.md section 4, computed on weighted copies of the test set.

Every function takes a weight matrix ``w`` of shape (B, N): row b says how many copies of each
segment resample b holds (all ones = the test set itself). Resampling only duplicates or drops
segments, so the order of the copies by score equals the order of the original segments, with
the copies of one segment adjacent. Taking the top k of a resample is therefore a cumulative sum
of weights along one fixed order: the ranking is recomputed exactly on every resample, yet the
whole bootstrap is a few (B, N) array operations instead of B sorts.

Rules (fixed in ``budget.allocation``, the one place that defines them for the whole library):

- **k** = ``budget_count(N, p)`` = floor(p * N + 0.5): round half up. Python's ``round`` rounds
  half to even, which would make k jump unevenly between budgets.
- **Ties** in scores are broken by a seeded random permutation of the segments (``tie_keys``),
  never by the data order, so a constant-score router cannot profit from how the file is sorted.
  The same keys order the true gains, so a router whose scores equal the gains gets HitRate 100.
- When k = 0 the share-of-routed metrics (HitRate, MeanDelta, severe loss) are NaN.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from routelmt.budget.allocation import budget_count, descending_order, tie_keys
from routelmt.errors import ConfigError


def validate_budgets(budgets: Iterable[float]) -> list[float]:
    """Budgets must be numbers strictly inside (0, 1); duplicates are dropped, order kept."""
    out: list[float] = []
    if isinstance(budgets, str | bytes):
        raise ConfigError(f"budgets must be a list of numbers in (0, 1), got {budgets!r}")
    for p in budgets:
        if isinstance(p, bool) or not isinstance(p, int | float | np.floating | np.integer):
            raise ConfigError(f"budget {p!r} is not a number; expected a share in (0, 1)")
        value = float(p)
        if math.isnan(value) or not 0.0 < value < 1.0:
            raise ConfigError(f"budget {p!r} is outside (0, 1); expected e.g. 0.3 for 30%")
        if value not in out:
            out.append(value)
    if not out:
        raise ConfigError("no budgets given; expected at least one share in (0, 1)")
    return out


class OrderedWeights:
    """Cumulative weights of one ranking, reused for every budget and every summed quantity.

    Pass ``cache_key`` to the sum methods when the same values are summed again (e.g. the
    gains at every budget and curve point): their cumulative sum is then computed once.
    """

    def __init__(self, order: np.ndarray, w: np.ndarray) -> None:
        self.order = order
        self.wo = w[:, order]
        self.cw = np.cumsum(self.wo, axis=1, dtype=np.int64)
        self._flat: tuple[np.ndarray, float] | None = None
        self._cums: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._counts: dict[bytes, np.ndarray] = {}

    def _positions(self, k: np.ndarray) -> np.ndarray:
        """Per row, the first position whose cumulative weight reaches k (shape of ``k``)."""
        b, n = self.cw.shape
        if self._flat is None:
            span = float(self.cw[:, -1].max(initial=0)) + 1.0
            offsets = np.arange(b, dtype=np.int64)[:, None] * int(span)
            self._flat = ((self.cw + offsets).ravel(), span)
        flat, span = self._flat
        offsets = np.arange(b, dtype=np.int64)[:, None] * int(span)
        pos = np.searchsorted(flat, (np.minimum(k, span - 1) + offsets).ravel(), side="left")
        return np.minimum(pos.reshape(k.shape) - np.arange(b)[:, None] * n, n - 1)

    def _cumulative(self, values: np.ndarray, cache_key: str | None) -> tuple[np.ndarray, ...]:
        if cache_key is not None and cache_key in self._cums:
            return self._cums[cache_key]
        vo = np.asarray(values, dtype=float)[self.order]
        result = (vo, np.cumsum(self.wo * vo, axis=1))
        if cache_key is not None:
            self._cums[cache_key] = result
        return result

    def topk_sums(
        self, values: np.ndarray, k: np.ndarray, *, cache_key: str | None = None
    ) -> np.ndarray:
        """Sum of ``values`` over the top-k copies; ``k`` has shape (B, P); returns (B, P)."""
        vo, cv = self._cumulative(values, cache_key)
        k = np.asarray(k, dtype=np.int64)
        j = self._positions(k)
        rows = np.arange(self.wo.shape[0])[:, None]
        wj = self.wo[rows, j]
        before_w = self.cw[rows, j] - wj
        before_v = cv[rows, j] - wj * vo[j]
        return np.where(k > 0, before_v + (k - before_w) * vo[j], 0.0)

    def topk_counts(self, k: np.ndarray) -> np.ndarray:
        """Copies of each segment in the top-k, in this ranking's order; ``k`` has shape (B,)."""
        key = k.tobytes()
        if key not in self._counts:
            self._counts[key] = np.clip(k[:, None] - (self.cw - self.wo), 0, self.wo)
        return self._counts[key]

    def hits(self, other: OrderedWeights, k: np.ndarray) -> np.ndarray:
        """Copies in both this ranking's and ``other``'s top-k (the intersection), per row."""
        other_position = np.empty_like(other.order)
        other_position[other.order] = np.arange(other.order.size)
        theirs = other.topk_counts(k)[:, other_position[self.order]]
        return np.minimum(self.topk_counts(k), theirs).sum(axis=1)

    def first_reaching(
        self, values: np.ndarray, targets: np.ndarray, *, cache_key: str | None = None
    ) -> np.ndarray:
        """Smallest k with (sum of ``values`` over the top-k) >= target, per row; NaN if never.

        ``targets`` has shape (B,); the scan is over every k = 0..N_b (a grid of 1/N_b).
        """
        vo, cv = self._cumulative(values, cache_key)
        tol = 1e-9 * np.maximum(1.0, np.abs(targets))
        reached = cv >= (targets - tol)[:, None]
        any_reached = reached.any(axis=1)
        j = reached.argmax(axis=1)
        rows = np.arange(cv.shape[0])
        wj = self.wo[rows, j]
        before_v = cv[rows, j] - wj * vo[j]
        before_w = self.cw[rows, j] - wj
        need = targets - tol - before_v
        with np.errstate(divide="ignore", invalid="ignore"):
            copies = np.ceil(need / vo[j])
        copies = np.clip(np.nan_to_num(copies, nan=0.0, posinf=0.0, neginf=0.0), 0, wj)
        k = np.where(need <= 0, before_w, before_w + copies).astype(float)
        return np.where(any_reached, k, np.nan)


def average_ranks(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Average (1-based) ranks of every copy's value within each weighted row, like scipy."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    unique_of_sorted = np.cumsum(np.r_[True, xs[1:] != xs[:-1]]) - 1
    per_unique = np.add.reduceat(w[:, order], starts, axis=1).astype(float)
    rank_unique = np.cumsum(per_unique, axis=1) - per_unique + (per_unique + 1.0) / 2.0
    ranks = np.empty(w.shape, dtype=float)
    ranks[:, order] = rank_unique[:, unique_of_sorted]
    return ranks


def weighted_spearman(
    scores: np.ndarray, gains: np.ndarray, w: np.ndarray, *, gain_ranks: np.ndarray | None = None
) -> np.ndarray:
    """Spearman's rho of scores with gains on each weighted row (NaN for a constant row).

    ``gain_ranks`` (from ``average_ranks(gains, w)``) saves recomputing them per router.
    """
    rs = average_ranks(np.asarray(scores, dtype=float), w)
    rg = average_ranks(np.asarray(gains, dtype=float), w) if gain_ranks is None else gain_ranks
    wf = w.astype(float)
    total = wf.sum(axis=1, keepdims=True)
    ds = rs - (wf * rs).sum(axis=1, keepdims=True) / total
    dg = rg - (wf * rg).sum(axis=1, keepdims=True) / total
    cov = (wf * ds * dg).sum(axis=1)
    var = (wf * ds * ds).sum(axis=1) * (wf * dg * dg).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = cov / np.sqrt(var)
    return np.where(var > 1e-12 * np.maximum(1.0, total[:, 0] ** 6), rho, np.nan)


def budget_metrics(
    scored: OrderedWeights,
    oracle: OrderedWeights,
    gains: np.ndarray,
    q_small_sum: np.ndarray,
    total: np.ndarray,
    p: float,
    severe_delta: float,
) -> dict[str, np.ndarray]:
    """HitRate, MeanDelta, hybrid quality and severe-loss rate at one budget, per row."""
    k = budget_count(total, p)
    gain_sum = scored.topk_sums(gains, k[:, None], cache_key="gain")[:, 0]
    bad = (gains < -severe_delta).astype(float)
    severe = scored.topk_sums(bad, k[:, None], cache_key=f"severe{severe_delta}")[:, 0]
    hits = scored.hits(oracle, k)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(k > 0, 1.0 / k, np.nan)
    return {
        "k": k,
        "hit_rate": 100.0 * hits * share,
        "mean_delta": gain_sum * share,
        "hybrid_quality": (q_small_sum + gain_sum) / total,
        "severe_loss": 100.0 * severe * share,
    }


def _single(scores: np.ndarray, gains: np.ndarray, seed: int) -> tuple[OrderedWeights, ...]:
    scores = np.asarray(scores, dtype=float)
    gains = np.asarray(gains, dtype=float)
    if scores.shape != gains.shape or scores.ndim != 1 or scores.size == 0:
        raise ValueError("scores and gains must be non-empty 1-D arrays of the same length")
    keys = tie_keys(scores.size, seed)
    w = np.ones((1, scores.size), dtype=np.int64)
    return (
        OrderedWeights(descending_order(scores, keys), w),
        OrderedWeights(descending_order(gains, keys), w),
    )


def hit_rate(scores: np.ndarray, gains: np.ndarray, p: float, *, seed: int = 0) -> float:
    """|top-k by score ∩ top-k by gain| / k, in percent (ties: seeded permutation)."""
    scored, oracle = _single(scores, gains, seed)
    k = budget_count(np.array([len(gains)]), p)
    return float(100.0 * scored.hits(oracle, k)[0] / k[0] if k[0] > 0 else math.nan)


def mean_delta(scores: np.ndarray, gains: np.ndarray, p: float, *, seed: int = 0) -> float:
    """Mean true gain over the top-k by score."""
    scored, _ = _single(scores, gains, seed)
    k = budget_count(len(gains), p)
    return float(scored.topk_sums(np.asarray(gains), np.array([[k]]))[0, 0] / k if k else math.nan)


def hybrid_quality(
    scores: np.ndarray, q_small: np.ndarray, q_large: np.ndarray, p: float, *, seed: int = 0
) -> float:
    """Mean over all segments of q_large if routed else q_small."""
    q_small = np.asarray(q_small, dtype=float)
    gains = np.asarray(q_large, dtype=float) - q_small
    scored, _ = _single(scores, gains, seed)
    k = budget_count(len(gains), p)
    return float((q_small.sum() + scored.topk_sums(gains, np.array([[k]]))[0, 0]) / len(gains))


def severe_loss(
    scores: np.ndarray, gains: np.ndarray, p: float, *, delta: float = 10.0, seed: int = 0
) -> float:
    """Percent of routed segments whose gain is below -delta."""
    gains = np.asarray(gains, dtype=float)
    scored, _ = _single(scores, gains, seed)
    k = budget_count(len(gains), p)
    bad = (gains < -delta).astype(float)
    return float(100.0 * scored.topk_sums(bad, np.array([[k]]))[0, 0] / k if k else math.nan)


def spearman(scores: np.ndarray, gains: np.ndarray) -> float:
    """Spearman's rho (scipy, average ranks for ties); NaN for constant scores."""
    from scipy.stats import spearmanr

    scores = np.asarray(scores, dtype=float)
    gains = np.asarray(gains, dtype=float)
    if np.ptp(scores) == 0 or np.ptp(gains) == 0:
        return math.nan
    return float(spearmanr(scores, gains).statistic)
