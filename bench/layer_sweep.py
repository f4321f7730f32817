"""Layer sweep of the RouteLMT probe: Spearman and HitRate@p per layer, pooled and per direction.

Out-of-fold scores (5-fold by source group) of a probe fixed to each layer, on WMT24 labels
(small Phi-3-Medium, large GPT-4, chrF) with Gemma-3-270M features (cached on disk after the
first pass). "macro" averages the per-direction values, as the paper averages its directions;
"pooled" ranks all pairs together, where knowing which direction gains most already helps.

    python bench/layer_sweep.py --limit 200                  # last-token pooling
    python bench/layer_sweep.py --limit 100 --pooling mean   # mean pooling
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import numpy as np

from routelmt.crossval import out_of_fold_scores
from routelmt.evaluation.ranking import hit_rate, spearman
from routelmt.labels import wmt_labels
from routelmt.routers.inmodel import RouteLMTRouter, feature_source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", default="all")
    parser.add_argument("--limit", type=int, default=200, help="segments per pair (0: all)")
    parser.add_argument("--pooling", default="last", choices=["last", "mean"])
    parser.add_argument("--budget", type=float, default=0.3)
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()
    started = time.perf_counter()
    examples = wmt_labels(pairs=args.pairs, limit=args.limit or None)
    gains = np.array([ex.gain for ex in examples])
    by_direction: dict[str, list[int]] = defaultdict(list)
    for i, ex in enumerate(examples):
        by_direction[ex.segment.direction].append(i)
    source = feature_source(pooling=args.pooling)
    source.ensure(examples)
    print(
        f"n = {len(examples)} ({args.pairs}, limit {args.limit}), pooling {args.pooling}, ", end=""
    )
    seconds = time.perf_counter() - started
    print(f"p = {args.budget}, {args.folds}-fold by source group; features {seconds:.0f}s")
    head = f"{'layer':>5}{'Spearman':>10}{'HitRate':>9}{'macro Spearman':>16}{'macro HitRate':>15}"
    print(head)
    print("-" * len(head))
    for layer in range(source.num_layers + 1):
        scores = out_of_fold_scores(
            lambda layer=layer: RouteLMTRouter(layer=layer, pooling=args.pooling, source=source),
            examples,
            folds=args.folds,
        )
        macro_s = np.mean([spearman(scores[i], gains[i]) for i in by_direction.values()])
        macro_h = np.mean(
            [hit_rate(scores[i], gains[i], args.budget) for i in by_direction.values()]
        )
        pooled_s, pooled_h = spearman(scores, gains), hit_rate(scores, gains, args.budget)
        print(f"{layer:>5}{pooled_s:>10.3f}{pooled_h:>9.2f}{macro_s:>16.3f}{macro_h:>15.2f}")
    print(f"total {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
