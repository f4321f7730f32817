"""``routelmt translate --small --large --budget``: the exact share, the plan before any large
call, kill -9 safety, fallbacks, and bad input -- against a real loopback OpenAI-compatible
server that counts every call (the large model; none can run here)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from loopback_llm import LoopbackLLM
from serve_fixtures import closed_port_url

import routelmt
from routelmt.budget.allocation import budget_count, descending_order, tie_keys
from routelmt.budget.tiers import allocate_tiers
from routelmt.cli import main

WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "while",
    "birds",
    "sing",
    "near",
    "old",
    "trees",
]


def _corpus(tmp_path: Path, n_es: int = 21, n_de: int = 17) -> tuple[Path, Path, list[dict]]:
    """Segments of varied length in two directions, and a recorded 'small' model for them."""
    rng = np.random.default_rng(7)
    rows = []
    for direction, n in (("en-es", n_es), ("en-de", n_de)):
        for i in range(n):
            text = " ".join(rng.choice(WORDS, size=int(rng.integers(2, 14))))
            rows.append({"id": f"{direction}/{i}", "direction": direction, "source": text})
    segments = tmp_path / "segments.jsonl"
    segments.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    small = tmp_path / "small.jsonl"
    small.write_text(
        "".join(
            json.dumps({"segment_id": r["id"], "system": "tiny", "text": r["source"].upper()})
            + "\n"
            for r in rows
        ),
        encoding="utf-8",
    )
    return segments, small, rows


def _argv(segments: Path, small: Path, large: str, out: Path, *extra: str) -> list[str]:
    return [
        "-q", "translate", "-i", str(segments), "--small", str(small), "--large", large,
        "--router", "length", "-o", str(out), "--large-arg", "max_retries=0", *extra,
    ]  # fmt: skip


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _evaluator_top_k(scores: np.ndarray, p: float) -> np.ndarray:
    """What the bench evaluator routes: its k, its seeded tie keys (evaluate_arrays, seed 0)."""
    keys = tie_keys(scores.size, np.random.SeedSequence(0).spawn(2)[0])
    mask = np.zeros(scores.size, dtype=bool)
    mask[descending_order(scores, keys)[: int(budget_count(scores.size, p))]] = True
    return mask


@pytest.mark.parametrize("per_direction", [False, True])
def test_exact_share_and_the_library_top_k(tmp_path, capsys, per_direction):
    segments, small, rows = _corpus(tmp_path)
    out = tmp_path / "out.jsonl"
    flags = ["--budget", "0.3"] + (["--per-direction"] if per_direction else [])
    with LoopbackLLM() as llm:
        assert main(_argv(segments, small, llm.spec, out, *flags)) == 0
    summary = json.loads(capsys.readouterr().out)
    lengths = np.array([len(r["source"]) for r in rows], dtype=float)
    assert len(set(lengths)) < len(lengths)  # ties exist, so the rule matters
    # the evaluator's pooled keys, restricted to a direction
    keys = tie_keys(lengths.size, np.random.SeedSequence(0).spawn(2)[0])
    expected = np.zeros(len(rows), dtype=bool)
    groups = [[i for i, r in enumerate(rows) if r["direction"] == d] for d in ("en-es", "en-de")]
    for idx in groups if per_direction else [list(range(len(rows)))]:
        order = descending_order(lengths[idx], keys[idx])[: budget_count(len(idx), 0.3)]
        expected[np.array(idx)[order]] = True
    if not per_direction:
        assert (expected == _evaluator_top_k(lengths, 0.3)).all()
    k = sum(budget_count(len(idx), 0.3) for idx in (groups if per_direction else [rows]))
    records = _read(out)
    routed = np.array([r["tier"] == "large" for r in records])
    assert routed.sum() == k == summary["large_calls"] == summary["large_answered"]
    assert (routed == expected).all()  # the library's k and tie rule, nothing else
    assert sum(llm.answered.values()) == k and max(llm.answered.values()) == 1
    for record, row in zip(records, rows):
        assert record["id"] == row["id"] and record["score"] == len(row["source"])
        want = f"[L] {row['source']}" if record["tier"] == "large" else row["source"].upper()
        assert record["translation"] == want and record["fallback"] is False
    assert summary["within_budget"] and summary["spend"] == k


def test_dry_run_calls_nothing_and_the_run_keeps_its_plan(tmp_path, capsys):
    segments, small, _ = _corpus(tmp_path)
    out = tmp_path / "out.jsonl"
    with LoopbackLLM() as llm:
        argv = _argv(segments, small, llm.spec, out, "--budget", "0.25", "--large-cost", "0.5")
        assert main([*argv, "--dry-run"]) == 0
        plan = json.loads(capsys.readouterr().out)
        assert sum(llm.received.values()) == 0 and not out.exists()
        assert plan["dry_run"] and plan["large_calls"] == budget_count(38, 0.25)
        assert plan["estimated_large_cost"] == 0.5 * plan["large_calls"]
        stored = json.loads(Path(plan["plan"]).read_text())
        assert main(argv) == 0
        summary = json.loads(capsys.readouterr().out)
    routed = [r["id"] for r in _read(out) if r["tier"] == "large"]
    planned = [i for i, t in zip(stored["ids"], stored["tiers"]) if t == 1]
    assert routed == planned and summary["spend"] == 0.5 * len(planned) == summary["spend_limit"]


def test_kill_9_mid_run_then_rerun_pays_no_call_twice(tmp_path):
    segments, small, rows = _corpus(tmp_path)
    out = tmp_path / "out.jsonl"
    k = budget_count(len(rows), 0.3)
    env = dict(os.environ, PYTHONPATH=str(Path(routelmt.__file__).parents[1]))
    with LoopbackLLM(hang_after=4) as llm:
        argv = _argv(segments, small, llm.spec, out, "--budget", "0.3", "--large-concurrency", "1")
        command = [sys.executable, "-m", "routelmt.cli", *argv]
        first = subprocess.Popen(command, env=env, stderr=subprocess.PIPE)
        try:
            assert llm.wait_received(5), "the fifth large call never arrived"
            first.send_signal(signal.SIGKILL)  # while call 5 hangs; calls 1-4 were answered
        finally:
            first.wait(30)
        assert first.returncode == -signal.SIGKILL
        assert sum(llm.answered.values()) == 4 and not out.exists()
        llm.release()
        second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert second.returncode == 0, second.stderr
    summary = json.loads(second.stdout)
    assert summary["large_reused_from_earlier_run"] == 4 and summary["large_answered"] == k
    assert sum(llm.answered.values()) == k and set(llm.answered.values()) == {1}
    # only the call in flight at the kill was asked twice (and answered once)
    assert sorted(llm.received.values()).count(2) == 1 and sum(llm.received.values()) == k + 1
    assert sum(r["tier"] == "large" for r in _read(out)) == k


def test_a_failed_large_call_falls_back_flagged(tmp_path, capsys):
    segments, small, rows = _corpus(tmp_path)
    longest = max(rows, key=lambda r: len(r["source"]))
    with LoopbackLLM(fail_on=(longest["source"],)) as llm:
        out = tmp_path / "out.jsonl"
        assert main(_argv(segments, small, llm.spec, out, "--budget", "0.3")) == 0
        summary = json.loads(capsys.readouterr().out)
        assert main(_argv(segments, small, llm.spec, out, "--budget", "0.3")) == 0  # rerun
        capsys.readouterr()
    records = {r["id"]: r for r in _read(out)}
    fell = records[longest["id"]]
    assert fell["fallback"] is True and fell["tier"] == "small" and fell["planned_tier"] == "large"
    assert fell["translation"] == longest["source"].upper() and "HTTP 500" in fell["error"]
    assert summary["large_failed"] == 1 and summary["within_budget"]
    assert summary["spend"] == summary["large_answered"] == budget_count(len(rows), 0.3) - 1
    assert llm.received[longest["source"]] == 1  # a rerun does not ask again by default


def test_a_changed_budget_after_large_calls_is_refused(tmp_path, capsys):
    segments, small, _ = _corpus(tmp_path)
    out = tmp_path / "out.jsonl"
    with LoopbackLLM() as llm:
        assert main(_argv(segments, small, llm.spec, out, "--budget", "0.3")) == 0
        assert main(_argv(segments, small, llm.spec, out, "--budget", "0.5")) == 2
    assert "already made large calls" in capsys.readouterr().err


def test_a_cost_budget_over_two_tiers(tmp_path, capsys):
    segments, small, rows = _corpus(tmp_path)
    out = tmp_path / "out.jsonl"
    with LoopbackLLM() as cheap, LoopbackLLM() as dear:
        argv = _argv(segments, small, cheap.spec, out, "--large", dear.spec)
        argv += ["--cost-budget", "50", "--large-cost", "1", "--large-cost", "3"]
        assert main([*argv, "--gain-scale", "0.6", "--gain-scale", "1"]) == 0
    summary = json.loads(capsys.readouterr().out)
    lengths = np.array([len(r["source"]) for r in rows], dtype=float)
    expected = allocate_tiers(lengths[:, None] * [0.6, 1.0], np.array([1.0, 3.0]), 50.0).tier
    tiers = [{"small": 0, "large1": 1, "large2": 2}[r["tier"]] for r in _read(out)]
    assert tiers == expected.tolist() and 0 < summary["spend"] <= 50
    assert sum(cheap.answered.values()) == summary["large_calls_by_tier"]["large1"] > 0
    assert sum(dear.answered.values()) == summary["large_calls_by_tier"]["large2"] > 0


def _bad_inputs(tmp_path: Path, segments: Path) -> dict[str, tuple[list[str], str]]:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    nosource = tmp_path / "nosource.jsonl"
    nosource.write_text('{"id": "a", "direction": "en-es", "text": "hi"}\n', encoding="utf-8")
    nolang = tmp_path / "nolang.jsonl"
    nolang.write_text('{"id": "a", "direction": "en", "source": "hi"}\n', encoding="utf-8")
    return {
        "budget 0": ([str(segments), "--budget", "0"], "budget"),
        "budget 1.5": ([str(segments), "--budget", "1.5"], "budget"),
        "no budget": ([str(segments)], "--budget"),
        "empty file": ([str(empty), "--budget", "0.3"], "empty"),
        "missing column": ([str(nosource), "--budget", "0.3"], "source"),
        "direction without language": ([str(nolang), "--budget", "0.3"], "direction"),
        "unreachable": ([str(segments), "--budget", "0.3", "--large-is-down"], "unreachable"),
        "in-model router, endpoint small": (
            [
                str(segments),
                "--budget",
                "0.3",
                "--router",
                "shipped:routelmt-2stage",
                "--small",
                "UNREACHABLE",
            ],
            "hidden states",
        ),  # fmt: skip
        "router of another small model": (
            [
                str(segments),
                "--budget",
                "0.3",
                "--router",
                "shipped:routelmt-2stage",
                "--small",
                "hf:smollm2-135m",
            ],
            "was trained on gemma3-270m",
        ),  # fmt: skip
        "oracle router": ([str(segments), "--budget", "0.3", "--router", "gain-oracle"], "oracle"),
        "untrained router": ([str(segments), "--budget", "0.3", "--router", "routelmt"], "trained"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "budget 0", "budget 1.5", "no budget", "empty file", "missing column",
        "direction without language", "unreachable", "in-model router, endpoint small",
        "router of another small model", "oracle router", "untrained router",
    ],
)  # fmt: skip
def test_bad_input_is_exit_2_and_nothing_written(tmp_path, capsys, case):
    segments, small, _ = _corpus(tmp_path)
    args, needle = _bad_inputs(tmp_path, segments)[case]
    down = f"openai:{closed_port_url()}#big"
    args = [down if a == "UNREACHABLE" else a for a in args]
    out = tmp_path / "out" / "hybrid.jsonl"
    argv = ["translate", "-i", args[0], "--small", str(small), "--router", "length"]
    argv += ["--large", "LARGE", "-o", str(out), *[a for a in args[1:] if a != "--large-is-down"]]
    with LoopbackLLM() as llm:
        large = down if "--large-is-down" in args else llm.spec
        argv = [large if a == "LARGE" else a for a in argv]
        assert main(argv) == 2
        assert sum(llm.received.values()) == 0
    err = capsys.readouterr().err
    assert err.startswith("routelmt translate: error:") and needle in err, err
    assert not (tmp_path / "out").exists()


def test_a_small_model_behind_an_endpoint_with_a_model_free_router(tmp_path, capsys):
    segments, _, rows = _corpus(tmp_path)
    out = tmp_path / "out.jsonl"
    with LoopbackLLM() as small, LoopbackLLM() as large:
        argv = _argv(segments, Path("unused"), large.spec, out, "--budget", "0.3")
        argv[argv.index("--small") + 1] = small.spec.replace("#big", "#tiny")
        assert main([*argv, "--backend-arg", "max_retries=0"]) == 0
    summary = json.loads(capsys.readouterr().out)
    k = budget_count(len(rows), 0.3)
    assert sum(large.answered.values()) == k == summary["large_answered"]
    assert sum(small.answered.values()) == len(rows) - k  # only what stays small
    assert {r["model"] for r in _read(out)} == {"tiny", "big"}


@pytest.mark.parametrize("torn", ['{"segment_id": "b", "ok": tr', "\x00\x00\x00\n"])
def test_the_ledger_drops_a_torn_last_line_and_keeps_an_answer_over_a_failure(tmp_path, torn):
    from routelmt.batch.ledger import read_ledger

    path = tmp_path / "large.jsonl"
    rows = [
        {"segment_id": "a", "ok": False, "text": None, "error": "down"},
        {"segment_id": "a", "ok": True, "text": "A"},  # retried (--retry-failed) and answered
        {"segment_id": "c", "ok": True, "text": "C"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + torn, encoding="utf-8")
    done = read_ledger(path)
    assert set(done) == {"a", "c"} and done["a"]["text"] == "A"
    assert path.read_text(encoding="utf-8").endswith('"C"}\n')  # truncated before the tear
    path.write_text("garbage\n" + json.dumps(rows[2]) + "\n", encoding="utf-8")
    with pytest.raises(Exception, match="large.jsonl:1: unreadable"):
        read_ledger(path)
