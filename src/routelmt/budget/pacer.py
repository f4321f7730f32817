"""Online budget pacer: keeps the large-model share at p on streaming traffic whose scores drift.

A threshold fitted once drifts as soon as traffic changes (the usual "calibrated for 30%, got
45%" complaint). The pacer instead runs an integral controller on the budget surplus:

    after each request:  tau += gain * scale * (charged_i - p * w_i) / w_mean

where ``charged_i`` is the request's weight ``w_i`` when it was routed and 0 otherwise. Summed
over a stream this telescopes: ``spent - p * seen = (tau_end - tau_start) * w_mean / (gain *
scale)``, so the cumulative surplus is bounded by how far the threshold had to move, whatever
the score distribution does; after a shift of d score-scales it costs about ``d / gain``
extra (or missing) requests before tau settles at the new (1 - p) quantile. This is stochastic
approximation of the (1 - p) quantile, i.e. a quantile tracker and a feedback loop on the
cumulative deficit in one. ``scale`` (a robust spread, IQR / 1.349, of a sliding window of recent
scores) makes ``gain`` unit-free, so the same setting works for chrF gains and for lengths.
Without an initial threshold, a warm-up uses the (1 - p) quantile of the scores seen so far.

Two decision rules (``rule``). ``integral`` is the controller above alone: its threshold moves on
every decision, and that jitter decides near-tied requests by arrival order, which loses much of
what the same scores ranked top-k would route. ``quantile`` (the service's default) sets the
threshold to the (1 - p) quantile of the window of recent scores, recomputed on every decision,
plus an offset that the same integral rule drives with a small gain: on a steady stream the window
quantile is the top-k cut, and the offset corrects the realised share when the window is biased
(a drift, refunds, a prior that does not fit). ``prior`` (a ``ScoreDistribution``, e.g. the one a
router artifact ships) seeds the window with the router's expected quantiles, so the first request
already meets the threshold for the budget instead of a blind warm-up.

The hard cap is enforced separately and exactly: decide-and-charge happens under one lock, and a
request is refused when its charge would push the total past the cap. Charges are reservations:
``refund(decision)`` returns one (a failed large call) and undoes its effect on the controller,
so refunded budget is spent again later.

The threshold stays within ``margin`` score-scales of the (1 - p) quantile of the recent scores.
Without that bound an outage of the large model (every routed call fails and is refunded) walks
the threshold down without limit, and on recovery hundreds of requests in a row go large to pay
back the "debt"; with it, the debt the controller can carry is at most about ``margin / gain``
requests. Refunds are accepted for the last ``REFUND_HORIZON`` decisions (a large call finishes
long before that), so the record of refunded decisions stays small.

``state_dict()`` / ``load_state_dict()`` are the pacer's whole mutable state as JSON-ready
values, and nothing else: what a shared store (``serve.shared_pacer``) persists. Settings
(the spec, gain, margin) are the caller's and are not part of it.
"""

from __future__ import annotations

import base64
import itertools
import math
import threading
from array import array
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from routelmt.budget.allocation import check_share
from routelmt.budget.score_distribution import ScoreDistribution
from routelmt.errors import ConfigError, InputError

__all__ = [
    "BudgetSpec",
    "Decision",
    "Pacer",
    "REFUND_HORIZON",
    "DEFAULT_GAIN",
    "GUARDED_GAIN",
    "check_horizon",
    "default_gain",
    "RULES",
    "StageOff",
    "check_positive",
]

RULES = ("quantile", "integral")
"""``quantile``: the threshold is the (1 - p) quantile of a window of recent scores plus a small
integral correction on the spent share; ``integral``: the integral controller alone."""

DEFAULT_GAIN = {"quantile": 0.1, "integral": 0.2}
"""Each rule's controller gain when none is given. ``quantile`` 0.1: chosen on recorded streams
that the reported directions do not use (docs/benchmarks.md section 14f: the largest online HC
among the gains whose first 100 requests overspend by at most 2 points); ``integral`` keeps the
0.2 its drift tables were measured with (section 7)."""

