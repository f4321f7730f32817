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


@pytest.mark.parametrize("name", ["routelmt", "routelmt-2stage", "routelmt-q"])
def test_the_overlap_check_finds_a_shipped_routers_training_sources(name):
    """``evaluate --router-dir shipped:NAME`` said the artifact records no training sources,
    though training_sources.json ships beside it."""
    from routelmt.records import Segment
    from routelmt.routers.provenance import read_training_sources, training_overlap

    record = read_training_sources(SHIPPED_DIR / name)
    assert record is not None and record["sources"]
    unseen = [Segment(id="u", direction="en-es", source="Nobody trained on this sentence, 9f3a.")]
    overlap = training_overlap(f"shipped:{name}", unseen)
    assert overlap.recorded and overlap.n_train == record["n_examples"] > 0
    assert overlap.same_source == 0 and "records no training sources" not in overlap.message()
