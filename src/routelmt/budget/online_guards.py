"""Guards in the live path: one interface for the quality-predict and the quality-hypo guard.

A guard looks only at requests the pacer already sent to the large model (the candidates) and
vetoes one whose small translation is estimated to be good already: at or above ``threshold``
on the guard's quality scale. A vetoed request stays small and its charge is refunded, so the
pacer's controller spends that budget on the next requests (the online form of "freed budget
goes to the next candidates"). Every check is timed and counted (``Guard.stats``), and every
verdict says whether the guard acted.

- ``quality-predict``: the in-model quality head (a ``routelmt-q`` router, which scores
  -(predicted small quality)) on the prefill features the router already computed: no decode.
- ``quality-hypo``: the small model decodes the candidate (a decode the request would need
  anyway if it stays small), and the registered reference-free QE scorer (``qe-embed``) scores
  that translation. A candidate that passes goes large with its small translation kept as the
  fallback; only its decode is wasted.

``Guard.check(segments, translations=None, features=None)`` is the whole interface: the
hybrid translator, the service and ``GuardedPacer`` all call it after a pacer decision.
"""

from __future__ import annotations

import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from routelmt.budget.pacer import Decision, Pacer
from routelmt.errors import ConfigError, InputError
from routelmt.records import Segment
from routelmt.registry import Registry
from routelmt.routers.base import FeatureRouter, Router

__all__ = [
    "GUARDS",
    "FunctionGuard",
    "Guard",
    "GuardVerdict",
    "GuardedDecision",
    "GuardedPacer",
    "QualityHypoGuard",
    "QualityPredictGuard",
    "make_guard",
]


def _threshold(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ConfigError(f"guard threshold must be a number, got {value!r}")
    if math.isnan(float(value)):
        raise ConfigError("guard threshold must not be NaN")
    return float(value)


@dataclass(frozen=True)
class GuardVerdict:
    """What a guard said about one candidate: its estimate of the small quality, and whether
    that vetoed the large call. ``seconds`` is this candidate's share of the check."""

    guard: str
    score: float
    threshold: float
    vetoed: bool
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.guard,
            "score": self.score,
            "threshold": self.threshold,
            "vetoed": self.vetoed,
            "ms": round(self.seconds * 1000.0, 3),
        }


class Guard(ABC):
    """Veto a large-model candidate whose small translation is already good enough."""

    name: str = "guard"
    needs_translation: bool = False  # True: check() needs the small translations

    def __init__(self, threshold: float) -> None:
        self.threshold = _threshold(threshold)
        self._lock = threading.Lock()
        self._evaluations = 0
        self._vetoes = 0
        self._seconds = 0.0

    @abstractmethod
    def quality(
        self,
        segments: Sequence[Segment],
        translations: Sequence[str] | None = None,
        features: np.ndarray | None = None,
    ) -> np.ndarray:
        """The estimated small quality of each candidate (higher = better small output)."""

    def check(
        self,
        segments: Sequence[Segment],
        translations: Sequence[str] | None = None,
        features: np.ndarray | None = None,
    ) -> list[GuardVerdict]:
        """One verdict per candidate; timed and counted."""
        if not segments:
            return []
        if self.needs_translation and (translations is None or len(translations) != len(segments)):
            raise InputError(f"guard '{self.name}' needs the small translation of every candidate")
        started = time.perf_counter()
        values = np.asarray(self.quality(segments, translations, features), dtype=float)
        seconds = time.perf_counter() - started
        if values.shape != (len(segments),) or not np.all(np.isfinite(values)):
            raise InputError(
                f"guard '{self.name}' returned {values!r:.80} for {len(segments)} candidates; "
                "expected one finite number each",
                field="guard",
            )
        each = seconds / len(segments)
        out = [
            GuardVerdict(self.name, float(v), self.threshold, bool(v >= self.threshold), each)
            for v in values
        ]
        with self._lock:
            self._evaluations += len(out)
            self._vetoes += sum(v.vetoed for v in out)
            self._seconds += seconds
        return out

    def stats(self) -> dict[str, Any]:
        """Evaluations, vetoes and the time spent so far (the guard's own cost)."""
        with self._lock:
            return {
                "name": self.name,
                "threshold": self.threshold,
                "evaluations": self._evaluations,
                "vetoes": self._vetoes,
                "seconds": self._seconds,
            }


GUARDS: Registry[Guard] = Registry("guard")


@GUARDS.register("quality-predict")
class QualityPredictGuard(Guard):
    """The in-model quality head on the router's own prefill features (no decode).

    ``router`` is a trained quality router (``routelmt-q``: it scores -(predicted q_small)), or
    a folder / ``shipped:NAME`` it is loaded from. With the shared prefill its
    ``score_features`` reads the same features the gain router read, when both read one layer;
    otherwise it scores the segments itself (a second prefill, counted in its time)."""

    name = "quality-predict"

    def __init__(self, threshold: float, router: Any) -> None:
        super().__init__(threshold)
        if isinstance(router, str):
            from routelmt.routers.artifacts import load_router

            router = load_router(router)
        if not isinstance(router, Router):
            raise ConfigError(f"quality-predict needs a quality router, got {router!r:.60}")
        self.router = router

    @property
    def layer(self) -> int | None:
        return self.router.layer if isinstance(self.router, FeatureRouter) else None

    def quality(self, segments, translations=None, features=None) -> np.ndarray:  # noqa: D102
        if features is not None and isinstance(self.router, FeatureRouter):
            return -np.asarray(self.router.score_features(features), dtype=float)
        return -np.asarray(self.router.score(list(segments)), dtype=float)