GUARDED_GAIN = {"quantile": 0.05, "integral": 0.2}
"""The gain when a lead limit (``max_lead``) guards the start of the stream: the start cannot
overspend, so the threshold may stay near the window's quantile (closer to top-k) instead of
chasing the spent share. ``quantile`` 0.05: the smallest gain whose share, starting blind on a
drifting stream (source length in document order), stays within 2 points of the budget over
1,000 requests (0.02 and 0.03 did not), and the best online HC among those on the recorded
streams (section 14f)."""


def default_gain(rule: str, guarded: bool) -> float:
    """A rule's gain when none is given: ``GUARDED_GAIN`` under a lead limit, else
    ``DEFAULT_GAIN``."""
    return (GUARDED_GAIN if guarded else DEFAULT_GAIN)[rule]


_pacer_ids = itertools.count(1)

PRIOR_WEIGHT = 21
"""How many scores a prior counts as in the window: enough to set the first thresholds, few
enough that the traffic's own scores outweigh a prior that does not fit it within ~50 requests."""

REFUND_HORIZON = 10_000
"""A refund must come within this many decisions of its decision (later ones are refused)."""

STATE_VERSION = 1
_REFUND_BYTES = 2 * REFUND_HORIZON // 8


def check_positive(value: Any, name: str, *, allow_zero: bool = False) -> float:
    """A cost, cap or rate: a finite number > 0 (>= 0 with ``allow_zero``); the error names
    ``name`` and the bad value. One check for every such budget field (``budget.plan``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    x = float(value)
    if not math.isfinite(x) or x < 0 or (x == 0 and not allow_zero):
        expected = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name} must be a finite number {expected}, got {value!r}")
    return x


@dataclass(frozen=True)
class BudgetSpec:
    """What the budget promises.

    - ``BudgetSpec(share=0.3)``: at most 30% of requests go to the large model (every request
      weighs 1; spend is counted in requests).
    - ``BudgetSpec(cost_share=0.3, cost_small=..., cost_large=...)``: the extra spend on the
      large model is 30% of what sending everything to it would cost extra. A request's weight
      is ``cost_large - cost_small`` (per-request costs in any unit: tokens, cents), or the
      ``cost`` passed to ``Pacer.decide`` (that request's own extra cost, e.g. from its length).
    - ``hard_cap``: an absolute ceiling on the total spend (requests or cost units) that is never
      exceeded, even with many concurrent deciders.
    - ``window``: the number of recent requests over which the windowed share is reported.
    """

    share: float | None = None
    cost_share: float | None = None
    cost_small: float = 0.0
    cost_large: float = 1.0
    hard_cap: float | None = None
    window: int = 1000

    def __post_init__(self) -> None:
        if (self.share is None) == (self.cost_share is None):
            raise ConfigError(
                "give exactly one of share= (a share of requests) or cost_share= (a share of "
                f"cost); got share={self.share!r}, cost_share={self.cost_share!r}"
            )
        if self.share is not None:
            object.__setattr__(self, "share", check_share(self.share, "budget share"))
        else:
            object.__setattr__(
                self, "cost_share", check_share(self.cost_share, "budget cost_share")
            )
            small = check_positive(self.cost_small, "cost_small", allow_zero=True)
            large = check_positive(self.cost_large, "cost_large")
            if not large > small:
                raise ConfigError(
                    f"cost_large ({self.cost_large!r}) must be greater than cost_small "
                    f"({self.cost_small!r}), or routing saves nothing"
                )
            object.__setattr__(self, "cost_small", small)
            object.__setattr__(self, "cost_large", large)
        if self.hard_cap is not None:
            object.__setattr__(self, "hard_cap", check_positive(self.hard_cap, "hard_cap"))
        if isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < 1:
            raise ConfigError(f"window must be a positive integer, got {self.window!r}")

    @property
    def target(self) -> float:
        """The promised share p (of requests, or of cost)."""
        return self.share if self.share is not None else self.cost_share  # type: ignore[return-value]

    @property
    def kind(self) -> str:
        return "share" if self.share is not None else "cost_share"

    def weight(self, cost: float | None = None) -> float:
        """What routing one request charges: 1 for a share budget, its extra cost otherwise."""
        if self.share is not None:
            return 1.0
        if cost is None:
            return self.cost_large - self.cost_small
        return check_positive(cost, "cost")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "target": self.target, "window": self.window}
        if self.cost_share is not None:
            out.update(cost_small=self.cost_small, cost_large=self.cost_large)
        if self.hard_cap is not None:
            out["hard_cap"] = self.hard_cap
        return out


@dataclass(frozen=True)
class Decision:
    """One routing decision; pass it back to ``Pacer.refund`` if the large call failed."""

    seq: int
    large: bool
    score: float
    threshold: float | None
    charged: float
    weight: float
    reason: str  # above_threshold, below_threshold, hard_cap, ahead_of_budget, warmup, forced_large
    pacer_id: int
    credit: float = 0.0  # how far routing this request moved the threshold (undone on refund)
    tier: int | None = None  # a multi-tier pacer's choice: 0 small, j the j-th tier above it

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "model": "large" if self.large else "small",
            "score": self.score,
            "threshold": self.threshold,
            "charged": self.charged,
            "reason": self.reason,
        }


def _pack(values: Sequence[float]) -> str:
    return base64.b64encode(array("d", values).tobytes()).decode("ascii")


def _unpack(text: Any, key: str) -> list[float]:
    try:
        data = array("d", base64.b64decode(text, validate=True))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"pacer state: '{key}' is not packed float64 data ({exc})") from None
    values = data.tolist()
    if not all(math.isfinite(v) for v in values):
        raise ConfigError(f"pacer state: '{key}' holds a non-finite number")
    return values


# the state dict's keys and their types: load_state_dict accepts exactly these
_STATE_NUMBERS = {
    "refund_base": int,
    "seq": int,
    "n": int,
    "warmup_left": int,
    "since_scale": int,
    "routed": int,
    "capped": int,
    "refunds": int,
    "late_refunds": int,
    "seen_w": float,
    "spent": float,
    "wanted": float,
    "scale": float,
    "win_charged": float,
    "win_w": float,
}
_STATE_KEYS = {"version", "tau", "center", "scores", "window", "refunded", *_STATE_NUMBERS}


def batch_inputs(
    scores: Sequence[float | None],
    costs: Sequence[float | None] | None,
    forced: Sequence[bool] | None,
) -> tuple[list[float | None], list[bool]]:
    """The costs and force flags of a ``decide_many`` batch, one per score (defaults: no cost,
    not forced)."""
    n = len(scores)
    cost_list = list(costs) if costs is not None else [None] * n
    flags = [bool(f) for f in forced] if forced is not None else [False] * n
    if len(cost_list) != n or len(flags) != n:
        raise ValueError(f"{len(cost_list)} costs and {len(flags)} flags for {n} scores")
    return cost_list, flags


def check_horizon(value: Any, name: str = "lead_horizon") -> int | None:
    """A count of requests (>= 1), or None for no end."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be an integer >= 1 or null, got {value!r:.40}")
    return value


