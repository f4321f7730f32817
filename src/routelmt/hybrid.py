"""Request-time routing: score, decide under the budget, translate small or large, fall back.

The library core of the service (no HTTP here). Work is split in stages so a server can batch
the small-model work across concurrent requests while the large calls run concurrently
elsewhere:

1. ``stage_small(segments, policies)``: score every segment, let the pacer decide the ``auto``
   ones, and translate on the small model those that stay small (one batched call);
2. ``call_large(segment, tier)``: one call to the tier the pacer chose (the large model, or with
   ``tiers`` any tier above the small model), that never raises (text or error);
3. a failed large call is refunded (``refund``) and translated on the small model
   (policy ``fallback``), flagged ``fallback=True``.

``translate()`` runs the three stages for a batch in-process.

Shared prefill: when the small translator implements ``SharedPrefillSmall`` and the router
``FeatureRouter``, the prefill that yields the routing features is also the first decoding step:
segments that stay small continue from its KV cache instead of being prefilled again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from routelmt.backends.base import Translator
from routelmt.budget.online_guards import Guard, GuardVerdict
from routelmt.budget.pacer import Decision
from routelmt.errors import BackendError, ConfigError, InputError
from routelmt.records import Segment
from routelmt.redact import redact
from routelmt.routers.base import Router

log = logging.getLogger(__name__)

POLICIES = ("auto", "small", "large")
FALLBACK = "fallback"  # internal policy: a failed large call, translated on the small model


@runtime_checkable
class PrefillState(Protocol):
    """What ``SharedPrefillSmall.prefill`` returns: routing features plus the decoder state."""

    features: np.ndarray  # (n_segments, dim): one feature row per segment, in order


@runtime_checkable
class SharedPrefillSmall(Protocol):
    """A small translator whose prefill is both the router's input and decoding's first step."""

    def prefill(self, segments: Sequence[Segment], *, layer: int | None = None) -> PrefillState:
        """Prefill the prompts of ``segments``; ``features`` come from hidden layer ``layer``
        (the router's; None: the backend's default), and the KV cache is kept for
        ``generate_from``."""
        ...

    def generate_from(self, state: PrefillState, indices: Sequence[int]) -> list[str]:
        """Continue decoding the segments at ``indices`` (positions in the prefilled batch)."""
        ...


@runtime_checkable
class FeatureRouter(Protocol):
    """A router that scores precomputed prefill features (the in-model router's head).

    An optional ``layer: int`` attribute tells the small model which hidden layer to return.
    """

    def score_features(self, features: np.ndarray) -> np.ndarray:
        """One score per feature row; higher = more worth sending to the large model."""
        ...


class BudgetPacer(Protocol):
    """``budget.Pacer`` or the multi-process ``serve.shared_pacer.SQLitePacer``."""

    def decide(
        self, score: float | None, cost: float | None = None, *, force: bool = False
    ) -> Decision: ...

    def refund(self, decision: Decision) -> bool: ...

    def state(self) -> dict[str, Any]: ...

    # optional: decide_many(scores, costs) -> list[Decision], one call for a batch


@dataclass
class Routed:
    """A segment after stage 1: its score, decision and (unless it goes large) translation."""

    segment: Segment
    policy: str
    score: float | None
    decision: Decision | None
    threshold: float | None
    reason: str
    translation: str | None
    route_s: float
    small_s: float
    budget: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # the small model failed on this segment
    large: bool | None = None  # set by route(): the decision, before any small translation
    state: Any = field(default=None, repr=False, compare=False)  # route(): the shared prefill
    index: int | None = None  # route(): this segment's row in ``state``
    stage: int = 1  # the routing stage that decided: 1 after the prefill, 2 after the small decode
    stage2_score: float | None = None
    stage2_s: float = 0.0  # the second look (QE pass and head) for this segment
    small_kept: str | None = None  # a stage-2 escalation's small translation: the fallback
    guard: GuardVerdict | None = None  # the guard's verdict, when a guard looked at it
    guard_pending: bool = False  # route(): a quality-hypo candidate, decode it then guard_review

    @property
    def goes_large(self) -> bool:
        if self.large is not None:
            return self.large
        return self.translation is None and self.error is None


@dataclass
class HybridResult:
    """What the client sees: the translation, who made it, and why."""

    segment_id: str
    direction: str
    translation: str
    tier: str  # "small" | "large"
    model: str  # the name of the translator that produced ``translation``
    policy: str
    score: float | None
    threshold: float | None
    reason: str
    fallback: bool
    error: str | None
    budget: dict[str, Any]
    timings: dict[str, float]
    stage: int = 1
    stage2_score: float | None = None
    guard: dict[str, Any] | None = None  # the guard's verdict (None: no guard looked at it)
    cost: dict[str, float] = field(default_factory=dict)  # cost, all_large, saved
    usage: dict[str, int] | None = None  # prompt/completion tokens (set by the service)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.segment_id,
            "direction": self.direction,
            "translation": self.translation,
            "tier": self.tier,
            "model": self.model,
            "policy": self.policy,
            "score": self.score,
            "threshold": self.threshold,
            "reason": self.reason,
            "fallback": self.fallback,
            "error": self.error,
            "budget": self.budget,
            "stage": self.stage,
            "stage2_score": self.stage2_score,
            "guard": self.guard,
            "cost": self.cost,
            "usage": self.usage,
            "timings_ms": {k: round(v * 1000.0, 3) for k, v in self.timings.items()},
        }


def check_policy(policy: str, field_name: str = "policy") -> str:
    if not isinstance(policy, str) or policy not in POLICIES:
        expected = ", ".join(POLICIES)
        raise InputError(f"expected one of {expected}, got {policy!r:.40}", field=field_name)
    return policy


def _finite(x: float) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


@dataclass
class SecondStage:
    """Decode-then-route (``routers.two_stage``): after the small decode, ``router`` scores the
    small translation (``score_stage2``) and ``pacer`` decides with its own share, so that the
    two stages together spend the budget (``budget.plan.split_budget``)."""

    router: Any
    pacer: BudgetPacer


@dataclass
class Tier:
    """A tier above the small model (``budget.tiers.TierSpec``: name, extra cost, gain scale)
    and the translator that serves it. With tiers, the pacer is a ``budget.tiers.TierPacer``
    over the same specs and each ``Decision.tier`` names the tier that answers."""

    spec: Any
    translator: Translator


class HybridTranslator:
    """Routes each segment to ``small`` or ``large`` under ``pacer``'s budget.

    ``cost`` (optional) gives a segment's extra large-model cost for cost budgets (e.g. from its
    length); ``guard`` (``budget.online_guards``) checks every ``auto`` segment the pacer sends
    large and keeps it small when its small translation is estimated good already (refunded, so
    the pacer spends the budget on the next requests); ``shared_prefill`` forces (True) or
    forbids (False) the fast path, default: use it when both the small translator and the
    router support it. ``large_workers`` bounds the large
    calls that ``translate()`` runs at once.
    """

    def __init__(
        self,
        small: Translator,
        large: Translator,
        router: Router,
        pacer: BudgetPacer,
        *,
        cost: Callable[[Segment], float] | None = None,
        shared_prefill: bool | None = None,
        large_workers: int = 8,
        second_stage: SecondStage | None = None,
        guard: Guard | None = None,
        tiers: Sequence[Tier] | None = None,
        costs: dict[str, float] | None = None,
    ) -> None:
        self.small = small
        self.guard = guard
        self.tiers = list(tiers or [])
        if self.tiers:  # the most expensive tier stands for "large" (stage 2, forced requests)
            large = max(self.tiers, key=lambda t: t.spec.cost).translator
        self.costs = self._costs(costs)
        self.second_stage = second_stage
        self.large = large
        self.router = router
        self.pacer = pacer
        self.cost = cost
        can_share = isinstance(small, SharedPrefillSmall) and isinstance(router, FeatureRouter)
        if shared_prefill and not can_share:
            raise ConfigError(
                "shared_prefill=True needs a small translator with prefill/generate_from and a "
                f"router with score_features; got {type(small).__name__} and "
                f"{type(router).__name__}"
            )
        self.shared_prefill = can_share if shared_prefill is None else bool(shared_prefill)
        self.large_workers = int(large_workers)

    def _costs(self, costs: dict[str, float] | None) -> dict[str, float]:
        """Per-request cost of each tier (small included); defaults: small 0, large 1."""
        out = {"small": 0.0}
        if self.tiers:
            out |= {t.spec.name: float(t.spec.cost) for t in self.tiers}
        else:
            out["large"] = 1.0
        out |= dict(costs or {})
        return out

    def tier_of(self, routed: Routed) -> tuple[str, Translator]:
        """The name and translator of the tier a routed-large segment goes to."""
        tier = getattr(routed.decision, "tier", None)
        if self.tiers and tier:
            t = self.tiers[tier - 1]
            return t.spec.name, t.translator
        if self.tiers:
            t = max(self.tiers, key=lambda t: t.spec.cost)
            return t.spec.name, t.translator
        return "large", self.large

    def cost_of(self, tier: str, small_decoded: bool) -> dict[str, float]:
        """What one answer cost, what an all-large deployment would have paid (the most
        expensive tier for every request), and the saving."""
        top = max(v for k, v in self.costs.items() if k != "small")
        spent = (self.costs["small"] if small_decoded or tier == "small" else 0.0) + (
            self.costs.get(tier, 0.0) if tier != "small" else 0.0
        )
        return {"cost": spent, "all_large": top, "saved": top - spent}

    # -- stage 1 -------------------------------------------------------------------------
    def stage_small(
        self, segments: Sequence[Segment], policies: str | Sequence[str] = "auto"
    ) -> list[Routed]:
        """Score, decide, and translate on the small model all that do not go large."""
        return self._stage(segments, policies, translate=True)

    def route(
        self, segments: Sequence[Segment], policies: str | Sequence[str] = "auto"
    ) -> list[Routed]:
        """Score and decide only: the small translations are left to the caller.

        With the shared prefill, each ``Routed`` carries the prefill ``state`` and its row
        ``index``, from which the caller continues decoding (a server's continuous batch) while
        the segments routed large start their large calls at once. ``small_s`` holds the
        prefill's share.
        """
        return self._stage(segments, policies, translate=False)

    def _stage(
        self, segments: Sequence[Segment], policies: str | Sequence[str], *, translate: bool
    ) -> list[Routed]:
        n = len(segments)
        if isinstance(policies, str):
            policies = [policies] * n
        if len(policies) != n:
            raise ValueError(f"{len(policies)} policies for {n} segments")
        for p in policies:
            if p != FALLBACK:
                check_policy(p)
        if n == 0:
            return []
        need_score = [i for i, p in enumerate(policies) if p != FALLBACK]
        scores, state, prefill_s, score_s = self._score_stage1(segments, need_score)
        decisions, pace_s = self._pace(segments, policies, scores)
        verdicts, pending = self._guard_stage1(segments, policies, decisions, state)
        budget = self.pacer.state()
        threshold = budget.get("threshold")
        goes_large = [
            d is not None and d.large and not (i in verdicts and verdicts[i].vetoed)
            for i, d in enumerate(decisions)
        ]
        small_idx = [i for i in range(n) if not goes_large[i] or i in pending] if translate else []
        ts = time.perf_counter()
        by_index, errors = self._small_each(segments, small_idx, state)
        small_s = time.perf_counter() - ts + prefill_s
        if not translate:
            small_s = prefill_s / n  # this segment's share of the prefill
        out: list[Routed] = []
        for i, seg in enumerate(segments):
            d = decisions[i]
            p = policies[i]
            if i in verdicts and verdicts[i].vetoed:
                reason, thr = f"guard_{verdicts[i].guard}", d.threshold if d else threshold
            elif d is not None:
                reason = d.reason
                thr = d.threshold
            else:
                reason = {"small": "forced_small", "large": "forced_large", "auto": "invalid_score"}
                reason = reason.get(p, "fallback")
                thr = threshold
            out.append(
                Routed(
                    segment=seg,
                    policy=p,
                    score=_finite(scores[i]),
                    decision=d,
                    threshold=thr,
                    reason=reason,
                    translation=by_index.get(i),
                    route_s=score_s / max(len(need_score), 1) + pace_s[i],
                    small_s=small_s if i in by_index or not translate else 0.0,
                    budget=budget,
                    error=errors.get(i),
                    large=None if translate else goes_large[i],
                    state=None if translate else state,
                    index=None if translate else i,
                    guard=verdicts.get(i),
                    guard_pending=i in pending,
                )
            )
        if translate and pending:
            self.guard_review([out[i] for i in pending])
        return out

    def _score_stage1(
        self, segments: Sequence[Segment], need_score: list[int]
    ) -> tuple[np.ndarray, Any, float, float]:
        """Router scores of ``need_score`` (NaN elsewhere), the shared prefill's state (or
        None), and the seconds of the prefill and of the scoring."""
        t0 = time.perf_counter()
        state: Any = None
        scores = np.full(len(segments), np.nan)
        prefill_s = 0.0
        if self.shared_prefill:
            tp = time.perf_counter()
            layer = getattr(self.router, "layer", None)
            state = self.small.prefill(segments, layer=layer)  # type: ignore[attr-defined]
            prefill_s = time.perf_counter() - tp
            if need_score:
                feats = np.asarray(state.features)[need_score]
                scores[need_score] = np.asarray(self.router.score_features(feats), dtype=float)  # type: ignore[attr-defined]
        elif need_score:
            got = np.asarray(self.router.score([segments[i] for i in need_score]), dtype=float)
            if got.shape != (len(need_score),):
                raise ValueError(f"router returned shape {got.shape} for {len(need_score)} items")
            scores[need_score] = got
        return scores, state, prefill_s, time.perf_counter() - t0 - prefill_s

    def _pace(
        self, segments: Sequence[Segment], policies: Sequence[str], scores: np.ndarray
    ) -> tuple[list[Decision | None], list[float]]:
        """The pacer's decision for each scored or forced-large segment, and its seconds."""
        n = len(segments)
        decisions: list[Decision | None] = [None] * n
        pace_s = [0.0] * n
        # a non-finite score (a router bug) stays small rather than failing the request; a
        # forced-large request is charged too, so the hard cap holds for it as for any other
        auto = [
            i
            for i, p in enumerate(policies)
            if p == "large" or (p == "auto" and np.isfinite(scores[i]))
        ]
        if auto:
            tp = time.perf_counter()
            costs = [self.cost(segments[i]) if self.cost else None for i in auto]
            made = self._decide(
                [scores[i] for i in auto], costs, [policies[i] == "large" for i in auto]
            )
            each = (time.perf_counter() - tp) / len(auto)
            for i, d in zip(auto, made, strict=True):
                decisions[i] = d
                pace_s[i] = each
        return decisions, pace_s

    def _small_each(
        self, segments: Sequence[Segment], small_idx: list[int], state: Any
    ) -> tuple[dict[int, str], dict[int, str]]:
        """Small translations of ``small_idx`` in one batch; if the batch fails, one by one,
        so one bad segment does not fail the others (errors by index)."""
        by_index: dict[int, str] = {}
        errors: dict[int, str] = {}
        if not small_idx:
            return by_index, errors
        try:
            texts = self._small(segments, small_idx, state)
            by_index = dict(zip(small_idx, texts, strict=True))
        except Exception as exc:
            if len(small_idx) == 1:
                errors[small_idx[0]] = f"{type(exc).__name__}: {exc}"
            else:  # one bad segment must not fail the others batched with it
                for i in small_idx:
                    try:
                        by_index[i] = self._small(segments, [i], state)[0]
                    except Exception as exc_i:
                        errors[i] = f"{type(exc_i).__name__}: {exc_i}"
        return by_index, errors

    def _guard_stage1(
        self,
        segments: Sequence[Segment],
        policies: Sequence[str],
        decisions: Sequence[Decision | None],
        state: Any,
    ) -> tuple[dict[int, GuardVerdict], set[int]]:
        """The guard on the ``auto`` segments the pacer sent large: quality-predict decides
        now (on the prefill features when it reads the router's layer) and vetoes are refunded;
        quality-hypo candidates are returned as pending (they need their small decode)."""
        guard = self.guard
        cands = [
            i
            for i, d in enumerate(decisions)
            if d is not None and d.large and policies[i] == "auto"
        ]
        if guard is None or not cands:
            return {}, set()
        if guard.needs_translation:
            return {}, set(cands)
        feats = None
        if state is not None and getattr(guard, "layer", None) in (
            None,
            getattr(self.router, "layer", None),
        ):
            feats = np.asarray(state.features)[cands]
        verdicts = dict(zip(cands, guard.check([segments[i] for i in cands], None, feats)))
        for i, v in verdicts.items():
            if v.vetoed:
                self.pacer.refund(decisions[i])  # type: ignore[arg-type]
        return verdicts, set()

    def guard_review(self, routed: Sequence[Routed]) -> list[Routed]:
        """Quality-hypo on candidates whose small translation is now decoded: a veto keeps the
        small translation (and is refunded); a pass goes large with it kept as the fallback."""
        todo = [r for r in routed if r.guard_pending and r.translation is not None]
        if self.guard is None or not todo:
            return list(routed)
        verdicts = self.guard.check(
            [r.segment for r in todo], [r.translation or "" for r in todo], None
        )
        for r, v in zip(todo, verdicts, strict=True):
            r.guard, r.guard_pending = v, False
            if v.vetoed:
                self.pacer.refund(r.decision)  # type: ignore[arg-type]
                r.reason = f"guard_{v.guard}"
                if r.large is not None:
                    r.large = False
            else:
                r.small_kept, r.translation = r.translation, None
                if r.large is not None:
                    r.large = True
            r.budget = self.pacer.state()
        return list(routed)

    def _decide(
        self, scores: list[float], costs: list[float | None], forced: list[bool]
    ) -> list[Decision]:
        clean = [float(s) if np.isfinite(s) else None for s in scores]
        if hasattr(self.pacer, "decide_many"):  # one transaction for a shared store
            return self.pacer.decide_many(clean, costs, forced=forced)  # type: ignore[attr-defined]
        return [
            self.pacer.decide(s, cost=c, force=f)  # type: ignore[call-arg]
            for s, c, f in zip(clean, costs, forced, strict=True)
        ]

    def _small(self, segments: Sequence[Segment], indices: list[int], state: Any) -> list[str]:
        if self.shared_prefill:
            texts = self.small.generate_from(state, indices)  # type: ignore[attr-defined]
        else:
            texts = self.small.translate([segments[i] for i in indices])
        if len(texts) != len(indices) or not all(isinstance(t, str) for t in texts):
            raise BackendError(f"small translator returned {len(texts)} texts for {len(indices)}")
        return list(texts)

    def review(self, routed: Sequence[Routed]) -> list[Routed]:
        """The second look: every ``auto`` segment the small model translated is scored on its
        own output and decided by the second pacer; one sent large keeps its small translation
        as the fallback, and its small decode is counted in its latency (a wasted decode)."""
        if self.second_stage is None:
            return list(routed)
        todo = [
            r
            for r in routed
            if r.policy == "auto"
            and r.translation is not None
            and r.error is None
            and r.guard is None  # a guard already judged this small translation good
        ]
        if not todo:
            return list(routed)
        t0 = time.perf_counter()
        stage1 = np.asarray([r.score if r.score is not None else 0.0 for r in todo], dtype=float)
        scores = self.second_stage.router.score_stage2(
            [r.segment for r in todo], [r.translation for r in todo], stage1
        )
        each = (time.perf_counter() - t0) / len(todo)
        pacer = self.second_stage.pacer
        for r, value in zip(todo, np.asarray(scores, dtype=float), strict=True):
            r.stage, r.stage2_s, r.stage2_score = 2, each, _finite(value)
            decision = pacer.decide(value if np.isfinite(value) else -np.inf)
            r.budget = {**r.budget, "stage2": pacer.state()}
            if decision.large:
                r.decision, r.reason = decision, f"stage2_{decision.reason}"
                if decision.threshold is not None:
                    r.threshold = _finite(decision.threshold)
                r.small_kept, r.translation = r.translation, None
                if getattr(r, "large", None) is not None:
                    r.large = True
        return list(routed)

    def routing_state(self) -> dict[str, Any]:
        """The live routing figures a dashboard shows (``/health``'s ``routing``): the share
        promised and realised (every stage together), and per stage its share, threshold, the
        threshold its router's shipped score distribution expects for that share, and the gap
        between the two (also in units of the recent scores' spread)."""
        first = self.pacer.state()
        stages = {"stage1": first}
        if self.second_stage is not None:
            stages["stage2"] = self.second_stage.pacer.state()
        seen = first.get("requests") or 0
        spent = sum(float(st.get("spent") or 0.0) for st in stages.values())
        keys = ("realised_share", "next_threshold", "recent_quantile", "expected_threshold")
        keys += ("threshold_gap", "threshold_gap_scales", "rule")
        return {
            "target_share": self._target_share(stages),
            "realised_share": spent / seen
            if seen and (first.get("spec") or {}).get("kind") == "share"
            else None,
            "requests": seen,
            "stages": {
                name: {
                    "share": (st.get("spec") or {}).get("target"),
                    **{k: st.get(k) for k in keys},
                }
                for name, st in stages.items()
            },
        }

    @staticmethod
    def _target_share(stages: dict[str, dict[str, Any]]) -> float | None:
        """The whole budget: stage 1's share plus stage 2's of what stage 1 left."""
        first = (stages["stage1"].get("spec") or {}).get("target")
        if "stage2" not in stages or first is None:
            return first
        second = (stages["stage2"].get("spec") or {}).get("target") or 0.0
        return first + (1.0 - first) * second

    # -- stage 2 -------------------------------------------------------------------------
    def call_large(
        self, segment: Segment, translator: Translator | None = None
    ) -> tuple[str | None, str | None, float]:
        """(translation, None, seconds) or (None, error message, seconds); never raises.
        ``translator``: the tier to call (``tier_of``), default the large model."""
        t0 = time.perf_counter()
        try:
            texts = (translator or self.large).translate([segment])
            if len(texts) != 1 or not isinstance(texts[0], str) or not texts[0].strip():
                raise ValueError(f"large translator returned {texts!r:.80}")
            return texts[0], None, time.perf_counter() - t0
        except Exception as exc:  # any failure means: fall back, do not charge
            error = redact(f"{type(exc).__name__}: {exc}")  # an endpoint URL may hold a key
            log.warning("large call failed for %s: %s", segment.id, error)
            return None, error, time.perf_counter() - t0

    def refund(self, routed: Routed) -> bool:
        """Give back the budget of a routed segment whose large call failed."""
        if routed.decision is None:
            return False
        if routed.stage == 2 and self.second_stage is not None:
            return self.second_stage.pacer.refund(routed.decision)
        return self.pacer.refund(routed.decision)

    # -- assembling ----------------------------------------------------------------------
    def result(
        self,
        routed: Routed,
        *,
        large_text: str | None = None,
        large_s: float = 0.0,
        error: str | None = None,
        fallback_text: str | None = None,
        fallback_s: float = 0.0,
        total_s: float | None = None,
    ) -> HybridResult:
        seg = routed.segment
        timings = {"route": routed.route_s, "small": routed.small_s + fallback_s}
        if routed.stage == 2:
            timings["stage2"] = routed.stage2_s
        if routed.guard is not None:
            timings["guard"] = routed.guard.seconds
        if routed.goes_large:
            timings["large"] = large_s
        if large_text is not None:
            tier, translator = self.tier_of(routed)
            text, model, fb = large_text, translator.name, False
        elif routed.translation is not None:
            text, tier, model, fb = routed.translation, "small", self.small.name, False
        else:
            if fallback_text is None:
                raise ValueError(f"segment {seg.id}: no translation to report")
            text, tier, model, fb = fallback_text, "small", self.small.name, True
        timings["total"] = total_s if total_s is not None else sum(timings.values())
        return HybridResult(
            segment_id=seg.id,
            direction=seg.direction,
            translation=text,
            tier=tier,
            model=model,
            policy=routed.policy,
            score=routed.score,
            threshold=routed.threshold,
            reason=routed.reason,
            fallback=fb,
            error=error,
            budget=routed.budget,
            timings=timings,
            stage=routed.stage,
            stage2_score=routed.stage2_score,
            guard=None if routed.guard is None else routed.guard.to_dict(),
            cost=self.cost_of(tier, routed.small_kept is not None or fb),
        )

    def translate(
        self, segments: Sequence[Segment], *, policy: str | Sequence[str] = "auto"
    ) -> list[HybridResult]:
        """Route and translate a batch; failed large calls fall back and are refunded."""
        t0 = time.perf_counter()
        routed = self.stage_small(segments, policy)
        self._raise_small_errors(routed)
        routed = self.review(routed)
        large_idx = [i for i, r in enumerate(routed) if r.goes_large]
        large: dict[int, tuple[str | None, str | None, float]] = {}
        if large_idx:
            workers = max(1, min(self.large_workers, len(large_idx)))
            with ThreadPoolExecutor(workers, thread_name_prefix="large") as pool:
                calls = pool.map(
                    lambda r: self.call_large(r.segment, self.tier_of(r)[1]),
                    [routed[i] for i in large_idx],
                )
                large = dict(zip(large_idx, calls, strict=True))
        failed = [i for i in large_idx if large[i][0] is None]
        for i in failed:
            self.refund(routed[i])
        # a stage-2 escalation already holds its small translation: no second decode
        fallback: dict[int, tuple[str, float]] = {
            i: (routed[i].small_kept or "", 0.0) for i in failed if routed[i].small_kept is not None
        }
        failed = [i for i in failed if i not in fallback]
        if failed:
            tf = time.perf_counter()
            again = self.stage_small([routed[i].segment for i in failed], FALLBACK)
            self._raise_small_errors(again)
            each = (time.perf_counter() - tf) / len(failed)
            fallback |= {i: (r.translation or "", each) for i, r in zip(failed, again, strict=True)}
        total = time.perf_counter() - t0
        out = []
        for i, r in enumerate(routed):
            text, err, secs = large.get(i, (None, None, 0.0))
            fb_text, fb_s = fallback.get(i, (None, 0.0))
            out.append(
                self.result(
                    r,
                    large_text=text,
                    large_s=secs,
                    error=err,
                    fallback_text=fb_text,
                    fallback_s=fb_s,
                    total_s=total,
                )
            )
        return out

    @staticmethod
    def _raise_small_errors(routed: Sequence[Routed]) -> None:
        bad = [r for r in routed if r.error is not None]
        if bad:
            raise BackendError(f"small model failed on segment {bad[0].segment.id}: {bad[0].error}")

    def close(self) -> None:
        self.small.close()
        for t in {id(t.translator): t.translator for t in self.tiers}.values() or [self.large]:
            t.close()
