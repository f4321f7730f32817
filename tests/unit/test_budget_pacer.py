from __future__ import annotations

import json
import math
import threading

import numpy as np
import pytest
from scipy.stats import norm

from routelmt.budget import BudgetSpec, Pacer, calibrate_threshold
from routelmt.budget.pacer import REFUND_HORIZON
from routelmt.errors import ConfigError, InputError


def _shifted_stream(seed: int, n: int = 5000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(0.0, 1.0, n), rng.normal(2.0, 1.0, n)])


def _window_shares(routed: np.ndarray, window: int = 1000) -> np.ndarray:
    c = np.concatenate(([0.0], np.cumsum(routed)))
    return (c[window:] - c[:-window]) / window


@pytest.mark.parametrize(("p", "seed"), [(0.1, 0), (0.3, 1), (0.5, 2)])
def test_converges_through_a_distribution_shift(p: float, seed: int) -> None:
    scores = _shifted_stream(seed)
    pacer = Pacer(BudgetSpec(share=p))
    routed = np.array([pacer.decide(s).large for s in scores], dtype=float)
    assert abs(routed.mean() - p) <= 0.01
    windows = _window_shares(routed)
    assert np.abs(windows[200:] - p).max() <= 0.03  # every window after a short warm-up
    # a threshold calibrated on the first half misses badly on the second: the problem is real
    static = calibrate_threshold(scores[:5000], p)
    assert np.mean(scores[5000:] >= static.threshold) - p > 0.2
    state = pacer.state()
    assert state["requests"] == scores.size
    assert state["realised_share"] == pytest.approx(routed.mean())
    assert state["window_share"] == pytest.approx(routed[-1000:].mean())
    # tracked the new (1 - p) quantile of N(2, 1), within its jitter
    assert state["next_threshold"] == pytest.approx(2.0 + norm.ppf(1 - p), abs=0.5)


def test_cost_share_budget_tracks_spend_not_count() -> None:
    rng = np.random.default_rng(5)
    scores = _shifted_stream(5, 3000)
    costs = rng.lognormal(3.0, 1.0, scores.size)
    pacer = Pacer(BudgetSpec(cost_share=0.3, cost_small=1.0, cost_large=10.0))
    charged = np.array([pacer.decide(s, cost=c).charged for s, c in zip(scores, costs)])
    assert abs(charged.sum() / costs.sum() - 0.3) <= 0.01
    state = pacer.state()
    assert state["spent"] == pytest.approx(charged.sum())
    assert state["spec"]["kind"] == "cost_share"
    assert state["remaining"] == pytest.approx(0.3 * costs.sum() - charged.sum())
    # without a per-request cost every request weighs cost_large - cost_small
    pacer = Pacer(BudgetSpec(cost_share=0.3, cost_small=1.0, cost_large=10.0))
    decision = next(d for d in (pacer.decide(s) for s in scores) if d.large)
    assert decision.charged == 9.0


def test_hard_cap_holds_under_16_threads() -> None:
    cap = 700
    pacer = Pacer(BudgetSpec(share=0.5, hard_cap=cap), initial_threshold=0.0)
    violations: list[float] = []
    decisions: list[list] = [[] for _ in range(16)]
    start = threading.Barrier(16)

    def worker(k: int) -> None:
        rng = np.random.default_rng(k)
        start.wait()
        for i, s in enumerate(rng.normal(size=400)):
            d = pacer.decide(float(s))
            decisions[k].append(d)
            if i % 50 == 0 and d.large and k % 4 == 0:
                pacer.refund(d)  # a failed large call gives its reservation back
            spent = pacer.state()["spent"]
            if spent > cap:
                violations.append(spent)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not violations
    flat = [d for ds in decisions for d in ds]
    assert len(flat) == 6400 and len({d.seq for d in flat}) == 6400
    state = pacer.state()
    refunds = state["refunds"]
    assert state["spent"] == sum(d.large for d in flat) - refunds <= cap
    assert state["spent"] == cap  # about 3200 wanted the large model: the cap binds exactly
    assert state["capped"] > 1000
    assert all(d.reason == "hard_cap" and not d.large for d in flat if d.reason == "hard_cap")


def test_hard_cap_on_cost_with_concurrent_deciders() -> None:
    cap = 5000.0
    pacer = Pacer(BudgetSpec(cost_share=0.4, cost_large=2.0, hard_cap=cap), initial_threshold=-1)

    def worker(k: int) -> None:
        rng = np.random.default_rng(100 + k)
        for s, c in zip(rng.normal(size=300), rng.uniform(1, 60, 300)):
            pacer.decide(float(s), cost=float(c))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    state = pacer.state()
    assert cap - 60 < state["spent"] <= cap
    assert state["remaining"] == pytest.approx(cap - state["spent"])


