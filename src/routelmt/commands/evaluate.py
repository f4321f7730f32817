"""``routelmt evaluate``: every router and baseline under every budget, with intervals,
breakdowns, a Markdown report and quality-budget curves."""

from __future__ import annotations

import argparse
import json
import logging
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
DEFAULT_BASELINES = "length,entropy"

log = logging.getLogger(__name__)


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
    parser.add_argument(
        "--folds",
        type=int,
        default=5,
        help="folds by source group for trainable routers (with --cv lodo: folds of the "
        "left-out direction when it shares sources with the others)",
    )
    parser.add_argument(
        "--cv",
        choices=("kfold", "lodo"),
        default="kfold",
        help="how trainable routers are scored out of sample: kfold (by source group, default) "
        "or lodo (leave one direction out: trained on every other direction, no shared source)",
    )
    parser.add_argument(
        "--baselines",
        default=None,
        help="comma-separated routers every other router is compared with, paired "
        f"(default: {DEFAULT_BASELINES}, those that are among --routers)",
    )
    parser.add_argument("--severe-delta", type=float, default=10.0, help="severe-loss threshold")
    parser.add_argument("--bootstrap", type=int, default=1000, help="resamples (0: no intervals)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    return parser


def _is_dir_router(name: str, dir_names: list[str]) -> bool:
    """An artifact's router is scored as ``<router>@<folder name>``."""
    return any(name.endswith(f"@{d}") for d in dir_names)


def run(args: argparse.Namespace) -> int:
    from routelmt.crossval import router_scores
    from routelmt.evaluation import evaluate_routers, write_report
    from routelmt.evaluation.report import summary, summary_table
    from routelmt.routers.artifacts import load_router
    from routelmt.routers.provenance import training_overlap

    budgets = parse_budgets(args.budgets)
    examples = load_examples(args)
    names = [n.strip() for n in args.routers.split(",") if n.strip()]
    router_args = parse_router_args(args.router_arg)
    unknown = sorted(set(router_args) - set(names))
    if unknown:
        raise ConfigError(f"--router-arg for {', '.join(unknown)}, which is not in --routers")
    baselines = [b.strip() for b in (args.baselines or DEFAULT_BASELINES).split(",") if b.strip()]
    dir_names = [f"{d.name}" for d in args.router_dir or []]
    if args.baselines is not None:
        missing = [b for b in baselines if b not in names and not _is_dir_router(b, dir_names)]
        if missing:
            raise ConfigError(
                f"--baselines names {', '.join(missing)}, which is not in --routers "
                f"({', '.join(names)})"
            )
    scores, seconds = router_scores(
        names, examples, folds=args.folds, seed=args.seed, router_args=router_args, cv=args.cv
    )
    overlaps = {}
    for directory in args.router_dir or []:
        router = load_router(directory)
        overlap = training_overlap(directory, examples)
        overlaps[str(directory)] = overlap.to_dict()
        if overlap.any:
            log.warning("%s", overlap.message())
        elif not overlap.recorded:
            log.warning("note: %s", overlap.message())
        else:
            log.info("%s", overlap.message())
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
        baselines=baselines,
        run_info={
            "command": "routelmt evaluate",
            "input": str(args.input) if args.input else None,
            "pairs": args.pairs if args.input is None else None,
            "cv": args.cv,
            "folds": args.folds,
            "router_args": router_args,
            "router_dirs": [str(d) for d in args.router_dir or []],
            "router_dir_overlap": overlaps,
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