@GUARDS.register("quality-hypo")
class QualityHypoGuard(Guard):
    """QE of the small model's own translation of the candidate (``qe``: a registered
    reference-free metric, by name, or an already built one, e.g. the two-stage router's)."""

    name = "quality-hypo"
    needs_translation = True

    def __init__(self, threshold: float, qe: Any = "qe-embed") -> None:
        super().__init__(threshold)
        from routelmt.metrics.base import Metric, get_metric

        metric = qe if isinstance(qe, Metric) else get_metric(str(qe))
        if metric.needs_reference:
            raise ConfigError(f"quality-hypo needs a reference-free metric; '{qe}' needs one")
        self.qe = metric

    def quality(self, segments, translations=None, features=None) -> np.ndarray:  # noqa: D102
        from routelmt.labels import score_pairs

        return np.asarray(score_pairs(self.qe, list(segments), list(translations or [])))


@GUARDS.register("function")
class FunctionGuard(Guard):
    """Any estimate of the small quality: ``fn(segments, translations, features) -> array``
    (a custom QE service, a test). ``needs_translation`` as the function needs."""

    name = "function"

    def __init__(
        self,
        threshold: float,
        fn: Callable[..., Any],
        *,
        needs_translation: bool = False,
        name: str = "function",
    ) -> None:
        super().__init__(threshold)
        self.fn = fn
        self.needs_translation = bool(needs_translation)
        self.name = name

    def quality(self, segments, translations=None, features=None) -> np.ndarray:  # noqa: D102
        return np.asarray(self.fn(segments, translations, features), dtype=float)


def make_guard(name: str, threshold: float, **options: Any) -> Guard:
    """A registered guard by name: ``quality-predict`` (``router=``), ``quality-hypo`` (``qe=``)."""
    return GUARDS.create(name, threshold=threshold, **options)


# -- a pacer with a guard --------------------------------------------------------------------


@dataclass(frozen=True)
class GuardedDecision:
    """A pacer decision after the guard; ``decision`` is what to refund if the large call fails."""

    decision: Decision
    large: bool
    verdict: GuardVerdict | None  # None when the guard did not run (the pacer said small)

    @property
    def vetoed(self) -> bool:
        return self.verdict is not None and self.verdict.vetoed

    @property
    def reason(self) -> str:
        return f"guard_{self.verdict.guard}" if self.vetoed else self.decision.reason  # type: ignore[union-attr]

    def to_dict(self) -> dict[str, Any]:
        out = self.decision.to_dict()
        out.update(model="large" if self.large else "small", reason=self.reason)
        out["guard"] = None if self.verdict is None else self.verdict.to_dict()
        if self.vetoed:
            out["charged"] = 0.0
        return out


class GuardedPacer:
    """A pacer and a guard, one request at a time (the service and ``HybridTranslator`` do the
    same in batches): the guard runs only when the pacer says "large", never on a forced
    request; a veto is refunded at once (the controller also undoes the threshold rise it
    caused). While the guard runs the charge is reserved, so a hard cap still holds with
    concurrent callers. Thread-safe."""

    def __init__(self, pacer: Pacer, guard: Guard) -> None:
        if not isinstance(pacer, Pacer):
            raise ConfigError(f"pacer must be a Pacer, got {type(pacer).__name__}")
        if not isinstance(guard, Guard):
            raise ConfigError(f"guard must be a Guard, got {type(guard).__name__}")
        self.pacer = pacer
        self.guard = guard
        self._lock = threading.Lock()
        self._requests = 0

    def decide(
        self,
        score: float | None,
        cost: float | None = None,
        *,
        force: bool = False,
        segment: Segment | None = None,
        translation: str | None = None,
        features: np.ndarray | None = None,
    ) -> GuardedDecision:
        """Route one request; ``segment``/``translation``/``features`` are what the guard reads
        (only what it needs)."""
        decision = self.pacer.decide(score, cost, force=force)
        with self._lock:
            self._requests += 1
        if not decision.large or force:
            return GuardedDecision(decision, large=decision.large, verdict=None)
        seg = segment or Segment(id="request", direction="en-es", source="")
        try:
            (verdict,) = self.guard.check(
                [seg],
                None if translation is None else [translation],
                None if features is None else np.asarray(features, dtype=float).reshape(1, -1),
            )
        except BaseException:
            self.pacer.refund(decision)  # no route was taken: give the reservation back
            raise
        if verdict.vetoed:
            self.pacer.refund(decision)
        return GuardedDecision(decision, large=not verdict.vetoed, verdict=verdict)

    def refund(self, decision: GuardedDecision) -> bool:
        """Give back a routed request's charge (its large call failed)."""
        if not decision.large:
            return False
        return self.pacer.refund(decision.decision)

    def state(self) -> dict[str, Any]:
        """The pacer's state plus the guard's: evaluations, vetoes, time spent, and the share of
        requests that needed a guard evaluation."""
        out = self.pacer.state()
        stats = self.guard.stats()
        with self._lock:
            requests = self._requests
        stats["evaluation_share"] = stats["evaluations"] / requests if requests else 0.0
        out["guard"] = stats
        return out
