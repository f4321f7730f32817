from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from routelmt.budget import BudgetSpec, Pacer, allocate_top_p, tie_keys
from routelmt.budget.guards import (
    choose_guard_threshold,
    guard_threshold_quantile,
    guarded_allocation,
)
from routelmt.budget.online_guards import FunctionGuard, GuardedPacer
from routelmt.errors import ConfigError, InputError

# ten requests; gain order is 0, 1, ..., 9 (descending gain score); p = 0.3 -> k = 3
GAIN = np.array([9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0])
# the guard says the small output of requests 1 and 3 is already good (>= 50)
GUARD = np.array([10.0, 90.0, 20.0, 60.0, 30.0, 10.0, 10.0, 10.0, 10.0, 10.0])


def test_vetoed_candidate_is_replaced_by_the_next_in_gain_order() -> None:
    result = guarded_allocation(GAIN, 0.3, guard_scores=GUARD, guard_threshold=50.0)
    # top-3 = {0, 1, 2}; 1 vetoed -> next is 3, also vetoed -> next is 4
    assert np.flatnonzero(result.routed).tolist() == [0, 2, 4]
    assert result.vetoed.tolist() == [1, 3]
    assert result.examined.tolist() == [0, 1, 2, 3, 4]
    assert result.budget == 3 and result.n_routed == 3 and result.unused == 0
    assert result.evaluations == 5
    assert result.evaluation_share == pytest.approx(0.5)


def test_leave_unused_keeps_the_freed_budget() -> None:
    result = guarded_allocation(
        GAIN, 0.3, guard_scores=GUARD, guard_threshold=50.0, leave_unused=True
    )
    assert np.flatnonzero(result.routed).tolist() == [0, 2]
    assert result.vetoed.tolist() == [1]
    assert result.evaluations == 3  # only the top-k were examined
    assert result.unused == 1


def test_threshold_is_inclusive_and_fewer_candidates_can_pass() -> None:
    guard = np.full(10, 50.0)
    guard[[7, 9]] = 49.0
    result = guarded_allocation(GAIN, 0.3, guard_scores=guard, guard_threshold=50.0)
    assert np.flatnonzero(result.routed).tolist() == [7, 9]  # 50 >= 50 is vetoed
    assert result.evaluations == 10 and result.unused == 1


def test_positive_only_limits_the_candidates() -> None:
    gain = GAIN - 7.5  # only 0 and 1 have a positive gain score
    result = guarded_allocation(
        gain, 0.3, guard_scores=GUARD, guard_threshold=50.0, positive_only=True
    )
    assert np.flatnonzero(result.routed).tolist() == [0]
    assert result.examined.tolist() == [0, 1]


def test_without_a_guard_it_is_top_p_with_no_guard_cost() -> None:
    rng = np.random.default_rng(3)
    scores = rng.normal(size=101)
    result = guarded_allocation(scores, 0.3)
    assert np.array_equal(result.routed, allocate_top_p(scores, 0.3))
    assert result.evaluations == 0 and result.n_routed == 30
    # a guard that never vetoes routes the same set and examines exactly the top-k
    never = guarded_allocation(scores, 0.3, guard_scores=np.zeros(101), guard_threshold=math.inf)
    assert np.array_equal(never.routed, result.routed) and never.evaluations == 30


def test_callable_guard_is_asked_only_about_examined_candidates() -> None:
    asked: list[list[int]] = []

    def guard(indices: np.ndarray) -> np.ndarray:
        asked.append(indices.tolist())
        return GUARD[indices]

    result = guarded_allocation(GAIN, 0.3, guard_scores=guard, guard_threshold=50.0)
    assert asked == [[0, 1, 2], [3], [4]]  # batched rounds, nothing beyond what was needed
    assert np.flatnonzero(result.routed).tolist() == [0, 2, 4]
    assert result.guard_seconds >= 0.0


