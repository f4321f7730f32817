"""``routelmt evaluate``: every router and baseline under every budget, with intervals,
breakdowns, a Markdown report and quality-budget curves."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from routelmt.commands._common import add_label_args, load_examples, parse_budgets
from routelmt.records import write_records

DEFAULT_ROUTERS = "gain-oracle,quality-oracle,random,length"


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "evaluate",
        help="evaluate routers: Spearman, HitRate, MeanDelta, hybrid quality, APGR, CPT, ...",
        description="Evaluate routers on gain labels (method.md section 4): metrics per budget "
        "with 95%% group-bootstrap intervals, per-direction and per-domain breakdowns, "
        "quality-budget curves. Writes metrics.json, report.md, curves.png and scores.jsonl.",
    )
    add_label_args(parser)
    parser.add_argument(
        "--routers", default=DEFAULT_ROUTERS, help=f"comma-separated (default: {DEFAULT_ROUTERS})"
    )
    parser.add_argument("--budgets", default="0.1,0.2,0.3,0.4,0.5", help="comma-separated shares")
    parser.add_argument("--folds", type=int, default=5, help="k-fold CV for trainable routers")
    parser.add_argument("--severe-delta", type=float, default=10.0, help="severe-loss threshold")
    parser.add_argument("--bootstrap", type=int, default=1000, help="resamples (0: no intervals)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    return parser


def run(args: argparse.Namespace) -> int:
    from routelmt.crossval import router_scores
    from routelmt.evaluation import evaluate_routers, write_report

    budgets = parse_budgets(args.budgets)
    examples = load_examples(args)
    names = [n.strip() for n in args.routers.split(",") if n.strip()]
    scores, seconds = router_scores(names, examples, folds=args.folds, seed=args.seed)
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
    print(json.dumps(_summary(result, budgets), indent=2))
    print(f"wrote {', '.join(str(p) for p in paths)} and {args.output / 'scores.jsonl'}")
    return 0


def _summary(result: dict, budgets: list[float]) -> dict:
    """The headline numbers per router at each budget, for the terminal."""
    out: dict = {"n": result["n"], "metric": result["metric"], "routers": {}}
    for name, router in result["routers"].items():
        row = {"spearman": router["spearman"]["value"], "apgr": router["apgr"]["value"]}
        for key, cell in router["budgets"].items():
            row[f"p={key}"] = {
                metric: cell[metric]["value"]
                for metric in ("hit_rate", "mean_delta", "hybrid_quality", "severe_loss")
            }
        out["routers"][name] = row
    return out
