"""``routelmt data -i my.jsonl``: your own segments, a stratified sample, live models (the large
one a real loopback OpenAI-compatible server that counts its calls), labels with and without
references, the cost before any call, resume per segment, and bad input."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from loopback_llm import LoopbackLLM

from routelmt.cli import main
from routelmt.own_labels import default_label, stratified_sample
from routelmt.records import Segment

RECIPES = [
    "Preheat the oven to 180 degrees.",
    "Whisk the eggs with the sugar until pale.",
    "Fold in the flour gently.",
    "Bake for twenty-five minutes.",
    "Let the cake cool before slicing.",
    "Chop the onions finely.",
    "Fry the garlic in olive oil.",
    "Add a pinch of salt.",
    "Simmer the sauce for ten minutes.",
    "Serve with fresh basil.",
    "Melt the butter in a small pan.",
    "Season to taste with pepper.",
]


def _own_files(tmp_path: Path, references: bool = False) -> tuple[Path, Path]:
    rows = []
    for direction in ("en-de", "en-fr"):
        for i, text in enumerate(RECIPES):
            row = {"id": f"{direction}-{i}", "direction": direction, "source": text}
            if references:
                row["reference"] = text
            rows.append(row)
    rows = rows[:-4]  # 12 en-de, 8 en-fr
    segments = tmp_path / "mine.jsonl"
    segments.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    small = tmp_path / "small.jsonl"
    small.write_text(
        "".join(
            json.dumps({"segment_id": r["id"], "system": "tiny", "text": r["source"][::2]}) + "\n"
            for r in rows
        ),
        encoding="utf-8",
    )
    return segments, small


def test_stratified_sample_keeps_the_direction_shares():
    segments = [Segment(f"a{i}", "en-de", f"x{i}") for i in range(30)]
    segments += [Segment(f"b{i}", "en-fr", f"y{i}") for i in range(10)]
    sample = stratified_sample(segments, 8, seed=1)
    assert Counter(s.direction for s in sample) == {"en-de": 6, "en-fr": 2}
    assert sample == stratified_sample(segments, 8, seed=1)  # seeded
    assert [segments.index(s) for s in sample] == sorted(segments.index(s) for s in sample)
    tiny = stratified_sample(segments[:29] + segments[-1:], 2)  # 29 vs 1: each direction kept
    assert Counter(s.direction for s in tiny) == {"en-de": 1, "en-fr": 1}


def test_label_a_sample_with_the_large_output_as_reference_then_resume(tmp_path, capsys):
    segments, small = _own_files(tmp_path)
    out = tmp_path / "labels.jsonl"
    with LoopbackLLM() as llm:
        argv = ["-q", "data", "-i", str(segments), "--small", str(small), "--large", llm.spec]
        argv += ["--sample", "10", "--max-large-calls", "10", "--label", "pseudo-reference"]
        argv += ["-o", str(out), "--large-cost", "0.02"]
        assert main(argv) == 0
        captured = capsys.readouterr()
        assert '"large_calls": 10' in captured.err and '"estimated_cost": 0.2' in captured.err
        assert sum(llm.answered.values()) == 10
        assert main(argv) == 0  # a rerun pays nothing again
        assert '"large_calls": 0' in capsys.readouterr().err
        assert sum(llm.received.values()) == 10
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 10
    assert Counter(r["direction"] for r in rows) == {"en-de": 6, "en-fr": 4}
    for row in rows:
        assert row["large_text"] == "[L] " + row["source"]
        assert row["q_large"] == pytest.approx(100.0) and row["q_small"] < 100
        assert row["gain"] == pytest.approx(row["q_large"] - row["q_small"])
        assert row["metric"].startswith("pseudo-reference:chrF2")


def test_label_against_references_by_default_when_every_segment_has_one(tmp_path, capsys):
    segments, small = _own_files(tmp_path, references=True)
    out = tmp_path / "labels.jsonl"
    with LoopbackLLM() as llm:
        argv = ["-q", "data", "-i", str(segments), "--small", str(small), "--large", llm.spec]
        assert main([*argv, "-o", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["label"] == "reference" and summary["n"] == 20
    assert summary["mean_q_small"] < summary["mean_q_large"]


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--max-large-calls", "3"], "over --max-large-calls 3"),
        (["--label", "reference"], "needs a reference"),
        (["--label", "chrf"], "needs references"),
        (["--label", "nonsense"], "not reference"),
        (["--small", "Phi-3-Medium"], "is a recording with no output"),
        (["--large", "openai:http://127.0.0.1:9/v1#big"], "unreachable"),
        (["--sample", "0"], "--sample"),
    ],
)
def test_bad_input_is_exit_2_with_no_call_and_nothing_written(tmp_path, capsys, extra, needle):
    segments, small = _own_files(tmp_path)
    out = tmp_path / "out" / "labels.jsonl"
    with LoopbackLLM() as llm:
        argv = ["data", "-i", str(segments), "--small", str(small), "--large", llm.spec]
        assert main([*argv, "-o", str(out), *extra]) == 2
        assert sum(llm.received.values()) == 0
    err = capsys.readouterr().err
    assert err.startswith("routelmt data: error:") and needle in err, err
    assert not (tmp_path / "out").exists()


def test_the_default_label_without_references_is_the_pseudo_reference():
    with_ref = [Segment("a", "en-de", "x", reference="y")]
    without = [*with_ref, Segment("b", "en-de", "z")]
    assert default_label(with_ref) == "reference"
    assert default_label(without) == "pseudo-reference"  # measured best of the free labels
