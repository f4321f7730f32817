"""A bench-shaped run folder from recorded WMT24 systems (the stand-in of docs/benchmarks.md
section 15): ``data/segments.jsonl``, ``translate/<system>/translations.jsonl`` and
``score/<system>/scores.jsonl`` (chrF against refA) for a small and a large recorded system.

    python bench/recorded_run.py -o runs/adapt/decoupled-run --small Phi-3-Medium
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from routelmt.datasets.wmt import WMTDataset
from routelmt.labels import score_pairs
from routelmt.metrics.base import get_metric
from routelmt.records import write_records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--small", default="Phi-3-Medium")
    parser.add_argument("--large", default="GPT-4")
    parser.add_argument("--pairs", default="en-es,en-de,en-zh")
    parser.add_argument("--limit", type=int, default=None, help="first N segments per pair")
    parser.add_argument("--root", type=Path, default=None, help="WMT24 folder")
    args = parser.parse_args()
    dataset = WMTDataset(root=args.root)
    pairs = args.pairs.split(",")
    segments = [s for p in pairs for s in dataset.segments(p, reference="refA")[: args.limit]]
    (args.output / "data").mkdir(parents=True, exist_ok=True)
    write_records(args.output / "data" / "segments.jsonl", segments)
    metric = get_metric("chrf")
    for system in (args.small, args.large):
        outputs: dict[str, str] = {}
        for pair in pairs:
            outputs |= dataset.system_outputs(pair, system)
        texts = [outputs[s.id] for s in segments]
        scores = score_pairs(metric, segments, texts)
        for stage, rows in (
            ("translate", ({"segment_id": s.id, "text": t} for s, t in zip(segments, texts))),
            ("score", ({"segment_id": s.id, "q": q} for s, q in zip(segments, scores))),
        ):
            folder = args.output / stage / system
            folder.mkdir(parents=True, exist_ok=True)
            name = "translations.jsonl" if stage == "translate" else "scores.jsonl"
            with open(folder / name, "w", encoding="utf-8") as handle:
                handle.writelines(json.dumps(row) + "\n" for row in rows)
    print(f"{len(segments)} segments written to {args.output}")


if __name__ == "__main__":
    main()
