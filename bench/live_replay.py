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

``--live-small`` runs the small model live in the service (``TranslationService`` built from a
serve config, ``--live-router`` scoring live, the large model replayed from the run) and labels
what it served afterwards with the run's metric; variants may set server keys too
(``batching=false``: one request at a time). Logic: ``routelmt.serve.live_model``.

    python bench/live_replay.py --run runs/in-model --large GPT-4 --live-small \
        llamacpp:gemma3-270m --pairs en-es --arrival documents --limit 300 --orders 2 \
        --concurrency 8 --variant "batched:batching=true" --variant "one at a time:batching=false"
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from routelmt.errors import RouteLMTError
from routelmt.serve.config import DEFAULTS
from routelmt.serve.live_model import (
    bench_metric,
    format_live_rows,
    parse_live_variant,
    run_live_variants,
)
from routelmt.serve.live_replay import (
    format_rows,
    load_bench_run,
    parse_value,
    parse_variant,
    recorded_streams,
    run_variants,
    summarise_variants,
)

VARIANTS = (
    "before:rule=integral,prior=false,stage1_share=0.25",
    "warm start:rule=integral,prior=true,stage1_share=0.25",
    "+ quantile rule:rule=quantile,prior=true,stage1_share=0.25",
    "+ stage1_share 0.1:rule=quantile,prior=true,stage1_share=0.1",
    "+ stage1_share 0:rule=quantile,prior=true,stage1_share=0",
)
LIVE_VARIANTS = ("batched:batching=true", "one at a time:batching=false")


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
    ap.add_argument(
        "--variant",
        action="append",
        help="NAME:key=value,... (budget keys; with --live-small also server keys, e.g. "
        "batching=false)",
    )
    ap.add_argument(
        "--prior",
        default="other-directions",
        help="other-directions|artifact:P|none (replayed scores; a live service reads its "
        "router artifact's)",
    )
    live = ap.add_argument_group("the small model live (with --run)")
    live.add_argument(
        "--live-small",
        metavar="SPEC",
        help="the small backend the service runs, e.g. llamacpp:gemma3-270m (always through "
        "TranslationService: --path and --prior do not apply; default variants: batched and one "
        "at a time)",
    )
    live.add_argument(
        "--live-router", default="shipped:routelmt-2stage", help="the service's router artifact"
    )
    live.add_argument(
        "--small-option", action="append", metavar="KEY=VALUE", help="a small backend option"
    )
    live.add_argument("--serve-config", default=None, help="a serve config under the settings")
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


def small_options(args: argparse.Namespace) -> dict:
    out = {}
    for item in args.small_option or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--small-option expects KEY=VALUE, got {item!r}")
        out[key.strip()] = parse_value(value)
    return out


def run(args: argparse.Namespace, streams: dict) -> tuple[list, str]:
    base = {**DEFAULTS["budget"], "share": args.share}
    common = {
        "concurrency": [int(c) for c in args.concurrency.split(",")],
        "arrivals": args.arrival.split(","),
        "orders": args.orders,
        "limit": args.limit,
        "n_boot": args.boot,
        "seed": args.seed,
    }
    if not args.live_small:
        variants = dict(parse_variant(v, base) for v in (args.variant or VARIANTS))
        rows = run_variants(streams, variants, prior=args.prior, path=args.path, **common)
        return rows, format_rows(rows) + "\n\n" + summarise_variants(rows)
    if not args.run:
        raise ValueError("--live-small needs --run (the bench run's labels and large outputs)")
    server = DEFAULTS["server"]
    variants = dict(parse_live_variant(v, base, server) for v in (args.variant or LIVE_VARIANTS))
    rows = run_live_variants(
        streams,
        variants,
        bench_metric(args.run, args.large, args.small),
        small=args.live_small,
        router=args.live_router,
        small_options=small_options(args),
        config=args.serve_config,
        **common,
    )
    return rows, format_live_rows(rows)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        streams = load_streams(args)
        t0 = time.perf_counter()
        rows, table = run(args, streams)
    except (RouteLMTError, ValueError, OSError) as exc:
        print(f"live_replay: error: {exc}", file=sys.stderr)
        return 2
    print(table)
    how = (
        f"live small {args.live_small}, router {args.live_router}"
        if args.live_small
        else (f"path {args.path}, prior {args.prior}")
    )
    print(
        f"\n{len(streams)} directions x {args.orders} orders x arrivals {args.arrival}, "
        f"{how}, {time.perf_counter() - t0:.0f} s"
    )
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            json.dump(rows, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
