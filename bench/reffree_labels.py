"""Which reference-free label trains the best router: references hidden at training time.

    OMP_NUM_THREADS=1 nice -n 10 python bench/reffree_labels.py --run runs/in-model \\
        --small llamacpp-gemma3-270m --large GPT-4 -o runs/adapt/reffree-gemma.json

The two-stage router is trained on each candidate label of ``routelmt.reffree`` (and on the
reference gain), leaving one direction out (crossed with source folds), and every router is
evaluated with the reference chrF gain, per direction, paired against the reference-trained
router; ``share`` = its HC@0.3 over the reference-trained router's. Also printed: how each label
ranks the true gain (Spearman within each direction).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from routelmt.evaluation.learning_curve import CurveData, label_table, lodo_label_comparison
from routelmt.evaluation.run_arrays import (
    cached_ids,
    keep_only,
    load_run,
    prefill_layers,
    shipped_heads,
    stage2_rest,
)
from routelmt.reffree import reference_free_labels
from routelmt.storage import atomic_open, stable_hash


def labels_cached(arrays, rest: np.ndarray | None, cache: Path, qe: str | None = "qe-embed"):
    """The candidate labels (qe-embed of the large outputs is the slow part), cached."""
    ids = [s.id for s in arrays.segments]
    key = stable_hash(ids, arrays.small_texts, arrays.large_texts, qe)
    path = cache / f"reffree-{key}.npz"
    if path.exists():
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    labels = reference_free_labels(
        arrays.segments,
        arrays.small_texts,
        arrays.large_texts,
        qe=qe,
        qe_small=None if rest is None else rest[:, 0],
    )
    cache.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as handle:
        np.savez(handle, **labels)
    return labels


def spearman_table(labels: dict[str, np.ndarray], gain: np.ndarray, dirs: np.ndarray) -> str:
    names = sorted(set(dirs))
    lines = ["| label | " + " | ".join(f"Spearman with the gain, {d}" for d in names) + " |"]
    lines.append("|---|" + "---|" * len(names))
    for name, y in labels.items():
        cells = [f"{spearmanr(y[dirs == d], gain[dirs == d]).statistic:.2f}" for d in names]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=Path("runs/in-model"))
    parser.add_argument("--small", default="llamacpp-gemma3-270m")
    parser.add_argument("--large", default="GPT-4")
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--layer", type=int, default=11, help="the stage-1 prefill layer")
    parser.add_argument("--router", choices=["two-stage", "probe"], default="two-stage")
    parser.add_argument("--qe", default="qe-embed", help="QE scorer of the labels, or none")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--budget", type=float, default=0.3)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--per-direction", type=int, default=None)
    parser.add_argument(
        "--cached-only",
        action="store_true",
        help="use only the segments whose prefill features are already cached",
    )
    parser.add_argument("--cache", type=Path, default=Path("runs/adapt/cache"))
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    arrays = load_run(args.run, args.small, args.large, args.per_direction)
    _, fingerprint = shipped_heads()
    rest = stage2_rest(arrays, args.cache) if args.router == "two-stage" else None
    qe = None if args.qe == "none" else args.qe
    candidates = labels_cached(arrays, rest, args.cache, qe)
    if args.cached_only:
        arrays, rows = keep_only(arrays, cached_ids(args.model, [args.layer], fingerprint))
        rest = None if rest is None else rest[rows]
        candidates = {name: y[rows] for name, y in candidates.items()}
    feats = prefill_layers(arrays.segments, args.model, [args.layer], fingerprint)
    gain = arrays.q_large - arrays.q_small
    length = np.asarray([len(s.source) for s in arrays.segments], dtype=float)
    data = CurveData(arrays.directions, arrays.groups, gain, feats, rest, {"length": length})
    labels = {"reference": gain, **candidates}
    result = lodo_label_comparison(
        data, labels, folds=args.folds, budget=args.budget, n_boot=args.bootstrap
    )
    result["args"] = {k: str(v) for k, v in vars(args).items()}
    result["seconds"] = round(time.perf_counter() - started, 1)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(args.output) as handle:
        json.dump(result, handle, indent=1)
    print(
        f"reference-free labels, LODO, {args.router}, HC@{args.budget}, n = {len(gain)}, "
        f"layer {args.layer}"
    )
    print(spearman_table(labels, gain, arrays.directions))
    print()
    print(label_table(result))
    print(f"{result['seconds']} s; written {args.output}")


if __name__ == "__main__":
    main()
