"""bench/lora_learning_curve.py resumes at the fold level: a stored fold is reused only when the
settings that made it match (the grid is finished across sessions one fold at a time)."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parents[2] / "bench" / "lora_learning_curve.py"


def _module():
    spec = importlib.util.spec_from_file_location("lora_learning_curve", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _args(tmp_path: Path, **changes) -> argparse.Namespace:
    settings = dict(
        small="t.jsonl", pair="en-es", large="GPT-4", layer=6, epochs=3, steps=None,
        validation=0.15, eval_every=20, patience=3, batch_size=8, lr=1e-4, head_lrs="1e-3",
        max_length=512, output=tmp_path / "lora-curve", device="cpu",
    )  # fmt: skip
    settings.update(changes)
    return argparse.Namespace(**settings)


def test_a_stored_fold_is_reused_only_with_the_same_settings(tmp_path):
    bench = _module()
    args = _args(tmp_path)
    assert bench._load_fold(args, 2) is None
    out = {
        "lora": np.asarray([0.5, -1.0]),
        "probe": np.asarray([0.1, 0.2]),
        "summary": {"n_test": 2, "lora_seconds": 3.0},
        "curves": {"0.001": [{"step": 0, "train_loss": None, "val_mse": 1.0, "seconds": 0}]},
    }
    bench._save_fold(args, 2, np.asarray([7, 9]), out)
    loaded = bench._load_fold(args, 2)
    assert loaded["rows"] == [7, 9] and loaded["lora"] == [0.5, -1.0]
    assert loaded["summary"] == out["summary"] and loaded["curves"] == out["curves"]
    assert bench._load_fold(args, 3) is None  # another fold
    assert bench._load_fold(_args(tmp_path, layer=9), 2) is None  # other settings: refit
    assert bench._load_fold(_args(tmp_path, device="cuda"), 2) is not None  # where is no setting
