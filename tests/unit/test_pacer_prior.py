"""The pacer's warm start (a shipped score distribution) and its quantile decision rule."""

from __future__ import annotations

import numpy as np
import pytest

from routelmt.budget.pacer import BudgetSpec, Pacer
from routelmt.budget.score_distribution import ScoreDistribution
from routelmt.errors import ConfigError


def stream(n: int, seed: int = 0, shift: float = 0.0) -> np.ndarray:
    return np.random.default_rng(seed).gumbel(10.0 + shift, 4.0, n)


def test_a_prior_starts_at_its_quantile_for_the_budget_without_a_warm_up():
    prior = ScoreDistribution.from_scores(stream(5000, seed=1))
    pacer = Pacer(BudgetSpec(share=0.3), prior=prior, rule="quantile")
    state = pacer.state()
    assert not state["warming_up"]
    assert pacer.threshold == pytest.approx(prior.quantile(0.7), rel=1e-6)
    assert state["expected_threshold"] == pytest.approx(prior.quantile(0.7))
    first = pacer.decide(1e6)
    assert first.large and first.reason == "above_threshold"  # decided, not warming up


def test_the_quantile_rule_tracks_the_share_from_the_first_requests_and_after_a_shift():
    prior = ScoreDistribution.from_scores(stream(5000, seed=1))
    pacer = Pacer(BudgetSpec(share=0.3), prior=prior, rule="quantile")
    scores = np.concatenate([stream(1000, seed=2), stream(1000, seed=3, shift=8.0)])
    large = np.array([pacer.decide(float(s)).large for s in scores])
    assert abs(large[:100].mean() - 0.3) <= 0.05
    assert abs(large[1000:].mean() - 0.3) <= 0.03  # the window follows the shifted scores
    assert abs(large.mean() - 0.3) <= 0.01
    gap = pacer.state()["threshold_gap_scales"]
    assert gap > 1.0  # the shifted traffic's threshold is far above the shipped expectation


def test_the_quantile_rule_routes_the_offline_top_k_on_a_steady_stream_better_than_integral():
    """Same scores, same budget: the quantile rule's routed set is closer to the top-k."""
    scores = stream(3000, seed=4)
    top = scores >= np.quantile(scores, 0.7)
    overlap = {}
    for rule in ("integral", "quantile"):
        pacer = Pacer(BudgetSpec(share=0.3), history=stream(500, seed=5), rule=rule)
        large = np.array([pacer.decide(float(s)).large for s in scores])
        overlap[rule] = (large & top).sum() / top.sum()
    assert overlap["quantile"] > overlap["integral"]


def test_quantile_state_round_trips_and_a_refund_is_undone():
    pacer = Pacer(BudgetSpec(share=0.3), history=stream(200), rule="quantile")
    decisions = [pacer.decide(float(s)) for s in stream(300, seed=6)]
    twin = Pacer(BudgetSpec(share=0.3), rule="quantile")
    twin.load_state_dict(pacer.state_dict())
    assert twin.threshold == pacer.threshold
    nxt = stream(50, seed=7)
    assert [pacer.decide(float(s)).large for s in nxt] == [twin.decide(float(s)).large for s in nxt]
    routed = next(d for d in decisions if d.large)
    before = pacer.state()["spent"]
    assert pacer.refund(routed) and pacer.state()["spent"] == before - 1


def test_bad_rules_and_priors_are_config_errors():
    with pytest.raises(ConfigError, match="rule"):
        Pacer(BudgetSpec(share=0.3), rule="fast")
    with pytest.raises(ConfigError, match="prior"):
        Pacer(BudgetSpec(share=0.3), prior=[1.0, 2.0])
    with pytest.raises(ConfigError, match="non-decreasing"):
        ScoreDistribution(tuple(float(v) for v in range(101, 0, -1)))
