"""Hybrid batch translation of a whole file under an exact budget (the paper's offline top-p).

Steps, each resumable from the job's work folder (``<output>.work`` by default):

1. score every segment with the router (a two-stage router: stage 1, then the small model
   translates every segment, then stage 2);
2. allocate: exactly k = floor(pN + 0.5) segments to the large model (pooled, or per
   direction), or a cost budget over one or more tiers; the plan is written atomically before
   any large call, and a rerun with the same inputs reuses it, so it makes the same choice;
3. the small model translates what stays small (fsynced per segment, resumed per segment);
4. the large calls, several at once, each result fsynced to the ledger as it arrives: a
   restart never pays for an answer it already has (only a call in flight at the kill is
   asked again). A failed call falls back to the small translation, flagged; the plan caps
   the calls, so the budget is never exceeded;
5. the output (one record per input segment, in input order) and the summary, each written
   atomically: no torn line whatever happens.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from routelmt.backends.base import Translator
from routelmt.backends.preflight import check_covers, check_reachable
from routelmt.backends.resolve import check_spec, make_translator, slug
from routelmt.batch.ledger import append_record, read_ledger
from routelmt.batch.plan import (
    BatchBudget,
    Plan,
    Tier,
    allocate,
    check_tiers,
    fingerprint,
    plan_summary,
)
from routelmt.batch.router import (
    check_router_fits,
    is_artifact,
    load_batch_router,
    router_identity,
    score_segments,
)
from routelmt.batch.shared import shares_prefill, translate_with_stage1
from routelmt.budget.allocation import as_scores
from routelmt.errors import ConfigError, InputError
from routelmt.records import Segment, write_records
from routelmt.redact import redact
from routelmt.resumable import read_partial_translations, translate_resumable
from routelmt.storage import check_output_path, write_json

log = logging.getLogger(__name__)


@dataclass
class BatchJob:
    """What to translate, with which models, router and budget, and where to write it."""

    segments: list[Segment]
    small: str
    tiers: list[Tier]
    router: str
    budget: BatchBudget
    output: Path
    work_dir: Path | None = None
    small_options: dict[str, Any] = field(default_factory=dict)
    large_options: dict[str, Any] = field(default_factory=dict)
    router_args: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 16
    large_concurrency: int = 4
    retry_failed: bool = False
    dataset: Any = None  # where recorded (replay) systems live
    pairs: list[str] | None = None

    @property
    def work(self) -> Path:
        return self.work_dir or self.output.with_name(self.output.name + ".work")

    @property
    def summary_path(self) -> Path:
        return self.output.with_name(self.output.stem + ".summary.json")


class BatchRun:
    """One job: its router and backends (built up front and checked), then the steps."""

    def __init__(self, job: BatchJob, make: Callable[..., Translator] = make_translator) -> None:
        if not job.segments:
            raise InputError("no segments to translate")
        if job.large_concurrency < 1 or job.batch_size < 1:
            raise ConfigError("--large-concurrency and --batch-size must be at least 1")
        check_tiers(job.tiers, job.budget)
        check_output_path(job.output)
        check_spec(job.small, "--small")
        for tier in job.tiers:
            check_spec(tier.spec, "--large")
        self.job = job
        named = None if is_artifact(job.router) else load_batch_router(job.router, job.router_args)
        check_router_fits(job.router, named, job.small)
        where = {"dataset": job.dataset, "pairs": job.pairs}
        self.small = make(job.small, **where, **job.small_options)
        self.larges = [make(t.spec, **where, **job.large_options) for t in job.tiers]
        check_covers(self.small, job.segments, "--small")
        check_reachable(self.small, "small")
        for tier, translator in zip(job.tiers, self.larges):
            check_reachable(translator, f"large ({tier.name})")
        self.router = named or load_batch_router(job.router)
        self.seconds: dict[str, float] = {"score": 0.0, "small": 0.0, "large": 0.0}

    def close(self) -> None:
        for translator in [self.small, *self.larges]:
            translator.close()

    # -- small ---------------------------------------------------------------------------
    @property
    def small_store(self) -> Path:
        return self.job.work / f"small-{slug(self.job.small)}.jsonl"

    def small_texts(self, wanted: list[Segment]) -> dict[str, str]:
        """Small translations of ``wanted`` (and of whatever the store already holds)."""
        path = self.small_store
        held = {t.segment_id for t in read_partial_translations(path)}
        ids = {s.id for s in wanted} | held
        segments = [s for s in self.job.segments if s.id in ids]
        began = time.perf_counter()
        result = translate_resumable(
            self.small, segments, path, batch_size=self.job.batch_size, source_hashes=True
        )
        self.seconds["small"] += time.perf_counter() - began
        return dict(zip((s.id for s in segments), result.texts, strict=True))

    # -- plan ----------------------------------------------------------------------------
    def plan(self) -> Plan:
        """The stored plan when it matches this job, else a new one written before any call."""
        job = self.job
        path = job.work / "plan.json"
        key = fingerprint(
            job.segments, job.small, job.router, router_identity(job.router, job.router_args),
            job.budget, job.tiers,
        )  # fmt: skip
        if path.is_file():
            stored = Plan.read(path)
            if stored.fingerprint == key:
                log.info("%s: reusing the plan (same segments, models, router and budget)", path)
                return stored
            if read_ledger(job.work / "large.jsonl"):
                raise ConfigError(
                    f"{job.work} holds a run with other segments, models, router or budget that "
                    "has already made large calls; write to another output or remove that folder"
                )
            log.info("%s: settings changed and no large call was made: planning again", path)
        plan = self._new_plan(key)
        plan.write(path)
        return plan

    def _new_plan(self, key: str) -> Plan:
        job = self.job
        began = time.perf_counter()
        segments = job.segments
        if shares_prefill(self.small, self.router):  # stage 1 from the decoding's own prefill
            # stage-1 scores belong to this router: a replan with another keeps none of them
            scores_path = job.work / f"stage1-{router_identity(job.router, job.router_args)}.jsonl"
            texts, stage1 = translate_with_stage1(
                self.small, self.router, segments, self.small_store, scores_path, job.batch_size
            )
            self.seconds["small"] += time.perf_counter() - began
            final = self.router.score_stage2(segments, texts, stage1)  # type: ignore[attr-defined]
            scores = as_scores(final, "stage-2 scores")
        else:

            def all_small() -> list[str]:
                texts = self.small_texts(segments)
                return [texts[s.id] for s in segments]

            scores, stage1 = score_segments(self.router, segments, all_small)
        self.seconds["score"] += time.perf_counter() - began - self.seconds["small"]
        chosen = allocate(scores, [s.direction for s in segments], job.budget, job.tiers)
        summary = plan_summary(
            segments, chosen, scores, job.budget, job.tiers, small_translates_all=stage1 is not None
        )
        summary |= {"router": job.router, "two_stage": stage1 is not None}
        return Plan(
            fingerprint=key,
            ids=[s.id for s in segments],
            tiers=[int(t) for t in chosen],
            scores=[float(v) for v in scores],
            stage1=None if stage1 is None else [float(v) for v in stage1],
            tier_names=[t.name for t in job.tiers],
            summary=summary,
        )

    # -- large ---------------------------------------------------------------------------
    def large_calls(self, plan: Plan) -> tuple[dict[str, dict[str, Any]], int]:
        """Every planned large call not in the ledger, ``large_concurrency`` at a time, each
        result made durable as it arrives. Returns (ledger, records found at the start)."""
        path = self.job.work / "large.jsonl"
        done = read_ledger(path)
        reused = len(done)
        retry = self.job.retry_failed
        todo = [
            (i, tier)
            for i, tier in enumerate(plan.tiers)
            if tier > 0 and (plan.ids[i] not in done or (retry and not done[plan.ids[i]]["ok"]))
        ]
        began = time.perf_counter()
        pool = ThreadPoolExecutor(self.job.large_concurrency, thread_name_prefix="large")
        try:
            with open(path, "a", encoding="utf-8") as handle:
                pending: set[Future[dict[str, Any]]] = {
                    pool.submit(self._call, self.job.segments[i], tier) for i, tier in todo
                }
                while pending:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished:
                        record = future.result()
                        append_record(handle, record)
                        done[record["segment_id"]] = record
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        self.seconds["large"] += time.perf_counter() - began
        return done, reused

    def _call(self, segment: Segment, tier: int) -> dict[str, Any]:
        spec, translator = self.job.tiers[tier - 1], self.larges[tier - 1]
        record: dict[str, Any] = {"segment_id": segment.id, "tier": spec.name}
        record["system"] = translator.name
        began = time.perf_counter()
        try:
            text = translator.translate([segment])[0]
            if not isinstance(text, str) or not text.strip():
                raise InputError(f"{translator.name} returned an empty translation")
            record |= {"ok": True, "text": text}
        except Exception as exc:  # any failure of the large model falls back to the small one
            log.warning("large call for %s failed, small fallback: %s", segment.id, exc)
            record |= {"ok": False, "text": None, "error": redact(str(exc))[:500]}
        record["seconds"] = round(time.perf_counter() - began, 4)
        return record

    # -- output --------------------------------------------------------------------------
    def output_records(
        self, plan: Plan, ledger: dict[str, dict[str, Any]], small: dict[str, str]
    ) -> list[dict[str, Any]]:
        rows = []
        for i, segment in enumerate(self.job.segments):
            row: dict[str, Any] = {"id": segment.id, "direction": segment.direction}
            call = ledger.get(segment.id) if plan.tiers[i] > 0 else None
            if call is not None and call["ok"]:
                row |= {"translation": call["text"], "tier": call["tier"], "model": call["system"]}
            else:
                row |= {"translation": small[segment.id], "tier": "small", "model": self.small.name}
            row["score"] = plan.scores[i]
            if plan.stage1 is not None:
                row["stage1_score"] = plan.stage1[i]
            row["fallback"] = call is not None and not call["ok"]
            if row["fallback"]:
                row |= {"planned_tier": call["tier"], "error": call.get("error")}  # type: ignore[index]
            rows.append(row)
        return rows


def run_batch(
    job: BatchJob,
    *,
    dry_run: bool = False,
    make: Callable[..., Translator] = make_translator,
) -> dict[str, Any]:
    """Run (or resume) a batch job; returns the summary (also written beside the output).
    ``dry_run`` plans and stops: no large call (a two-stage router still decodes the small
    model, which its second score reads)."""
    began = time.perf_counter()
    run = BatchRun(job, make)
    try:
        plan = run.plan()
        base = {"plan": str(job.work / "plan.json"), **plan.summary}
        if dry_run:
            return {"dry_run": True, **base, "seconds": _seconds(run, began)}
        stays_small = [s for s, t in zip(job.segments, plan.tiers) if t == 0]
        run.small_texts(stays_small)
        ledger, reused = run.large_calls(plan)
        failed = [s for s, t in zip(job.segments, plan.tiers) if t > 0 and not ledger[s.id]["ok"]]
        small = run.small_texts(stays_small + failed)
        rows = run.output_records(plan, ledger, small)
        write_records(job.output, rows)
        summary = {"output": str(job.output), **base}
        summary |= _spend(job, plan, ledger, reused)
        summary["seconds"] = _seconds(run, began)
        write_json(job.summary_path, summary)
        return summary
    finally:
        run.close()


def _spend(
    job: BatchJob, plan: Plan, ledger: dict[str, dict[str, Any]], reused: int
) -> dict[str, Any]:
    """What the large calls cost against what the budget allowed."""
    cost = {t.name: t.cost for t in job.tiers}
    calls = [ledger[plan.ids[i]] for i, t in enumerate(plan.tiers) if t > 0]
    answered = [c for c in calls if c["ok"]]
    spend = sum(cost[c["tier"]] for c in answered)
    allowed = plan.summary.get("allowed_large_calls")
    limit = job.budget.cost if job.budget.cost is not None else allowed * job.tiers[0].cost
    return {
        "large_answered": len(answered),
        "large_failed": len(calls) - len(answered),
        "large_reused_from_earlier_run": reused,
        "spend": round(spend, 6),
        "spend_limit": limit,
        "within_budget": bool(spend <= limit + 1e-9),
        "fallback_segments": [c["segment_id"] for c in calls if not c["ok"]][:20],
    }


def _seconds(run: BatchRun, began: float) -> dict[str, float]:
    out = {k: round(v, 3) for k, v in run.seconds.items()}
    out["total"] = round(time.perf_counter() - began, 3)
    return out
