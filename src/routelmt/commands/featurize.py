"""``routelmt featurize``: prefill hidden-state features of the small model's translation prompt."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from routelmt.errors import InputError
from routelmt.models import DEFAULT_MODEL, EMBEDDED_MODELS

log = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "featurize",
        help="extract prefill hidden-state features (router input) for segments",
        description=(
            "Run the small model's prefill on its own translation prompt for every segment and "
            "save the pooled hidden states per layer as .npz (layer_<i> [N, hidden], ids, meta; "
            "gains and q_small too when the input holds scored examples). Results are cached "
            "by model, prompt template, layers, pooling and data."
        ),
    )
    parser.add_argument(
        "-i", "--input", required=True, type=Path, help="JSONL of segments or scored examples"
    )
    parser.add_argument("-o", "--output", required=True, type=Path, help="output .npz file")
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"alias ({', '.join(sorted(EMBEDDED_MODELS))}), model folder, .gguf file or a "
        f"hub id in the local HF cache (default: {DEFAULT_MODEL})",
    )
    parser.add_argument(
        "--template",
        default="auto",
        help="prompt template: fewshot, zeroshot, chat, or auto (chat when the tokenizer has "
        "a chat template, else fewshot; default)",
    )
    parser.add_argument(
        "--layers",
        default="all",
        help="all, an index (12, -1), a list (0,6,12) or a range (4:9); "
        "0 = embeddings, -1 = last layer (default: all)",
    )
    parser.add_argument("--pooling", choices=("last", "mean"), default="last")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--entropy", action="store_true", help="also store the next-token entropy (nats)"
    )
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-cache", action="store_true", help="recompute, do not use the cache")
    return parser


def _read_input(path: Path) -> tuple[list, dict[str, np.ndarray]]:
    """Segments, plus gain and q_small columns when the file holds scored examples."""
    from routelmt.records import ScoredExample, Segment, iter_jsonl_dicts, read_records

    first = next((data for _, data in iter_jsonl_dicts(path)), None)
    if first is None:
        raise InputError("no records: the file is empty", path=str(path))
    if "q_small" in first or "small_text" in first:
        examples = read_records(path, ScoredExample)
        extra = {
            "gain": np.asarray([e.gain for e in examples], dtype=np.float32),
            "q_small": np.asarray([e.q_small for e in examples], dtype=np.float32),
            "q_large": np.asarray([e.q_large for e in examples], dtype=np.float32),
        }
        return [e.segment for e in examples], extra
    return read_records(path, Segment), {}


def run(args: argparse.Namespace) -> int:
    from routelmt.backends.hf import load_causal_lm
    from routelmt.errors import ConfigError
    from routelmt.features import compute_features, parse_layers, save_features
    from routelmt.prompts import resolve_template

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    layers = parse_layers(args.layers)
    segments, extra = _read_input(args.input)
    model, tokenizer, info = load_causal_lm(args.model, dtype=args.dtype, device=args.device)
    template = resolve_template(args.template, tokenizer)
    features = compute_features(
        model,
        tokenizer,
        template,
        segments,
        layers=layers,
        pooling=args.pooling,
        batch_size=args.batch_size,
        entropy=args.entropy,
        progress=True,  # the bar itself honours --quiet
        cache=not args.no_cache,
    )
    features.extra.update(extra)
    features.meta["model_info"] = info.to_dict()
    features.meta["input"] = str(args.input)
    save_features(args.output, features)
    summary = {
        "output": str(args.output),
        "segments": len(segments),
        "model": info.identity,
        "template": template.name,
        "template_fingerprint": template.fingerprint(),
        "layers": sorted(features.layers),
        "pooling": args.pooling,
        "hidden_size": info.hidden_size,
        "from_cache": features.from_cache,
    }
    json.dump(summary, sys.stdout)
    sys.stdout.write("\n")
    return 0
