"""Does the pacer hold the budget when it starts blind on a drifting stream?

    python bench/pacer_tracking.py --pair en-de --requests 300,1000 --gains 0.1,0.05,0.03,0.02

The service's budget section (its defaults, or ``--set key=value`` over them) decides the WMT24
sources of one direction in document order, scored by source length in words (the ``length``
router: no shipped score distribution, so no prior; long and short documents follow each other,
so the score distribution drifts). Prints the realised share over the first N requests for each
gain: how far from the budget a blind start ends when the threshold must learn the traffic. The
pacer's gain under a lead limit is chosen with it (docs/benchmarks.md section 14f).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from routelmt.budget.pacer import Pacer
from routelmt.budget.plan import BudgetPlan
from routelmt.datasets.wmt import WMTDataset
from routelmt.errors import RouteLMTError
from routelmt.serve.config import DEFAULTS
from routelmt.serve.live_replay import parse_variant


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pair", default="en-de")
    parser.add_argument("--requests", default="300,1000", help="stream lengths, comma-separated")
    parser.add_argument("--gains", default="0.1,0.05,0.03,0.02")
    parser.add_argument("--set", default="", help="budget keys over the defaults: key=value,...")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/wmt24"))
    args = parser.parse_args(argv)
    budget = dict(DEFAULTS["budget"])
    if args.set:  # an unknown key is an error naming it
        try:
            budget = parse_variant(f"set:{args.set}", budget)[1]
        except RouteLMTError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    sources = [s.source for s in WMTDataset(args.data).segments(args.pair, reference=None)]
    scores = np.asarray([len(text.split()) for text in sources], dtype=float)
    print(f"{args.pair}: {len(scores)} sources in document order, score = words, no prior")
    print(
        f"budget: share {budget['share']}, max_lead {budget['max_lead']}, "
        f"lead_horizon {budget['lead_horizon']}, rule {budget['rule']}"
    )
    lengths = [min(n, len(scores)) for n in _ints(args.requests)]
    print("| gain | " + " | ".join(f"share, first {n}" for n in lengths) + " |")
    print("|---|" + "---|" * len(lengths))
    for gain in (float(g) for g in args.gains.split(",")):
        plan = BudgetPlan.from_settings({**budget, "gain": gain})
        pacer = Pacer(plan.spec, **plan.options())
        large = np.asarray([pacer.decide(float(s)).large for s in scores])
        cells = [f"{large[:n].mean():.3f}" for n in lengths]
        print(f"| {gain} | " + " | ".join(cells) + " |")
    print(f"load avg {os.getloadavg()[0]:.1f}")
    return 0


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


if __name__ == "__main__":
    raise SystemExit(main())
