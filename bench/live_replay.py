"""The service's decision path on a replayed, labelled stream: online HC vs its router offline.

Reads a ``routelmt bench`` output folder (small translations, labels against a large system, the
out-of-fold scores of the prefill router and of the two-stage router), sends each direction's
segments through ``HybridTranslator`` and the service's pacers in several seeded arrival orders
and at several concurrency levels, and prints HC at the realised share against the offline top-k
of the same scores and against source length at the same k (paired group-bootstrap intervals),
and the first 100 requests' overspend. Logic: ``routelmt.serve.live_replay``.

    python bench/live_replay.py --run runs/in-model --large GPT-4 [--orders 5] \
        [--concurrency 1,8] [--arrival shuffled,documents] [--variant NAME:key=value,...] \
        [--prior other-directions] [-o OUT]
    python bench/live_replay.py --recorded Phi-3-Medium,GPT-4,Claude-3.5 --pairs en-uk,en-hi,en-is

``--recorded`` needs no model (recorded systems, model-free scores): for developing the decision
path on directions the reported figures do not use.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from routelmt.errors import RouteLMTError
from routelmt.serve.config import DEFAULTS
from routelmt.serve.live_replay import (
    format_rows,
    load_bench_run,
    parse_variant,
    recorded_streams,
    run_variants,
)

VARIANTS = (
    "before:rule=integral,prior=false,stage1_share=0.25",
    "warm start:rule=integral,prior=true,stage1_share=0.25",
    "+ quantile rule:rule=quantile,prior=true,stage1_share=0.25",
    "+ stage1_share 0.1:rule=quantile,prior=true,stage1_share=0.1",
    "+ stage1_share 0:rule=quantile,prior=true,stage1_share=0",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    source = ap.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="a routelmt bench output folder")
    source.add_argument(
        "--recorded",
        metavar="SMALL,LARGE,PSEUDO",
        help="no model: recorded WMT systems and model-free out-of-fold scores (needs --pairs)",
    )
    ap.add_argument("--data", default=None, help="with --recorded: the WMT folder")
    ap.add_argument("--large", default="GPT-4", help="the large system's folder name")
    ap.add_argument("--small", default=None, help="the small system's folder (default: found)")
    ap.add_argument("--router", default="routelmt-2stage", help="the final (stage-2) router")
    ap.add_argument("--stage1-router", default="routelmt", help="the prefill router")
    ap.add_argument("--pairs", default=None, help="comma-separated directions (default: all)")
    ap.add_argument("--orders", type=int, default=5, help="seeded arrival orders")
    ap.add_argument("--concurrency", default="1,8", help="comma-separated client counts")
    ap.add_argument("--arrival", default="shuffled", help="comma-separated: shuffled,documents")
    ap.add_argument("--limit", type=int, default=None, help="requests per order (default: all)")
    ap.add_argument(
        "--path",
        choices=("hybrid", "service"),
        default="hybrid",
        help="hybrid: HybridTranslator in micro-batches (deterministic); service: the "
        "TranslationService with concurrent clients (its batcher's timing)",
    )
    ap.add_argument("--share", type=float, default=0.3, help="the budget")
    ap.add_argument("--variant", action="append", help="NAME:key=value,... (budget keys)")
    ap.add_argument("--prior", default="other-directions", help="other-directions|artifact:P|none")
    ap.add_argument("--boot", type=int, default=1000, help="bootstrap resamples")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-o", "--output", default=None, help="write the rows as JSON here")
    return ap.parse_args(argv)


def load_streams(args: argparse.Namespace) -> dict:
    pairs = args.pairs.split(",") if args.pairs else None
    if args.recorded:
        systems = args.recorded.split(",")
        if len(systems) != 3 or not pairs:
            raise ValueError("--recorded needs SMALL,LARGE,PSEUDO and --pairs")
        return recorded_streams(pairs, *systems, data=args.data, seed=args.seed)
    return load_bench_run(
        args.run,
        args.large,
        router=args.router,
        stage1_router=args.stage1_router,
        small=args.small,
        pairs=pairs,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        streams = load_streams(args)
        base = {**DEFAULTS["budget"], "share": args.share}
        variants = dict(parse_variant(v, base) for v in (args.variant or VARIANTS))
        t0 = time.perf_counter()
        rows = run_variants(
            streams,
            variants,
            concurrency=[int(c) for c in args.concurrency.split(",")],
            arrivals=args.arrival.split(","),
            prior=args.prior,
            orders=args.orders,
            limit=args.limit,
            path=args.path,
            n_boot=args.boot,
            seed=args.seed,
        )
    except (RouteLMTError, ValueError, OSError) as exc:
        print(f"live_replay: error: {exc}", file=sys.stderr)
        return 2
    print(format_rows(rows))
    print(
        f"\n{len(streams)} directions x {args.orders} orders x arrivals {args.arrival}, "
        f"path {args.path}, prior {args.prior}, "
        f"{time.perf_counter() - t0:.0f} s"
    )
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            json.dump(rows, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
