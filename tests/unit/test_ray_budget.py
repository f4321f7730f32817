"""The budget actor's logic, without a cluster: it is the pacer's own state contract behind
a few calls (the Ray tests run it as an actor)."""

from __future__ import annotations

import numpy as np
import pytest

from routelmt.budget import BudgetSpec, Pacer
from routelmt.errors import ConfigError
from routelmt.serve.config import load_config
from routelmt.serve.ray_budget import BudgetActor, parse_store, spec_kwargs
from routelmt.serve.ray_deploy import replica_config


def _scores(n: int, seed: int = 0) -> list[float]:
    return np.random.default_rng(seed).normal(size=n).tolist()


def test_the_actor_decides_exactly_as_one_pacer():
    spec = BudgetSpec(share=0.3, hard_cap=40)
    actor = BudgetActor(spec_kwargs(spec), {"warmup": 10}, None)
    local = Pacer(spec, warmup=10)
    scores = _scores(200)
    ours = []
    for start in range(0, 200, 7):  # batches from several replicas, in arrival order
        _, decisions, state = actor.decide_many(scores[start : start + 7], None, None)
        ours += decisions
    theirs = [local.decide(s) for s in scores]
    assert [(d.seq, d.large, d.reason) for d in ours] == [
        (d.seq, d.large, d.reason) for d in theirs
    ]
    assert actor.state_dict() == local.state_dict()
    assert state["spent"] <= 40


def test_a_replica_with_another_budget_is_refused():
    actor = BudgetActor(spec_kwargs(BudgetSpec(share=0.3)), {}, None)
    assert actor.hello(spec_kwargs(BudgetSpec(share=0.3))) == actor.epoch
    with pytest.raises(ConfigError, match="budget actor holds budget"):
        actor.hello(spec_kwargs(BudgetSpec(share=0.2)))


def test_refunds_count_once_and_never_across_a_lost_state():
    actor = BudgetActor(spec_kwargs(BudgetSpec(share=0.5)), {"warmup": 0}, None)
    epoch, decisions, _ = actor.decide_many([1.0, 2.0, 3.0, 4.0], None, [True] * 4)
    large = [d for d in decisions if d.large]
    assert actor.refund(epoch, large[0]) is True
    assert actor.refund(epoch, large[0]) is False  # once
    assert actor.refund("an-earlier-actor", large[1]) is False  # the state it charged is gone
    state = actor.state()
    assert state["refunds"] == 1 and state["stale_refunds"] == 1


def test_a_persisted_actor_continues_after_a_restart(tmp_path):
    spec = spec_kwargs(BudgetSpec(share=0.3, hard_cap=5))
    first = BudgetActor(spec, {"warmup": 0}, str(tmp_path / "budget.sqlite"))
    first.decide_many([5.0] * 4, None, [True] * 4)
    again = BudgetActor(spec, {"warmup": 0}, str(tmp_path / "budget.sqlite"))  # restarted
    assert again.epoch == first.epoch  # decisions made before still refund
    _, decisions, state = again.decide_many([5.0] * 4, None, [True] * 4)
    assert sum(d.large for d in decisions) == 1 and state["spent"] == 5  # the cap carried over


def test_store_strings():
    assert parse_store("ray:budget") == ("budget", None)
    assert parse_store("ray:budget|/tmp/b.sqlite") == ("budget", "/tmp/b.sqlite")
    assert parse_store("ray:budget|/tmp/b.sqlite.stage2") == (
        "budget.stage2",
        "/tmp/b.sqlite.stage2",
    )
    assert parse_store("ray:budget.stage2") == ("budget.stage2", None)
    with pytest.raises(ConfigError, match="ray:NAME"):
        parse_store("ray:")


def test_replicas_get_the_actor_as_their_store():
    config = load_config(None, {"budget": {"store": "/var/b.sqlite"}})
    assert replica_config(config)["budget"]["store"] == "ray:routelmt-budget|/var/b.sqlite"
    assert replica_config(load_config(None, {}))["budget"]["store"] == "ray:routelmt-budget"