def _check_rule(rule: Any, prior: Any) -> None:
    if rule not in RULES:
        raise ConfigError(f"rule must be one of {', '.join(RULES)}, got {rule!r:.40}")
    if prior is not None and not isinstance(prior, ScoreDistribution):
        raise ConfigError(f"prior must be a ScoreDistribution, got {type(prior).__name__}")


class Pacer:
    """Thread-safe online controller that keeps the realised large-model share at the budget.

    ``initial_threshold`` (e.g. from ``calibrate_threshold``) skips the warm-up; ``history``
    (held-out scores) seeds the score window for the scale estimate and, when no initial
    threshold is given, the starting threshold. ``gain`` trades reaction speed after a shift
    (extra spend ~ shift / gain) against threshold jitter (~ sqrt(gain)). ``margin`` bounds the
    threshold to that many score-scales around the recent (1 - p) quantile (None: unbounded, the
    behaviour before the bound; only for comparison). ``warmup=0`` starts
    from the first request's score. ``rule`` is ``quantile`` or ``integral`` (module docstring);
    ``prior`` seeds the window with ``prior_weight`` of its quantiles (when no ``history`` is
    given) and is the reference the state reports the threshold against (``expected_threshold``).
    ``max_lead`` holds a request back when spending it would run more than that many mean
    requests ahead of the share of those seen (a forced one never); ``lead_horizon`` ends that
    limit after the stream's first requests, where the threshold has not yet met the stream.
    """

    def __init__(
        self,
        spec: BudgetSpec,
        *,
        initial_threshold: float | None = None,
        history: Any = None,
        gain: float | None = None,
        warmup: int = 50,
        scale_window: int = 1000,
        scale: float | None = None,
        margin: float | None = 3.0,
        rule: str = "integral",
        prior: ScoreDistribution | None = None,
        prior_weight: int = PRIOR_WEIGHT,
        max_lead: float | None = None,
        lead_horizon: int | None = None,
    ) -> None:
        if not isinstance(spec, BudgetSpec):
            raise ConfigError(f"spec must be a BudgetSpec, got {type(spec).__name__}")
        _check_rule(rule, prior)
        self.spec = spec
        self.p = spec.target
        self.rule = rule
        self.prior = prior
        self.expected_threshold = None if prior is None else prior.threshold_for(self.p)
        if history is None and prior is not None:
            history = prior.sample(prior_weight)
        guarded = max_lead is not None
        self.gain = check_positive(default_gain(rule, guarded) if gain is None else gain, "gain")
        self.max_lead = None if max_lead is None else check_positive(max_lead, "max_lead")
        self.lead_horizon = check_horizon(lead_horizon)
        self.margin = None if margin is None else check_positive(margin, "margin")
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
            raise ConfigError(f"warmup must be an integer >= 0, got {warmup!r}")
        if isinstance(scale_window, bool) or not isinstance(scale_window, int) or scale_window < 2:
            raise ConfigError(f"scale_window must be an integer >= 2, got {scale_window!r}")
        self._fixed_scale = None if scale is None else check_positive(scale, "scale")
        self._id = next(_pacer_ids)
        self._lock = threading.Lock()
        self._scores: deque[float] = deque(maxlen=scale_window)
        if history is not None:
            hist = np.asarray(history, dtype=float).ravel()
            if hist.size and not np.all(np.isfinite(hist)):
                raise InputError("history scores must be finite", field="history")
            self._scores.extend(hist[-scale_window:].tolist())
        self._center: float | None = None
        self._scale = 1.0
        self._refresh_stats()
        self._since_scale = 0
        if initial_threshold is not None:
            tau = float(initial_threshold)
            if not math.isfinite(tau):
                raise ConfigError(f"initial_threshold must be finite, got {initial_threshold!r}")
            self._tau: float | None = tau
            self._warmup_left = 0
        elif prior is not None:  # the shipped quantile for this budget: no warm-up
            self._tau = self.expected_threshold
            self._warmup_left = 0
        elif len(self._scores) >= max(warmup, 1):
            self._tau = self._quantile_threshold()
            self._warmup_left = 0
        else:
            self._tau = self._quantile_threshold() if self._scores else None
            self._warmup_left = max(warmup, 1)  # warmup=0: the first score sets the threshold
        self._seq = 0
        self._n = 0
        self._seen_w = 0.0
        self._spent = 0.0  # actual charges (what the cap and the reports see)
        self._wanted = 0.0  # charges the controller asked for (cap refusals included)
        self._routed = 0
        self._capped = 0
        self._refunds = 0
        self._late_refunds = 0
        # refunded seqs, as a bitmap of 2 * REFUND_HORIZON bits from ``_refund_base`` (it moves
        # on by a horizon at a time): constant size, and stored as it is
        self._refund_base = 0
        self._refund_bits = bytearray(_REFUND_BYTES)
        self._win: deque[list[float]] = deque()  # [seq, charged, weight]
        self._win_charged = 0.0
        self._win_w = 0.0

    # -- internals (called with the lock held) -------------------------------------------
    def _refresh_stats(self) -> None:
        """Scale (a robust spread) and center (the (1 - p) quantile) of the recent scores."""
        if len(self._scores) < 8:
            self._center = None
            self._scale = self._fixed_scale or 1.0
            return
        arr = np.fromiter(self._scores, dtype=float, count=len(self._scores))
        q25, q75, center = np.quantile(arr, [0.25, 0.75, 1.0 - self.p])
        self._center = float(center)
        if self._fixed_scale is not None:
            self._scale = self._fixed_scale
            return
        spread = (q75 - q25) / 1.349
        if not spread > 0:
            spread = float(arr.std())
        self._scale = float(spread) if spread > 0 else 1.0

    def _quantile_threshold(self) -> float:
        arr = np.fromiter(self._scores, dtype=float, count=len(self._scores))
        return float(np.quantile(arr, 1.0 - self.p))

    def _bounded(self, tau: float) -> float:
        if self._center is None or self.margin is None:
            return tau
        band = self.margin * self._scale
        return min(max(tau, self._center - band), self._center + band)

    def _advance_refunds(self) -> None:
        while self._seq >= self._refund_base + 2 * REFUND_HORIZON:
            half = REFUND_HORIZON // 8
            self._refund_bits = self._refund_bits[half:] + bytearray(half)
            self._refund_base += REFUND_HORIZON

    def _push_window(self, seq: int, charged: float, weight: float) -> None:
        self._win.append([float(seq), charged, weight])
        self._win_charged += charged
        self._win_w += weight
        if len(self._win) > self.spec.window:
            _, old_c, old_w = self._win.popleft()
            self._win_charged -= old_c
            self._win_w -= old_w

    def _ahead(self, w: float) -> bool:
        """Spending ``w`` now would put the spend more than ``max_lead`` mean requests ahead of
        the share of what has been seen (the first requests of a stream cannot overspend)."""
        if self.max_lead is None or (self.lead_horizon is not None and self._n > self.lead_horizon):
            return False
        allowed = self.p * self._seen_w + self.max_lead * (self._seen_w / self._n)
        return self._spent + w > allowed * (1 + 1e-12)

    def _decide(self, s: float | None, w: float, force: bool) -> Decision:
        self._seq += 1
        self._advance_refunds()
        self._n += 1
        self._seen_w += w
        tau = self._tau
        warming = self._warmup_left > 0
        wanted = force or (tau is not None and s is not None and s >= tau)
        charged = 0.0
        reason = "forced_large" if force else "above_threshold" if wanted else "below_threshold"
        if wanted:
            cap = self.spec.hard_cap
            if cap is not None and self._spent + w > cap * (1 + 1e-12):
                reason = "hard_cap"
                self._capped += 1
            elif not force and self._ahead(w):
                reason = "ahead_of_budget"
            else:
                charged = w
                self._spent += w
                self._routed += 1
            self._wanted += w
        if warming and reason not in ("hard_cap", "forced_large"):
            reason = "warmup"
        offset = 0.0 if tau is None or self._center is None else tau - self._center
        if s is not None:
            self._scores.append(s)
            self._since_scale += 1
            every = self.rule == "quantile" or len(self._scores) < 64
            if self._since_scale >= 32 or every:
                self._refresh_stats()
                self._since_scale = 0
        w_mean = self._seen_w / self._n
        credit = 0.0
        if self.rule == "quantile" and not (warming or tau is None) and self._center is not None:
            # the window's (1 - p) quantile, plus the integral correction as an offset from it
            step = self.gain * self._scale / w_mean
            credit = step * w if charged else 0.0
            offset += step * ((w if wanted else 0.0) - self.p * w)
            self._tau = self._bounded(self._center + offset)
        elif warming or tau is None:
            self._warmup_left = max(self._warmup_left - 1, 0)
            self._tau = self._quantile_threshold() if self._scores else None
            if self._warmup_left == 0 and self._tau is not None:  # hand over with the surplus
                surplus = (self._wanted - self.p * self._seen_w) / w_mean
                self._tau = self._bounded(self._tau + self.gain * self._scale * surplus)
        else:
            step = self.gain * self._scale / w_mean
            credit = step * w if charged else 0.0
            self._tau = self._bounded(tau + step * ((w if wanted else 0.0) - self.p * w))
        self._push_window(self._seq, charged, w)
        return Decision(
            seq=self._seq,
            large=charged > 0,
            score=float("nan") if s is None else s,
            threshold=None if force else tau,  # a forced request met no threshold
            charged=charged,
            weight=w,
            reason=reason,
            pacer_id=self._id,
            credit=credit,
        )

    # -- public API ---------------------------------------------------------------------
    @staticmethod
    def _check_score(score: Any, force: bool) -> float | None:
        if force and (score is None or (isinstance(score, float) and not math.isfinite(score))):
            return None  # a forced request needs no score
        if isinstance(score, bool) or not isinstance(score, (int, float, np.integer, np.floating)):
            raise InputError(f"expected a number, got {score!r:.40}", field="score")
        s = float(score)
        if not math.isfinite(s):
            raise InputError(f"expected a finite number, got {score}", field="score")
        return s

    def decide(
        self, score: float | None, cost: float | None = None, *, force: bool = False
    ) -> Decision:
        """Route one request: charge its weight now if it goes to the large model.

        ``force=True`` (a request that asked for the large model) is charged like a routed one
        and, like every other, refused once the hard cap would be passed.
        """
        s = self._check_score(score, force)
        w = self.spec.weight(cost)
        with self._lock:
            return self._decide(s, w, force)

    def decide_many(
        self,
        scores: Sequence[float | None],
        costs: Sequence[float | None] | None = None,
        *,
        forced: Sequence[bool] | None = None,
    ) -> list[Decision]:
        """Decisions for a batch, in order, under one lock (all inputs checked first)."""
        cost_list, flags = batch_inputs(scores, costs, forced)
        checked = [
            (self._check_score(s, bool(f)), self.spec.weight(c), bool(f))
            for s, c, f in zip(scores, cost_list, flags, strict=True)
        ]
        with self._lock:
            return [self._decide(s, w, f) for s, w, f in checked]

    def refund(self, decision: Decision) -> bool:
        """Give back a routed request's charge (its large call failed). False if nothing to do."""
        if decision.pacer_id != self._id:
            raise ValueError("this decision was made by another pacer")
        if not decision.large or decision.charged <= 0:
            return False
        with self._lock:
            offset = decision.seq - self._refund_base
            if decision.seq <= self._seq - REFUND_HORIZON or offset < 0:
                self._late_refunds += 1  # too old to tell apart from one already refunded
                return False
            if self._refund_bits[offset >> 3] >> (offset & 7) & 1:
                return False
            self._refund_bits[offset >> 3] |= 1 << (offset & 7)
            self._refunds += 1
            self._spent -= decision.charged
            self._wanted -= decision.charged
            self._routed -= 1
            if self._tau is not None:
                self._tau = self._bounded(self._tau - decision.credit)
            if self._win:
                first = int(self._win[0][0])
                idx = decision.seq - first
                if 0 <= idx < len(self._win):
                    self._win[idx][1] -= decision.charged
                    self._win_charged -= decision.charged
            return True

    # -- state contract -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The whole mutable state, as JSON-ready values (see ``load_state_dict``)."""
        with self._lock:
            return {
                "version": STATE_VERSION,
                "tau": self._tau,
                "center": self._center,
                "scale": self._scale,
                "seq": self._seq,
                "n": self._n,
                "warmup_left": self._warmup_left,
                "since_scale": self._since_scale,
                "routed": self._routed,
                "capped": self._capped,
                "refunds": self._refunds,
                "late_refunds": self._late_refunds,
                "seen_w": self._seen_w,
                "spent": self._spent,
                "wanted": self._wanted,
                "win_charged": self._win_charged,
                "win_w": self._win_w,
                "scores": _pack(self._scores),
                "window": _pack([x for row in self._win for x in row]),
                # the refunded seqs, a bitmap from refund_base
                "refund_base": self._refund_base,
                "refunded": base64.b64encode(self._refund_bits).decode("ascii"),
            }

    def load_state_dict(self, state: Any) -> None:
        """Replace the mutable state; anything malformed is a ConfigError, and nothing changes."""
        if not isinstance(state, dict) or set(state) != _STATE_KEYS:
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ConfigError(f"pacer state: expected the keys {sorted(_STATE_KEYS)}, got {got}")
        if state["version"] != STATE_VERSION:
            raise ConfigError(
                f"pacer state: version {state['version']!r}, expected {STATE_VERSION}"
            )
        values: dict[str, Any] = {}
        for key, kind in _STATE_NUMBERS.items():
            v = state[key]
            ok = not isinstance(v, bool) and isinstance(v, (int, float) if kind is float else int)
            if not ok or not math.isfinite(v) or (kind is int and v < 0):
                raise ConfigError(
                    f"pacer state: '{key}' must be a finite {kind.__name__}, got {v!r:.40}"
                )
            values[key] = kind(v)
        for key in ("tau", "center"):
            v = state[key]
            if v is not None and (
                isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
            ):
                raise ConfigError(f"pacer state: '{key}' must be a finite number or null")
        scores = _unpack(state["scores"], "scores")
        flat = _unpack(state["window"], "window")
        if len(flat) % 3:
            raise ConfigError("pacer state: 'window' must hold rows of 3 numbers")
        try:
            bitmap = base64.b64decode(state["refunded"], validate=True)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"pacer state: 'refunded' is not a bitmap ({exc})") from None
        if len(bitmap) != _REFUND_BYTES:
            raise ConfigError(f"pacer state: 'refunded' must be {_REFUND_BYTES} bytes")
        with self._lock:
            self._tau = None if state["tau"] is None else float(state["tau"])
            self._center = None if state["center"] is None else float(state["center"])
            for key, v in values.items():
                setattr(self, f"_{key}", v)
            self._scores = deque(scores[-self._scores.maxlen :], maxlen=self._scores.maxlen)  # type: ignore[misc]
            self._win = deque(flat[i : i + 3] for i in range(0, len(flat), 3))
            self._refund_bits = bytearray(bitmap)

    @property
    def threshold(self) -> float | None:
        with self._lock:
            return self._tau

    def state(self) -> dict[str, Any]:
        """Budget state for every response: spend, remaining, threshold, realised shares.

        ``remaining`` is ``hard_cap - spent`` under a hard cap, else ``p * seen - spent`` (the
        allowance to date; negative while the stream is ahead of its budget).
        ``spec`` is the budget asked for; ``next_threshold`` is the threshold the *next* request
        meets (a decision reports the one it met, None during warm-up). ``recent_quantile`` is
        the (1 - p) quantile of the recent scores; ``expected_threshold`` the one the prior
        (the router's shipped score distribution) expects for this budget, and
        ``threshold_gap`` how far ``next_threshold`` is from it (``threshold_gap_scales``: in
        units of the recent scores' spread); all three None without a prior.
        """
        with self._lock:
            return self._state()

    def _state(self) -> dict[str, Any]:
        target_spend = self.p * self._seen_w
        cap = self.spec.hard_cap
        gap = None
        if self.expected_threshold is not None and self._tau is not None:
            gap = self._tau - self.expected_threshold
        return {
            "rule": self.rule,
            "recent_quantile": self._center,
            "expected_threshold": self.expected_threshold,
            "threshold_gap": gap,
            "threshold_gap_scales": None if gap is None else gap / self._scale,
            "spec": self.spec.to_dict(),
            "requests": self._n,
            "routed": self._routed,
            "spent": self._spent,
            "target_spend": target_spend,
            "surplus": self._spent - target_spend,
            # under a hard cap: what is left of it; otherwise the pro-rata allowance now
            "remaining": (target_spend if cap is None else cap) - self._spent,
            "next_threshold": self._tau,
            "scale": self._scale,
            "realised_share": self._spent / self._seen_w if self._seen_w else 0.0,
            "window_share": self._win_charged / self._win_w if self._win_w else 0.0,
            "window_requests": len(self._win),
            "capped": self._capped,
            "refunds": self._refunds,
            "warming_up": self._warmup_left > 0,
        }


