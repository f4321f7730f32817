"""The budget plan: where the ``budget.*`` settings and the router's declared stages become what
each pacer is given, and the one place those settings are checked.

``BudgetPlan.from_settings`` reads a ``budget`` settings section (``serve.config.BudgetSettings``)
for a router of one or two stages (``routers.base.stages``) and checks every field once, with
one range and one message per field: the config loader calls it before any model loads, the
service again once the router is known. The plan holds

- the whole budget (``spec``: a share of requests, or a share of cost, the hard cap, the window);
- each stage's part of it (``split_budget``: stage 1 spends ``stage1_share`` of it right after
  the prefill, stage 2 the rest after the small decode, so together they route ``share``;
  ``stage1_share: 0`` leaves stage 1 off and stage 2 holds the whole budget and cap);
- the hard cap and how the stages share it: never split, one cap over both stages
  (``joint_cap.JointCap``), so a forced-large request decided at stage 1 may use all of it;
- each stage's store name (stage 2 appends ``STAGE2_SUFFIX``: its own file or Ray actor);
- the pacer options: warm-up, gain (None: the rule's own, ``pacer.default_gain``, smaller
  under a lead limit), initial threshold, decision rule, the lead limit (``max_lead``: how many
  mean requests the spend may run ahead of the share of those seen) and how many of a stream's
  first requests it guards (``lead_horizon``), and the prior (the router artifact's score
  distribution of each stage, when ``prior`` is on).

The checks of single fields are three functions, one per kind of field, that every budget in
the library uses (``BudgetSpec``, ``TierPacer``, the batch path's ``BatchBudget``):
``check_share`` (a share strictly inside (0, 1)), ``check_positive`` (a cost, cap or rate > 0,
or >= 0) and ``check_stage1_share`` ([0, 1)).

``build`` assembles the pacers from a factory for one pacer (the service's, which knows the
SQLite and Ray stores), applying ``StageOff`` and ``JointCap`` here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from routelmt.budget.allocation import check_share
from routelmt.budget.joint_cap import JointCap
from routelmt.budget.pacer import (
    RULES,
    BudgetSpec,
    StageOff,
    check_horizon,
    check_positive,
    default_gain,
)
from routelmt.errors import ConfigError

__all__ = [
    "STAGE2_SUFFIX",
    "BudgetPlan",
    "StagePlan",
    "check_positive",
    "check_share",
    "check_stage1_share",
    "split_budget",
    "stage_store",
]

STAGE2_SUFFIX = ".stage2"
"""What stage 2's store name adds to ``budget.store`` (a SQLite path or ``ray:NAME``)."""

TIER_UNSUPPORTED = ("cost_share", "store", "initial_threshold")
"""Budget keys a ``TierPacer`` has no use for (a tier budget is a share of the top tier's cost)."""

_CAP_HINT = "it is an absolute count, not a share (for a share: budget.share, --budget)"


def check_stage1_share(value: Any) -> float:
    """``budget.stage1_share`` in [0, 1): 0 gives stage 2 the whole budget; 1 would leave stage
    2 nothing to spend."""
    number = not isinstance(value, bool) and isinstance(
        value, int | float | np.integer | np.floating
    )
    if not (number and math.isfinite(value) and 0.0 <= value < 1.0):
        raise ConfigError(
            "'budget.stage1_share' must be in [0, 1) (0: stage 2 spends the whole budget), "
            f"got {value!r}"
        )
    return float(value)


def split_budget(p: float, stage1_share: float) -> tuple[float, float]:
    """The large-model shares of the two stages for a total budget ``p``: stage 1 sends
    ``stage1_share * p`` of all requests right after the prefill; stage 2 sends the rest of the
    budget as a share of the requests that reach it, so the total stays ``p``."""
    share = check_share(p, "budget share")
    first = check_stage1_share(stage1_share) * share
    return first, (share - first) / (1.0 - first)


def stage_store(store: str | None, stage: int) -> str | None:
    """The store of a stage's pacer: ``store`` for stage 1, ``store + STAGE2_SUFFIX`` for
    stage 2 (each stage keeps its own state); None without a store."""
    if not store:
        return None
    return str(store) if stage == 1 else f"{store}{STAGE2_SUFFIX}"


def _spec(budget: Mapping[str, Any], share: float | None, cost_share: float | None) -> BudgetSpec:
    try:
        return BudgetSpec(
            share=share,
            cost_share=cost_share,
            cost_small=budget["cost_small"],
            cost_large=budget["cost_large"],
            hard_cap=budget["hard_cap"],
            window=budget["window"],
        )
    except ConfigError as exc:
        raise ConfigError(f"budget: {exc}") from None


def _check_hard_cap(budget: Mapping[str, Any], tier_costs: Sequence[float] | None) -> None:
    """``budget.hard_cap`` counts large requests (or cost units): a fraction like 0.35 is a
    share given in the wrong place, and would let no large call through; refuse it."""
    cap = budget["hard_cap"]
    if cap is None:
        return
    if tier_costs is not None:
        cheapest = min(float(c) for c in tier_costs)
        if not cap >= cheapest:
            raise ConfigError(
                f"'budget.hard_cap' is {cap!r}, below the cheapest tier's cost ({cheapest:g}), "
                f"so no request could ever go above the small model; {_CAP_HINT}"
            )
    elif budget["cost_share"] is not None:
        if not cap >= budget["cost_large"]:
            raise ConfigError(
                f"'budget.hard_cap' is {cap!r} cost units, below one large call (cost_large "
                f"{budget['cost_large']:g}): no large call could ever be made; {_CAP_HINT}"
            )
    elif not (cap >= 1 and float(cap).is_integer()):
        raise ConfigError(
            "'budget.hard_cap' must be a whole number of large-model requests (at least 1), "
            f"got {cap!r}; {_CAP_HINT}"
        )


