"""The bench's guard stages (``guards.gain_router`` set): ``qe/<small>`` scores every small
translation with the reference-free QE scorer and times one QE pass and one small decode;
``guards/<large>`` runs ``evaluation.guards.evaluate_guards`` on the stored out-of-fold router
scores and writes ``guards.json`` and ``guards.md`` (the table)."""

from __future__ import annotations

import functools
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from routelmt.backends.resolve import slug
from routelmt.pipeline.context import Bench
from routelmt.pipeline.stages import STAGE_FILE
from routelmt.storage import atomic_open, read_json, write_json

log = logging.getLogger(__name__)


def _time_per_item(work: Any, items: list[Any]) -> float:
    work(items[:1])  # load the model or encoder once
    started = time.perf_counter()
    work(items)
    return (time.perf_counter() - started) / len(items)


def _qe(bench: Bench, directory: Path) -> dict[str, Any]:
    from routelmt.labels import score_pairs
    from routelmt.metrics.base import get_metric

    cfg, small = bench.config["guards"], bench.config["small"]
    texts = bench.texts[small]
    values = score_pairs(get_metric(cfg["qe"]), bench.segments, texts)
    write_json(directory / "scores.json", {"ids": [s.id for s in bench.segments], "scores": values})
    k = min(cfg["timing_sample"], len(bench.segments))
    info: dict[str, Any] = {"qe": cfg["qe"], "timed": k}
    if k == 0:
        return info
    picked = [int(i) for i in np.random.default_rng(0).choice(len(bench.segments), k, False)]
    sample = [bench.segments[i] for i in picked]
    try:
        fresh = get_metric(cfg["qe"], use_cache=False)  # time the work, not the cache
    except Exception:  # a scorer without a cache option
        fresh = get_metric(cfg["qe"])
    hyps = {s.id: texts[i] for s, i in zip(sample, picked, strict=True)}
    info["qe_seconds"] = _time_per_item(
        lambda segs: score_pairs(fresh, segs, [hyps[s.id] for s in segs]), sample
    )
    translator = bench.make(
        small, dataset=bench.dataset, pairs=bench.pairs, **bench.config["small_options"]
    )
    try:
        info["small_decode_seconds"] = _time_per_item(translator.translate, sample)
    finally:
        translator.close()
    return info


def qe_stage(bench: Bench) -> str | None:
    """QE of every small translation (the quality-hypo guard's score); None when off."""
    cfg, small = bench.config["guards"], bench.config["small"]
    if not cfg["gain_router"] or not cfg["qe"]:
        return None
    name = f"qe/{slug(small)}"
    settings = {"qe": cfg["qe"], "timing_sample": cfg["timing_sample"]}
    depends = ["data", f"translate/{slug(small)}"]
    bench.runner.run(name, settings, depends, ["scores.json"], functools.partial(_qe, bench))
    return name


def _head_seconds(dim: int = 640, rows: int = 1000, repeats: int = 20) -> float:
    """Measured seconds of the quality-predict guard per request: one linear head over a
    prefill feature row already in memory (Gemma-3-270M's hidden size by default)."""
    rng = np.random.default_rng(0)
    X, w = rng.standard_normal((rows, dim)), rng.standard_normal(dim)
    started = time.perf_counter()
    for _ in range(repeats):
        X @ w
    return (time.perf_counter() - started) / (rows * repeats)


def _guards(
    bench: Bench, large: str, scores: dict[str, list[float]], qe: str | None, directory: Path
) -> dict[str, Any]:
    from routelmt.evaluation.guards import evaluate_guards, format_guard_table

    cfg, evaluation = bench.config["guards"], bench.evaluation
    seconds: dict[str, float] = {}
    qe_scores = None
    if qe is not None:
        qe_scores = read_json(bench.output / qe / "scores.json")["scores"]
        info = read_json(bench.output / qe / STAGE_FILE).get("info", {})
        seconds["quality-hypo"] = info.get("qe_seconds", 0.0)
        seconds["small_decode"] = info.get("small_decode_seconds", 0.0)
    predicted = None
    quality = cfg["quality_router"]
    if quality in scores:  # quality routers score -(predicted q_small)
        predicted = -np.asarray(scores[quality], dtype=float)
        seconds["quality-predict"] = _head_seconds()
    result = evaluate_guards(
        bench.examples_for(large),
        scores[cfg["gain_router"]],
        predicted,
        qe_scores,
        p=float(cfg["p"]),
        folds=evaluation["folds"],
        seed=evaluation["seed"],
        quantile=float(cfg["quantile"]),
        max_drop=float(cfg["max_drop"]),
        severe_delta=float(evaluation["severe_delta"]),
        n_boot=max(evaluation["bootstrap"], 1),
        seconds=seconds,
    )
    result |= {"gain_router": cfg["gain_router"], "quality_router": quality, "qe": cfg["qe"]}
    result |= {"small": bench.config["small"], "large": large}
    write_json(directory / "guards.json", result)
    with atomic_open(directory / "guards.md") as handle:
        handle.write(format_guard_table(result) + "\n")
    return {"n": result["n"]}


def guard_stage(bench: Bench, large: str, qe: str | None) -> dict[str, Any] | None:
    """The guard table against one large system (None when off or its router was left out)."""
    cfg, evaluation = bench.config["guards"], bench.evaluation
    gain, quality = cfg["gain_router"], cfg["quality_router"]
    if not gain:
        return None
    scores, depends = {}, []
    for router in (gain, quality):
        stage = f"routers/{slug(large)}/{router}"
        if router and stage in bench.runner.hashes:  # its router stage ran (or was cached)
            scores[router] = read_json(bench.output / stage / "scores.json")["scores"]
            depends.append(stage)
    if gain not in scores:
        log.warning("guards left out: router %s has no scores in this run", gain)
        return None
    if qe is not None:
        depends.append(qe)
    name = f"guards/{slug(large)}"
    settings = {k: cfg[k] for k in ("gain_router", "quality_router", "qe", "p", "quantile")}
    settings |= {"max_drop": cfg["max_drop"], "severe_delta": evaluation["severe_delta"]}
    settings |= {k: evaluation[k] for k in ("folds", "seed", "bootstrap")}
    work = functools.partial(_guards, bench, large, scores, qe)
    bench.runner.run(name, settings, depends, ["guards.json", "guards.md"], work)
    return read_json(bench.output / name / "guards.json")
