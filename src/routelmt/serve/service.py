"""The serving core: batching, large calls, fallback, decision log and metrics (no HTTP)."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from routelmt.backends.base import Translator
from routelmt.backends.resolve import first_backend, make_backend
from routelmt.budget.pacer import Pacer
from routelmt.budget.plan import BudgetPlan, StagePlan
from routelmt.errors import BackendError, ConfigError
from routelmt.hybrid import FALLBACK, HybridResult, HybridTranslator, Routed, SecondStage, Tier
from routelmt.languages import parse_direction
from routelmt.metrics.base import METRICS
from routelmt.records import Segment
from routelmt.routers.base import SharedQERouter, stages
from routelmt.serve.batcher import ContinuousDecoder, MicroBatcher
from routelmt.serve.breaker import BreakerTranslator, CircuitBreaker, breakers_of
from routelmt.serve.log import DecisionLog, resolve_log_path, without_text
from routelmt.serve.metrics import ServiceMetrics
from routelmt.serve.recent import DEFAULT_CAPACITY, DecisionRing, decision_of
from routelmt.serve.usage import TokenCounter

log = logging.getLogger(__name__)


def router_directions(router: Any) -> list[str] | None:
    """The directions a trained router saw (its training-sources record); None for a router
    that needs no training (length, random) or an artifact that records none."""
    record = getattr(router, "train_sources", None)
    if not isinstance(record, dict) or not isinstance(record.get("sources"), dict):
        return None
    return sorted({d.lower() for dirs in record["sources"].values() for d in dirs})


def fallback_reason(error: str) -> str:
    """Metric label for a failed large call."""
    text = error.lower()
    if "circuit open" in text:
        return "circuit_open"
    if "timed out" in text or "timeout" in text:
        return "timeout"
    if "unreachable" in text or "connect" in text:
        return "unreachable"
    if "http " in text:
        return "http_error"
    return "garbage"


class SmallModelError(BackendError):
    """The small model failed on every segment of a request (it has no fallback)."""


FAILED_TIER = "none"  # the tier of a segment that no model translated


def failed_result(routed: Routed, message: str, total_s: float) -> HybridResult:
    """A segment the small model failed on (after a failed large call, too): no translation,
    nothing charged (a failed large call was refunded). It is logged like any decision, and
    the request still answers its other segments (a large answer already paid for is kept)."""
    return HybridResult(
        segment_id=routed.segment.id,
        direction=routed.segment.direction,
        translation=None,  # type: ignore[arg-type]
        tier=FAILED_TIER,
        model=FAILED_TIER,
        policy=routed.policy,
        score=routed.score,
        threshold=routed.threshold,
        reason="small_model_failed",
        fallback=False,
        error=message,
        budget=routed.budget,
        timings={"route": routed.route_s, "total": total_s},
        stage=routed.stage,
        stage2_score=routed.stage2_score,
        cost={"cost": 0.0, "all_large": 0.0, "saved": 0.0},
    )


@dataclass
class Staged:
    """A routed segment and, if it decodes in the continuous batch, its place in the queue."""

    routed: Routed
    decoding: Future[str] | None = None  # the decoder's answer, when it decodes there
    since: float = 0.0  # when it joined the decoder's queue (perf_counter)


def _source_chars(item: tuple[Segment, str, str]) -> float:
    """A routing item's prefill cost: its source's length (tokens track characters closely
    enough to bound a prefill's time, and counting them is free)."""
    return float(len(item[0].source))


class TranslationService:
    """Owns the hybrid translator and everything around a request.

    Each request pays only for itself. With a live small model that shares its prefill with the
    router (``continuous``, the default where possible), a ``MicroBatcher`` runs only the
    routing prefill (concurrent requests share it, taken round-robin by request); a segment
    routed large starts its large call right then, and one routed small joins the
    ``ContinuousDecoder``'s running batch at the next decode step and leaves it when done, no
    request holding more than ``max_share`` of its rows. Otherwise (a replay or remote small
    model) the micro-batch routes and translates. Large calls run on their own thread pool so
    a slow endpoint never blocks the small model; every answered segment is in the decision
    log before its answer leaves.
    """

    def __init__(
        self,
        hybrid: HybridTranslator,
        *,
        log_path: str | Path | None = None,
        batching: bool = True,
        max_batch_size: int = 16,
        max_wait_ms: float = 5.0,
        large_concurrency: int = 64,
        max_chars: int = 4000,
        max_items: int = 64,
        directions: list[str] | None = None,
        default_direction: str = "en-es",
        allow_policy_override: bool = False,
        router_name: str | None = None,
        continuous: bool = True,
        max_share: float = 0.75,
        max_prefill_chars: int | None = 2000,
        log_text: bool = False,
        recent_decisions: int = DEFAULT_CAPACITY,
    ) -> None:
        self.hybrid = hybrid
        second = hybrid.second_stage
        self.metrics = ServiceMetrics(
            hybrid.pacer.state,
            None if second is None else second.pacer.state,
            breakers=lambda: breakers_of(hybrid),
        )
        self.tokens = TokenCounter(hybrid.small)
        self.batching = batching
        generator = getattr(hybrid.small, "generator", None) if hybrid.shared_prefill else None
        self.decoder: ContinuousDecoder | None = None
        if continuous and generator is not None and getattr(generator, "num_beams", 1) == 1:
            self.decoder = ContinuousDecoder(
                generator,
                max_rows=max_batch_size if batching else 1,
                max_share=max_share if batching else 1.0,
                on_step=lambda _rows, seconds: self.metrics.decode_step.observe(seconds),
                name="small-decoder",
            )
        self.batcher: MicroBatcher[tuple[Segment, str, str], Staged] = MicroBatcher(
            self._route_batch if self.decoder is not None else self._small_batch,
            max_batch_size=max_batch_size if batching else 1,
            max_wait_s=max_wait_ms / 1000.0 if batching else 0.0,
            on_batch=self._on_batch,
            cost=_source_chars,
            max_batch_cost=max_prefill_chars if batching else None,
            gate=None if self.decoder is None else self.decoder.has_room,
            name="small-batcher",
        )
        if self.decoder is not None:
            self.decoder.on_room = self.batcher.wake
        self.large_pool = ThreadPoolExecutor(large_concurrency, thread_name_prefix="large")
        self.log = DecisionLog(log_path) if log_path else None
        self.log_text = bool(log_text)
        self.recent = DecisionRing(recent_decisions)  # the dashboard's last decisions, no text
        self.max_chars = int(max_chars)
        self.max_items = int(max_items)
        self.directions = None if directions is None else [d.lower() for d in directions]
        for d in [*(self.directions or []), default_direction]:
            parse_direction(d)
        self.default_direction = default_direction.lower()
        self.allow_policy_override = allow_policy_override
        self.router_name = router_name or getattr(
            hybrid.router, "name", type(hybrid.router).__name__
        )
        self.trained_directions = router_directions(hybrid.router)
        self.started = time.time()
        self._closed = False

    def zero_shot(self, direction: str) -> bool | None:
        """True when the router was trained, but not on ``direction`` (it is routed all the
        same); None when the router needs no training or records none."""
        if self.trained_directions is None:
            return None
        return direction.lower() not in self.trained_directions

    # -- batching ------------------------------------------------------------------------
    def _small_batch(self, items: list[tuple[Segment, str, str]]) -> list[Staged]:
        routed = self.hybrid.stage_small([s for s, _, _ in items], [p for _, p, _ in items])
        return [Staged(r) for r in routed]

    def _route_batch(self, items: list[tuple[Segment, str, str]]) -> list[Staged]:
        """Route (one shared prefill); each row that decodes joins the decoder's queue here, on
        the batcher's thread, so the decoder's count (the gate) includes it before the next
        micro-batch is taken."""
        routed = self.hybrid.route([s for s, _, _ in items], [p for _, p, _ in items])
        return [self._queue(r, owner) for r, (_, _, owner) in zip(routed, items, strict=True)]

    def _queue(self, routed: Routed, owner: str) -> Staged:
        assert self.decoder is not None
        decode = not routed.goes_large or routed.guard_pending
        if routed.error is not None or not decode:
            return Staged(routed)
        future = self.decoder.submit(routed.state, routed.index, owner)
        # the decoder holds the prefill until the row joins (and copies its rows then): drop
        # this reference so the prefill's KV cache goes as soon as its last row has joined
        routed.state = None
        return Staged(routed, future, time.perf_counter())

    async def _stage(self, segment: Segment, policy: str, owner: str) -> Routed:
        """Route one segment and, if it stays small, translate it."""
        return await self._decode(await self._route_only(segment, policy, owner))

    async def _decode(self, staged: Staged) -> Routed:
        """The routed segment, with its small translation once the continuous batch made it
        (and the small backend's repair pass, if it has one, made off the event loop)."""
        routed = staged.routed
        if staged.decoding is None:
            return routed
        try:
            text = await asyncio.wrap_future(staged.decoding)
            repair = getattr(self.hybrid.small, "repair", None)
            if callable(repair):
                loop = asyncio.get_running_loop()
                text = (await loop.run_in_executor(None, repair, [routed.segment], [text]))[0]
        except Exception as exc:
            return dataclasses.replace(routed, error=f"{type(exc).__name__}: {exc}")
        return dataclasses.replace(
            routed, translation=text, small_s=routed.small_s + time.perf_counter() - staged.since
        )

    def _on_batch(self, size: int, seconds: float) -> None:
        self.metrics.batch_size.observe(size)

    # -- one request ---------------------------------------------------------------------
    async def translate(
        self, segments: list[Segment], policy: str, *, request_id: str, endpoint: str
    ) -> list[HybridResult]:
        """Route and translate; raises SmallModelError if the small model failed.

        Shielded: a client that disconnects does not abort work already under way, so its
        decisions are still logged and a failed large call is still refunded.
        """
        work = self._translate(segments, policy, request_id=request_id, endpoint=endpoint)
        return await asyncio.shield(asyncio.ensure_future(work))

    async def _translate(
        self, segments: list[Segment], policy: str, *, request_id: str, endpoint: str
    ) -> list[HybridResult]:
        t0 = time.perf_counter()
        routing_failed = False

        async def one(segment: Segment) -> HybridResult:
            # each segment goes on as soon as it is routed: its large call starts while other
            # segments of the request still wait for their prefill or decode
            nonlocal routing_failed
            try:
                staged = await self._route_only(segment, policy, request_id)
            except Exception:
                routing_failed = True
                raise
            return await self._finish(staged, t0, request_id)

        try:
            results: list[HybridResult] = list(await asyncio.gather(*(one(s) for s in segments)))
        except Exception:
            if routing_failed:
                self.metrics.errors.inc("routing")
            raise
        failed = [r for r in results if r.tier == FAILED_TIER]
        for r, seg in zip(results, segments, strict=True):
            if r.tier != FAILED_TIER:
                r.usage = self.tokens.usage(seg.source, r.translation)
        if self.log is not None:  # every decision, the failed segments' too
            records = [
                self.record(r, seg, request_id=request_id, endpoint=endpoint)
                for r, seg in zip(results, segments, strict=True)
            ]
            if not self.log_text:
                records = [without_text(r) for r in records]
            await asyncio.wrap_future(self.log.append(records))
        if failed:
            self.metrics.errors.inc("small_model")
        if len(failed) == len(results):  # nothing to answer with
            raise SmallModelError(failed[0].error or "the small model failed")
        for r in results:
            if r.tier == FAILED_TIER:
                continue
            self.metrics.observe_result(r, r.usage or {})
            self.metrics.segments.inc(r.tier, r.policy)
            self.metrics.latency.observe(r.timings["total"], r.tier)
            self.metrics.route_latency.observe(r.timings["route"])
        now = time.time()
        self.recent.extend(
            decision_of(r, s.source, now)
            for r, s in zip(results, segments, strict=True)
            if r.tier != FAILED_TIER
        )
        return results

    async def _route_only(self, segment: Segment, policy: str, owner: str) -> Staged:
        return await asyncio.wrap_future(self.batcher.submit((segment, policy, owner), owner))

    async def _finish(self, staged: Staged, t0: float, owner: str) -> HybridResult:
        routed = await self._decode(staged)
        if routed.error is not None:
            message = f"small model failed on segment {routed.segment.id}: {routed.error}"
            return failed_result(routed, message, time.perf_counter() - t0)
        if routed.guard_pending:  # quality-hypo: QE of the decoded candidate, off the loop
            loop = asyncio.get_running_loop()
            routed = (await loop.run_in_executor(None, self.hybrid.guard_review, [routed]))[0]
        if self.hybrid.second_stage is not None and routed.translation is not None:
            # the second look at the small translation (QE pass): off the event loop
            loop = asyncio.get_running_loop()
            routed = (await loop.run_in_executor(None, self.hybrid.review, [routed]))[0]
        if not routed.goes_large:
            self.metrics.model_latency.observe(routed.small_s, "small")
            return self.hybrid.result(routed, total_s=time.perf_counter() - t0)
        routed.state = None  # a large call needs no prefill
        loop = asyncio.get_running_loop()
        tier, translator = self.hybrid.tier_of(routed)
        text, error, large_s = await loop.run_in_executor(
            self.large_pool, self.hybrid.call_large, routed.segment, translator
        )
        self.metrics.model_latency.observe(large_s, tier)
        if text is not None:
            return self.hybrid.result(
                routed, large_text=text, large_s=large_s, total_s=time.perf_counter() - t0
            )
        self.hybrid.refund(routed)  # a failed call is not charged
        self.metrics.fallbacks.inc(fallback_reason(error or ""))
        if routed.small_kept is not None:  # escalated at stage 2: its small translation stands
            return self.hybrid.result(
                routed,
                large_s=large_s,
                error=error,
                fallback_text=routed.small_kept,
                total_s=time.perf_counter() - t0,
            )
        again = await self._stage(routed.segment, FALLBACK, owner)
        if again.error is not None:
            message = f"large call failed ({error}) and so did the small model: {again.error}"
            return failed_result(routed, message, time.perf_counter() - t0)
        return self.hybrid.result(
            routed,
            large_s=large_s,
            error=error,
            fallback_text=again.translation,
            fallback_s=again.small_s,
            total_s=time.perf_counter() - t0,
        )

    def record(
        self, r: HybridResult, segment: Segment, *, request_id: str, endpoint: str
    ) -> dict[str, Any]:
        """One decision-log line: what a router retrain needs, and what an audit needs."""
        return {
            "id": r.segment_id,
            "request_id": request_id,
            "time": round(time.time(), 6),
            "endpoint": endpoint,
            "direction": r.direction,
            "source": segment.source,
            "router": self.router_name,
            "score": r.score,
            "threshold": r.threshold,
            "policy": r.policy,
            "decision": r.reason,
            "tier": r.tier,
            "model": r.model,
            "small_model": self.hybrid.small.name,
            "large_model": self.hybrid.large.name,
            "fallback": r.fallback,
            "error": r.error,
            "translation": r.translation,
            "latency_ms": round(r.timings["total"] * 1000.0, 3),
            "timings_ms": {k: round(v * 1000.0, 3) for k, v in r.timings.items()},
            "guard": r.guard,
            "cost": r.cost.get("cost"),
            "usage": r.usage,
            "budget_spent": r.budget.get("spent"),
            "budget_requests": r.budget.get("requests"),
        }

    def model_of(self, tier: str) -> str:
        """The name of the model that serves a tier."""
        if tier == "small":
            return self.hybrid.small.name
        for t in self.hybrid.tiers:
            if t.spec.name == tier:
                return t.translator.name
        return self.hybrid.large.name

    @staticmethod
    def new_request_id() -> str:
        return uuid.uuid4().hex

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "small": self.hybrid.small.name,
            "large": self.hybrid.large.name,
            "router": self.router_name,
            "shared_prefill": self.hybrid.shared_prefill,
            "batching": {
                "enabled": self.batching,
                "max_batch_size": self.batcher.max_batch_size,
                "batches": self.batcher.batches,
                "items": self.batcher.items,
                "continuous_decoding": self.decoder is not None,
                "decode_steps": self.decoder.steps if self.decoder is not None else 0,
                "decode_step_ms_mean": (
                    round(1000.0 * self.decoder.step_s / self.decoder.steps, 3)
                    if self.decoder is not None and self.decoder.steps
                    else None
                ),
            },
            "router_stages": 1 if self.hybrid.second_stage is None else 2,
            "directions": {
                "served": self.directions or "any pair of known languages",
                "default": self.default_direction,
                # the others are routed zero-shot (answers say "zero_shot": true)
                "router_trained_on": self.trained_directions,
            },
            "tiers": [
                {"name": name, "cost": cost, "model": self.model_of(name)}
                for name, cost in self.hybrid.costs.items()
            ],
            "guard": None if self.hybrid.guard is None else self.hybrid.guard.stats(),
            "usage_counted_by": self.tokens.counted_by,
            "routing": self.hybrid.routing_state(),
            "budget": self.hybrid.pacer.state(),
            **(
                {"budget_stage2": self.hybrid.second_stage.pacer.state()}
                if self.hybrid.second_stage is not None
                else {}
            ),
            "decision_log": str(self.log.path) if self.log else None,
            "uptime_s": round(time.time() - self.started, 3),
        }

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.batcher.close()
        if self.decoder is not None:
            self.decoder.close()
        self.large_pool.shutdown(wait=True)
        if self.log is not None:
            self.log.close()
        self.hybrid.close()
        closer = getattr(self.hybrid.pacer, "close", None)
        if closer is not None:
            closer()


