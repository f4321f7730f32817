"""More than two tiers: spend a total cost budget across several larger models.

Each request i may stay on the small model (gain 0, extra cost 0) or go to tier j with predicted
gain ``gains[i, j]`` (over the small model) at extra cost ``costs[i, j] > 0``. Maximising the
summed gain under ``sum of extra costs <= budget`` is a multiple-choice knapsack. We solve it the
Lagrangian way, made exact for the relaxation and greedy for the integers:

1. per request, keep only the options on the upper convex hull of (cost, gain) starting at the
   small model (0, 0): anything below the hull is never chosen by any price lambda, and options
   with gain <= 0 are never worth money;
2. the hull's successive upgrades have decreasing gain per extra cost; sort every request's
   upgrades by that ratio (ties: the library's seeded permutation of the requests, then the
   cheaper upgrade first) and buy them in order while they fit. An upgrade that does not fit
   blocks that request's later upgrades, and cheaper upgrades of other requests may still fill
   the leftover.

Step 2 is what bisecting on the price lambda would converge to (the LP optimum up to its single
fractional upgrade), without a tolerance to tune; it is O(n m log(n m)). The budget is never
exceeded. With one tier and unit costs it reduces to "route the top-k positive gains".
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from routelmt.budget.allocation import check_share, tie_keys
from routelmt.budget.pacer import Decision
from routelmt.errors import ConfigError, InputError

__all__ = ["TierAllocation", "TierPacer", "TierSpec", "allocate_tiers", "marginal_price"]


@dataclass(frozen=True)
class TierAllocation:
    """``tier[i]`` is 0 for the small model, j (1-based) for ``gains[:, j - 1]``."""

    tier: np.ndarray
    total_cost: float
    total_gain: float
    budget: float

    def counts(self, n_tiers: int) -> list[int]:
        return np.bincount(self.tier, minlength=n_tiers + 1).tolist()


def _hull(costs: np.ndarray, gains: np.ndarray) -> list[int]:
    """Indices of the options on the upper concave hull from (0, 0), by increasing cost."""
    order = sorted(range(costs.size), key=lambda j: (costs[j], -gains[j], j))
    hull: list[int] = []  # option indices; the origin is implicit
    for j in order:
        if gains[j] <= (gains[hull[-1]] if hull else 0.0):
            continue  # costs at least as much for no more gain
        while hull:
            c1, g1 = (costs[hull[-2]], gains[hull[-2]]) if len(hull) > 1 else (0.0, 0.0)
            c2, g2 = costs[hull[-1]], gains[hull[-1]]
            # drop the last point when it lies on or below the chord from point 1 to j
            if (g2 - g1) * (costs[j] - c1) <= (gains[j] - g1) * (c2 - c1):
                hull.pop()
            else:
                break
        hull.append(j)
    return hull


def allocate_tiers(gains: np.ndarray, costs: np.ndarray, budget: float) -> TierAllocation:
    """Choose a tier per request to maximise the summed predicted gain within ``budget``.

    ``gains``: (n, m) predicted gain of each larger tier over the small model. ``costs``: (m,)
    or (n, m) extra cost of each tier over the small model, all > 0. ``budget``: total extra
    cost allowed (same unit as ``costs``), >= 0.
    """
    g = np.asarray(gains, dtype=float)
    if g.ndim == 1:
        g = g[:, None]
    if g.ndim != 2:
        raise InputError(f"expected gains of shape (n, m), got {g.shape}", field="gains")
    n, m = g.shape
    c = np.asarray(costs, dtype=float)
    if c.ndim == 1:
        if c.size != m:
            raise InputError(f"expected {m} tier costs, got {c.size}", field="costs")
        c = np.broadcast_to(c, (n, m))
    if c.shape != (n, m):
        raise InputError(
            f"expected costs of shape ({m},) or ({n}, {m}), got {c.shape}", field="costs"
        )
    if not np.all(np.isfinite(g)):
        raise InputError("gains must be finite", field="gains")
    if not np.all(np.isfinite(c)) or np.any(c <= 0):
        raise ConfigError("every tier's extra cost must be a finite number > 0")
    if isinstance(budget, bool) or not math.isfinite(float(budget)) or float(budget) < 0:
        raise ConfigError(f"budget must be a finite cost >= 0, got {budget!r}")
    budget = float(budget)

    ratio: list[float] = []
    req: list[int] = []
    step: list[int] = []
    d_cost: list[float] = []
    option: list[int] = []
    for i in range(n):
        prev_c = prev_g = 0.0
        for k, j in enumerate(_hull(c[i], g[i])):
            dc, dg = c[i, j] - prev_c, g[i, j] - prev_g
            ratio.append(dg / dc)
            req.append(i)
            step.append(k)
            d_cost.append(dc)
            option.append(j)
            prev_c, prev_g = c[i, j], g[i, j]
    tier = np.zeros(n, dtype=int)
    spent = 0.0
    if ratio:
        # equal ratios: the library's one tie rule (seeded permutation of the requests)
        order = np.lexsort((np.array(step), tie_keys(n)[np.array(req)], -np.array(ratio)))
        blocked = np.zeros(n, dtype=bool)
        for t in order:
            i = req[t]
            if blocked[i]:
                continue
            if spent + d_cost[t] <= budget * (1 + 1e-12) + 1e-12:
                spent += d_cost[t]
                tier[i] = option[t] + 1
            else:
                blocked[i] = True
    chosen = tier > 0
    rows = np.flatnonzero(chosen)
    total_cost = float(c[rows, tier[rows] - 1].sum()) if rows.size else 0.0
    total_gain = float(g[rows, tier[rows] - 1].sum()) if rows.size else 0.0
    return TierAllocation(tier=tier, total_cost=total_cost, total_gain=total_gain, budget=budget)


# -- online ----------------------------------------------------------------------------------


def _upgrades(gains: np.ndarray, costs: np.ndarray) -> list[tuple[int, float, float]]:
    """The hull's upgrades from the small model: (tier index, gain per extra cost, cost)."""
    out: list[tuple[int, float, float]] = []
    prev_c = prev_g = 0.0
    for j in _hull(costs, gains):
        out.append((j, (gains[j] - prev_g) / (costs[j] - prev_c), float(costs[j])))
        prev_c, prev_g = costs[j], gains[j]
    return out


