"""``routelmt data``: build the gain-labelled JSONL for WMT pairs, or for your own segments
(``-i my.jsonl``) with live small and large models (``routelmt.own_labels``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from routelmt.commands._common import _coerce, add_label_args, load_examples, parse_kv
from routelmt.errors import ConfigError
from routelmt.records import ScoredExample, write_records


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "data",
        help="build gain labels (both translations, both qualities, gain)",
        description="Translate (or replay) every segment with the small and the large system, "
        "score both (against the reference, or without one: --label), and write one labelled "
        "JSON record per segment. With -i, your own segments (JSONL/TSV/txt) and live "
        "--small/--large; the large calls and their cost are printed before the first one, "
        "and a rerun resumes per segment.",
    )
    add_label_args(
        parser, input_help="your segments: .jsonl (id, direction, source[, reference]), .tsv, .txt"
    )
    parser.add_argument(
        "-o", "--output", type=Path, help="labelled JSONL to write (required unless --list)"
    )
    parser.add_argument("--list", action="store_true", help="list pairs and systems, then exit")
    own = parser.add_argument_group("your own segments (-i)")
    own.add_argument("--direction", help="direction for rows without one, e.g. en-es")
    own.add_argument("--sample", type=int, help="label N segments, stratified by direction")
    own.add_argument("--seed", type=int, default=0, help="the sample's seed")
    own.add_argument(
        "--label",
        help="reference (metric vs the reference), pseudo-reference (the large output as the "
        "reference), or a reference-free metric (qe-embed, cometkiwi); default: reference "
        "when every segment has one, else pseudo-reference",
    )
    own.add_argument("--max-large-calls", type=int, help="refuse to make more large calls")
    own.add_argument("--large-cost", type=float, default=1.0, help="cost per large call")
    own.add_argument("--small-arg", action="append", metavar="KEY=VALUE", help="small option")
    own.add_argument("--large-arg", action="append", metavar="KEY=VALUE", help="large option")
    own.add_argument("--batch-size", type=int, default=8, help="segments per backend call")
    own.add_argument("--dry-run", action="store_true", help="print the calls and cost, then exit")
    own.add_argument(
        "--work-dir", type=Path, help="translations kept for resuming (default: <output>.work)"
    )
    return parser


def run(args: argparse.Namespace) -> int:
    if args.list:
        from routelmt.datasets.wmt import WMTDataset

        dataset = WMTDataset(args.wmt_root)
        listing = {pair: dataset.valid_systems(pair) for pair in dataset.pairs()}
        json.dump(listing, sys.stdout, indent=2)
        print()
        return 0
    if args.output is None:
        raise ConfigError("routelmt data needs -o/--output (or --list to see pairs and systems)")
    if args.input is not None:
        return run_own(args)
    examples = load_examples(args)
    write_records(args.output, examples)
    print(json.dumps(_summary(args.output, examples), indent=2))
    return 0


def _summary(output: Path, examples: list[ScoredExample]) -> dict[str, object]:
    gains = np.array([e.gain for e in examples])
    return {
        "output": str(output),
        "n": len(examples),
        "metric": examples[0].metric,
        "small": examples[0].small_system,
        "large": examples[0].large_system,
        "mean_q_small": round(float(np.mean([e.q_small for e in examples])), 4),
        "mean_q_large": round(float(np.mean([e.q_large for e in examples])), 4),
        "mean_gain": round(float(gains.mean()), 4),
        "share_negative_gain": round(float((gains < 0).mean()), 4),
    }


def _options(items: list[str] | None, flag: str) -> dict[str, object]:
    return {key: _coerce(value) for key, value in parse_kv(items, flag).items()}


def run_own(args: argparse.Namespace) -> int:
    """Label your own segments: the plan (and its cost) first, on stderr, then the calls."""
    from routelmt.datasets.plain import load_segments
    from routelmt.own_labels import plan_labels, run_labels
    from routelmt.storage import check_output_path

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    check_output_path(args.output)
    segments = load_segments(args.input, direction=args.direction)
    plan = plan_labels(
        segments,
        small=args.small,
        large=args.large,
        work=args.work_dir or args.output.with_name(args.output.name + ".work"),
        label=args.label,
        metric=args.metric,
        metric_args=parse_kv(args.metric_arg, "--metric-arg"),
        sample=args.sample,
        seed=args.seed,
        max_large_calls=args.max_large_calls,
        large_cost=args.large_cost,
        small_options=_options(args.small_arg, "--small-arg"),
        large_options=_options(args.large_arg, "--large-arg"),
    )
    try:
        directions: dict[str, int] = {}
        for segment in plan.segments:
            directions[segment.direction] = directions.get(segment.direction, 0) + 1
        costs = {
            "segments": len(plan.segments),
            "by_direction": directions,
            "label": plan.label,
            "large_calls": plan.large_calls_new,
            "large_calls_already_made": plan.large_calls_done,
            "estimated_cost": round(plan.estimated_cost, 6),
        }
        print(f"routelmt data: before any large call: {json.dumps(costs)}", file=sys.stderr)
        if args.dry_run:
            print(json.dumps({"dry_run": True, **costs}, indent=2))
            return 0
        examples = run_labels(plan, batch_size=args.batch_size)
    finally:
        plan.close()
    write_records(args.output, examples)
    print(json.dumps({**_summary(args.output, examples), "label": plan.label}, indent=2))
    return 0
