"""`routelmt train` and `evaluate --router-dir` with a tiny trainable router defined here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_cli import _data_args, _layout

from routelmt.cli import main
from routelmt.commands._common import parse_router_args
from routelmt.errors import ConfigError, InputError
from routelmt.records import ScoredExample, Segment
from routelmt.routers.artifacts import load_router
from routelmt.routers.base import ROUTERS, Router
from routelmt.storage import read_json, write_json


class LengthSlopeRouter(Router):
    """Learns gain ~ a * len(source) + b by least squares; enough to exercise the artifact path."""

    name = "test-length-slope"
    trainable = True

    def __init__(self, scale: float = 1.0) -> None:
        self.scale = float(scale)
        self.coef: tuple[float, float] | None = None

    def _x(self, batch) -> np.ndarray:
        segs = [b.segment if isinstance(b, ScoredExample) else b for b in batch]
        return np.array([len(s.source) * self.scale for s in segs], dtype=float)

    def fit(self, train):
        a, b = np.polyfit(self._x(train), [ex.gain for ex in train], 1)
        self.coef = (float(a), float(b))
        return self

    def score(self, batch: list[Segment]) -> np.ndarray:
        assert self.coef is not None
        return self.coef[0] * self._x(batch) + self.coef[1]

    def save(self, directory) -> Path:
        write_json(Path(directory) / "router.json", {"router": self.name, "coef": self.coef})
        return Path(directory)

    @classmethod
    def load(cls, directory) -> LengthSlopeRouter:
        router = cls()
        router.coef = tuple(read_json(Path(directory) / "router.json")["coef"])
        return router


if LengthSlopeRouter.name not in ROUTERS:
    ROUTERS.register(LengthSlopeRouter.name)(LengthSlopeRouter)


def test_train_then_evaluate_artifact(tmp_path, capsys):
    corpus = _layout(tmp_path / "wmt")
    artifact = tmp_path / "router"
    argv = ["-q", "train", *_data_args(corpus), "--router", LengthSlopeRouter.name]
    assert main([*argv, "--router-arg", "scale=2", "-o", str(artifact)]) == 0
    assert "saved" in capsys.readouterr().out
    assert isinstance(load_router(artifact), LengthSlopeRouter)

    out = tmp_path / "eval"
    argv = ["-q", "evaluate", *_data_args(corpus), "--routers", f"random,{LengthSlopeRouter.name}"]
    argv += ["--router-dir", str(artifact), "--bootstrap", "0", "--folds", "4"]
    assert main([*argv, "-o", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["routers"]) == {
        "random",
        LengthSlopeRouter.name,
        f"{LengthSlopeRouter.name}@router",
    }


def test_untrainable_router_and_bad_artifacts(tmp_path, capsys):
    corpus = _layout(tmp_path / "wmt")
    argv = ["-q", "train", *_data_args(corpus), "--router", "length", "-o", str(tmp_path / "x")]
    assert main(argv) == 2
    assert "nothing to train" in capsys.readouterr().err
    with pytest.raises(InputError, match="no router.json"):
        load_router(tmp_path)
    (tmp_path / "router.json").write_text('{"router": "nope"}')
    with pytest.raises(InputError, match="unknown router 'nope'"):
        load_router(tmp_path)


def test_parse_router_args():
    parsed = parse_router_args(["routelmt.layer=9", "routelmt.pooling=mean", "entropy.x=true"])
    assert parsed == {"routelmt": {"layer": 9, "pooling": "mean"}, "entropy": {"x": True}}
    assert parse_router_args(["alpha=0.5"], default_router="r") == {"r": {"alpha": 0.5}}
    with pytest.raises(ConfigError, match="name the router"):
        parse_router_args(["layer=3"])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_router_args(["layer"])
