"""Hand-checked metric values and the weighted (bootstrap) engine against brute force."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import spearmanr

from routelmt.budget.allocation import budget_count, descending_order, tie_keys
from routelmt.errors import ConfigError
from routelmt.evaluation import curves as C
from routelmt.evaluation.bootstrap import group_index, group_weights
from routelmt.evaluation.ranking import (
    OrderedWeights,
    average_ranks,
    budget_metrics,
    hit_rate,
    hybrid_quality,
    mean_delta,
    severe_loss,
    spearman,
    validate_budgets,
    weighted_spearman,
)

# Ten segments, worked out by hand in the comments below.
Q_SMALL = np.array([50, 60, 40, 70, 55, 45, 65, 30, 80, 52], dtype=float)
GAIN = np.array([20, -2, 30, -10, 19, 0, 25, 15, -20, 8], dtype=float)
Q_LARGE = Q_SMALL + GAIN
SCORES = np.linspace(0.9, 0.0, 10)  # routes segment 0 first, then 1, 2, ...


def test_budget_count_rounds_half_up_not_to_even():
    assert budget_count(10, 0.25) == 3  # Python's round(2.5) would give 2
    assert budget_count(10, 0.35) == 4
    assert budget_count(997, 0.3) == 299
    assert budget_count(10, 0.05) == 1  # 0.5 -> 1


def test_budget_count_broadcasts_over_budgets_and_totals():
    k = budget_count(np.array([[10], [3]]), np.array([[0.0, 0.25, 0.5, 1.0]]))
    assert k.tolist() == [[0, 3, 5, 10], [0, 1, 2, 3]]
    with pytest.raises(ConfigError):
        budget_count(10, np.array([0.3, 1.5]))


def test_hand_computed_metrics_at_p_03():
    # top-3 by score {0, 1, 2}; top-3 by gain {2 (30), 6 (25), 0 (20)}: overlap {0, 2}
    assert hit_rate(SCORES, GAIN, 0.3) == pytest.approx(200 / 3)
    # (20 - 2 + 30) / 3
    assert mean_delta(SCORES, GAIN, 0.3) == pytest.approx(16.0)
    # mean q_S = 54.7, plus 48 / 10
    assert hybrid_quality(SCORES, Q_SMALL, Q_LARGE, 0.3) == pytest.approx(59.5)
    assert severe_loss(SCORES, GAIN, 0.3) == 0.0


def test_severe_loss_threshold_is_strict_and_configurable():
    # top-5 holds one gain of -10: not below -10, but below -5
    assert severe_loss(SCORES, GAIN, 0.5, delta=10.0) == 0.0
    assert severe_loss(SCORES, GAIN, 0.5, delta=5.0) == pytest.approx(20.0)
    assert mean_delta(SCORES, GAIN, 0.5) == pytest.approx(57 / 5)


def test_spearman_matches_scipy_and_constant_is_nan():
    assert spearman(SCORES, GAIN) == pytest.approx(spearmanr(SCORES, GAIN).statistic)
    assert math.isnan(spearman(np.zeros(10), GAIN))


def test_oracle_hit_rate_is_100_even_with_tied_gains():
    rng = np.random.default_rng(1)
    gains = rng.integers(-3, 4, size=200).astype(float)  # many ties
    for p in (0.1, 0.3, 0.55):
        assert hit_rate(gains, gains, p) == 100.0
        assert hit_rate(gains, gains, p, seed=7) == 100.0


def test_constant_router_gets_no_advantage_from_data_order():
    gains = np.sort(np.random.default_rng(2).normal(5, 10, 1000))[::-1].copy()
    constant = np.zeros_like(gains)
    # data sorted best first: a "first k rows" tie-break would look like the oracle
    assert hit_rate(constant, gains, 0.3) < 45.0
    assert mean_delta(constant, gains, 0.3) < gains[:300].mean() - 5


def test_random_router_expected_mean_delta_is_mean_gain():
    rng = np.random.default_rng(3)
    gains = rng.normal(5.0, 12.0, 500)
    values = [mean_delta(rng.random(500), gains, 0.3, seed=i) for i in range(300)]
    k = 150
    sd = gains.std() / math.sqrt(k) * math.sqrt(1 - k / 500) / math.sqrt(len(values))
    assert abs(np.mean(values) - gains.mean()) < 5 * sd
    hits = [hit_rate(rng.random(500), gains, 0.3) for _ in range(300)]
    assert abs(np.mean(hits) - 30.0) < 1.0


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 1.5, float("nan"), "0.3", True, None], ids=repr)
def test_bad_budgets_raise_config_error_naming_the_value(bad):
    with pytest.raises(ConfigError) as info:
        validate_budgets([0.3, bad])
    assert repr(bad) in str(info.value)


def test_budgets_deduplicated_and_empty_rejected():
    assert validate_budgets([0.3, 0.1, 0.3]) == [0.3, 0.1]
    with pytest.raises(ConfigError):
        validate_budgets([])


def _ones(n: int) -> np.ndarray:
    return np.ones((1, n), dtype=np.int64)


def test_auc_trapezoid_and_curve_ends():
    grid = C.curve_grid(0.05)
    assert grid[0] == 0.0 and grid[-1] == 1.0 and grid.size == 21
    assert C.auc(grid[None, :], grid)[0] == pytest.approx(0.5)
    ranked = OrderedWeights(descending_order(SCORES, tie_keys(10)), _ones(10))
    total = np.array([10.0])
    curve = C.quality_curve(ranked, GAIN, np.array([Q_SMALL.sum()]), total, grid)
    assert curve[0, 0] == pytest.approx(Q_SMALL.mean())
    assert curve[0, -1] == pytest.approx(Q_LARGE.mean())
    assert curve[0, 6] == pytest.approx(59.5)  # p = 0.3


def test_apgr_oracle_is_one_and_random_is_about_zero():
    rng = np.random.default_rng(4)
    n = 400
    q_small = rng.uniform(30, 70, n)
    gains = rng.normal(5, 12, n)
    grid = C.curve_grid()
    w = _ones(n)
    total, qs, gs = np.array([float(n)]), np.array([q_small.sum()]), np.array([gains.sum()])
    keys = tie_keys(n)
    oracle = OrderedWeights(descending_order(gains, keys), w)
    oracle_auc = C.auc(C.quality_curve(oracle, gains, qs, total, grid), grid)
    random_auc = C.auc(C.random_curve(qs, gs, total, grid), grid)
    assert C.apgr(oracle_auc, random_auc, oracle_auc)[0] == pytest.approx(1.0)
    values = []
    for _ in range(200):
        ranked = OrderedWeights(descending_order(rng.random(n), keys), w)
        area = C.auc(C.quality_curve(ranked, gains, qs, total, grid), grid)
        values.append(C.apgr(area, random_auc, oracle_auc)[0])
    assert abs(np.mean(values)) < 0.03


def test_cpt_on_a_toy_curve():
    gains = np.array([40, 30, 20, 10, 0, 0, 0, 0, 0, 0], dtype=float)
    w = _ones(10)
    keys = tie_keys(10)
    total, gs = np.array([10.0]), np.array([gains.sum()])
    best = OrderedWeights(descending_order(gains, keys), w)
    # cumulative gain 40, 70, 90, 100 against a gap of 100
    assert C.cpt(best, gains, gs, total, 50)[0] == pytest.approx(0.2)
    assert C.cpt(best, gains, gs, total, 80)[0] == pytest.approx(0.3)
    assert C.cpt(best, gains, gs, total, 95)[0] == pytest.approx(0.4)
    worst = OrderedWeights(descending_order(-gains, keys), w)
    # six zeros first, then 10, 20 (30), 30 (60)
    assert C.cpt(worst, gains, gs, total, 50)[0] == pytest.approx(0.9)
    assert C.cpt(worst, gains, gs, total, 95)[0] == pytest.approx(1.0)
    # no gap to recover: large-only is worse than small-only
    assert math.isnan(C.cpt(best, -gains, -gs, total, 50)[0])


def test_weighted_engine_equals_brute_force_on_materialised_resamples():
    rng = np.random.default_rng(5)
    n = 60
    q_small = rng.uniform(20, 80, n)
    gains = np.round(rng.normal(3, 15, n), 3)
    scores = rng.normal(size=n) + 0.05 * gains
    groups = [f"g{i // 3}" for i in range(n)]
    index, n_groups = group_index(groups)
    w = group_weights(index, n_groups, 25, rng)
    keys = np.arange(n)  # index tie-break, as a stable sort on the repeated arrays uses
    ranked = OrderedWeights(descending_order(scores, keys), w)
    oracle = OrderedWeights(descending_order(gains, keys), w)
    total = w.sum(axis=1).astype(float)
    qs, gs = w @ q_small, w @ gains
    grid = C.curve_grid(0.1)
    rho = weighted_spearman(scores, gains, w, gain_ranks=average_ranks(gains, w))
    curve = C.quality_curve(ranked, gains, qs, total, grid)
    cpt80 = C.cpt(ranked, gains, gs, total, 80)
    for p in (0.1, 0.3):
        got = budget_metrics(ranked, oracle, gains, qs, total, p, 10.0)
        for b in range(w.shape[0]):
            rep = np.repeat(np.arange(n), w[b])
            s, g, q = scores[rep], gains[rep], q_small[rep]
            k = int(np.floor(p * rep.size + 0.5))
            top_s = np.argsort(-s, kind="stable")[:k]
            top_g = np.argsort(-g, kind="stable")[:k]
            assert got["k"][b] == k
            assert got["hit_rate"][b] == pytest.approx(100 * len(set(top_s) & set(top_g)) / k)
            assert got["mean_delta"][b] == pytest.approx(g[top_s].mean())
            assert got["severe_loss"][b] == pytest.approx(100 * np.mean(g[top_s] < -10))
            assert got["hybrid_quality"][b] == pytest.approx((q.sum() + g[top_s].sum()) / rep.size)
    checked_cpt = 0
    for b in range(w.shape[0]):
        rep = np.repeat(np.arange(n), w[b])
        s, g = scores[rep], gains[rep]
        assert rho[b] == pytest.approx(spearmanr(s, g).statistic)
        order = np.argsort(-s, kind="stable")
        cum = np.r_[0.0, np.cumsum(g[order])]
        ks = np.floor(grid * rep.size + 0.5).astype(int)
        expect = (q_small[rep].sum() + cum[ks]) / rep.size
        np.testing.assert_allclose(curve[b], expect)
        if g.sum() <= 0:  # no small-to-large gap to recover
            assert math.isnan(cpt80[b])
        else:
            reach = np.flatnonzero(cum >= 0.8 * g.sum() - 1e-9)
            assert cpt80[b] == pytest.approx(reach[0] / rep.size)
            checked_cpt += 1
    assert checked_cpt > 5
