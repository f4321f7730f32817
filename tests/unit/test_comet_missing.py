"""COMET is optional: clear errors for a missing package or checkpoint, lazy loading, plumbing."""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from routelmt.errors import InputError, MissingDependencyError
from routelmt.metrics import get_metric

SRC, MT, REF = ["Good morning."], ["Buenos días."], ["Buenos días."]


def fake_comet(monkeypatch: pytest.MonkeyPatch, *, cached: dict[str, str]) -> dict[str, Any]:
    """Install a stand-in ``comet`` module whose hub lookup behaves like comet's offline.

    ``comet.download_model`` raises ``KeyError("Model '...' not supported by COMET.")`` whenever
    the hub lookup fails; ``cached`` maps the hub ids that are "in the cache" to a path.
    """
    calls: dict[str, Any] = {}

    def download_model(model: str, saving_directory: Any = None, local_files_only: bool = False):
        calls["download"] = {
            "model": model,
            "local_files_only": local_files_only,
            "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE"),
        }
        if model not in cached:
            raise KeyError(f"Model '{model}' not supported by COMET.")
        return cached[model]

    class Prediction(dict):
        @property
        def scores(self) -> list[float]:
            return self["scores"]

    class Model:
        def predict(self, samples: list[dict[str, str]], batch_size: int, gpus: int, **kw: Any):
            calls["predict"] = {"samples": samples, "batch_size": batch_size, "gpus": gpus, **kw}
            return Prediction(scores=[0.5 + i / 10 for i in range(len(samples))])

    def load_from_checkpoint(path: str, local_files_only: bool = False):
        calls["load"] = {"path": path, "local_files_only": local_files_only}
        if not Path(path).is_file():
            raise Exception(f"Invalid checkpoint path: {path}")
        return Model()

    module = types.ModuleType("comet")
    module.download_model = download_model  # type: ignore[attr-defined]
    module.load_from_checkpoint = load_from_checkpoint  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "comet", module)
    return calls


@pytest.mark.parametrize("name", ["comet", "cometkiwi", "xcomet"])
def test_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setitem(sys.modules, "comet", None)  # import fails even where comet is installed
    metric = get_metric(name)  # constructing needs nothing: loading is lazy
    assert metric.signature().startswith(f"{name}|model:Unbabel/")
    with pytest.raises(MissingDependencyError) as info:
        metric.sentence_scores(MT, REF, ["es"], SRC)
    assert "unbabel-comet" in str(info.value)
    assert "pip install 'routelmt[comet]'" in str(info.value)


@pytest.mark.parametrize(
    ("name", "checkpoint"),
    [
        ("comet", "Unbabel/wmt22-comet-da"),
        ("cometkiwi", "Unbabel/wmt22-cometkiwi-da"),
        ("xcomet", "Unbabel/XCOMET-XXL"),
    ],
)
def test_checkpoint_not_in_cache_names_it_and_never_downloads(
    monkeypatch: pytest.MonkeyPatch, name: str, checkpoint: str
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    calls = fake_comet(monkeypatch, cached={})
    metric = get_metric(name)
    with pytest.raises(MissingDependencyError) as info:
        metric.sentence_scores(MT, REF, ["es"], SRC)
    message = str(info.value)
    assert f"'{checkpoint}'" in message
    assert "--metric-arg checkpoint=/path/to/model.ckpt" in message
    assert "cache" in message
    assert calls["download"] == {
        "model": checkpoint,
        "local_files_only": True,
        "HF_HUB_OFFLINE": "1",
    }
    assert "HF_HUB_OFFLINE" not in os.environ  # restored afterwards


def test_local_checkpoint_path_that_does_not_exist(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls = fake_comet(monkeypatch, cached={})
    missing = tmp_path / "model.ckpt"
    metric = get_metric("comet", checkpoint=str(missing))
    with pytest.raises(MissingDependencyError, match="no such file"):
        metric.sentence_scores(MT, REF, ["es"], SRC)
    assert "download" not in calls


def test_cached_checkpoint_that_fails_to_load(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_comet(monkeypatch, cached={"Unbabel/wmt22-comet-da": "/nonexistent/model.ckpt"})
    with pytest.raises(MissingDependencyError, match="Invalid checkpoint path"):
        get_metric("comet").sentence_scores(MT, REF, ["es"], SRC)


@pytest.mark.parametrize(("name", "with_ref"), [("comet", True), ("cometkiwi", False)])
def test_scores_pass_through_with_the_right_fields(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, with_ref: bool
) -> None:
    ckpt = tmp_path / "checkpoints" / "model.ckpt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"")
    calls = fake_comet(monkeypatch, cached={})
    # A snapshot folder is accepted as well as the .ckpt file inside it.
    metric = get_metric(name, checkpoint=str(tmp_path), batch_size="4", gpus=0)
    refs = ["Hola.", "Adiós."] if with_ref else None
    scores = metric.sentence_scores(["Hola.", "Chao."], refs, ["es", "es"], ["Hi.", "Bye."])
    np.testing.assert_allclose(scores, [0.5, 0.6])
    assert calls["load"] == {"path": str(ckpt), "local_files_only": True}
    assert calls["predict"]["batch_size"] == 4 and calls["predict"]["gpus"] == 0
    expected = [{"src": "Hi.", "mt": "Hola."}, {"src": "Bye.", "mt": "Chao."}]
    if with_ref:
        expected = [{**e, "ref": r} for e, r in zip(expected, ["Hola.", "Adiós."], strict=True)]
    assert calls["predict"]["samples"] == expected
    assert metric.signature().startswith(f"{name}|model:{tmp_path}|nrefs:{int(with_ref)}|version:")


def test_inputs_are_checked_before_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "comet", None)
    with pytest.raises(InputError, match="source"):
        get_metric("comet").sentence_scores(MT, REF, ["es"], None)
    with pytest.raises(InputError, match="reference"):
        get_metric("comet").sentence_scores(MT, None, ["es"], SRC)
    with pytest.raises(InputError, match="1 hypotheses but 2 sources"):
        get_metric("cometkiwi").sentence_scores(MT, None, ["es"], SRC * 2)
