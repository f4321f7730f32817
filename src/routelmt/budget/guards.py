"""Guards against routing regressions (docs/method.md section 6): veto a selected candidate whose
small-model output is already good, and give its budget to the next candidate in gain order.

Gain ranking raises the mean gain but still sends some segments to the large model where it is
worse than the small one. A guard looks only at the candidates the gain ranking selected: a
candidate whose guard score (an estimate of the small model's quality) is >= the guard threshold
stays with the small model. Freed budget goes to the next candidates in gain order, which face
the same guard, so the budget is still used (``leave_unused=True`` keeps it unspent instead).

The guard has its own cost, which is why it runs on the examined candidates only, never on every
request: the quality-predict guard (RouteLMT-Q head) costs one more head product per candidate;
the quality-hypo guard (QE of the small model's translation) costs a small decode and a QE pass.
``GuardResult.evaluations`` counts what a run needed; ``guard`` may be a callable that computes
guard scores on demand, so an expensive guard is evaluated (and timed) only where needed.

Candidates are examined in rounds: with ``a`` accepted so far, the next ``k - a`` candidates in
gain order are scored together (all of them are needed, even if none is vetoed), so batching
examines exactly the candidates a one-at-a-time walk would.

The online guards (the live path: ``HybridTranslator``, the service) are in
``budget.online_guards``; they share the threshold rules of this module.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from routelmt.budget.allocation import as_scores, budget_count, check_share, rank_order
from routelmt.errors import ConfigError, InputError

__all__ = [
    "GuardFn",
    "GuardResult",
    "ThresholdChoice",
    "choose_guard_threshold",
    "guard_threshold_quantile",
    "guarded_allocation",
]

log = logging.getLogger(__name__)

GuardFn = Callable[[np.ndarray], Any]
"""Guard scores for the given request indices (an array aligned with them)."""


def _threshold(value: Any, name: str = "guard_threshold") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    x = float(value)
    if math.isnan(x):
        raise ConfigError(f"{name} must not be NaN")
    return x


@dataclass(frozen=True)
class GuardResult:
    """What a guarded allocation did, and what its guard cost."""

    routed: np.ndarray  # bool mask: sent to the large model
    vetoed: np.ndarray  # indices kept on the small model by the guard, in examination order
    examined: np.ndarray  # indices whose guard score was needed, in examination order
    budget: int  # the k the budget allowed
    guard_seconds: float = 0.0  # time spent in a callable guard (0 for precomputed scores)

    @property
    def n(self) -> int:
        return int(self.routed.size)

    @property
    def n_routed(self) -> int:
        return int(self.routed.sum())

    @property
    def evaluations(self) -> int:
        """Guard evaluations needed: one per examined candidate."""
        return int(self.examined.size)

    @property
    def unused(self) -> int:
        """Budget left unspent (vetoes with ``leave_unused``, or too few candidates)."""
        return self.budget - self.n_routed

    @property
    def evaluation_share(self) -> float:
        """Share of all requests that needed a guard evaluation."""
        return self.evaluations / self.n if self.n else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "budget": self.budget,
            "routed": self.n_routed,
            "vetoed": int(self.vetoed.size),
            "unused": self.unused,
            "evaluations": self.evaluations,
            "evaluation_share": self.evaluation_share,
            "guard_seconds": self.guard_seconds,
        }


def _guard_values(values: Any, batch: np.ndarray) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.shape != batch.shape:
        raise InputError(
            f"the guard returned shape {arr.shape} for {batch.size} candidates; expected "
            f"({batch.size},)",
            field="guard_scores",
        )
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise InputError(
            f"guard score {arr[bad[0]]} for request {int(batch[bad[0]])}; must be finite",
            field="guard_scores",
        )
    return arr


def guarded_allocation(
    gain_scores: Sequence[float] | np.ndarray,
    p: float,
    *,
    guard_scores: Sequence[float] | np.ndarray | GuardFn | None = None,
    guard_threshold: float | None = None,
    leave_unused: bool = False,
    positive_only: bool = False,
) -> GuardResult:
    """Top-p allocation by gain score with a guard on the selected candidates.

    ``guard_scores`` is an array aligned with ``gain_scores`` or a callable ``f(indices) ->
    scores`` called only on the candidates examined. A candidate with guard score >=
    ``guard_threshold`` is vetoed. Without ``leave_unused``, exactly ``budget_count(n, p)``
    requests are routed unless fewer candidates pass the guard (or, with ``positive_only``, fewer
    have a gain score > 0). Without a guard this equals ``allocate_top_p``.
    """
    scores = as_scores(gain_scores, "gain_scores")
    n = scores.size
    k = budget_count(n, check_share(p))
    if (guard_scores is None) != (guard_threshold is None):
        raise ConfigError("give both guard_scores and guard_threshold, or neither (no guard)")
    order = rank_order(scores)
    if positive_only:
        order = order[scores[order] > 0]
    routed = np.zeros(n, dtype=bool)
    empty = np.zeros(0, dtype=np.int64)
    if guard_scores is None:
        routed[order[:k]] = True
        return GuardResult(routed=routed, vetoed=empty, examined=empty, budget=k)

    tau = _threshold(guard_threshold)
    if callable(guard_scores):
        fn: GuardFn = guard_scores
        table = None
    else:
        table = as_scores(guard_scores, "guard_scores")
        if table.shape != (n,):
            raise InputError(
                f"guard_scores has shape {table.shape} but there are {n} gain scores; expected "
                "one guard score per request",
                field="guard_scores",
            )
        fn = table.__getitem__

    seconds = 0.0
    examined: list[np.ndarray] = []
    vetoed: list[np.ndarray] = []
    pos = 0
    accepted = 0
    while accepted < k and pos < order.size:
        batch = order[pos : pos + (k - accepted)]
        pos += batch.size
        started = time.perf_counter()
        values = _guard_values(fn(batch), batch)
        if table is None:
            seconds += time.perf_counter() - started
        veto = values >= tau
        examined.append(batch)
        vetoed.append(batch[veto])
        routed[batch[~veto]] = True
        accepted += int((~veto).sum())
        if leave_unused:
            break
    return GuardResult(
        routed=routed,
        vetoed=np.concatenate(vetoed) if vetoed else empty,
        examined=np.concatenate(examined) if examined else empty,
        budget=k,
        guard_seconds=seconds,
    )


# -- thresholds -----------------------------------------------------------------------------


def guard_threshold_quantile(guard_scores: Sequence[float] | np.ndarray, q: float) -> float:
    """The q-quantile of training guard scores: the guard vetoes about the top 1 - q of them."""
    arr = as_scores(guard_scores, "guard_scores")
    if arr.size == 0:
        raise InputError("cannot fit a guard threshold on zero scores", field="guard_scores")
    qv = _threshold(q, "quantile")
    if not 0.0 < qv <= 1.0:
        raise ConfigError(f"quantile must be in (0, 1], got {q!r}")
    return float(np.quantile(arr, qv))


@dataclass(frozen=True)
class ThresholdChoice:
    """A threshold chosen on training data, and the trade-off it made there."""

    threshold: float  # +inf: no guard was worth it
    severe_loss: float  # percent of routed with gain < -severe_delta, on the training data
    mean_delta: float
    base_severe_loss: float  # the same without a guard
    base_mean_delta: float
    candidates: int


def _routed_stats(routed: np.ndarray, gains: np.ndarray, severe_delta: float) -> tuple[float, ...]:
    g = gains[routed]
    if g.size == 0:
        return math.nan, math.nan
    return 100.0 * float(np.mean(g < -severe_delta)), float(np.mean(g))


def choose_guard_threshold(
    gain_scores: Sequence[float] | np.ndarray,
    guard_scores: Sequence[float] | np.ndarray,
    gains: Sequence[float] | np.ndarray,
    p: float,
    *,
    max_mean_delta_drop: float = 0.5,
    severe_delta: float = 10.0,
    quantiles: Sequence[float] = tuple(np.round(np.arange(0.50, 1.0, 0.025), 3)),
) -> ThresholdChoice:
    """Pick the guard threshold on training data: the lowest severe-loss rate among thresholds
    whose MeanDelta@p is at most ``max_mean_delta_drop`` below the unguarded one.

    Candidates are quantiles of the training guard scores; +inf (no guard) is always a candidate,
    so the choice never does worse on the training data than no guard. Ties in severe loss go to
    the higher MeanDelta, then to the higher threshold (fewer vetoes, fewer evaluations).
    ``gain_scores`` must be out-of-sample for these examples (e.g. inner cross-fitting), or the
    trade-off is judged on overfitted rankings.
    """
    scores = as_scores(gain_scores, "gain_scores")
    guard = as_scores(guard_scores, "guard_scores")
    true = as_scores(gains, "gains")
    if not (scores.size == guard.size == true.size):
        raise InputError(
            f"{scores.size} gain scores, {guard.size} guard scores and {true.size} gains; "
            "expected equal counts"
        )
    if scores.size == 0:
        raise InputError("cannot choose a guard threshold on zero examples")
    drop = _threshold(max_mean_delta_drop, "max_mean_delta_drop")
    if drop < 0:
        raise ConfigError(f"max_mean_delta_drop must be >= 0, got {max_mean_delta_drop!r}")
    levels = [float(q) for q in quantiles]
    if any(not 0.0 < q <= 1.0 for q in levels):
        raise ConfigError(f"quantiles must be in (0, 1], got {list(quantiles)}")
    base = _routed_stats(guarded_allocation(scores, p).routed, true, severe_delta)
    best = (base[0], -base[1], -math.inf)  # minimise (severe, -mean_delta, -threshold)
    chosen = (math.inf, *base)
    thresholds = sorted({float(np.quantile(guard, q)) for q in levels})
    for tau in thresholds:
        result = guarded_allocation(scores, p, guard_scores=guard, guard_threshold=tau)
        severe, md = _routed_stats(result.routed, true, severe_delta)
        if math.isnan(severe) or md < base[1] - drop:
            continue
        key = (severe, -md, -tau)
        if key < best:
            best = key
            chosen = (tau, severe, md)
    return ThresholdChoice(
        threshold=chosen[0],
        severe_loss=chosen[1],
        mean_delta=chosen[2],
        base_severe_loss=base[0],
        base_mean_delta=base[1],
        candidates=len(thresholds) + 1,
    )
