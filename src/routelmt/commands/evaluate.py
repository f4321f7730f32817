"""``routelmt evaluate``: every router and baseline under every budget, with intervals,
breakdowns, a Markdown report and quality-budget curves."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from routelmt.commands._common import (
    add_label_args,
    load_examples,
    parse_budgets,
    parse_router_args,
)
from routelmt.errors import ConfigError
from routelmt.records import write_records

DEFAULT_ROUTERS = "gain-oracle,quality-oracle,random,length"


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "evaluate",
        help="evaluate routers: Spearman, HitRate, MeanDelta, hybrid quality, APGR, CPT, ...",
        description="Evaluate routers on gain labels: Spearman, HitRate@p, MeanDelta@p, hybrid "
        "quality, severe loss, APGR and CPT per budget "
        "with 95%% group-bootstrap intervals, per-direction and per-domain breakdowns, "
        "quality-budget curves. Writes metrics.json, report.md, curves.png and scores.jsonl.",
    )
    add_label_args(parser)
    parser.add_argument(
        "--routers", default=DEFAULT_ROUTERS, help=f"comma-separated (default: {DEFAULT_ROUTERS})"
    )
    parser.add_argument(
        "--router-arg",
        action="append",
        metavar="ROUTER.KEY=VALUE",
        help="router setting, e.g. routelmt.layer=9 or routelmt.pooling=mean (repeatable)",
    )
    parser.add_argument(
        "--router-dir",
        action="append",
        type=Path,
        metavar="DIR",
        help="a trained router artifact (from `routelmt train`), scored as is (repeatable)",
    )
    parser.add_argument("--budgets", default="0.1,0.2,0.3,0.4,0.5", help="comma-separated shares")
    parser.add_argument("--folds", type=int, default=5, help="k-fold CV for trainable routers")
    parser.add_argument("--severe-delta", type=float, default=10.0, help="severe-loss threshold")
    parser.add_argument("--bootstrap", type=int, default=1000, help="resamples (0: no intervals)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    return parser


def run(args: argparse.Namespace) -> int:
    from routelmt.crossval import router_scores
    from routelmt.evaluation import evaluate_routers, write_report
    from routelmt.evaluation.report import summary, summary_table
    from routelmt.routers.artifacts import load_router

    budgets = parse_budgets(args.budgets)
    examples = load_examples(args)
    names = [n.strip() for n in args.routers.split(",") if n.strip()]
    router_args = parse_router_args(args.router_arg)
    unknown = sorted(set(router_args) - set(names))
    if unknown:
        raise ConfigError(f"--router-arg for {', '.join(unknown)}, which is not in --routers")
    scores, seconds = router_scores(
        names, examples, folds=args.folds, seed=args.seed, router_args=router_args
    )
    for directory in args.router_dir or []:
        router = load_router(directory)
        started = time.perf_counter()
        router.prepare(examples)
        name = f"{router.name}@{directory.name}"
        scores[name] = np.asarray(router.score(examples), dtype=float)
        seconds[name] = time.perf_counter() - started
    result = evaluate_routers(
        examples,
        scores,
        budgets,
        severe_delta=args.severe_delta,
        n_boot=args.bootstrap,
        seed=args.seed,
        run_info={
            "command": "routelmt evaluate",
            "input": str(args.input) if args.input else None,
            "pairs": args.pairs if args.input is None else None,
            "folds": args.folds,
            "router_args": router_args,
            "router_dirs": [str(d) for d in args.router_dir or []],
            "router_seconds": seconds,
        },
    )
    paths = write_report(result, args.output)
    write_records(
        args.output / "scores.jsonl",
        (
            {"id": ex.id, "direction": ex.segment.direction, "gain": ex.gain}
            | {name: float(values[i]) for name, values in scores.items()}
            for i, ex in enumerate(examples)
        ),
    )
    if args.json:
        print(json.dumps(summary(result), indent=2))
    else:
        print(summary_table(result))
    written = [str(p) for p in paths.values()] + [str(args.output / "scores.jsonl")]
    print("wrote " + ", ".join(written))
    return 0
