"""LoRA as the paper trains it, in-model, on one direction: learning curves, cost, HC.

    T=runs/in-model-3pairs/translate/hf-gemma3-270m/translations.jsonl
    python bench/lora_learning_curve.py --small $T --pair en-es --folds 0,1,2,3,4 \\
        -o runs/ablation/lora-curve

Gemma-3-270M's own translations against the recorded large system (chrF gains). Outer split:
5 folds grouped by source; each fold in ``--folds`` is a test set in turn, the rest trains
(all five folds: every segment of the direction is scored out of fold). LoRA (rank 8,
alpha 32, every linear layer of the blocks up to ``--layer``, jointly with a linear head, MSE on
the standardised gain) holds out ``--validation`` of the training source groups, checks the
validation MSE every ``--eval-every`` steps and stops after ``--patience`` checks without
improvement, keeping the best checkpoint (``routelmt-lora``'s early stopping). On the same rows:
the paper's ridge probe at the same layer (the full training rows; its penalty by grouped CV)
and ``length``. Printed: the learning curve, the cost, HC@p on the test fold with 95% bootstrap
intervals and the paired differences. The head's learning rate is chosen among ``--head-lrs`` by the
validation MSE, inside each fold's training rows. One test fold is a fifth of one direction, so
its intervals are wide: run all five folds for a ranking. Each finished outer fold is stored at
once under ``<output>.folds/`` with its scores, curve and cost; a rerun (any ``--folds``) fits
only the folds not stored with the same settings, so a grid can be finished across sessions.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from routelmt.evaluation.ablation import paired_cell, paired_table
from routelmt.labels import wmt_labels
from routelmt.routers.base import get_router
from routelmt.splits import fold_ids
from routelmt.storage import atomic_open

log = logging.getLogger("lora_curve")


def _fit_fold(args, train: list, test: list) -> dict:
    """LoRA candidates (one per head learning rate) with early stopping, the one with the lowest
    validation MSE kept, and the ridge probe at the same layer, on one outer fold."""
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
            device=args.device,
        )
        router.fit(train)
        log.info("head lr %g: best validation MSE %.4f", head_lr, router.train_info["best_val_mse"])
        candidates.append((router.train_info["best_val_mse"], head_lr, router))
    lora_seconds = time.perf_counter() - started
    _, head_lr, lora = min(candidates, key=lambda c: c[0])
    started = time.perf_counter()
    lora_scores = lora.score(test)
    score_seconds = time.perf_counter() - started
    probe = get_router("routelmt", layer=args.layer)
    started = time.perf_counter()
    probe.prepare(train + test)
    probe_scores = probe.fit(train).score(test)
    info = lora.train_info
    return {
        "lora": lora_scores,
        "probe": probe_scores,
        "summary": {
            "n_train": info["n_train"],
            "n_validation": info["n_validation"],
            "n_test": len(test),
            "head_lr": head_lr,
            "best_step": info["best_step"],
            "best_val_mse": info["best_val_mse"],
            "mean_val_mse": lora.learning_curve[0]["val_mse"],
            "stopped_early": info["stopped_early"],
            "steps": sum(r.train_info["steps"] for _, _, r in candidates),
            "lora_seconds": round(lora_seconds, 1),
            "lora_score_seconds_per_segment": round(score_seconds / len(test), 3),
            "probe_seconds": round(time.perf_counter() - started, 1),
        },
        "curves": {str(lr): r.learning_curve for _, lr, r in candidates},
    }


# Settings that change a fold's result: a stored fold is reused only when all of them match.
_FOLD_KEYS = (
    "small",
    "pair",
    "large",
    "layer",
    "epochs",
    "steps",
    "validation",
    "eval_every",
    "patience",
    "batch_size",
    "lr",
    "head_lrs",
    "max_length",
)


def _fold_path(args, f: int) -> Path:
    return args.output.parent / f"{args.output.name}.folds" / f"{args.pair}-{args.large}-{f}.json"


def _fold_settings(args) -> dict:
    return {key: str(getattr(args, key)) for key in _FOLD_KEYS}


def _save_fold(args, f: int, test_rows: np.ndarray, out: dict) -> None:
    """Each finished outer fold is stored at once (atomically): a rerun fits only the rest."""
    path = _fold_path(args, f)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "settings": _fold_settings(args),
        "rows": test_rows.tolist(),
        "lora": [float(x) for x in out["lora"]],
        "probe": [float(x) for x in out["probe"]],
        "summary": out["summary"],
        "curves": out["curves"],
    }
    with atomic_open(path) as handle:
        json.dump(record, handle, default=float)


def _load_fold(args, f: int) -> dict | None:
    path = _fold_path(args, f)
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    if record.get("settings") != _fold_settings(args):
        log.warning("%s was made with other settings: refitting fold %d", path, f)
        return None
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", required=True, help="the small model's translations.jsonl")
    parser.add_argument("--pair", default="en-es")
    parser.add_argument("--large", default="GPT-4")
    parser.add_argument("--folds", default="0", help="outer folds to test, of 5 (e.g. 0,1,2,3,4)")
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
    parser.add_argument("--device", default="cpu", help="where LoRA trains, e.g. cuda")
    parser.add_argument("--budget", type=float, default=0.3)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument(
        "--versus",
        action="append",
        default=[],
        metavar="NAME=SCORES_JSON",
        help="another router's out-of-fold scores (a bench run's routers/<large>/<router>/"
        "scores.json) to compare with, paired on the same segments; repeatable",
    )
    parser.add_argument("-o", "--output", type=Path, default=Path("runs/ablation/lora-curve"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    examples = wmt_labels(pairs=args.pair, small=args.small, large=args.large, metric="chrf")
    groups = np.asarray([ex.segment.group for ex in examples])
    fold = fold_ids(groups, 5, 0)
    probe_name = f"routelmt (ridge probe, layer {args.layer})"
    rows: list[int] = []
    lora_scores: list[float] = []
    probe_scores: list[float] = []
    folds: dict[str, dict] = {}
    for f in [int(x) for x in args.folds.split(",")]:
        test_rows = np.flatnonzero(fold == f)
        out = _load_fold(args, f)
        if out is None:
            train = [ex for ex, k in zip(examples, fold, strict=True) if k != f]
            test = [examples[i] for i in test_rows]
            log.info(
                "%s fold %d: %d training, %d test examples", args.pair, f, len(train), len(test)
            )
            out = _fit_fold(args, train, test)
            _save_fold(args, f, test_rows, out)
        else:
            log.info(
                "%s fold %d: finished earlier, loaded from %s", args.pair, f, _fold_path(args, f)
            )
        rows += test_rows.tolist()
        lora_scores += list(out["lora"])
        probe_scores += list(out["probe"])
        folds[str(f)] = {"summary": out["summary"], "curves": out["curves"]}
    tested = [examples[i] for i in rows]
    scores = {
        "routelmt-lora (early stopping)": np.asarray(lora_scores),
        probe_name: np.asarray(probe_scores),
        "length": np.asarray([len(ex.segment.source) for ex in tested], dtype=np.float64),
    }
    versus = _versus_scores(args.versus, [ex.segment.id for ex in tested])
    scores |= versus
    result = paired_table(
        np.asarray([ex.gain for ex in tested]),
        np.asarray([args.pair] * len(tested)),
        np.asarray([ex.segment.group for ex in tested]),
        scores,
        baselines=("length", probe_name, *versus),
        budget=args.budget,
        n_boot=args.bootstrap,
    )
    report = {"args": {k: str(v) for k, v in vars(args).items()}, "folds": folds, "result": result}
    text = _markdown(args, folds, result, len(tested), ("length", probe_name, *versus))
    print(text, flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(args.output.with_suffix(".json")) as handle:
        json.dump(report, handle, indent=1, default=float)
    with atomic_open(args.output.with_suffix(".md")) as handle:
        handle.write(text)


def _versus_scores(given: list[str], ids: list[str]) -> dict[str, np.ndarray]:
    """``NAME=scores.json`` -> that router's scores in the order of ``ids`` (every id needed)."""
    out = {}
    for item in given:
        name, sep, path = item.partition("=")
        if not sep:
            raise SystemExit(f"--versus: expected NAME=SCORES_JSON, got {item!r}")
        stored = json.loads(Path(path).read_text())
        by_id = dict(zip(stored["ids"], stored["scores"], strict=True))
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise SystemExit(f"--versus {name}: {len(missing)} segments have no score in {path}")
        out[name] = np.asarray([by_id[i] for i in ids], dtype=np.float64)
    return out


