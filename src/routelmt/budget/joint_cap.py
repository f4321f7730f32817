"""One hard cap over several pacers: a two-stage router spends one budget through two of them.

Splitting the cap between the stages (a quarter to stage 1, the rest to stage 2) refused
forced-large requests, which stage 1 decides, at a quarter of the cap. Here each stage's pacer
keeps the whole cap as its own ceiling, and ``JointCap`` checks the sum: a large decision that
takes the stages' total spend past the cap is refunded at once and reported as
``reason="hard_cap"``. Charge, then check the total, then give back: two stages (or two
replicas on shared stores) deciding at the same moment may both give back, never both keep, so
the cap is never passed; within one process a lock makes the check exact.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from typing import Any

from routelmt.budget.pacer import Decision

__all__ = ["CappedPacer", "JointCap"]


class JointCap:
    """The cap shared by every pacer made by ``stage``."""

    def __init__(self, cap: float) -> None:
        self.cap = float(cap)
        self.stages: list[Any] = []
        self.lock = threading.RLock()

    def stage(self, pacer: Any) -> CappedPacer:
        """``pacer`` (its own hard cap at most this one) under the joint cap."""
        self.stages.append(pacer)
        return CappedPacer(pacer, self)

    def spent(self) -> float:
        """What every stage has spent, refunds deducted."""
        return sum(float(p.state()["spent"]) for p in self.stages)


class CappedPacer:
    """A stage's pacer seen through the joint cap; the same ``decide`` / ``decide_many`` /
    ``refund`` / ``state`` as the pacer it wraps (anything else is passed through)."""

    def __init__(self, pacer: Any, joint: JointCap) -> None:
        self.pacer = pacer
        self.joint = joint
        self.capped = 0  # decisions this stage gave back to keep the joint cap

    def decide(
        self, score: float | None, cost: float | None = None, *, force: bool = False
    ) -> Decision:
        with self.joint.lock:
            return self._within([self.pacer.decide(score, cost=cost, force=force)])[0]

    def decide_many(
        self,
        scores: Sequence[float | None],
        costs: Sequence[float | None] | None = None,
        *,
        forced: Sequence[bool] | None = None,
    ) -> list[Decision]:
        with self.joint.lock:
            if hasattr(self.pacer, "decide_many"):
                made = self.pacer.decide_many(scores, costs, forced=forced)
            else:
                costs = costs or [None] * len(scores)
                flags = forced or [False] * len(scores)
                made = [
                    self.pacer.decide(s, cost=c, force=bool(f))
                    for s, c, f in zip(scores, costs, flags, strict=True)
                ]
            return self._within(list(made))

    def _within(self, made: list[Decision]) -> list[Decision]:
        """Give back the latest large decisions until the stages' total is within the cap."""
        if not any(d.large for d in made):
            return made
        over = self.joint.spent() - self.joint.cap
        for i in reversed(range(len(made))):
            if over <= self.joint.cap * 1e-12:
                break
            d = made[i]
            if d.large and self.pacer.refund(d):
                over -= d.charged
                self.capped += 1
                made[i] = dataclasses.replace(
                    d, large=False, charged=0.0, credit=0.0, reason="hard_cap"
                )
        return made

    def refund(self, decision: Decision) -> bool:
        with self.joint.lock:
            return bool(self.pacer.refund(decision))

    def state(self) -> dict[str, Any]:
        """The stage's own state, with the cap, its remainder and the refusals made for the
        joint cap (counted as capped, not as refunds)."""
        out = dict(self.pacer.state())
        total = self.joint.spent()
        out["hard_cap"] = self.joint.cap
        out["spent_all_stages"] = total
        out["remaining"] = self.joint.cap - total
        out["capped"] = int(out.get("capped", 0)) + self.capped
        out["refunds"] = int(out.get("refunds", 0)) - self.capped
        return out

    def close(self) -> None:
        closer = getattr(self.pacer, "close", None)
        if closer is not None:
            closer()

    def __getattr__(self, name: str) -> Any:  # spec, threshold, ...: the wrapped pacer's
        if name == "pacer":  # not set yet (a copy being built): no recursion
            raise AttributeError(name)
        return getattr(self.pacer, name)
