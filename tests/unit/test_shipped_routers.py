"""The router artifacts that ship inside the package for the embedded default model."""

from __future__ import annotations

import json

import pytest

from routelmt.errors import InputError
from routelmt.routers.artifacts import SHIPPED_DIR, resolve_artifact, shipped_routers


def test_the_learned_routers_ship_and_are_small():
    assert {"routelmt", "routelmt-2stage"} <= set(shipped_routers())
    total = sum(p.stat().st_size for p in SHIPPED_DIR.rglob("*") if p.is_file())
    assert total < 500_000  # heads and their training-source records, never model weights
    for name in ("routelmt", "routelmt-2stage"):
        config = json.loads((resolve_artifact(f"shipped:{name}") / "router.json").read_text())
        assert config["router"] == name


def test_the_stage1_probe_names_the_embedded_model_and_template():
    for folder in (SHIPPED_DIR / "routelmt", SHIPPED_DIR / "routelmt-2stage" / "stage1"):
        config = json.loads((folder / "router.json").read_text())
        assert config["model_spec"] == "gemma3-270m" and config["model"].startswith("gemma3-270m@")
        assert config["template_fingerprint"]


def test_the_shipped_quality_head_is_a_predict_guard_on_the_routers_prefill():
    import numpy as np

    from routelmt.budget.online_guards import make_guard
    from routelmt.routers.artifacts import load_router

    guard = make_guard("quality-predict", 28.0, router="shipped:routelmt-q")
    stage1 = load_router("shipped:routelmt-2stage").layer
    assert guard.layer == stage1 == load_router("shipped:routelmt").layer  # one prefill
    dim = json.loads((SHIPPED_DIR / "routelmt-q" / "head.json").read_text())["n_features"]
    features = np.random.default_rng(0).normal(size=(4, dim))
    verdicts = guard.check([None] * 4, None, features)  # type: ignore[list-item]
    assert len(verdicts) == 4 and all(np.isfinite(v.score) for v in verdicts)
    assert guard.stats()["evaluations"] == 4


def test_an_unknown_shipped_name_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="no shipped router 'nope'; shipped: routelmt"):
        resolve_artifact("shipped:nope")
    assert resolve_artifact(tmp_path) == tmp_path