# -- building from a config ----------------------------------------------------------------


def make_pacers(
    budget: dict[str, Any], router: Any, distributions: Any = None
) -> tuple[Any, Any | None]:
    """The pacer, and for a two-stage router (``SecondStageRouter``) a second one, as the
    budget plan (``budget.plan.BudgetPlan``) lays them out from the ``budget`` settings:
    the split of the share, ``StageOff`` for ``stage1_share: 0``, one hard cap over both
    stages, stage 2's store name and each stage's prior from ``distributions`` (the router
    artifact's ``StageDistributions``)."""
    plan = BudgetPlan.from_settings(budget, stages=stages(router))
    return plan.build(make_pacer, distributions)


def make_pacer(stage: StagePlan, options: dict[str, Any]) -> Any:
    """One stage's pacer on its store: in memory, a SQLite file shared by the processes of a
    host, or a Ray actor shared by every replica (``ray:NAME``)."""
    assert stage.spec is not None  # a stage given no share has no pacer (``StageOff``)
    if stage.store and stage.store.startswith("ray:"):  # one actor, many hosts
        from routelmt.serve.ray_budget import RayPacer, parse_store

        name, persist = parse_store(stage.store)
        return RayPacer(stage.spec, name, persist=persist, **options)
    if stage.store:
        from routelmt.serve.shared_pacer import SQLitePacer

        return SQLitePacer(stage.spec, stage.store, **options)
    return Pacer(stage.spec, **options)


