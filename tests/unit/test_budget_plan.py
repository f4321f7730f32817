"""The budget plan: the budget settings and the router's stages in, each pacer's part out, every
check made once (at config time and again once the router is known)."""

from __future__ import annotations

import pytest

from routelmt.budget.joint_cap import CappedPacer
from routelmt.budget.pacer import BudgetSpec, Pacer, StageOff
from routelmt.budget.plan import BudgetPlan, StagePlan, split_budget, stage_store
from routelmt.errors import ConfigError
from routelmt.serve.config import DEFAULTS, load_config

STAGE1_MESSAGE = r"'budget\.stage1_share' must be in \[0, 1\)"


def settings(**changes) -> dict:
    return {**DEFAULTS["budget"], "share": 0.3, **changes}


@pytest.mark.parametrize("p", [0.05, 0.3, 0.5, 0.95])
@pytest.mark.parametrize("alpha", [0.0, 0.25, 0.5, 0.99])
def test_the_split_keeps_the_total_share(p, alpha):
    first, second = split_budget(p, alpha)
    assert first == pytest.approx(alpha * p)
    assert 0.0 < second < 1.0
    assert first + (1 - first) * second == pytest.approx(p)


@pytest.mark.parametrize("alpha", [1.0, 1.5, -0.1, float("nan"), True, "0.2"])
def test_a_stage1_share_outside_0_to_1_is_refused_with_one_message(alpha):
    with pytest.raises(ConfigError, match=STAGE1_MESSAGE):
        split_budget(0.3, alpha)
    with pytest.raises(ConfigError, match=STAGE1_MESSAGE):
        BudgetPlan.from_settings(settings(stage1_share=alpha), stages=2)


@pytest.mark.parametrize("p", [0.0, 1.0, -0.2])
def test_a_total_share_outside_0_to_1_is_refused(p):
    with pytest.raises(ConfigError, match="strictly between 0 and 1"):
        split_budget(p, 0.25)


def test_one_stage_holds_the_whole_budget_on_the_given_store():
    plan = BudgetPlan.from_settings(settings(store="b.sqlite", hard_cap=10), stages=1)
    (stage,) = plan.stages
    assert stage == StagePlan("stage1", plan.spec, "b.sqlite")
    assert stage.spec.share == 0.3 and stage.spec.hard_cap == 10
    assert plan.joint_cap is None


def test_two_stages_split_the_share_and_share_one_cap():
    plan = BudgetPlan.from_settings(
        settings(stage1_share=0.25, hard_cap=100, store="ray:b"), stages=2
    )
    first, second = plan.stages
    assert first.spec.share == pytest.approx(0.075)
    assert first.spec.share + (1 - first.spec.share) * second.spec.share == pytest.approx(0.3)
    assert plan.joint_cap == 100  # not split: each stage's ceiling is the whole cap
    assert first.spec.hard_cap == second.spec.hard_cap == 100
    assert (first.store, second.store) == ("ray:b", "ray:b.stage2")


def test_a_stage1_share_of_0_turns_stage_1_off_and_stage_2_holds_everything():
    plan = BudgetPlan.from_settings(settings(stage1_share=0, hard_cap=7), stages=2)
    first, second = plan.stages
    assert first.spec is None and second.spec.share == pytest.approx(0.3)
    assert second.spec.hard_cap == 7 and plan.joint_cap is None  # stage 2's cap is the cap


def test_build_makes_stage_offs_and_joint_caps_from_one_factory():
    made: list[tuple[str, dict]] = []

    def make(stage, options):
        made.append((stage.name, options))
        return Pacer(stage.spec, **options)

    single, none = BudgetPlan.from_settings(settings()).build(make)
    assert none is None and isinstance(single, Pacer) and single.spec.share == 0.3
    off, whole = BudgetPlan.from_settings(settings(stage1_share=0), stages=2).build(make)
    assert isinstance(off, StageOff) and off.charge_to is whole
    plan = BudgetPlan.from_settings(settings(stage1_share=0.5, hard_cap=3), stages=2)
    one, two = plan.build(make)
    assert isinstance(one, CappedPacer) and one.joint is two.joint and one.joint.cap == 3
    assert [name for name, _ in made] == ["stage1", "stage2", "stage2", "stage1"]
    assert {o["rule"] for _, o in made} == {"quantile"}  # the settings' rule, every stage


