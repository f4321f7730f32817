"""The hybrid batch command (``routelmt translate --small --large --budget``) against the bench
evaluator, on recorded WMT24 systems: does it pick the same segments at the same budget, hit the
exact share, and reproduce the evaluator's hybrid chrF?

Both sides get the same router scores: the batch scores the segments itself (``routelmt.batch``)
and this script scores the labelled examples independently with the same router (a model-free
one, or an artifact), then checks the two score vectors agree. Both break ties in scores by the
library's seeded permutation; the table counts the segments tied at the k-th score, where the
rule decides.

    python bench/batch_vs_evaluator.py --pairs en-es,en-de,en-zh --router length
    python bench/batch_vs_evaluator.py --router shipped:routelmt --small runs/in-model/...jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from routelmt.batch import BatchBudget, BatchJob, Tier, run_batch
from routelmt.batch.plan import evaluation_tie_keys
from routelmt.batch.router import load_batch_router
from routelmt.budget.allocation import budget_count, top_share_mask
from routelmt.datasets.wmt import WMTDataset
from routelmt.evaluation import evaluate_routers
from routelmt.labels import score_pairs, wmt_labels
from routelmt.metrics.base import get_metric


def evaluator_selection(scores: np.ndarray, idx: np.ndarray, keys: np.ndarray, p: float) -> set:
    """The positions the evaluator routes within ``idx`` (its k rule and tie keys)."""
    return set(idx[top_share_mask(scores[idx], p, keys[idx])].tolist())


def boundary_ties(scores: np.ndarray, idx: np.ndarray, p: float) -> int:
    """Segments whose score equals the k-th highest (where the two tie rules can differ)."""
    k = int(budget_count(idx.size, p))
    kth = np.sort(scores[idx])[::-1][k - 1]
    return int((scores[idx] == kth).sum()) if k else 0


def compare(args: argparse.Namespace) -> dict:
    dataset = WMTDataset(args.wmt_root)
    pairs = args.pairs.split(",")
    examples = wmt_labels(
        pairs=pairs, small=args.small, large=args.large, root=args.wmt_root, limit=args.limit
    )
    segments = [ex.segment for ex in examples]
    router = load_batch_router(args.router)
    bench_scores = np.asarray(router.score(examples), dtype=float)  # the evaluator's side
    result = evaluate_routers(examples, {"router": bench_scores}, [args.budget], n_boot=0)
    keys = evaluation_tie_keys(len(examples))  # the evaluator's own tie keys
    directions = np.array([s.direction for s in segments])
    metric = get_metric("chrf")
    rows = {}
    for per_direction in (False, True):
        mode = "per-direction" if per_direction else "pooled"
        job = BatchJob(
            segments=segments,
            small=args.small,
            tiers=[Tier("large", args.large)],
            router=args.router,
            budget=BatchBudget(share=args.budget, per_direction=per_direction),
            output=Path(args.output) / f"hybrid-{mode}.jsonl",
            dataset=dataset,
            pairs=pairs,
        )
        began = time.perf_counter()
        summary = run_batch(job)
        seconds = time.perf_counter() - began
        out = [json.loads(line) for line in job.output.read_text(encoding="utf-8").splitlines()]
        plan = json.loads(Path(summary["plan"]).read_text(encoding="utf-8"))
        batch_scores = np.asarray(plan["scores"])
        quality = np.asarray(score_pairs(metric, segments, [r["translation"] for r in out]))
        routed = {i for i, r in enumerate(out) if r["tier"] != "small"}
        groups = [(d, np.flatnonzero(directions == d)) for d in pairs] if per_direction else []
        groups = groups or [("all", np.arange(len(segments)))]
        for name, idx in groups:
            block = result if name == "all" else result["breakdowns"]["direction"][name]
            value = block["routers"]["router"]["budgets"][format(args.budget, "g")]
            want = evaluator_selection(bench_scores, idx, keys, args.budget)
            mine = routed & set(idx.tolist())
            rows[f"{mode} {name}"] = {
                "n": int(idx.size),
                "k": int(value["k"]),
                "batch_large": len(mine),
                "batch_share": round(len(mine) / idx.size, 4),
                "batch_chrf": round(float(quality[idx].mean()), 4),
                "evaluator_chrf": round(float(value["hybrid_quality"]["value"]), 4),
                "segments_differing": len(mine ^ want),
                "ties_at_kth_score": boundary_ties(bench_scores, idx, args.budget),
                "max_score_diff": float(np.abs(batch_scores[idx] - bench_scores[idx]).max()),
            }
        rows[f"{mode} {groups[0][0]}"]["seconds"] = round(seconds, 3)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", default="en-es,en-de,en-zh")
    parser.add_argument("--small", default="Phi-3-Medium", help="small system spec (replay)")
    parser.add_argument("--large", default="GPT-4", help="large system spec (replay)")
    parser.add_argument("--router", default="length", help="model-free router or artifact")
    parser.add_argument("--budget", type=float, default=0.3)
    parser.add_argument("--limit", type=int, help="first N segments of each pair")
    parser.add_argument("--wmt-root", type=Path)
    parser.add_argument("-o", "--output", default="runs/owndata/batch_vs_evaluator")
    args = parser.parse_args()
    rows = compare(args)
    head = ["n", "k", "batch_large", "batch_share", "batch_chrf", "evaluator_chrf"]
    head += ["segments_differing", "ties_at_kth_score", "max_score_diff"]
    print(f"router {args.router}, small {args.small}, large {args.large}, p = {args.budget}")
    print("| routing | " + " | ".join(head) + " |")
    print("|---" * (len(head) + 1) + "|")
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(str(row[h]) for h in head) + " |")
    print(json.dumps({k: r.get("seconds") for k, r in rows.items() if "seconds" in r}))


if __name__ == "__main__":
    main()