def router_distributions(options: dict[str, Any]) -> Any:
    """The score distributions a trained router artifact ships (``{path: ...}``), or None."""
    from routelmt.budget.score_distribution import StageDistributions
    from routelmt.routers.artifacts import resolve_artifact

    path = options.get("path")
    return None if path is None else StageDistributions.read(resolve_artifact(path))


def make_router(options: dict[str, Any]) -> tuple[Any, str]:
    """``{name: length, ...}`` builds a router; ``{path: DIR}`` loads a trained artifact."""
    from routelmt.routers.artifacts import load_router
    from routelmt.routers.base import get_router

    options = dict(options)
    path = options.pop("path", None)
    name = options.pop("name", None)
    if path is None:
        if not name:
            raise ConfigError("router: give 'name' (e.g. length) or 'path' (a trained router)")
        return get_router(name, **options), name
    if options:
        raise ConfigError(f"router.path: a trained router takes no options, got {sorted(options)}")
    router = load_router(path)
    return router, getattr(router, "name", None) or name or type(router).__name__


def make_tiers(config: dict[str, Any], given: dict[str, Translator]) -> list[Tier]:
    """The configured tiers above the small model (each behind its own circuit breaker),
    cheapest first; ``given`` maps tier names to translator objects that replace their
    backend specs."""
    from routelmt.budget.tiers import TierSpec

    server = config["server"]
    out = []
    for item in config["tiers"]:
        spec = TierSpec(item["name"], float(item["cost"]), float(item.get("gain_scale", 1.0)))
        translator = given.get(spec.name) or make_backend(
            item["backend"], dict(item.get("options") or {}), config["data"]
        )
        if server["breaker_failures"] > 0:
            breaker = CircuitBreaker(server["breaker_failures"], server["breaker_cooldown_s"])
            translator = BreakerTranslator(translator, breaker)
        out.append(Tier(spec, translator))
    return sorted(out, key=lambda t: t.spec.cost)


