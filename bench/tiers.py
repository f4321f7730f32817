"""More than two tiers on WMT24: one cost budget spread over three recorded larger systems.

Small = Phi-3-Medium; tiers = Llama3-70B, Mistral-Large, GPT-4 with relative extra costs
1, 2, 3 per request (illustrative prices, set with --costs). For each tier a router predicts the
gain over the small model (out-of-fold, 5-fold by source group). At equal spend we compare:

- multi-tier: ``budget.allocate_tiers`` on the predicted gains of every tier;
- best single tier: the same spend on one tier only (top-k by that tier's predicted gain), the
  best of the three chosen *after* seeing the results (a generous baseline);
- oracle multi-tier: ``allocate_tiers`` on the true gains (upper bound);
- online: ``budget.tiers.TierPacer`` (what the service runs) deciding one request at a time
  from the same predicted gains, over the segments in a shuffled order (seed 0), knowing
  nothing in advance: its price is learnt from the stream (first 50 requests: warm-up).

Prints realised hybrid chrF (mean over segments) and realised spend per request.

    python bench/tiers.py                       # routelmt probe on 200 segments per pair
    python bench/tiers.py --router length       # any registered router
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from routelmt.budget import allocate_tiers, rank_order
from routelmt.budget.tiers import TierPacer, TierSpec
from routelmt.crossval import router_scores
from routelmt.labels import wmt_labels

TIERS = ("Llama3-70B", "Mistral-Large", "GPT-4")


def online(predicted: np.ndarray, costs: np.ndarray, spend: float) -> np.ndarray:
    """The service's allocation: one request at a time, in a shuffled order."""
    specs = [TierSpec(name, float(c)) for name, c in zip(TIERS, costs, strict=True)]
    pacer = TierPacer(specs, spend / float(costs.max()), warmup=50)
    tier = np.zeros(len(predicted), dtype=int)
    for i in np.random.default_rng(0).permutation(len(predicted)):
        tier[i] = pacer.decide_gains(predicted[i]).tier
    return tier


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", default="all")
    parser.add_argument("--limit", type=int, default=200, help="segments per pair (0: all)")
    parser.add_argument("--small", default="Phi-3-Medium")
    parser.add_argument("--router", default="routelmt")
    parser.add_argument("--costs", default="1,2,3", help="extra cost per request of each tier")
    parser.add_argument("--spend", default="0.3,0.6,0.9,1.5", help="budgets, cost per request")
    args = parser.parse_args()
    costs = np.array([float(c) for c in args.costs.split(",")])
    started = time.perf_counter()

    per_tier = [
        wmt_labels(pairs=args.pairs, small=args.small, large=large, limit=args.limit or None)
        for large in TIERS
    ]
    ids = [ex.id for ex in per_tier[0]]
    assert all([ex.id for ex in labels] == ids for labels in per_tier)
    q_small = np.array([ex.q_small for ex in per_tier[0]])
    true_gain = np.stack([[ex.gain for ex in labels] for labels in per_tier], axis=1)
    predicted = np.stack(
        [router_scores([args.router], labels)[0][args.router] for labels in per_tier], axis=1
    )
    n = len(ids)
    print(f"n = {n} segments ({args.pairs}, limit {args.limit}); small = {args.small}")
    print(f"tiers: {', '.join(f'{t} (cost {c:g})' for t, c in zip(TIERS, costs))}")
    print(f"mean chrF: small-only {q_small.mean():.2f}, ", end="")
    print(
        ", ".join(
            f"{t}-only {q_small.mean() + true_gain[:, j].mean():.2f}" for j, t in enumerate(TIERS)
        )
    )
    print(f"router: {args.router} (out-of-fold predicted gain per tier)\n")

    def realised(tier: np.ndarray) -> tuple[float, float]:
        gain = np.where(tier > 0, true_gain[np.arange(n), np.maximum(tier - 1, 0)], 0.0)
        spend = np.where(tier > 0, costs[np.maximum(tier - 1, 0)], 0.0)
        return float((q_small + gain).mean()), float(spend.mean())

    head = f"{'spend/req':>9} {'policy':<32}{'hybrid chrF':>12}{'spent/req':>10}  tier counts"
    print(head)
    print("-" * len(head))
    for spend in (float(s) for s in args.spend.split(",")):
        budget = spend * n
        rows = []
        multi = allocate_tiers(predicted, costs, budget)
        rows.append(("multi-tier (predicted)", multi.tier))
        best: tuple[float, str, np.ndarray] | None = None
        for j, name in enumerate(TIERS):
            k = min(n, int(budget // costs[j]))
            tier = np.zeros(n, dtype=int)
            tier[rank_order(predicted[:, j])[:k]] = j + 1  # the library's tie rule
            quality, _ = realised(tier)
            if best is None or quality > best[0]:
                best = (quality, name, tier)
        assert best is not None
        rows.append((f"best single tier ({best[1]})", best[2]))
        rows.append(("oracle multi-tier", allocate_tiers(true_gain, costs, budget).tier))
        rows.append(("online TierPacer (predicted)", online(predicted, costs, spend)))
        for label, tier in rows:
            quality, spent = realised(tier)
            counts = np.bincount(tier, minlength=len(TIERS) + 1).tolist()
            print(f"{spend:>9.2f} {label:<32}{quality:>12.2f}{spent:>10.2f}  {counts}")
        print()
    print(f"total {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
