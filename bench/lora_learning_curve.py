"""LoRA as the paper trains it, in-model, on one outer fold of one direction: its learning curve.

    T=runs/in-model-3pairs/translate/hf-gemma3-270m/translations.jsonl
    python bench/lora_learning_curve.py --small $T --pair en-es -o runs/ablation/lora-curve

Gemma-3-270M's own translations against the recorded large system (chrF gains). Outer split:
fold ``--fold`` of 5 folds grouped by source is the test set; the rest trains. LoRA (rank 8,
alpha 32, every linear layer of the blocks up to ``--layer``, jointly with a linear head, MSE on
the standardised gain) holds out ``--validation`` of the training source groups, checks the
validation MSE every ``--eval-every`` steps and stops after ``--patience`` checks without
improvement, keeping the best checkpoint (``routelmt-lora``'s early stopping). On the same rows:
the paper's ridge probe at the same layer (the full training rows; its penalty by grouped CV)
and ``length``. Printed: the learning curve, the cost, HC@p on the test fold with 95% bootstrap
intervals and the paired differences. The head's learning rate is chosen among ``--head-lrs`` by the
validation MSE, inside the training rows. The test fold is one fifth of one direction, so the
intervals are wide: this measures the recipe and its cost, not a final ranking.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from ablation_eval import evaluate
from routelmt.labels import wmt_labels
from routelmt.routers.base import get_router
from routelmt.splits import fold_ids
from routelmt.storage import atomic_open

log = logging.getLogger("lora_curve")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", required=True, help="the small model's translations.jsonl")
    parser.add_argument("--pair", default="en-es")
    parser.add_argument("--large", default="GPT-4")
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--layer", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=3, help="the cap; early stopping ends it")
    parser.add_argument("--steps", type=int, default=None, help="a cap in steps (smoke runs)")
    parser.add_argument("--validation", type=float, default=0.15)
    parser.add_argument("--eval-every", type=int, default=20)
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-4, help="the adapter's learning rate")
    parser.add_argument(
        "--head-lrs",
        default="1e-3",
        help="the head's learning rates to try; the one with the lowest validation MSE (held-out "
        "training groups, never the test fold) is kept",
    )
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--budget", type=float, default=0.3)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("-o", "--output", type=Path, default=Path("runs/ablation/lora-curve"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    examples = wmt_labels(pairs=args.pair, small=args.small, large=args.large, metric="chrf")
    groups = np.asarray([ex.segment.group for ex in examples])
    fold = fold_ids(groups, 5, 0)
    train = [ex for ex, f in zip(examples, fold, strict=True) if f != args.fold]
    test = [ex for ex, f in zip(examples, fold, strict=True) if f == args.fold]
    log.info("%s: %d training, %d test examples", args.pair, len(train), len(test))

    candidates = []
    started = time.perf_counter()
    for head_lr in [float(x) for x in args.head_lrs.split(",")]:
        router = get_router(
            "routelmt-lora",
            layer=args.layer,
            epochs=args.epochs,
            steps=args.steps,
            validation=args.validation,
            eval_every=args.eval_every,
            patience=args.patience,
            batch_size=args.batch_size,
            max_length=args.max_length,
            lr=args.lr,
            head_lr=head_lr,
        )
        router.fit(train)
        best = router.train_info["best_val_mse"]
        log.info("head lr %g: best validation MSE %.4f", head_lr, best)
        candidates.append((best, head_lr, router))
    lora_seconds = time.perf_counter() - started
    _, head_lr, lora = min(candidates, key=lambda c: c[0])
    curves = {str(lr): r.learning_curve for _, lr, r in candidates}
    started = time.perf_counter()
    lora_scores = lora.score(test)
    lora_score_seconds = time.perf_counter() - started

    probe = get_router("routelmt", layer=args.layer)
    started = time.perf_counter()
    probe.prepare(train + test)
    probe.fit(train)
    probe_scores = probe.score(test)
    probe_seconds = time.perf_counter() - started

    gain = np.asarray([ex.gain for ex in test])
    scores = {
        "routelmt-lora (early stopping)": lora_scores,
        f"routelmt (ridge probe, layer {args.layer})": probe_scores,
        "length": np.asarray([len(ex.segment.source) for ex in test], dtype=np.float64),
    }
    result = evaluate(
        gain,
        np.asarray([args.pair] * len(test)),
        np.asarray([ex.segment.group for ex in test]),
        scores,
        baselines=("length", f"routelmt (ridge probe, layer {args.layer})"),
        budget=args.budget,
        n_boot=args.bootstrap,
    )
    info = lora.train_info
    report = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "n_train": len(train),
        "n_test": len(test),
        "lora": {k: v for k, v in info.items() if k != "learning_curve"},
        "head_lr_chosen": head_lr,
        "learning_curves": curves,
        "lora_train_seconds": round(lora_seconds, 1),
        "lora_steps": sum(r.train_info["steps"] for _, _, r in candidates),
        "lora_score_seconds_per_segment": round(lora_score_seconds / len(test), 3),
        "probe_seconds": round(probe_seconds, 1),
        "result": result,
    }
    lines = [f"### LoRA learning curves: {args.pair}, fold {args.fold}, layer {args.layer}", ""]
    lines += [
        "| head lr | step | mean training loss since the last check | validation MSE | seconds |"
    ]
    lines += ["|---|---|---|---|---|"]
    for lr, curve in curves.items():
        for point in curve:
            lines.append(
                f"| {lr} | {point['step']} | {point['train_loss']:.3f} | {point['val_mse']:.4f} "
                f"| {point['seconds']:.0f} |"
            )
    lines += [
        "",
        f"Kept: head lr {head_lr:g} (lowest validation MSE), best step {info['best_step']}, "
        f"stopped early: {info['stopped_early']}; {info['n_train']} training and "
        f"{info['n_validation']} validation examples (validation MSE of the training mean: "
        f"{lora.learning_curve[0]['val_mse']:.4f}); {report['lora_train_seconds']} s to train "
        f"{report['lora_steps']} steps of {args.batch_size} in all, validation checks included; "
        f"the probe {report['probe_seconds']} s (features and fit).",
        "",
        f"| router (test fold, n = {len(test)}) | HC@{args.budget} [95% CI] | Spearman "
        "| minus length (paired) | minus the probe (paired) |",
        "|---|---|---|---|---|",
    ]
    block = result["directions"][args.pair]["routers"]
    for name, row in block.items():
        cells = [name, f"{row['hc']:.1f} [{row['hc_ci'][0]:.1f}, {row['hc_ci'][1]:.1f}]"]
        cells.append(f"{row['spearman']:.3f}")
        for base in ("length", f"routelmt (ridge probe, layer {args.layer})"):
            vs = row["vs"].get(base)
            cells.append(
                "—"
                if vs is None
                else f"{vs['hc']:+.1f} [{vs['hc_ci'][0]:+.1f}, {vs['hc_ci'][1]:+.1f}]"
                + (" **beats**" if vs["beats"] else "")
            )
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    print(text, flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(args.output.with_suffix(".json")) as handle:
        json.dump(report, handle, indent=1, default=float)
    with atomic_open(args.output.with_suffix(".md")) as handle:
        handle.write(text)


if __name__ == "__main__":
    main()