def test_random_cases_match_a_one_at_a_time_walk() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(1, 40))
        gain = rng.integers(0, 5, n).astype(float)  # with ties
        guard = rng.random(n)
        tau = float(rng.random())
        p = float(rng.uniform(0.05, 0.95))
        result = guarded_allocation(gain, p, guard_scores=guard, guard_threshold=tau)
        k = int(math.floor(p * n + 0.5))
        walk, seen = [], []
        keys = tie_keys(n)  # the library's one tie rule: a seeded permutation
        for i in sorted(range(n), key=lambda i: (-gain[i], keys[i])):
            if len(walk) == min(k, n):
                break
            seen.append(i)
            if guard[i] < tau:
                walk.append(i)
        assert sorted(walk) == np.flatnonzero(result.routed).tolist()
        assert seen == result.examined.tolist()


def test_errors_are_clear() -> None:
    with pytest.raises(InputError, match="one guard score per request"):
        guarded_allocation(GAIN, 0.3, guard_scores=GUARD[:5], guard_threshold=1.0)
    with pytest.raises(ConfigError, match="both"):
        guarded_allocation(GAIN, 0.3, guard_scores=GUARD)
    with pytest.raises(ConfigError, match="both"):
        guarded_allocation(GAIN, 0.3, guard_threshold=1.0)
    with pytest.raises(ConfigError, match="NaN"):
        guarded_allocation(GAIN, 0.3, guard_scores=GUARD, guard_threshold=math.nan)
    with pytest.raises(ConfigError, match="number"):
        guarded_allocation(GAIN, 0.3, guard_scores=GUARD, guard_threshold="high")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        guarded_allocation(GAIN, 1.5, guard_scores=GUARD, guard_threshold=1.0)
    bad = GUARD.copy()
    bad[2] = math.nan
    with pytest.raises(InputError, match="position 2"):
        guarded_allocation(GAIN, 0.3, guard_scores=bad, guard_threshold=1.0)
    with pytest.raises(InputError, match="request 2; must be finite"):
        guarded_allocation(GAIN, 0.3, guard_scores=lambda idx: bad[idx], guard_threshold=1.0)
    with pytest.raises(InputError, match="shape"):
        guarded_allocation(GAIN, 0.3, guard_scores=lambda idx: [1.0], guard_threshold=1.0)
    with pytest.raises(ConfigError, match="quantile"):
        guard_threshold_quantile(GUARD, 1.5)


def test_quantile_threshold() -> None:
    assert guard_threshold_quantile(np.arange(11.0), 0.8) == pytest.approx(8.0)


def test_chosen_threshold_cuts_severe_loss_within_the_mean_delta_allowance() -> None:
    # 200 requests; the gain ranking also loves some where the large model is much worse,
    # and exactly those have a high guard score
    rng = np.random.default_rng(1)
    n = 200
    gains = rng.normal(5.0, 3.0, n)
    gain_scores = gains + rng.normal(0, 1.0, n)
    trap = np.argsort(-gain_scores)[:60:4]  # every 4th of the top 60
    gains[trap] = -20.0
    guard = rng.uniform(0, 50, n)
    guard[trap] = rng.uniform(80, 100, trap.size)
    choice = choose_guard_threshold(gain_scores, guard, gains, 0.3, max_mean_delta_drop=0.5)
    assert choice.base_severe_loss == pytest.approx(25.0)
    assert choice.severe_loss == 0.0 and choice.mean_delta > choice.base_mean_delta
    assert 50.0 <= choice.threshold <= 80.0
    # a guard that carries no signal is not worth it: no threshold (no guard) is chosen
    flat = choose_guard_threshold(gain_scores, np.zeros(n), gains, 0.3)
    assert flat.threshold == math.inf and flat.severe_loss == flat.base_severe_loss
    with pytest.raises(InputError, match="equal counts"):
        choose_guard_threshold(gain_scores, guard[:10], gains, 0.3)
    with pytest.raises(ConfigError, match="max_mean_delta_drop"):
        choose_guard_threshold(gain_scores, guard, gains, 0.3, max_mean_delta_drop=-1)


def _value_guard(threshold: float, calls: list[int] | None = None) -> FunctionGuard:
    """A guard whose quality estimate is the one feature each request carries."""

    def fn(segments, translations, features):
        if calls is not None:
            calls.append(1)
        return np.asarray(features)[:, 0]

    return FunctionGuard(threshold, fn)


