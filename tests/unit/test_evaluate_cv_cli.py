"""`routelmt evaluate --cv lodo --baselines ...` and the training-overlap warning of
`--router-dir`, end to end through the CLI on a small labelled file written here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from routelmt.cli import main
from routelmt.records import ScoredExample, Segment, write_records
from routelmt.routers.base import ROUTERS, Router
from routelmt.routers.provenance import (
    TRAINING_SOURCES,
    read_training_sources,
    source_fingerprint,
    training_overlap,
    training_sources,
    write_training_sources,
)
from routelmt.storage import read_json, write_json


class SourceLengthRouter(Router):
    """gain ~ a * len(source) + b, saved with the record of its training sources."""

    name = "test-source-length"
    trainable = True

    def __init__(self) -> None:
        self.coef: tuple[float, float] | None = None
        self.train_sources: dict | None = None

    @staticmethod
    def _x(batch) -> np.ndarray:
        segs = [b.segment if isinstance(b, ScoredExample) else b for b in batch]
        return np.array([len(s.source) for s in segs], dtype=float)

    def fit(self, train):
        a, b = np.polyfit(self._x(train), [ex.gain for ex in train], 1)
        self.coef = (float(a), float(b))
        self.train_sources = training_sources(train)
        return self

    def score(self, batch) -> np.ndarray:
        assert self.coef is not None
        return self.coef[0] * self._x(batch) + self.coef[1]

    def save(self, directory) -> Path:
        Path(directory).mkdir(parents=True, exist_ok=True)
        write_training_sources(directory, self.train_sources)
        write_json(Path(directory) / "router.json", {"router": self.name, "coef": self.coef})
        return Path(directory)

    @classmethod
    def load(cls, directory) -> SourceLengthRouter:
        router = cls()
        router.coef = tuple(read_json(Path(directory) / "router.json")["coef"])
        return router


if SourceLengthRouter.name not in ROUTERS:
    ROUTERS.register(SourceLengthRouter.name)(SourceLengthRouter)


def _labels(path: Path, directions=("en-de", "en-es"), n: int = 40, offset: int = 0) -> Path:
    rng = np.random.default_rng(offset)
    rows = []
    for d in directions:
        for i in range(offset, offset + n):
            source = "word " * (1 + i % 9) + f"n{i}"
            q_small = float(rng.uniform(20, 60))
            gain = 2.0 * len(source) / 5 + float(rng.normal(0, 3))
            seg = Segment(id=f"{d}:{i}", direction=d, source=source, source_id=f"s{i}")
            rows.append(ScoredExample(seg, "S", "L", "s", "l", "chrF2", q_small, q_small + gain))
    write_records(path, rows)
    return path


def test_lodo_with_baselines_per_direction_first(tmp_path, capsys):
    labels = _labels(tmp_path / "labels.jsonl")
    out = tmp_path / "eval"
    argv = ["evaluate", "-i", str(labels), "--routers", f"random,length,{SourceLengthRouter.name}"]
    argv += ["--cv", "lodo", "--folds", "4", "--baselines", "length,random"]
    argv += ["--bootstrap", "40", "--budgets", "0.3", "-o", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.index("mean over 2 directions") < printed.index("pooled (all directions")
    assert "paired vs length" in printed and "paired vs random" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["run"]["cv"] == "lodo"
    assert metrics["settings"]["paired"]["baselines"] == ["length", "random"]
    mean = metrics["direction_mean"]
    assert mean["directions"] == ["en-de", "en-es"]
    hc = mean["routers"][SourceLengthRouter.name]["budgets"]["0.3"]["hc"]
    assert hc["ci_low"] <= hc["value"] <= hc["ci_high"]
    assert set(mean["paired"]["length"]) == {"random", SourceLengthRouter.name}
    report = (out / "report.md").read_text()
    assert report.index("## Per direction") < report.index("## Pooled")


def test_cv_and_baseline_errors_exit_2(tmp_path, capsys):
    one = _labels(tmp_path / "one.jsonl", directions=("en-de",))
    argv = ["evaluate", "-i", str(one), "--routers", "random", "--cv", "lodo", "--bootstrap", "0"]
    assert main([*argv, "-o", str(tmp_path / "a")]) == 2
    assert "at least two directions" in capsys.readouterr().err
    argv = ["evaluate", "-i", str(one), "--routers", "random", "--baselines", "entropy"]
    assert main([*argv, "--bootstrap", "0", "-o", str(tmp_path / "b")]) == 2
    assert "--baselines names entropy, which is not in --routers" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["evaluate", "-i", str(one), "--cv", "loo", "-o", str(tmp_path / "c")])


def test_router_dir_overlap_warning(tmp_path, caplog):
    train = _labels(tmp_path / "train.jsonl", directions=("en-de",), n=30)
    artifact = tmp_path / "router"
    argv = ["-q", "train", "-i", str(train), "--router", SourceLengthRouter.name]
    assert main([*argv, "-o", str(artifact)]) == 0
    record = read_training_sources(artifact)
    assert record["n_examples"] == 30 and len(record["sources"]) == 30

    def evaluate(labels: Path, name: str) -> tuple[str, dict]:
        argv = ["-q", "evaluate", "-i", str(labels), "--routers", "random"]
        argv += ["--router-dir", str(artifact), "--bootstrap", "0", "-o", str(tmp_path / name)]
        caplog.clear()
        assert main(argv) == 0
        metrics = json.loads((tmp_path / name / "metrics.json").read_text())
        return caplog.text, metrics["run"]["router_dir_overlap"][str(artifact)]

    # the same sources, in the trained direction and in another one
    err, overlap = evaluate(_labels(tmp_path / "same.jsonl", n=30), "same")
    assert "overlaps the evaluation set: 60 of 60 segments" in err
    assert "30 in the same direction" in err and "optimistic" in err
    assert overlap["same_source"] == 60 and overlap["same_example"] == 30
    # new sources: no warning
    err, overlap = evaluate(_labels(tmp_path / "new.jsonl", n=30, offset=100), "new")
    assert "overlaps" not in err and overlap["same_source"] == 0
    # an artifact saved before records existed still loads, with a note
    (artifact / TRAINING_SOURCES).unlink()
    err, overlap = evaluate(_labels(tmp_path / "same.jsonl", n=30), "old")
    assert "records no training sources" in err and overlap["recorded"] is False


def test_training_sources_record_is_hashes_only_and_checked(tmp_path):
    seg = Segment(id="1", direction="en-de", source="  Secret text. ")
    record = training_sources([seg, Segment(id="2", direction="en-es", source="Secret text.")])
    assert record["sources"] == {source_fingerprint("Secret text."): ["en-de", "en-es"]}
    write_training_sources(tmp_path, record)
    assert "Secret" not in (tmp_path / TRAINING_SOURCES).read_text()
    overlap = training_overlap(
        tmp_path, [Segment(id="3", direction="en-zh", source="Secret text.")]
    )
    assert (overlap.same_source, overlap.same_example, overlap.directions) == (1, 0, {"en-zh": 1})
    write_json(tmp_path / TRAINING_SOURCES, {"format": 9})
    with pytest.raises(Exception, match="not a training-sources record"):
        read_training_sources(tmp_path)
    write_training_sources(tmp_path, None)  # a router without a record removes a stale one
    assert read_training_sources(tmp_path) is None
