"""Ablation of the prefill router: inputs x targets x heads x objectives.

    python bench/router_ablation.py --prefill runs/ablation/prefill.npz \\
        --small runs/im-a/translate/hf-gemma3-270m/translations.jsonl,... \\
        --large GPT-4,Llama3-70B -o runs/ablation/prefill-router

Every candidate chooses its own hyperparameters (layer, ridge penalty, mixing weights) inside
its training rows only (grouped inner CV), and is scored out of fold (5 folds grouped by
source; and leave-one-direction-out crossed with the same folds). Reported per direction first
(HC@0.3 with its interval, paired difference to length and entropy), then the mean over
directions. Always evaluated against the gain of the deployed large system, whatever the
training target. Writes ``<out>.json`` and ``<out>.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from routelmt.evaluation.ablation import markdown_table, out_of_fold, paired_table
from routelmt.evaluation.ablation_inputs import (
    STRONG,
    AblationData,
    PrefillInputs,
    gbt_head,
    load_ablation_data,
    mlp_head,
    pairwise_head,
    pca,
    ridge_predict,
    standardise_within,
)
from routelmt.splits import fold_ids
from routelmt.storage import atomic_open

log = logging.getLogger("router_ablation")


# -- candidates ------------------------------------------------------------------------------
def build_candidates(data: AblationData, inputs: PrefillInputs, large: str, quick: bool) -> dict:
    groups = data.groups
    dirs = data.directions
    gain = data.gain(large)
    strong = np.mean([data.q[s] for s in STRONG], axis=0) - data.q_small

    def target(kind: str, train: np.ndarray) -> np.ndarray:
        y = strong if kind.startswith("strong") else gain
        return standardise_within(y, dirs, train) if kind.endswith("z") else y

    def probe(kind="gain", pooling="last", scalars=False):
        def run(train, test):
            y = target(kind, train)
            layer = inputs.choose_layer(y, groups, train, pooling, tag=f"{large}/{kind}")
            X = inputs.layer(layer, pooling)
            if scalars:
                X = np.hstack([X, inputs.scalars])
            return ridge_predict(X, y, groups, train, test)

        return run

    def multi(kind="gain", layers=(3, 6, 9, 12, 15, 18), scalars=False):
        X = np.hstack([inputs.layer(layer) for layer in layers])
        if scalars:
            X = np.hstack([X, inputs.scalars])

        def run(train, test):
            return ridge_predict(X, target(kind, train), groups, train, test)

        return run

    def mix(kind="gain", scalars=False):
        """Learned mix of layers: per-layer ridge heads stacked with non-negative weights
        fitted on their inner out-of-fold predictions (training rows only)."""
        from scipy.optimize import nnls

        def run(train, test):
            y = target(kind, train)
            inner = fold_ids(groups[train], 5, 1)
            layers = inputs.candidate_layers
            oof = np.zeros((len(train), len(layers)))
            preds = np.zeros((len(test), len(layers)))
            for c, layer in enumerate(layers):
                X = inputs.layer(layer)
                if scalars:
                    X = np.hstack([X, inputs.scalars])
                for f in range(5):
                    tr, va = train[inner != f], train[inner == f]
                    oof[inner == f, c] = ridge_predict(X, y, groups, tr, va)
                preds[:, c] = ridge_predict(X, y, groups, train, test)
            yc = y[train] - y[train].mean()
            weights, _ = nnls(oof - oof.mean(0), yc)
            return preds @ weights

        return run

    def scalars_only(kind="gain"):
        def run(train, test):
            return ridge_predict(inputs.scalars, target(kind, train), groups, train, test)

        return run

    def reduced(head, kind="gain", k=64):
        def run(train, test):
            y = target(kind, train)
            layer = inputs.choose_layer(y, groups, train, tag=f"{large}/{kind}")
            Ztr, Zte = pca(inputs.layer(layer)[train], inputs.layer(layer)[test], k)
            Xtr = np.hstack([Ztr, inputs.scalars[train]])
            Xte = np.hstack([Zte, inputs.scalars[test]])
            if head == "pairwise":
                return pairwise_head(Xtr, y[train], dirs[train], Xte)
            fn = mlp_head if head == "mlp" else gbt_head
            return fn(Xtr, y[train], Xte)

        return run

    c = {
        "probe (paper: ridge, one layer by CV)": probe(),
        "probe, mean pooling": probe(pooling="mean"),
        "probe + free scalars": probe(scalars=True),
        "several layers (3,6,..,18)": multi(),
        "several layers + scalars": multi(scalars=True),
        "learned layer mix": mix(),
        "free scalars only (length, entropy, direction)": scalars_only(),
        "probe, target z within direction": probe("z"),
        "probe, target strong-systems gain": probe("strong"),
        "probe + scalars, target strong z": probe("strong-z", scalars=True),
        "several layers + scalars, target z": multi("z", scalars=True),
        "MLP on PCA-64 + scalars": reduced("mlp"),
        "GBT on PCA-32 + scalars": reduced("gbt", k=32),
        "pairwise ranking on PCA-64 + scalars": reduced("pairwise"),
        "pairwise ranking, target strong": reduced("pairwise", "strong"),
    }
    if quick:
        keep = ("probe (paper", "probe + free", "several layers + scalars", "free scalars")
        c = {k: v for k, v in c.items() if k.startswith(keep)}
    return c


def label_reliability(data: AblationData, larges: list[str]) -> str:
    """How much of a segment's gain is signal at all: the within-direction Spearman between the
    gains of the same small output against two strong large systems (a ceiling for any router
    that predicts one of them), and how well the small model's own quality ranks the gain."""
    from scipy.stats import spearmanr

    other = {"GPT-4": "Claude-3.5", "Llama3-70B": "Aya23"}
    lines = ["### How predictable is the gain? (within each direction)", ""]
    lines += [
        "| large | direction | mean gain | Spearman(gain, gain vs " + "other strong system) "
        "| Spearman(gain, -q_small) |",
        "|---|---|---|---|---|",
    ]
    for large in larges:
        twin = other.get(large, "Claude-3.5")
        for d in sorted(set(data.directions)):
            m = data.mask(d)
            g, g2 = data.gain(large)[m], data.gain(twin)[m]
            lines.append(
                f"| {large} (vs {twin}) | {d} | {g.mean():.1f} | "
                f"{spearmanr(g, g2).statistic:.2f} | "
                f"{spearmanr(g, -data.q_small[m]).statistic:.2f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefill", type=Path, default=Path("runs/ablation/prefill.npz"))
    parser.add_argument("--small", required=True, help="translations.jsonl files, or replay:SYS")
    parser.add_argument("--large", default="GPT-4,Llama3-70B")
    parser.add_argument("--schemes", default="kfold,lodo")
    parser.add_argument("--budget", type=float, default=0.3)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="only the cheap candidates")
    parser.add_argument(
        "--layers",
        default="all",
        help="layers the probes choose from by inner CV (e.g. 3,6,9,12,15,18; default all)",
    )
    parser.add_argument("--only", default=None, help="comma-separated candidate name prefixes")
    parser.add_argument("-o", "--output", type=Path, default=Path("runs/ablation/prefill-router"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("routelmt").setLevel(logging.WARNING)

    data = load_ablation_data(args.prefill, args.small)
    inputs = PrefillInputs(data)
    if args.layers != "all":
        inputs.candidate_layers = [int(x) for x in args.layers.split(",")]
    report: dict = {"command": "python bench/router_ablation.py", "args": vars(args) | {}}
    report["args"] = {k: str(v) for k, v in vars(args).items()}
    md = [f"# Prefill-router ablation (p = {args.budget})\n"]
    md.append(label_reliability(data, args.large.split(",")))
    print(md[-1], flush=True)
    for large in args.large.split(","):
        gain = data.gain(large)
        candidates = build_candidates(data, inputs, large, args.quick)
        if args.only:
            prefixes = tuple(args.only.split(","))
            candidates = {k: v for k, v in candidates.items() if k.startswith(prefixes)}
        for scheme in args.schemes.split(","):
            scores = {
                "length": inputs.length,
                "length (tokens)": inputs.length_tokens,
                "entropy": inputs.entropy,
            }
            seconds = {}
            for name, candidate in candidates.items():
                t0 = time.perf_counter()
                scores[name] = out_of_fold(candidate, data.groups, data.directions, scheme)
                seconds[name] = round(time.perf_counter() - t0, 1)
                log.info("%s %s %s: %.1fs", large, scheme, name, seconds[name])
            scores["quality oracle"] = -data.q_small
            result = paired_table(
                gain,
                data.directions,
                data.groups,
                scores,
                budget=args.budget,
                n_boot=args.bootstrap,
            )
            result["seconds"] = seconds
            report[f"{large}/{scheme}"] = result
            order = sorted(scores, key=lambda n: -result["mean_hc"][n])
            md.append(
                markdown_table(result, order, f"large = {large}, {scheme}", ("length", "entropy"))
            )
            print(md[-1], flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(args.output.with_suffix(".json")) as handle:
        json.dump(report, handle, indent=1, default=float)
    with atomic_open(args.output.with_suffix(".md")) as handle:
        handle.write("\n".join(md))


if __name__ == "__main__":
    main()