def _num(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _markdown(args, folds: dict, result: dict, n: int, baselines: tuple[str, ...]) -> str:
    first = next(iter(folds))
    lines = [f"### LoRA learning curves: {args.pair}, fold {first}, layer {args.layer}", ""]
    lines += ["| head lr | step | mean training loss since the last check | validation MSE | s |"]
    lines += ["|---|---|---|---|---|"]
    for lr, curve in folds[first]["curves"].items():
        for point in curve:
            lines.append(
                f"| {lr} | {point['step']} | {_num(point['train_loss'], 3)} "
                f"| {point['val_mse']:.4f} | {point['seconds']:.0f} |"
            )
    lines += [
        "",
        "| fold | train / validation / test | head lr kept | best step | validation MSE: "
        "training mean, best | stopped early | LoRA steps, s (all candidates) | probe s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for f, block in folds.items():
        s = block["summary"]
        lines.append(
            f"| {f} | {s['n_train']} / {s['n_validation']} / {s['n_test']} | {s['head_lr']:g} "
            f"| {s['best_step']} | {s['mean_val_mse']:.4f}, {s['best_val_mse']:.4f} "
            f"| {s['stopped_early']} | {s['steps']}, {s['lora_seconds']:.0f} "
            f"| {s['probe_seconds']:.0f} |"
        )
    lines += [
        "",
        f"| router (out of fold, n = {n}) | HC@{args.budget} [95% CI] | Spearman | "
        + " | ".join(f"minus {base} (paired)" for base in baselines)
        + " |",
        "|---|---|---" + "|---" * len(baselines) + "|",
    ]
    for name, row in result["directions"][args.pair]["routers"].items():
        cells = [name, f"{row['hc']:.1f} [{row['hc_ci'][0]:.1f}, {row['hc_ci'][1]:.1f}]"]
        cells.append(f"{row['spearman']:.3f}")
        cells += [paired_cell(row["vs"].get(base)) for base in baselines]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