def marginal_price(gains: np.ndarray, costs: np.ndarray, budget: float) -> float:
    """The gain per extra cost of the last upgrade ``allocate_tiers`` buys within ``budget``
    (the Lagrangian price that spends it); +inf when nothing is bought."""
    alloc = allocate_tiers(gains, costs, budget)
    price = math.inf
    for i in np.flatnonzero(alloc.tier):
        for j, ratio, _ in _upgrades(gains[i], costs):
            if j <= alloc.tier[i] - 1:
                price = min(price, ratio)
    return price


@dataclass(frozen=True)
class TierSpec:
    """One tier above the small model: its name, extra cost per request over the small model
    (> 0), and ``gain_scale``: its predicted gain is ``gain_scale`` times the router's score
    (e.g. a mid model that closes 60% of the large model's gain: 0.6)."""

    name: str
    cost: float
    gain_scale: float = 1.0

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ConfigError(f"a tier needs a name, got {self.name!r}")
        for key in ("cost", "gain_scale"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"tier '{self.name}': {key} must be a number, got {value!r}")
            if not math.isfinite(value) or value <= 0:
                raise ConfigError(f"tier '{self.name}': {key} must be > 0, got {value!r}")


class TierPacer:
    """Online multi-tier allocation: the same choice as ``allocate_tiers`` at a price that a
    feedback loop keeps at the budget.

    For a request with router score s, tier j's predicted gain is ``s * gain_scale_j`` at extra
    cost ``cost_j``. At price lambda (gain per unit of extra cost) the request buys every hull
    upgrade whose gain per extra cost is at least lambda, i.e. the tier ``allocate_tiers`` would
    give it at that price. After each request lambda moves by ``gain * scale * (charged -
    budget) / max cost``, so the spend per request tracks ``budget = share * max cost`` (the
    share of what sending everything to the most expensive tier would cost extra). During the
    first ``warmup`` requests the price is ``marginal_price`` of the requests seen so far.
    ``hard_cap`` bounds the total extra spend: a request takes the best tier it still affords.
    The price stays within ``margin`` scales of the price that would have spent the budget on
    the recent requests (a negative price buys every tier whose gain is positive).
    Implements the pacer protocol of ``HybridTranslator`` (``decide``, ``refund``, ``state``);
    ``Decision.tier`` is 0 for the small model, j for ``tiers[j - 1]``. Thread-safe.
    """

    def __init__(
        self,
        tiers: Sequence[TierSpec],
        share: float,
        *,
        gain: float = 0.2,
        warmup: int = 50,
        window: int = 1000,
        hard_cap: float | None = None,
        initial_price: float | None = None,
        margin: float = 3.0,
    ) -> None:
        from collections import deque

        if not tiers:
            raise ConfigError("TierPacer needs at least one tier")
        if len({t.name for t in tiers}) != len(tiers):
            raise ConfigError(f"tier names must differ: {[t.name for t in tiers]}")
        self.tiers = list(tiers)
        self.share = check_share(share, "budget share")
        self.costs = np.asarray([t.cost for t in tiers], dtype=float)
        self.scales = np.asarray([t.gain_scale for t in tiers], dtype=float)
        self.budget = self.share * float(self.costs.max())  # extra spend per request
        self.gain = float(gain)
        self.warmup = int(warmup)
        self.hard_cap = None if hard_cap is None else float(hard_cap)
        self._lock = threading.Lock()
        self._seen: deque[float] = deque(maxlen=int(window) * len(tiers))  # gain rows, flat
        self._scaled = True  # every request so far came with one score (``decide``)
        self._price = None if initial_price is None else float(initial_price)
        self._seq = self._n = self._capped = self._refunds = 0
        self._spent = 0.0
        self._counts = [0] * (len(tiers) + 1)
        self._refunded: set[int] = set()
        self._scale_cache: float | None = None
        self._center: float | None = None
        self.margin = float(margin)

    def gains(self, score: float) -> np.ndarray:
        return float(score) * self.scales

    def _rows(self) -> np.ndarray:
        return np.asarray(self._seen, dtype=float).reshape(-1, self.costs.size)

    def _scale(self) -> float:
        """A robust spread of recent first-upgrade prices (the hull's first step has the best
        gain per cost, max_j gain_j / cost_j)."""
        first = (self._rows() / self.costs).max(axis=1)
        pos = first[first > 0]
        if pos.size < 8:
            return 1.0
        q25, q75 = np.quantile(pos, [0.25, 0.75])
        return float(q75 - q25) / 1.349 or float(np.std(pos)) or 1.0

    def _refresh(self) -> None:
        """The scale, and the price that would have spent the budget on the recent requests:
        the centre of the band the price stays in (as ``Pacer``'s threshold does), so that an
        outage or a run of vetoes cannot wind it up or down without limit."""
        self._scale_cache = self._scale()
        center = self._market_price()
        self._center = None if math.isinf(center) else center

    def _market_price(self) -> float:
        """``marginal_price`` of the recent requests. Vectorised when every request came with
        one score (``decide``): each positive score s has the same hull scaled by s, so its
        upgrades cost the hull's steps at s times its ratios (ignoring the rare upgrade that
        would not fit whole)."""
        rows = self._rows()
        if not self._scaled:
            return marginal_price(rows, self.costs, self.budget * len(rows))
        scores = rows[:, 0] / self.scales[0]
        pos = scores[scores > 0]
        hull = _upgrades(self.scales, self.costs)
        if not pos.size or not hull:
            return math.inf
        ratios = np.array([r for _, r, _ in hull])
        steps = np.diff([0.0, *(c for _, _, c in hull)])
        R = np.outer(pos, ratios).ravel()
        order = np.argsort(-R, kind="stable")
        spent = np.cumsum(np.tile(steps, pos.size)[order])
        k = int(np.searchsorted(spent, self.budget * scores.size, side="right"))
        return float(R[order][k - 1]) if k else math.inf

    def _bounded(self, price: float) -> float:
        if self._center is None or self._scale_cache is None:
            return price
        band = self.margin * self._scale_cache
        return min(max(price, self._center - band), self._center + band)

    def _choose(self, gains: np.ndarray, force: bool) -> tuple[int, float]:
        if force:  # a forced request gets the most expensive tier
            top = int(np.argmax(self.costs))
            return top + 1, float(self.costs[top])
        if self._n <= self.warmup or self._price is None:
            price = self._market_price()
            if math.isinf(price):  # nothing affordable yet: start at the best price seen
                price = max(0.0, float((self._rows() / self.costs).max(initial=0.0)))
            self._price = price
        tier, cost = 0, 0.0
        for j, ratio, c in _upgrades(gains, self.costs):
            if ratio < self._price:
                break
            tier, cost = j + 1, c
        return tier, cost

    def decide(
        self, score: float | None, cost: float | None = None, *, force: bool = False
    ) -> Decision:
        """One request: the tier its score buys at the current price, each tier's predicted
        gain being ``gain_scale`` times the score (``cost`` is ignored: tiers' costs are
        fixed)."""
        s = 0.0 if score is None or not math.isfinite(float(score)) else float(score)
        return self._decide(self.gains(s), s, force, scaled=True)

    def decide_gains(self, gains: Sequence[float], *, force: bool = False) -> Decision:
        """One request with its own predicted gain for each tier (one router per tier)."""
        g = np.asarray(gains, dtype=float)
        if g.shape != self.costs.shape or not np.all(np.isfinite(g)):
            raise InputError(f"expected {self.costs.size} finite gains, got {gains!r:.80}")
        return self._decide(g, float(g.max()), force, scaled=False)

    def _decide(self, g: np.ndarray, s: float, force: bool, *, scaled: bool) -> Decision:
        with self._lock:
            self._scaled = self._scaled and scaled
            self._seq += 1
            self._n += 1
            self._seen.extend(g.tolist())
            tier, charge = self._choose(g, force)
            reason = "forced_large" if force else "above_threshold" if tier else "below_threshold"
            if self._n <= self.warmup and not force:
                reason = "warmup" if tier else "below_threshold"
            if tier and self.hard_cap is not None and self._spent + charge > self.hard_cap:
                affordable = [
                    (j + 1, c)
                    for j, _, c in _upgrades(g, self.costs)
                    if self._spent + c <= self.hard_cap
                ]
                tier, charge = affordable[-1] if affordable and not force else (0, 0.0)
                self._capped += 1
                reason = "hard_cap" if not tier else reason
            price = self._price
            credit = 0.0
            if self._n > self.warmup and price is not None:
                if self._n % 32 == 0 or self._scale_cache is None:  # quantiles: not each time
                    self._refresh()
                step = self.gain * self._scale_cache / float(self.costs.max())  # type: ignore[operator]
                credit = step * charge  # the part a refund undoes (as ``Pacer`` does)
                self._price = self._bounded(price + credit - step * self.budget)
            self._spent += charge
            self._counts[tier] += 1
            return Decision(
                seq=self._seq,
                large=tier > 0,
                score=s,
                threshold=price,
                charged=charge,
                weight=self.budget,
                reason=reason,
                pacer_id=id(self),
                credit=credit,
                tier=tier,
            )

    def refund(self, decision: Decision) -> bool:
        """Give back a decision's charge (its call failed): once, and only this pacer's."""
        with self._lock:
            if decision.pacer_id != id(self) or not decision.charged:
                return False
            if decision.seq in self._refunded:
                return False
            self._refunded.add(decision.seq)
            self._spent -= decision.charged
            self._counts[decision.tier or 0] -= 1
            self._counts[0] += 1
            self._refunds += 1
            if self._price is not None:
                self._price = self._bounded(self._price - decision.credit)
            return True

    def state(self) -> dict[str, Any]:
        """Spend, the price, and the requests per tier; ``realised_share`` is the spend as a
        share of sending every request to the most expensive tier."""
        with self._lock:
            top = float(self.costs.max())
            return {
                "spec": {
                    "kind": "tiers",
                    "target": self.share,
                    "tiers": [
                        {"name": t.name, "cost": t.cost, "gain_scale": t.gain_scale}
                        for t in self.tiers
                    ],
                    **({"hard_cap": self.hard_cap} if self.hard_cap is not None else {}),
                },
                "requests": self._n,
                "routed": self._n - self._counts[0],
                "spent": self._spent,
                "target_spend": self.budget * self._n,
                "remaining": (self.budget * self._n if self.hard_cap is None else self.hard_cap)
                - self._spent,
                "next_threshold": self._price,
                "realised_share": self._spent / (top * self._n) if self._n else 0.0,
                "tier_counts": dict(
                    zip(["small", *(t.name for t in self.tiers)], self._counts, strict=True)
                ),
                "capped": self._capped,
                "refunds": self._refunds,
                "warming_up": self._n < self.warmup,
            }
