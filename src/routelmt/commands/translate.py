"""``routelmt translate``: translate a file of segments with any backend, resumable per segment."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from routelmt.commands._common import _coerce, parse_kv


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "translate",
        help="translate a JSONL/TSV/text file with a backend (resumable)",
        description="Translate segments with any backend (a live model, a recorded WMT system, "
        "an endpoint) into Translation records (segment_id, system, text). The output is "
        "appended one batch at a time: rerun the same command after an interruption and only "
        "the segments not yet in the output are translated.",
    )
    parser.add_argument(
        "-i", "--input", type=Path, required=True, help="segments: .jsonl records, .tsv or .txt"
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        help="translations JSONL (default: <input stem>.<backend>.jsonl beside the input)",
    )
    parser.add_argument(
        "--backend",
        required=True,
        metavar="SPEC",
        help="e.g. hf:gemma3-270m, GPT-4 (a recorded WMT24 system), openai:URL#model",
    )
    parser.add_argument(
        "--backend-arg", action="append", metavar="KEY=VALUE", help="backend option (repeatable)"
    )
    parser.add_argument(
        "--direction", help="direction for rows that carry none, e.g. en-es (required for .txt)"
    )
    parser.add_argument("--batch-size", type=int, default=16, help="segments per backend call")
    parser.add_argument(
        "--wmt-root", type=Path, help="replay: WMT system-outputs folder (default: WMT24)"
    )
    parser.add_argument("--pairs", help="replay: comma-separated pairs to load (default: all)")
    return parser


def run(args: argparse.Namespace) -> int:
    from routelmt.backends.resolve import make_translator, slug
    from routelmt.datasets.plain import load_segments
    from routelmt.resumable import translate_resumable
    from routelmt.storage import check_output_path

    segments = load_segments(args.input, direction=args.direction)
    options = {
        key: _coerce(value) for key, value in parse_kv(args.backend_arg, "--backend-arg").items()
    }
    dataset = None
    if args.wmt_root is not None:
        from routelmt.datasets.wmt import WMTDataset

        dataset = WMTDataset(args.wmt_root)
    pairs = [p.strip() for p in args.pairs.split(",") if p.strip()] if args.pairs else None
    output = args.output or args.input.with_name(f"{args.input.stem}.{slug(args.backend)}.jsonl")
    check_output_path(output)
    translator = make_translator(args.backend, dataset=dataset, pairs=pairs, **options)
    try:
        result = translate_resumable(translator, segments, output, batch_size=args.batch_size)
    finally:
        translator.close()
    summary = {
        "output": str(output),
        "system": translator.name,
        "segments": len(segments),
        "reused": result.reused,
        "translated": result.translated,
        "seconds": round(result.seconds, 3),
        "segments_per_s": _round(result.segments_per_second),
        "tokens_per_s": _round(result.tokens_per_second),
    }
    print(json.dumps(summary, indent=2))
    return 0


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
