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


def test_tier_pacer_spends_the_budget_and_nearly_matches_the_offline_allocation() -> None:
    from routelmt.budget.tiers import TierPacer, TierSpec

    rng = np.random.default_rng(0)
    scores = rng.normal(10, 5, 4000)
    tiers = [TierSpec("mid", 0.3, 0.6), TierSpec("large", 1.0, 1.0)]
    pacer = TierPacer(tiers, 0.3, warmup=50)
    decisions = [pacer.decide(s) for s in scores]
    late = decisions[1000:]
    assert abs(np.mean([d.charged for d in late]) - 0.3) < 0.01  # 0.3 of all-large spend
    assert {d.tier for d in decisions} == {0, 1, 2}  # every tier is used
    gains = scores[:, None] * pacer.scales
    online = sum(gains[i, d.tier - 1] for i, d in enumerate(decisions) if d.tier)
    offline = allocate_tiers(gains, pacer.costs, 0.3 * len(scores)).total_gain
    assert online > 0.98 * offline  # the price the loop finds is the allocation's price
    # a negative predicted gain is never worth money; a forced request gets the top tier
    assert pacer.decide(-50.0).tier == 0
    forced = pacer.decide(-50.0, force=True)
    assert forced.tier == 2 and forced.charged == 1.0
    spent = pacer.state()["spent"]
    assert pacer.refund(forced) and pacer.state()["spent"] == spent - 1.0
    assert not pacer.refund(forced)  # once


def test_tier_pacer_hard_cap_and_bad_tiers() -> None:
    from routelmt.budget.tiers import TierPacer, TierSpec

    pacer = TierPacer([TierSpec("mid", 0.3, 0.6), TierSpec("large", 1.0)], 0.5, hard_cap=2.0)
    for s in np.linspace(1, 100, 300):
        pacer.decide(float(s))
    assert pacer.state()["spent"] <= 2.0 + 1e-9 and pacer.state()["capped"] > 0
    with pytest.raises(ConfigError):
        TierSpec("mid", 0.0)
    with pytest.raises(ConfigError):
        TierPacer([TierSpec("a", 1.0), TierSpec("a", 2.0)], 0.3)
    with pytest.raises(ConfigError):
        TierPacer([], 0.3)
