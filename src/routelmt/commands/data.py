"""``routelmt data``: build the gain-labelled JSONL for pairs, a small and a large system."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from routelmt.commands._common import add_label_args, load_examples
from routelmt.errors import ConfigError
from routelmt.records import write_records


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "data",
        help="build gain labels (both translations, both qualities, gain)",
        description="Translate (or replay) every segment with the small and the large system, "
        "score both against the reference, and write one labelled JSON record per segment.",
    )
    add_label_args(parser)
    parser.add_argument(
        "-o", "--output", type=Path, help="labelled JSONL to write (required unless --list)"
    )
    parser.add_argument("--list", action="store_true", help="list pairs and systems, then exit")
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
    examples = load_examples(args)
    count = write_records(args.output, examples)
    gains = np.array([e.gain for e in examples])
    summary = {
        "output": str(args.output),
        "n": count,
        "metric": examples[0].metric,
        "small": examples[0].small_system,
        "large": examples[0].large_system,
        "mean_q_small": round(float(np.mean([e.q_small for e in examples])), 4),
        "mean_q_large": round(float(np.mean([e.q_large for e in examples])), 4),
        "mean_gain": round(float(gains.mean()), 4),
        "share_negative_gain": round(float((gains < 0).mean()), 4),
    }
    print(json.dumps(summary, indent=2))
    return 0
