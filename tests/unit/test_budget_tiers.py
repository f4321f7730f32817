from __future__ import annotations

import itertools

import numpy as np
import pytest

from routelmt.budget import allocate_tiers, allocate_top_p
from routelmt.errors import ConfigError, InputError


def _brute_force(gains: np.ndarray, costs: np.ndarray, budget: float) -> float:
    n, m = gains.shape
    best = 0.0
    for choice in itertools.product(range(m + 1), repeat=n):
        cost = sum(costs[i, t - 1] for i, t in enumerate(choice) if t)
        if cost <= budget + 1e-9:
            best = max(best, sum(gains[i, t - 1] for i, t in enumerate(choice) if t))
    return best


def test_hand_checked_case() -> None:
    # tiers: medium (extra cost 1) and large (extra cost 3)
    gains = np.array(
        [
            [4.0, 7.0],  # medium 4/1 = 4 per unit; upgrade to large +3 for +2 cost = 1.5
            [1.0, 9.0],  # medium below the hull; large 9/3 = 3 per unit
            [2.0, 2.5],  # medium 2 per unit; upgrade +0.5 for +2 = 0.25
            [-1.0, -0.5],  # never worth it
        ]
    )
    costs = np.array([1.0, 3.0])
    # budget 4: buy 4/unit (req 0 medium, cost 1), then 3/unit (req 1 large, cost 3) -> 13
    alloc = allocate_tiers(gains, costs, 4.0)
    assert alloc.tier.tolist() == [1, 2, 0, 0]
    assert alloc.total_cost == 4.0 and alloc.total_gain == 13.0
    # budget 5: next is req 2 medium (2/unit, cost 1) -> 15; req 0's upgrade needs 2 more
    alloc = allocate_tiers(gains, costs, 5.0)
    assert alloc.tier.tolist() == [1, 2, 1, 0] and alloc.total_gain == 15.0
    # budget 7: then req 0 upgrades to large (1.5/unit, cost 2) -> 18; req 3 never
    alloc = allocate_tiers(gains, costs, 7.0)
    assert alloc.tier.tolist() == [2, 2, 1, 0] and alloc.total_gain == 18.0
    assert alloc.counts(2) == [1, 1, 2]
    assert allocate_tiers(gains, costs, 0.0).tier.tolist() == [0, 0, 0, 0]
    assert allocate_tiers(gains, costs, 100.0).tier.tolist() == [2, 2, 2, 0]


@pytest.mark.parametrize("seed", range(6))
def test_never_over_budget_and_close_to_optimal(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, m = 6, 3
    gains = rng.normal(1.0, 2.0, (n, m)) + np.array([0.0, 1.0, 2.0])
    costs = rng.uniform(0.5, 3.0, (n, m)) + np.array([0.0, 1.0, 2.0])
    for budget in (0.5, 2.0, 5.0, 9.0, 30.0):
        alloc = allocate_tiers(gains, costs, budget)
        rows = np.flatnonzero(alloc.tier)
        spent = costs[rows, alloc.tier[rows] - 1].sum()
        assert spent <= budget + 1e-9 and alloc.total_cost == pytest.approx(spent)
        optimum = _brute_force(gains, costs, budget)
        assert alloc.total_gain <= optimum + 1e-9
        # the greedy loses at most one upgrade against the optimum
        assert alloc.total_gain >= optimum - gains.clip(min=0).max() - 1e-9


def test_one_tier_unit_cost_is_top_p_of_positive_gains() -> None:
    rng = np.random.default_rng(0)
    gains = rng.normal(0.5, 1.0, 200)
    for p in (0.1, 0.3, 0.9):
        k = int(np.floor(p * 200 + 0.5))
        alloc = allocate_tiers(gains[:, None], [1.0], float(k))
        expected = allocate_top_p(gains, p, positive_only=True)
        assert (alloc.tier.astype(bool) == expected).all()


def test_per_request_costs_and_errors() -> None:
    gains = np.array([[5.0], [5.0]])
    alloc = allocate_tiers(gains, np.array([[4.0], [1.0]]), 3.0)
    assert alloc.tier.tolist() == [0, 1]  # same gain, cheaper request wins
    with pytest.raises(ConfigError, match="> 0"):
        allocate_tiers(gains, [0.0], 1.0)
    with pytest.raises(ConfigError, match="-1"):
        allocate_tiers(gains, [1.0], -1.0)
    with pytest.raises(InputError, match="2 tier costs"):
        allocate_tiers(np.ones((2, 2)), [1.0], 1.0)