def test_refund_returns_budget_and_undoes_the_threshold_step() -> None:
    pacer = Pacer(BudgetSpec(share=0.3), initial_threshold=0.0, scale=1.0, gain=0.1)
    d = pacer.decide(1.0)
    assert d.large and d.reason == "above_threshold" and d.threshold == 0.0
    assert pacer.threshold == pytest.approx(0.1 * (1 - 0.3))
    assert pacer.refund(d) is True
    assert pacer.threshold == pytest.approx(-0.1 * 0.3)  # as if it had stayed on the small one
    state = pacer.state()
    assert state["spent"] == 0 and state["refunds"] == 1 and state["window_share"] == 0
    assert pacer.refund(d) is False  # idempotent
    small = pacer.decide(-5.0)
    assert not small.large and pacer.refund(small) is False
    with pytest.raises(ValueError, match="another pacer"):
        Pacer(BudgetSpec(share=0.3)).refund(d)


def test_refunded_budget_is_spent_again() -> None:
    rng = np.random.default_rng(9)
    pacer = Pacer(BudgetSpec(share=0.3))
    net = 0
    for s in rng.normal(size=6000):
        d = pacer.decide(float(s))
        if d.large:
            if rng.random() < 0.2:  # a fifth of large calls fail and are refunded
                pacer.refund(d)
            else:
                net += 1
    assert abs(net / 6000 - 0.3) <= 0.01
    assert pacer.state()["realised_share"] == pytest.approx(net / 6000)


def test_warmup_without_calibration_and_history_seed() -> None:
    pacer = Pacer(BudgetSpec(share=0.3), warmup=20)
    first = pacer.decide(1.0)
    assert not first.large and first.reason == "warmup" and first.threshold is None
    assert pacer.state()["warming_up"]
    hist = np.random.default_rng(1).normal(size=500)
    seeded = Pacer(BudgetSpec(share=0.3), history=hist)
    assert seeded.threshold == pytest.approx(np.quantile(hist, 0.7))
    assert not seeded.state()["warming_up"]


@pytest.mark.parametrize(
    ("kwargs", "shown"),
    [
        ({"share": -0.1}, "-0.1"),
        ({"share": 0}, "0"),
        ({"share": 1.0}, "1.0"),
        ({"share": 1.2}, "1.2"),
        ({"share": math.nan}, "nan"),
        ({"share": "0.3"}, "'0.3'"),
        ({}, "exactly one"),
        ({"share": 0.3, "cost_share": 0.3}, "exactly one"),
        ({"cost_share": 0.3, "cost_large": 0.0}, "cost_large must be a finite number > 0, got 0.0"),
        ({"cost_share": 0.3, "cost_large": -2.0}, "-2.0"),
        ({"cost_share": 0.3, "cost_small": -1.0}, "cost_small .* got -1.0"),
        ({"cost_share": 0.3, "cost_small": 5.0, "cost_large": 5.0}, "greater than cost_small"),
        ({"cost_share": math.inf}, "inf"),
        ({"share": 0.3, "hard_cap": 0}, "hard_cap .* got 0"),
        ({"share": 0.3, "hard_cap": math.nan}, "hard_cap .* nan"),
        ({"share": 0.3, "window": 0}, "window"),
    ],
)
def test_bad_budgets_raise_config_error_naming_the_value(kwargs: dict, shown: str) -> None:
    with pytest.raises(ConfigError, match=shown):
        BudgetSpec(**kwargs)


def test_bad_per_request_inputs() -> None:
    pacer = Pacer(BudgetSpec(cost_share=0.3))
    with pytest.raises(ConfigError, match="cost .* got 0"):
        pacer.decide(1.0, cost=0)
    with pytest.raises(InputError, match="score"):
        pacer.decide(math.nan)
    with pytest.raises(ConfigError, match="gain"):
        Pacer(BudgetSpec(share=0.3), gain=-1)
    assert pacer.state()["requests"] == 0  # rejected requests are not counted


def test_warmup_zero_works() -> None:
    pacer = Pacer(BudgetSpec(share=0.3), warmup=0)
    decisions = [pacer.decide(float(s)) for s in np.random.default_rng(3).normal(size=500)]
    assert decisions[0].reason == "warmup" and pacer.threshold is not None
    assert abs(np.mean([d.large for d in decisions]) - 0.3) < 0.05


def test_state_dict_round_trip_continues_identically() -> None:
    scores = np.random.default_rng(4).normal(size=400)
    a = Pacer(BudgetSpec(share=0.3))
    for s in scores[:200]:
        d = a.decide(float(s))
        if d.large and d.seq % 7 == 0:
            a.refund(d)
    b = Pacer(BudgetSpec(share=0.3))
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert b.state() == a.state()
    rest_a = [a.decide(float(s)).large for s in scores[200:]]
    rest_b = [b.decide(float(s)).large for s in scores[200:]]
    assert rest_a == rest_b and b.state() == a.state()


