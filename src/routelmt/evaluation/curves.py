"""Quality-budget curves, their area, APGR and CPT (docs/method.md section 4), on weighted rows.

- The curve is hybrid quality at p = 0, step, ..., 1 (k = ``budget_count``: floor(pN + 0.5),
  as everywhere).
- **AUC**: trapezoid rule over p.
- **Random line**: the exact expectation of routing a uniformly random k segments,
  mean q_S + (k / N) * mean g; this equals mean q_S + p * mean g whenever pN is a whole number,
  and makes a random router's expected APGR exactly 0 under the same k rounding.
- **APGR** = (AUC - AUC_random) / (AUC_oracle - AUC_random); NaN when the oracle is no better
  than random (all gains equal).
- **CPT(x)**: the smallest budget k / N, scanning every k = 0..N (a grid of 1/N), at which the
  hybrid quality recovers x% of the gap between small-only and large-only quality. NaN when the
  router never gets there, or when large-only is not better than small-only (no gap to recover).
"""

from __future__ import annotations

import numpy as np

from routelmt.budget.allocation import budget_count
from routelmt.evaluation.ranking import OrderedWeights


def curve_grid(step: float = 0.05) -> np.ndarray:
    """0, step, ..., 1 (inclusive), rounded so that keys print cleanly."""
    n = int(round(1.0 / step))
    return np.round(np.linspace(0.0, 1.0, n + 1), 10)


def quality_curve(
    ranked: OrderedWeights,
    gains: np.ndarray,
    q_small_sum: np.ndarray,
    total: np.ndarray,
    grid: np.ndarray,
) -> np.ndarray:
    """Hybrid quality at each grid budget, shape (B, P)."""
    k = budget_count(total[:, None], grid[None, :])
    return (q_small_sum[:, None] + ranked.topk_sums(gains, k, cache_key="gain")) / total[:, None]


def random_curve(
    q_small_sum: np.ndarray, gain_sum: np.ndarray, total: np.ndarray, grid: np.ndarray
) -> np.ndarray:
    """Expected hybrid quality of uniformly random routing, shape (B, P)."""
    k = budget_count(total[:, None], grid[None, :])
    return (q_small_sum[:, None] + k / total[:, None] * gain_sum[:, None]) / total[:, None]


def auc(curve: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Trapezoid area under each row of ``curve`` over ``grid``."""
    widths = np.diff(grid)
    return ((curve[:, 1:] + curve[:, :-1]) / 2.0 * widths).sum(axis=1)


def apgr(router_auc: np.ndarray, random_auc: np.ndarray, oracle_auc: np.ndarray) -> np.ndarray:
    """Share of the oracle's area above random that the router achieves (random 0, oracle 1)."""
    span = oracle_auc - random_auc
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.abs(span) > 1e-12, (router_auc - random_auc) / span, np.nan)


def cpt(
    ranked: OrderedWeights,
    gains: np.ndarray,
    gain_sum: np.ndarray,
    total: np.ndarray,
    level: float,
) -> np.ndarray:
    """Smallest budget (k / N) recovering ``level`` percent of the large-minus-small gap."""
    targets = level / 100.0 * gain_sum
    k = ranked.first_reaching(gains, targets, cache_key="gain")
    return np.where(gain_sum > 0, k / total, np.nan)
