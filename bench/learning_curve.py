"""How many labels of a new direction the two-stage router needs (leave one direction out).

    OMP_NUM_THREADS=1 nice -n 10 python bench/learning_curve.py --run runs/in-model \\
        --small llamacpp-gemma3-270m --large GPT-4 -o runs/adapt/curve-gemma.json

For each direction left out: HC@0.3 of the router trained on the other two directions
(zero-shot), that router adapted with n labels of the direction (``routelmt train --init``'s
refit: ridge toward its weights, strength by grouped CV on the n labels), the router trained
from scratch on the same n labels, the router trained on all the direction's labels
(out-of-fold), length, and the shipped router (trained on these very directions, so optimistic);
n labels sampled by source group from the rows outside the test fold, several seeds; paired
intervals per direction (``routelmt.evaluation.learning_curve``).

``--shipped none`` for a small model the shipped artifact was not trained for (its features
would mean something else): then every router is trained here from scratch.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from routelmt.adaptation import DEFAULT_SELECTION, SELECTIONS
from routelmt.evaluation.learning_curve import (
    ALL_LABELS,
    CurveData,
    curve_table,
    lodo_learning_curve,
)
from routelmt.evaluation.run_arrays import (
    cached_ids,
    keep_only,
    load_run,
    prefill_layers,
    shipped_heads,
    stage2_rest,
)
from routelmt.storage import atomic_open


def build(args: argparse.Namespace) -> tuple[CurveData, dict]:
    """The curve's arrays: gains, prefill layers, stage-2 inputs, length and shipped scores."""
    arrays = load_run(args.run, args.small, args.large, args.per_direction)
    if args.router == "probe" and args.shipped == "routelmt-2stage":
        args.shipped = "routelmt"
    fixed: dict[str, np.ndarray] = {}
    layers = None if args.layers == "auto" else [int(x) for x in args.layers.split(",")]
    fingerprint = None
    shipped = None
    if args.shipped != "none":
        shipped, fingerprint = shipped_heads(args.shipped)
        layers = sorted(set(layers or []) | {shipped.layer}) if layers is not None else None
    rest = stage2_rest(arrays, args.cache) if args.router == "two-stage" else None
    if args.cached_only:
        needed = layers if layers is not None else [shipped.layer] if shipped else [1]
        arrays, rows = keep_only(arrays, cached_ids(args.model, needed, fingerprint))
        rest = None if rest is None else rest[rows]
    feats = prefill_layers(arrays.segments, args.model, layers, fingerprint)
    fixed["length"] = np.asarray([len(s.source) for s in arrays.segments], dtype=float)
    if shipped is not None:
        fixed["shipped (saw these sources)"] = shipped.score(feats[shipped.layer], rest)
    if layers is not None and args.layers != "auto":
        feats = {k: feats[k] for k in (int(x) for x in args.layers.split(","))}
    gain = arrays.q_large - arrays.q_small
    data = CurveData(arrays.directions, arrays.groups, gain, feats, rest, fixed, args.selection)
    info = {
        "n": len(arrays.segments),
        "layers": sorted(feats),
        "mean_gain": float(data.gain.mean()),
        "selection": args.selection,
    }
    return data, info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=Path("runs/in-model"))
    parser.add_argument("--small", default="llamacpp-gemma3-270m", help="translate/ folder name")
    parser.add_argument("--large", default="GPT-4")
    parser.add_argument("--model", default="gemma3-270m", help="the small model (features)")
    parser.add_argument(
        "--router",
        choices=["two-stage", "probe"],
        default="two-stage",
        help="routelmt-2stage, or the prefill probe routelmt alone (no QE pass)",
    )
    parser.add_argument(
        "--shipped",
        default="routelmt-2stage",
        help="shipped artifact (routelmt with --router probe), or none",
    )
    parser.add_argument(
        "--layers",
        default="11",
        help="candidate prefill layers of the from-scratch fits (comma list, or auto = all); "
        "an adapted router keeps its init's layer",
    )
    parser.add_argument("--sizes", default="25,50,100,200,400")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--budget", type=float, default=0.3)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--per-direction", type=int, default=None, help="first N per direction")
    parser.add_argument("--union", action="store_true", help="also retrain on other dirs + n")
    parser.add_argument(
        "--selection",
        choices=SELECTIONS,
        default=DEFAULT_SELECTION,
        help="how adaptation's cross-validation picks its strength and centre",
    )
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
    data, info = build(args)
    result = lodo_learning_curve(
        data,
        sizes=[int(x) for x in args.sizes.split(",")],
        seeds=args.seeds,
        folds=args.folds,
        budget=args.budget,
        n_boot=args.bootstrap,
        union=args.union,
    )
    result |= {"data": info, "args": {k: str(v) for k, v in vars(args).items()}}
    result["seconds"] = round(time.perf_counter() - started, 1)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(args.output) as handle:
        json.dump(result, handle, indent=1)
    print(f"LODO learning curve ({args.router}), HC@{args.budget}, {info}")
    print(curve_table(result))
    print(_verdict(result))
    print(f"{result['seconds']} s; written {args.output}")


def _verdict(result: dict) -> str:
    """Per direction: the fewest labels whose adapted router is within 3 HC points of the
    all-labels router, else the closest size."""
    lines = []
    for d, block in result["directions"].items():
        routers = block["routers"]
        full = routers[ALL_LABELS]["value"]
        sizes = [n for n in result["sizes"] if f"adapted n={n}" in routers]
        gaps = {n: full - routers[f"adapted n={n}"]["value"] for n in sizes}
        within = [n for n in sizes if gaps[n] <= 3.0]
        if within:
            lines.append(
                f"{d}: adapted within 3 HC points of all labels from n = {within[0]} "
                f"(gap {gaps[within[0]]:+.1f}; all labels {full:.1f})"
            )
        else:
            best = min(gaps, key=gaps.get) if gaps else None
            gap = gaps.get(best, float("nan"))
            lines.append(f"{d}: never within 3 points; closest n = {best} (gap {gap:+.1f})")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