def test_pacer_guard_vetoes_without_charging_and_counts_its_cost() -> None:
    pacer = Pacer(BudgetSpec(share=0.5), initial_threshold=0.0, scale=1.0, gain=0.01)
    calls: list[int] = []
    guarded = GuardedPacer(pacer, _value_guard(50.0, calls))

    small = guarded.decide(-5.0, features=[90.0])
    assert not small.large and small.verdict is None and calls == []  # guard not needed
    vetoed = guarded.decide(5.0, features=[90.0])
    assert vetoed.vetoed and not vetoed.large and vetoed.reason == "guard_function"
    assert calls == [1]
    assert vetoed.to_dict()["model"] == "small" and vetoed.to_dict()["charged"] == 0.0
    assert vetoed.to_dict()["guard"]["vetoed"] is True
    assert pacer.state()["spent"] == 0.0  # not charged
    kept = guarded.decide(5.0, features=[10.0])
    assert kept.large and not kept.vetoed and pacer.state()["spent"] == 1.0
    forced = guarded.decide(-5.0, force=True, features=[99.0])
    assert forced.large and forced.verdict is None  # a forced request is never guarded
    state = guarded.state()
    assert state["guard"]["evaluations"] == 2 and state["guard"]["vetoes"] == 1
    assert state["guard"]["evaluation_share"] == pytest.approx(2 / 4)
    assert state["guard"]["seconds"] > 0
    assert guarded.refund(kept) and pacer.state()["spent"] == 1.0  # the forced one remains
    assert not guarded.refund(vetoed)


def test_pacer_guard_refunds_the_reservation_when_the_guard_fails() -> None:
    pacer = Pacer(BudgetSpec(share=0.5), initial_threshold=0.0, scale=1.0)

    def broken(segments, translations, features):
        raise RuntimeError("decoder died")

    guarded = GuardedPacer(pacer, FunctionGuard(50.0, broken))
    with pytest.raises(RuntimeError):
        guarded.decide(5.0)
    assert pacer.state()["spent"] == 0.0
    with pytest.raises(InputError, match="finite"):
        GuardedPacer(pacer, _value_guard(50.0)).decide(5.0, features=[math.nan])
    assert pacer.state()["spent"] == 0.0
    with pytest.raises(ConfigError):
        _value_guard(math.nan)
    with pytest.raises(ConfigError):
        GuardedPacer("pacer", _value_guard(1.0))  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        GuardedPacer(pacer, 1.0)  # type: ignore[arg-type]


def test_pacer_guard_frees_budget_for_later_requests() -> None:
    # scores from a fixed distribution; the guard vetoes a third of what the pacer routes
    rng = np.random.default_rng(5)
    scores = rng.normal(size=6000)
    guard = rng.uniform(0, 100, scores.size)
    pacer = Pacer(BudgetSpec(share=0.3), history=scores[:500])
    guarded = GuardedPacer(pacer, _value_guard(67.0))
    large = [guarded.decide(s, features=[g]).large for s, g in zip(scores, guard)]
    assert abs(np.mean(large) - 0.3) < 0.02  # budget still used despite the vetoes
    assert guarded.state()["guard"]["vetoes"] > 0.25 * guarded.state()["guard"]["evaluations"]


def test_pacer_guard_hard_cap_holds_under_concurrency() -> None:
    pacer = Pacer(BudgetSpec(share=0.5, hard_cap=100), initial_threshold=0.0, scale=1.0)
    guarded = GuardedPacer(pacer, _value_guard(50.0))
    barrier = threading.Barrier(16)
    results: list[bool] = []
    spent: list[float] = []
    lock = threading.Lock()

    def worker(seed: int) -> None:
        rng = np.random.default_rng(seed)
        barrier.wait()
        for _ in range(100):
            d = guarded.decide(1.0, features=[float(rng.uniform(0, 100))])
            now = pacer.state()["spent"]
            with lock:
                results.append(d.large)
                spent.append(now)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    state = guarded.state()
    assert len(results) == 1600 and max(spent) <= 100
    assert state["capped"] > 0  # the cap was reached
    assert sum(results) == state["spent"] <= 100
    assert state["guard"]["vetoes"] + sum(results) == state["guard"]["evaluations"]
