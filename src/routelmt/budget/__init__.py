"""Budget control: offline top-p allocation, threshold calibration, an online pacer, and
allocation across more than two tiers."""

from routelmt.budget.allocation import (
    allocate_top_p,
    budget_count,
    check_share,
    descending_order,
    rank_order,
    tie_keys,
    top_share_mask,
)
from routelmt.budget.calibration import (
    Calibration,
    calibrate_threshold,
    read_scores,
    realised_share,
)
from routelmt.budget.guards import (
    GuardResult,
    ThresholdChoice,
    choose_guard_threshold,
    guard_threshold_quantile,
    guarded_allocation,
)
from routelmt.budget.online_guards import (
    Guard,
    GuardedDecision,
    GuardedPacer,
    GuardVerdict,
    make_guard,
)
from routelmt.budget.pacer import BudgetSpec, Decision, Pacer
from routelmt.budget.tiers import TierAllocation, allocate_tiers

__all__ = [
    "BudgetSpec",
    "Calibration",
    "Decision",
    "Guard",
    "GuardResult",
    "GuardVerdict",
    "GuardedDecision",
    "GuardedPacer",
    "Pacer",
    "ThresholdChoice",
    "TierAllocation",
    "allocate_tiers",
    "allocate_top_p",
    "top_share_mask",
    "budget_count",
    "calibrate_threshold",
    "choose_guard_threshold",
    "guard_threshold_quantile",
    "guarded_allocation",
    "make_guard",
    "check_share",
    "descending_order",
    "rank_order",
    "read_scores",
    "realised_share",
    "tie_keys",
]