def test_the_prior_is_given_per_stage_only_when_on():
    class Distributions:
        def get(self, stage):
            return f"prior of {stage}"

    plan = BudgetPlan.from_settings(settings(stage1_share=0.25), stages=2)
    assert plan.priors(Distributions()) == {
        "stage1": "prior of stage1",
        "stage2": "prior of stage2",
    }
    off = BudgetPlan.from_settings(settings(stage1_share=0.25, prior=False), stages=2)
    assert off.priors(Distributions()) == {"stage1": None, "stage2": None}
    assert plan.priors(None) == {"stage1": None, "stage2": None}


@pytest.mark.parametrize(
    ("changes", "kwargs", "message"),
    [
        ({"share": None, "cost_share": 0.3}, {"stages": 2}, "two-stage router needs budget.share"),
        ({}, {"stages": 2, "tier_costs": [1.0]}, "tiers need a one-stage router"),
        ({"store": "b.sqlite"}, {"tier_costs": [1.0]}, "budget.store is not supported with tiers"),
        ({"hard_cap": 0.5}, {"tier_costs": [1.0, 2.0]}, "below the cheapest tier's cost"),
        ({"hard_cap": 0.35}, {}, "must be a whole number of large-model requests"),
        ({"rule": "nope"}, {}, r"'budget\.rule' must be one of quantile, integral"),
        ({"gain": 0}, {}, r"'budget\.gain' must be a finite number > 0"),
        ({"max_lead": -1}, {}, r"'budget\.max_lead' must be a finite number > 0"),
        ({"lead_horizon": 0}, {}, r"'budget\.lead_horizon' must be an integer >= 1 or null"),
        ({"share": 0}, {}, "budget: budget share must be a share strictly between 0 and 1"),
    ],
)
def test_each_refusal_names_its_field(changes, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        BudgetPlan.from_settings(settings(**changes), **kwargs)


def test_the_config_loader_makes_the_plan_checks_before_any_model_loads():
    assert load_config(None, {"budget": {"stage1_share": 0}})["budget"]["stage1_share"] == 0
    for bad in (1, -0.1):  # one range, one message, whichever side it is off
        with pytest.raises(ConfigError, match=r"flags: " + STAGE1_MESSAGE):
            load_config(None, {"budget": {"stage1_share": bad}})
    with pytest.raises(ConfigError, match="budget.store is not supported with tiers"):
        tier = {"name": "big", "backend": "GPT-4", "cost": 1.0}
        load_config(None, {"budget": {"store": "b.sqlite"}, "tiers": [tier]})


def test_stage_2_has_its_own_store():
    assert stage_store("b.sqlite", 1) == "b.sqlite"
    assert stage_store("b.sqlite", 2) == "b.sqlite.stage2"
    assert stage_store(None, 2) is None and stage_store("", 1) is None


def test_the_batch_budget_uses_the_same_field_checks():
    from routelmt.batch.plan import BatchBudget, Tier, check_tiers

    with pytest.raises(ConfigError, match="--budget must be a share strictly between 0 and 1"):
        BatchBudget(share=1.0)
    for bad in (0, -1, float("inf"), True):
        with pytest.raises(ConfigError, match="--cost-budget must be a"):
            BatchBudget(cost=bad)
    with pytest.raises(ConfigError, match="--small-cost must be a finite number >= 0"):
        BatchBudget(share=0.3, small_cost=-1)
    assert BatchBudget(cost=10).cost == 10 and BatchBudget(share=0.3, small_cost=0).small_cost == 0
    assert type(BatchBudget(cost=10).cost) is int  # as given: the plan's fingerprint hashes it
    with pytest.raises(ConfigError, match="tier 'big': gain_scale must be a finite number > 0"):
        check_tiers([Tier("big", "x", 1.0, 0.0)], BatchBudget(share=0.3))


def test_the_gain_and_lead_defaults_reach_the_pacer():
    plan = BudgetPlan.from_settings(settings())
    # the service's lead guards its first 100 requests, and under it the quantile rule's gain
    assert (plan.gain, plan.max_lead, plan.lead_horizon) == (0.05, 2.0, 100)
    assert BudgetPlan.from_settings(settings(rule="integral")).gain == 0.2
    unguarded = BudgetPlan.from_settings(settings(max_lead=None))
    assert unguarded.options()["max_lead"] is None and unguarded.gain == 0.1
    pacer = plan.build(lambda stage, options: Pacer(stage.spec, **options))[0]
    assert (pacer.gain, pacer.max_lead, pacer.lead_horizon) == (0.05, 2.0, 100)
    assert Pacer(BudgetSpec(share=0.3), rule="quantile").gain == 0.1  # the library's own
