"""How far the default pacer's share over a short stream strays from the budget: the figure the
Ray serve test's tolerance rests on (its random router gives uniform scores, warm-up 20)."""

from __future__ import annotations

import numpy as np

from routelmt.budget.pacer import Pacer
from routelmt.budget.plan import BudgetPlan
from routelmt.serve.config import DEFAULTS

P, N, SEEDS = 0.3, 300, 150


def _shares(seeds: int = SEEDS, **budget: object) -> np.ndarray:
    """The share over N uniform random scores for each seed, with the default budget settings
    (warm-up 20, as the Ray test) changed by ``budget``."""
    plan = BudgetPlan.from_settings({**DEFAULTS["budget"], "share": P, "warmup": 20, **budget})
    shares = []
    for seed in range(seeds):
        pacer = plan.build(lambda stage, options: Pacer(stage.spec, **options))[0]
        scores = np.random.default_rng(seed).random(N)
        shares.append(sum(pacer.decide(float(s)).large for s in scores) / N)
    return np.asarray(shares)


def test_the_default_pacer_stays_within_four_points_over_300_random_scores():
    shares = _shares()
    # measured on these 150 seeds: largest |share - p| 0.030, mean share 0.296, 13% of streams
    # beyond 1.5 points (``_shares(400)``: 0.033, 0.295); a slight underspend in the first 300
    # requests, which the quantile rule's correction then pays back
    assert np.abs(shares - P).max() <= 0.04
    assert abs(shares.mean() - P) <= 0.01
    # the spread is real, not a tolerance that cannot fail
    assert np.mean(np.abs(shares - P) > 0.015) >= 0.05
