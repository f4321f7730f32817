"""The batch plan: which segment goes to which tier, decided once and written before any large
call, so an interrupted run resumes with exactly the same choice.

A share budget routes exactly ``budget.allocation.budget_count`` segments (k = floor(pN + 0.5)),
the highest scores, equal scores ordered by the library's one tie rule (a seeded permutation);
a cost budget is ``budget.tiers.allocate_tiers`` (the multiple-choice knapsack). This module only
applies them to a file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from routelmt.budget.allocation import budget_count, top_share_mask
from routelmt.budget.plan import check_positive, check_share
from routelmt.budget.tiers import allocate_tiers
from routelmt.errors import ConfigError, InputError
from routelmt.evaluation.ranking import tie_keys
from routelmt.records import Segment
from routelmt.storage import read_json, stable_hash, write_json

PLAN_FORMAT = 1


@dataclass(frozen=True)
class Tier:
    """A model above the small one: its spec, its cost per request (any unit, the same as the
    small model's) and ``gain_scale``, the share of the router's predicted gain it delivers."""

    name: str
    spec: str
    cost: float = 1.0
    gain_scale: float = 1.0


@dataclass(frozen=True)
class BatchBudget:
    """Exactly one of ``share`` (a share of the segments, strictly inside (0, 1)) or ``cost``
    (the most the large calls may cost in total, > 0, in the tiers' unit). ``small_cost`` per
    small translation only enters the estimated total."""

    share: float | None = None
    cost: float | None = None
    per_direction: bool = False
    small_cost: float = 0.0
    tie_seed: int = 0

    def __post_init__(self) -> None:
        if (self.share is None) == (self.cost is None):
            raise ConfigError("give exactly one of --budget (a share) or --cost-budget (a cost)")
        if self.share is not None:
            object.__setattr__(self, "share", check_share(self.share, "--budget"))
        else:  # checked, not converted: the plan's fingerprint hashes the values as given
            check_positive(self.cost, "--cost-budget")
        check_positive(self.small_cost, "--small-cost", allow_zero=True)


def check_tiers(tiers: Sequence[Tier], budget: BatchBudget) -> None:
    """Tiers that the budget can allocate over: each dearer than the small model; a share
    budget has one tier (a share says how many, not which of several)."""
    if not tiers:
        raise ConfigError("give at least one large model (--large SPEC)")
    names = [t.name for t in tiers]
    if len(set(names)) != len(names):
        raise ConfigError(f"tier names must differ, got {names}")
    for tier in tiers:
        for key in ("cost", "gain_scale"):
            check_positive(getattr(tier, key), f"tier '{tier.name}': {key}")
    if budget.share is not None and len(tiers) > 1:
        raise ConfigError("several large tiers need a cost budget (--cost-budget), not --budget")
    if budget.cost is not None and budget.per_direction:
        raise ConfigError("--per-direction applies to a share budget (--budget), not a cost")


def allocate(
    scores: np.ndarray, directions: Sequence[str], budget: BatchBudget, tiers: Sequence[Tier]
) -> np.ndarray:
    """The tier of each segment: 0 for the small model, j for ``tiers[j - 1]``."""
    check_tiers(tiers, budget)
    scores = np.asarray(scores, dtype=float)
    if budget.share is not None:
        keys = evaluation_tie_keys(scores.size, budget.tie_seed)  # the evaluator's own keys
        if not budget.per_direction:
            return top_share_mask(scores, budget.share, keys).astype(int)
        chosen = np.zeros(scores.size, dtype=int)
        names = np.asarray(directions)
        for direction in dict.fromkeys(directions):
            rows = np.flatnonzero(names == direction)
            chosen[rows] = top_share_mask(scores[rows], budget.share, keys[rows])
        return chosen
    costs = np.array([t.cost for t in tiers], dtype=float)
    gains = scores[:, None] * np.array([t.gain_scale for t in tiers], dtype=float)[None, :]
    return allocate_tiers(gains, costs, float(budget.cost)).tier.astype(int)  # type: ignore[arg-type]


def evaluation_tie_keys(n: int, seed: int = 0) -> np.ndarray:
    """The tie keys ``evaluation.evaluate_arrays`` uses for ``n`` segments and ``seed``."""
    return tie_keys(n, np.random.SeedSequence(seed).spawn(2)[0])


def allowed_calls(n_by_direction: dict[str, int], budget: BatchBudget) -> int | None:
    """The number of large calls a share budget allows (None for a cost budget)."""
    if budget.share is None:
        return None
    if budget.per_direction:
        return sum(budget_count(n, budget.share) for n in n_by_direction.values())
    return budget_count(sum(n_by_direction.values()), budget.share)


@dataclass
class Plan:
    """Everything the run decided before its first large call."""

    fingerprint: str
    ids: list[str]
    tiers: list[int]
    scores: list[float]
    stage1: list[float] | None
    tier_names: list[str]
    summary: dict[str, Any] = field(default_factory=dict)
    format: int = PLAN_FORMAT

    def routed(self, tier: int) -> list[int]:
        """Input positions sent to ``tier`` (1-based)."""
        return [i for i, t in enumerate(self.tiers) if t == tier]

    def write(self, path: str | os.PathLike[str]) -> None:
        write_json(path, asdict(self))  # atomic: a plan is whole or absent

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> Plan:
        data = read_json(path)
        if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
            raise InputError(
                "not a batch plan of this version; remove it to plan again", path=str(path)
            )
        return cls(**data)


def fingerprint(
    segments: Sequence[Segment],
    small: str,
    router: str,
    router_identity: str,
    budget: BatchBudget,
    tiers: Sequence[Tier],
) -> str:
    """What the plan depends on: the segments, the small model, the router and the budget."""
    return stable_hash(
        [(s.id, s.direction, s.source) for s in segments],
        small,
        router,
        router_identity,
        asdict(budget),
        [asdict(t) for t in tiers],
    )


def plan_summary(
    segments: Sequence[Segment],
    chosen: np.ndarray,
    scores: np.ndarray,
    budget: BatchBudget,
    tiers: Sequence[Tier],
    small_translates_all: bool,
) -> dict[str, Any]:
    """Counts, estimated cost and predicted gain of a plan (what ``--dry-run`` prints)."""
    by_direction: dict[str, dict[str, int]] = {}
    for segment, tier in zip(segments, chosen):
        row = by_direction.setdefault(segment.direction, {"n": 0, "large": 0})
        row["n"] += 1
        row["large"] += int(tier > 0)
    calls = [int((chosen == j + 1).sum()) for j in range(len(tiers))]
    large_cost = sum(c * t.cost for c, t in zip(calls, tiers))
    small_calls = len(segments) if small_translates_all else len(segments) - sum(calls)
    scale = np.array([0.0] + [t.gain_scale for t in tiers])
    predicted = scores * scale[chosen]
    positive = float(np.clip(scores * max(scale), 0, None).sum())
    return {
        "segments": len(segments),
        "large_calls": sum(calls),
        "large_calls_by_tier": {t.name: c for t, c in zip(tiers, calls)},
        "allowed_large_calls": allowed_calls({d: r["n"] for d, r in by_direction.items()}, budget),
        "share_large": round(sum(calls) / len(segments), 6),
        "by_direction": by_direction,
        "budget": {
            "share": budget.share,
            "cost": budget.cost,
            "per_direction": budget.per_direction,
        },
        "estimated_large_cost": round(large_cost, 6),
        "estimated_total_cost": round(large_cost + small_calls * budget.small_cost, 6),
        "predicted_gain_routed": round(float(predicted.sum()), 6),
        "predicted_gain_share": round(float(predicted.sum()) / positive, 6)
        if positive > 0
        else None,
    }
