"""The CLI end to end on a tiny WMT-layout corpus written by the test."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from routelmt.cli import main

WORDS = [
    "the",
    "a",
    "cat",
    "dog",
    "house",
    "tree",
    "runs",
    "sleeps",
    "big",
    "small",
    "red",
    "blue",
    "near",
    "far",
]


def _layout(root: Path, n: int = 40) -> Path:
    rng = random.Random(0)
    txt = root / "txt"
    sources = [" ".join(rng.choices(WORDS, k=rng.randint(3, 12))) for _ in range(n)]
    refs = [s.upper() for s in sources]
    small = [" ".join(w.upper() if rng.random() < 0.4 else w for w in s.split()) for s in sources]
    large = [" ".join(w.upper() if rng.random() < 0.8 else w for w in s.split()) for s in sources]
    files = {
        "sources/en-es.txt": sources,
        "references/en-es.refA.txt": refs,
        "documents/en-es.docs": [
            f"{rng.choice(['news', 'social'])}\tdoc{i // 4}" for i in range(n)
        ],
        "system-outputs/en-es/Small.txt": small,
        "system-outputs/en-es/Large.txt": large,
        "system-outputs/en-es/Short.txt": large[:-1],
    }
    for rel, lines in files.items():
        path = txt / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return root


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    return _layout(tmp_path / "wmt")


def _data_args(corpus: Path) -> list[str]:
    return ["--wmt-root", str(corpus), "--pairs", "en-es", "--small", "Small", "--large", "Large"]


def test_data_then_evaluate(corpus, tmp_path, capsys):
    labels = tmp_path / "labels.jsonl"
    assert main(["-q", "data", *_data_args(corpus), "-o", str(labels)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n"] == 40 and summary["mean_gain"] > 0
    rows = [json.loads(line) for line in labels.read_text().splitlines()]
    assert {"q_small", "q_large", "gain", "small_text", "large_text"} <= rows[0].keys()

    out = tmp_path / "eval"
    argv = ["-q", "evaluate", "-i", str(labels), "--budgets", "0.25,0.5", "--bootstrap", "50"]
    assert main([*argv, "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "gain-oracle" in printed and "HitRate" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    oracle = metrics["routers"]["gain-oracle"]["budgets"]["0.25"]
    assert oracle["hit_rate"]["value"] == pytest.approx(100.0)
    for key in ("spearman", "apgr"):
        assert key in metrics["routers"]["random"]
    for key in ("hit_rate", "mean_delta", "hybrid_quality", "severe_loss"):
        assert key in metrics["routers"]["length"]["budgets"]["0.5"]
    assert (out / "report.md").read_text().startswith("# Routing evaluation")
    assert (out / "curves.png").stat().st_size > 10_000
    scores = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    assert len(scores) == 40 and "length" in scores[0]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--pairs", "en-fr"], "unknown pair 'en-fr' in wmt24; known: en-es"),
        (["--large", "Nope"], "unknown system 'Nope'"),
        (["--large", "Short"], "has 39 lines but the source has 40"),
        (["--budgets", "1.5"], "--budgets: 1.5 is outside (0, 1)"),
        (["--budgets", "0"], "outside (0, 1)"),
        (["--budgets", "x"], "'x' is not a number"),
        (["--routers", "magic"], "unknown router 'magic'"),
        (["--metric", "meteor"], "unknown metric 'meteor'"),
    ],
)
def test_bad_inputs_are_clear_errors(corpus, tmp_path, capsys, extra, message):
    argv = ["-q", "evaluate", *_data_args(corpus), "--bootstrap", "0", *extra]
    assert main([*argv, "-o", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err


def test_malformed_and_empty_labels(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a"\n')
    assert main(["evaluate", "-i", str(bad), "-o", str(tmp_path / "o")]) == 2
    assert "bad.jsonl:1: malformed JSON" in capsys.readouterr().err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert main(["evaluate", "-i", str(empty), "-o", str(tmp_path / "o")]) == 2
    assert "empty" in capsys.readouterr().err


def test_missing_data_folder(tmp_path, capsys):
    argv = ["data", "--wmt-root", str(tmp_path / "nowhere"), "-o", str(tmp_path / "x.jsonl")]
    assert main(argv) == 2
    assert "is not a WMT system-outputs folder" in capsys.readouterr().err


def test_data_list_needs_no_output_but_labelling_does(corpus, capsys):
    assert main(["data", "--list", "--wmt-root", str(corpus)]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert "Large" in listing["en-es"]
    assert main(["data", "--wmt-root", str(corpus), "--pairs", "en-es"]) == 2
    assert "needs -o/--output" in capsys.readouterr().err


def test_global_flags_after_the_subcommand_and_quiet_default_logging(corpus, tmp_path):
    """`routelmt evaluate ... -q` works like `routelmt -q evaluate ...`; by default only our own
    INFO lines reach stderr (never matplotlib's font manager), and progress bars count segments."""
    import os
    import subprocess
    import sys

    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": src, "MPLCONFIGDIR": str(tmp_path / "mpl")}

    def cli(*argv: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "routelmt.cli", *argv]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)

    labels = tmp_path / "labels.jsonl"
    loud = cli("data", *_data_args(corpus), "-o", str(labels))
    assert loud.returncode == 0, loud.stderr
    assert "40/40" in loud.stderr and "seg" in loud.stderr  # a bar over segments, not batches
    argv = ["evaluate", "-i", str(labels), "--bootstrap", "20", "--budgets", "0.3"]
    quiet = cli(*argv, "-o", str(tmp_path / "q"), "-q")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""
    default = cli(*argv, "-o", str(tmp_path / "d"))  # a fresh MPLCONFIGDIR: matplotlib is chatty
    assert default.returncode == 0, default.stderr
    lines = default.stderr.splitlines()
    assert lines and all(line.startswith("INFO routelmt.") for line in lines), lines
    missing = cli("calibrate", "-i", str(tmp_path / "d" / "scores.jsonl"), "-r", "length")
    assert missing.returncode == 2 and "--budget" in missing.stderr
    both = cli(
        "-q",
        "calibrate",
        "-i",
        str(tmp_path / "d" / "scores.jsonl"),
        "-r",
        "length",
        "-b",
        "0.3",
        "-v",
    )
    assert both.returncode == 0 and json.loads(both.stdout)["column"] == "length"