class StageOff:
    """A routing stage given no share of the budget (a two-stage router's ``stage1_share: 0``):
    it sends no ``auto`` request large, and hands a forced one to ``charge_to`` (the pacer that
    holds the whole budget, hard cap included), so it is charged and capped like any other.
    Same interface and state keys as ``Pacer``."""

    def __init__(self, charge_to: Any) -> None:
        self.spec = None
        self.p = 0.0
        self.rule = "off"
        self.expected_threshold = None
        self.charge_to = charge_to
        self._id = next(_pacer_ids)
        self._lock = threading.Lock()
        self._n = 0
        self._forced = 0

    def _decide(self, score: float | None, force: bool) -> Decision:
        with self._lock:
            self._n += 1
            self._forced += int(force)
            seq = self._n
        if force:
            return self.charge_to.decide(score, force=True)
        return Decision(
            seq=seq,
            large=False,
            score=float("nan") if score is None else float(score),
            threshold=None,
            charged=0.0,
            weight=1.0,
            reason="stage_off",
            pacer_id=self._id,
        )

    def decide(
        self, score: float | None, cost: float | None = None, *, force: bool = False
    ) -> Decision:
        """Never large unless ``force``."""
        return self._decide(Pacer._check_score(score, force), force)

    def decide_many(
        self,
        scores: Sequence[float | None],
        costs: Sequence[float | None] | None = None,
        *,
        forced: Sequence[bool] | None = None,
    ) -> list[Decision]:
        _, flags = batch_inputs(scores, costs, forced)
        checked = [Pacer._check_score(s, f) for s, f in zip(scores, flags, strict=True)]
        return [self._decide(s, f) for s, f in zip(checked, flags, strict=True)]

    def refund(self, decision: Decision) -> bool:
        """A forced request's charge goes back to the pacer that took it."""
        if decision.pacer_id == self._id:
            return False  # nothing was charged here
        return bool(self.charge_to.refund(decision))

    @property
    def threshold(self) -> float | None:
        return None

    def state(self) -> dict[str, Any]:
        """Its own counts; the cap and what is left are the pacer it charges (one budget)."""
        whole = self.charge_to.state()
        with self._lock:
            return {
                "hard_cap": whole.get("hard_cap", (whole.get("spec") or {}).get("hard_cap")),
                "rule": self.rule,
                "recent_quantile": None,
                "expected_threshold": None,
                "threshold_gap": None,
                "threshold_gap_scales": None,
                "spec": {"kind": "share", "target": 0.0},
                "requests": self._n,
                "routed": 0,
                "forced_to_stage2": self._forced,
                "spent": 0.0,
                "target_spend": 0.0,
                "surplus": 0.0,
                "remaining": whole.get("remaining"),
                "next_threshold": None,
                "scale": 1.0,
                "realised_share": 0.0,
                "window_share": 0.0,
                "window_requests": self._n,
                "capped": 0,
                "refunds": 0,
                "warming_up": False,
            }