def _check_stages(budget: Mapping[str, Any], stages: int, tiers: bool) -> None:
    """What one routing mode refuses: two stages split a share of requests; tiers take one
    stage and a share."""
    if stages not in (1, 2):
        raise ValueError(f"a router has 1 or 2 stages, got {stages!r}")
    if tiers and stages == 2:
        raise ConfigError(
            "tiers need a one-stage router (e.g. router: {path: shipped:routelmt} or "
            "{name: length}); the two-stage router splits a two-tier budget"
        )
    if tiers:
        for key in TIER_UNSUPPORTED:
            if budget[key] is not None:
                raise ConfigError(f"budget.{key} is not supported with tiers; use budget.share")
    if stages == 2 and budget["cost_share"] is not None:
        raise ConfigError(
            "a two-stage router needs budget.share (a share of requests), not cost_share"
        )


@dataclass(frozen=True)
class StagePlan:
    """One routing stage's pacer: ``name`` (``stage1`` or ``stage2``, also the key of its prior
    in the router's ``StageDistributions``), its ``spec`` (None: the stage has no share and
    hands its forced requests on, ``StageOff``) and its ``store`` (None: in memory)."""

    name: str
    spec: BudgetSpec | None
    store: str | None


def _max_lead(value: Any) -> float | None:
    return None if value is None else check_positive(value, "'budget.max_lead'")


@dataclass(frozen=True)
class BudgetPlan:
    """The checked budget of one service: the whole ``spec``, one ``StagePlan`` a routing
    stage, the cap the stages spend together (``joint_cap``; None: each stage's own cap is the
    whole cap already, or there is none) and the pacer options."""

    spec: BudgetSpec
    stage1_share: float
    stages: tuple[StagePlan, ...]
    joint_cap: float | None
    gain: float
    warmup: int
    initial_threshold: float | None
    rule: str
    prior: bool
    max_lead: float | None = None
    lead_horizon: int | None = None

    @classmethod
    def from_settings(
        cls,
        budget: Mapping[str, Any],
        *,
        stages: int = 1,
        tier_costs: Sequence[float] | None = None,
    ) -> BudgetPlan:
        """The plan of a ``budget`` settings section for a router of ``stages`` stages;
        ``tier_costs``: each tier's extra cost when tiers serve instead of one large model.
        Every budget check is made here; its ConfigError names the field."""
        whole = _spec(
            budget,
            budget["share"] if budget["cost_share"] is None else None,
            budget["cost_share"],
        )
        alpha = check_stage1_share(budget["stage1_share"])
        rule = budget.get("rule", "integral")
        if rule not in RULES:
            raise ConfigError(f"'budget.rule' must be one of {', '.join(RULES)}, got {rule!r:.40}")
        given = budget.get("gain")
        max_lead = _max_lead(budget.get("max_lead"))
        if given is None:
            gain = default_gain(rule, guarded=max_lead is not None)
        else:
            gain = check_positive(given, "'budget.gain'")
        _check_stages(budget, stages, tier_costs is not None)
        _check_hard_cap(budget, tier_costs)
        store = budget["store"]
        if stages == 1:
            plans: tuple[StagePlan, ...] = (StagePlan("stage1", whole, stage_store(store, 1)),)
        else:
            first, second = split_budget(whole.target, alpha)
            plans = (
                StagePlan("stage1", None if alpha == 0.0 else _spec(budget, first, None), store),
                StagePlan("stage2", _spec(budget, second, None), stage_store(store, 2)),
            )
        return cls(
            spec=whole,
            stage1_share=alpha,
            stages=plans,
            # stage 1 off: stage 2's own cap is the whole cap, forced requests included
            joint_cap=whole.hard_cap if stages == 2 and alpha > 0.0 else None,
            gain=gain,
            warmup=budget["warmup"],
            initial_threshold=budget["initial_threshold"],
            rule=rule,
            prior=bool(budget.get("prior", True)),
            max_lead=max_lead,
            lead_horizon=check_horizon(budget.get("lead_horizon"), "'budget.lead_horizon'"),
        )

    def options(self, prior: Any = None) -> dict[str, Any]:
        """The keyword arguments of each stage's pacer besides its spec."""
        return {
            "gain": self.gain,
            "warmup": self.warmup,
            "initial_threshold": self.initial_threshold,
            "rule": self.rule,
            "prior": prior,
            "max_lead": self.max_lead,
            "lead_horizon": self.lead_horizon,
        }

    def priors(self, distributions: Any = None) -> dict[str, Any]:
        """Each stage's prior: its score distribution from the router artifact
        (``StageDistributions``), when ``prior`` is on; else None."""
        if distributions is None or not self.prior:
            return {s.name: None for s in self.stages}
        return {s.name: distributions.get(s.name) for s in self.stages}

    def build(
        self,
        make: Callable[[StagePlan, dict[str, Any]], Any],
        distributions: Any = None,
    ) -> tuple[Any, Any | None]:
        """The pacers (stage 1's, and stage 2's or None); ``make(stage, options)`` builds one
        stage's pacer from its ``StagePlan`` (spec and store) and the pacer options."""
        priors = self.priors(distributions)
        made = {
            s.name: make(s, self.options(priors[s.name]))
            for s in reversed(self.stages)  # stage 2 first, as it always was
            if s.spec is not None
        }
        if len(self.stages) == 1:
            return made["stage1"], None
        second = made["stage2"]
        if "stage1" not in made:  # stage 2 holds the whole budget and the whole cap
            return StageOff(second), second
        if self.joint_cap is None:
            return made["stage1"], second
        joint = JointCap(self.joint_cap)
        return joint.stage(made["stage1"]), joint.stage(second)