def make_tier_pacer(budget: dict[str, Any], tiers: list[Tier], router: Any) -> Any:
    """A ``TierPacer``: ``budget.share`` of what all requests on the top tier would cost extra
    (the budget plan refuses what tiers cannot spend)."""
    from routelmt.budget.pacer import DEFAULT_GAIN
    from routelmt.budget.tiers import TierPacer

    plan = BudgetPlan.from_settings(
        budget, stages=stages(router), tier_costs=[t.spec.cost for t in tiers]
    )
    return TierPacer(
        [t.spec for t in tiers],
        float(plan.spec.target),
        # the tier pacer is an integral controller: its gain when none is set is the integral one
        gain=DEFAULT_GAIN["integral"] if budget.get("gain") is None else plan.gain,
        warmup=int(plan.warmup),
        window=plan.spec.window,
        hard_cap=plan.spec.hard_cap,
    )


def serve_without_disk_cache(router: Any) -> None:
    """The router's QE scorer keeps no embedding of a served text on disk: offline the cache
    saves a second pass, in the service it would grow a file a request (and scan them all on
    each) and keep a trace of every text after its request."""
    if not isinstance(router, SharedQERouter) or not isinstance(router.qe, str):
        return
    factory = METRICS.get(router.qe)
    if "use_cache" in inspect.signature(factory).parameters:
        router.qe_options = {**router.qe_options, "use_cache": False}


