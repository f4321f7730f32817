"""More than two tiers: spend a total cost budget across several larger models.

Each request i may stay on the small model (gain 0, extra cost 0) or go to tier j with predicted
gain ``gains[i, j]`` (over the small model) at extra cost ``costs[i, j] > 0``. Maximising the
summed gain under ``sum of extra costs <= budget`` is a multiple-choice knapsack. We solve it the
Lagrangian way, made exact for the relaxation and greedy for the integers:

1. per request, keep only the options on the upper convex hull of (cost, gain) starting at the
   small model (0, 0): anything below the hull is never chosen by any price lambda, and options
   with gain <= 0 are never worth money;
2. the hull's successive upgrades have decreasing gain per extra cost; sort every request's
   upgrades by that ratio (ties: lower request index, then cheaper upgrade first) and buy them in
   order while they fit. An upgrade that does not fit blocks that request's later upgrades, and
   cheaper upgrades of other requests may still fill the leftover.

Step 2 is what bisecting on the price lambda would converge to (the LP optimum up to its single
fractional upgrade), without a tolerance to tune; it is O(n m log(n m)). The budget is never
exceeded. With one tier and unit costs it reduces to "route the top-k positive gains".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from routelmt.errors import ConfigError, InputError

__all__ = ["TierAllocation", "allocate_tiers"]


@dataclass(frozen=True)
class TierAllocation:
    """``tier[i]`` is 0 for the small model, j (1-based) for ``gains[:, j - 1]``."""

    tier: np.ndarray
    total_cost: float
    total_gain: float
    budget: float

    def counts(self, n_tiers: int) -> list[int]:
        return np.bincount(self.tier, minlength=n_tiers + 1).tolist()


def _hull(costs: np.ndarray, gains: np.ndarray) -> list[int]:
    """Indices of the options on the upper concave hull from (0, 0), by increasing cost."""
    order = sorted(range(costs.size), key=lambda j: (costs[j], -gains[j], j))
    hull: list[int] = []  # option indices; the origin is implicit
    for j in order:
        if gains[j] <= (gains[hull[-1]] if hull else 0.0):
            continue  # costs at least as much for no more gain
        while hull:
            c1, g1 = (costs[hull[-2]], gains[hull[-2]]) if len(hull) > 1 else (0.0, 0.0)
            c2, g2 = costs[hull[-1]], gains[hull[-1]]
            # drop the last point when it lies on or below the chord from point 1 to j
            if (g2 - g1) * (costs[j] - c1) <= (gains[j] - g1) * (c2 - c1):
                hull.pop()
            else:
                break
        hull.append(j)
    return hull


def allocate_tiers(gains: np.ndarray, costs: np.ndarray, budget: float) -> TierAllocation:
    """Choose a tier per request to maximise the summed predicted gain within ``budget``.

    ``gains``: (n, m) predicted gain of each larger tier over the small model. ``costs``: (m,)
    or (n, m) extra cost of each tier over the small model, all > 0. ``budget``: total extra
    cost allowed (same unit as ``costs``), >= 0.
    """
    g = np.asarray(gains, dtype=float)
    if g.ndim == 1:
        g = g[:, None]
    if g.ndim != 2:
        raise InputError(f"expected gains of shape (n, m), got {g.shape}", field="gains")
    n, m = g.shape
    c = np.asarray(costs, dtype=float)
    if c.ndim == 1:
        if c.size != m:
            raise InputError(f"expected {m} tier costs, got {c.size}", field="costs")
        c = np.broadcast_to(c, (n, m))
    if c.shape != (n, m):
        raise InputError(
            f"expected costs of shape ({m},) or ({n}, {m}), got {c.shape}", field="costs"
        )
    if not np.all(np.isfinite(g)):
        raise InputError("gains must be finite", field="gains")
    if not np.all(np.isfinite(c)) or np.any(c <= 0):
        raise ConfigError("every tier's extra cost must be a finite number > 0")
    if isinstance(budget, bool) or not math.isfinite(float(budget)) or float(budget) < 0:
        raise ConfigError(f"budget must be a finite cost >= 0, got {budget!r}")
    budget = float(budget)

    ratio: list[float] = []
    req: list[int] = []
    step: list[int] = []
    d_cost: list[float] = []
    option: list[int] = []
    for i in range(n):
        prev_c = prev_g = 0.0
        for k, j in enumerate(_hull(c[i], g[i])):
            dc, dg = c[i, j] - prev_c, g[i, j] - prev_g
            ratio.append(dg / dc)
            req.append(i)
            step.append(k)
            d_cost.append(dc)
            option.append(j)
            prev_c, prev_g = c[i, j], g[i, j]
    tier = np.zeros(n, dtype=int)
    spent = 0.0
    if ratio:
        order = np.lexsort((np.array(step), np.array(req), -np.array(ratio)))
        blocked = np.zeros(n, dtype=bool)
        for t in order:
            i = req[t]
            if blocked[i]:
                continue
            if spent + d_cost[t] <= budget * (1 + 1e-12) + 1e-12:
                spent += d_cost[t]
                tier[i] = option[t] + 1
            else:
                blocked[i] = True
    chosen = tier > 0
    rows = np.flatnonzero(chosen)
    total_cost = float(c[rows, tier[rows] - 1].sum()) if rows.size else 0.0
    total_gain = float(g[rows, tier[rows] - 1].sum()) if rows.size else 0.0
    return TierAllocation(tier=tier, total_cost=total_cost, total_gain=total_gain, budget=budget)