@pytest.mark.parametrize(
    "damage",
    [
        lambda s: s.pop("tau"),
        lambda s: s.update(extra=1),
        lambda s: s.update(seq=-1),
        lambda s: s.update(spent="x"),
        lambda s: s.update(tau=math.inf),
        lambda s: s.update(scores="%%%"),
        lambda s: s.update(window=s["scores"][:12]),
        lambda s: s.update(version=99),
    ],
)
def test_a_damaged_state_is_a_config_error_and_changes_nothing(damage) -> None:
    pacer = Pacer(BudgetSpec(share=0.3), initial_threshold=0.5)
    pacer.decide(1.0)
    state = pacer.state_dict()
    before = pacer.state()
    damage(state)
    with pytest.raises(ConfigError, match="pacer state"):
        pacer.load_state_dict(state)
    assert pacer.state() == before


def test_an_outage_cannot_walk_the_threshold_away() -> None:
    """Every routed call fails and is refunded for 3,000 requests, then the model recovers."""
    rng = np.random.default_rng(5)
    pacer = Pacer(BudgetSpec(share=0.3))
    for s in rng.normal(size=1000):
        pacer.decide(float(s))
    for s in rng.normal(size=3000):
        d = pacer.decide(float(s))
        if d.large:
            pacer.refund(d)
    assert pacer.threshold > norm.ppf(0.7) - 3.5  # bounded: 3 scales (about 1) below
    after = np.array([pacer.decide(float(s)).large for s in rng.normal(size=1000)], dtype=float)
    run = max(len(r) for r in "".join("L" if x else "s" for x in after).split("s"))
    assert run < 40  # not hundreds in a row
    assert abs(after[100:].mean() - 0.3) < 0.05
    # the refund record stays bounded however many refunds there were
    assert len(json.dumps(pacer.state_dict())) < 60_000


def test_refunds_older_than_the_horizon_are_refused() -> None:
    pacer = Pacer(BudgetSpec(share=0.5), initial_threshold=0.0, scale=1.0)
    first = pacer.decide(1.0)
    for _ in range(REFUND_HORIZON):
        pacer.decide(-1.0)
    assert pacer.refund(first) is False and pacer.state()["refunds"] == 0


@pytest.mark.parametrize("rule", ["quantile", "integral"])
def test_max_lead_keeps_the_spend_within_a_few_requests_of_the_share(rule: str) -> None:
    # a threshold far too low: every request wants the large model
    def run(max_lead: float | None) -> list[int]:
        pacer = Pacer(BudgetSpec(share=0.3), initial_threshold=-100.0, rule=rule, max_lead=max_lead)
        routed, out = 0, []
        for i, s in enumerate(np.random.default_rng(0).normal(size=200)):
            d = pacer.decide(float(s))
            routed += d.large
            out.append(routed)
            if max_lead is not None:
                assert routed <= 0.3 * (i + 1) + max_lead + 1e-9
                assert d.large or d.reason in ("ahead_of_budget", "below_threshold", "warmup")
        return out

    limited, free = run(2.0), run(None)
    assert limited[99] <= 32 < free[99]


def test_max_lead_never_stops_a_forced_request_and_is_checked() -> None:
    pacer = Pacer(BudgetSpec(share=0.1), initial_threshold=-100.0, max_lead=1.0)
    assert all(pacer.decide(1.0, force=True).large for _ in range(5))
    with pytest.raises(ConfigError, match="max_lead"):
        Pacer(BudgetSpec(share=0.3), max_lead=0.0)


def test_lead_horizon_ends_the_lead_limit_after_the_first_requests() -> None:
    # a run of high scores (a hard document) after the horizon may go ahead of the share
    def routed_after(horizon: int | None) -> tuple[int, int]:
        pacer = Pacer(
            BudgetSpec(share=0.3),
            rule="quantile",
            history=np.random.default_rng(1).normal(size=500),
            max_lead=2.0,
            lead_horizon=horizon,
        )
        rng = np.random.default_rng(2)
        first = sum(pacer.decide(float(s)).large for s in rng.normal(size=100))
        hard = sum(pacer.decide(float(s)).large for s in rng.normal(loc=3.0, size=20))
        return first, hard

    (first_guarded, hard_guarded), (first_free, hard_free) = routed_after(None), routed_after(100)
    assert first_guarded == first_free  # the first 100 requests are guarded alike
    assert hard_free > hard_guarded + 5
    with pytest.raises(ConfigError, match="lead_horizon"):
        Pacer(BudgetSpec(share=0.3), max_lead=1.0, lead_horizon=0)