def make_service_guard(guard: dict[str, Any], router: Any) -> Any:
    """The configured guard; quality-hypo reuses the two-stage router's QE scorer when it is
    the same one (built once, its sentence encoder loaded once)."""
    from routelmt.budget.online_guards import make_guard

    if guard["name"] is None:
        return None
    if guard["name"] == "quality-hypo":
        qe: Any = guard["qe"]
        if isinstance(router, SharedQERouter) and router.qe == qe:
            qe = router.qe_metric()
        return make_guard("quality-hypo", guard["threshold"], qe=qe)
    return make_guard("quality-predict", guard["threshold"], router=guard["router"])


def build_service(
    config: dict[str, Any],
    *,
    small: Translator | None = None,
    large: Translator | None = None,
    tier_backends: dict[str, Translator] | None = None,
) -> TranslationService:
    """Everything the config names; ``small``/``large`` objects (and ``tier_backends``, by
    tier name) replace the configured specs."""
    data = config["data"]
    server = config["server"]
    small = small or first_backend(config["small"], config["small_options"], data)
    router, router_name = make_router(config["router"])
    serve_without_disk_cache(router)
    tiers = make_tiers(config, tier_backends or {})
    if tiers:
        large = tiers[-1].translator
        pacer, pacer2 = make_tier_pacer(config["budget"], tiers, router), None
    else:
        large = large or make_backend(config["large"], config["large_options"], data)
        if server["breaker_failures"] > 0:
            large = BreakerTranslator(
                large, CircuitBreaker(server["breaker_failures"], server["breaker_cooldown_s"])
            )
        distributions = router_distributions(config["router"])
        pacer, pacer2 = make_pacers(config["budget"], router, distributions)
    budget = config["budget"]
    costs = {"small": float(budget["cost_small"])}
    if tiers:
        costs |= {t.spec.name: costs["small"] + t.spec.cost for t in tiers}
    else:
        costs["large"] = float(budget["cost_large"])
    hybrid = HybridTranslator(
        small,
        large,
        router,
        pacer,
        second_stage=None if pacer2 is None else SecondStage(router, pacer2),
        shared_prefill=server["shared_prefill"],
        large_workers=server["large_concurrency"],
        guard=make_service_guard(config["guard"], router),
        tiers=tiers or None,
        costs=costs,
    )
    return TranslationService(
        hybrid,
        log_path=resolve_log_path(server["log_path"]),
        log_text=server["log_text"],
        batching=server["batching"],
        max_batch_size=server["max_batch_size"],
        max_wait_ms=server["max_wait_ms"],
        large_concurrency=server["large_concurrency"],
        max_chars=server["max_chars"],
        max_items=server["max_items"],
        directions=server["directions"],
        default_direction=server["default_direction"],
        allow_policy_override=server["allow_policy_override"],
        router_name=router_name,
        continuous=server.get("continuous", True),
        max_share=float(server.get("max_share", 0.75)),
        max_prefill_chars=server.get("max_prefill_chars", 2000),
        recent_decisions=int(server.get("dashboard_decisions", DEFAULT_CAPACITY)),
    )
