"""Every script in bench/ runs: each one's ``--help`` (it imports cleanly and parses its
arguments), and a tiny real run of the scripts the docs' ablation tables rest on, on data this
test writes (a WMT layout with the six strong systems, a prefill file, the small model's
translations).

Scripts that need a real model, a Ray cluster or a server under load get ``--help`` only; why
is in ``HELP_ONLY``. The tiny runs execute the script as a user does (a subprocess), so what
they print and write is what the docs' commands print and write.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from routelmt.datasets.wmt import source_id
from routelmt.evaluation.ablation_inputs import STRONG

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"

# what each script needs that a unit test cannot have; these run --help only
HELP_ONLY = {
    "ablation_output_pass.py": "decodes with Gemma-3-270M",
    "ablation_prefill.py": "prefills with Gemma-3-270M",
    "copy_guard.py": "decodes with Gemma-3-270M through llama.cpp",
    "budget_drift.py": "the six full WMT24 en-xx pairs (tests/integration/test_budget_drift.py)",
    "feature_speed.py": "times Gemma-3-270M",
    "guards.py": "trains the in-model routers on Gemma-3-270M's prefill",
    "layer_sweep.py": "trains the in-model router on Gemma-3-270M's prefill",
    "llamacpp_router.py": "llama.cpp and a bench run's outputs",
    "lora_learning_curve.py": "fine-tunes Gemma-3-270M with LoRA",
    "outage.py": "a live service and a hanging endpoint for tens of seconds",
    "prefix_sharing.py": "times Gemma-3-270M",
    "probe_vs_lora.py": "fine-tunes Gemma-3-270M with LoRA",
    "qe_cost.py": "times lingua loading its language models (seconds of a test run)",
    "ray_scaling.py": "a Ray cluster",
    "serve_load.py": "two live servers under load",
    "small_throughput.py": "times Gemma-3-270M",
    "small_anchor.py": "times Gemma-3-270M against plain llama-cpp-python",
    "tiers.py": "trains the in-model router on Gemma-3-270M's prefill",
    "two_stage_ceiling.py": "scikit-learn's trees and the sentence encoder on every segment",
    # the library each of these is thin over has its own unit tests (named beside it)
    "batch_invariance.py": "decodes with Gemma-3-270M through llama.cpp",
    "batch_throughput.py": "times CLI processes translating with Gemma-3-270M",
    "batch_vs_evaluator.py": "every WMT24 segment of three directions (batch: test_batch_hybrid)",
    "dashboard_load.py": "a live service and headless Chromium (test_dashboard_browser)",
    "learning_curve.py": "a bench run's prefill features (test_learning_curve)",
    "live_replay.py": "a labelled bench run or the WMT24 systems (test_live_replay)",
    "pacer_tracking.py": "a whole WMT24 direction's sources (the pacer: test_budget_pacer)",
    "recorded_run.py": "scores every WMT24 segment of three directions",
    "reffree_labels.py": "the QE encoder on a bench run's translations (test_reffree)",
    "router_latency.py": "times Gemma-3-270M in the serving path",
    "score_distribution.py": "a bench run's out-of-fold scores (test_pacer_prior)",
    "repair_eval.py": "re-decodes flagged segments with Gemma-3-270M (repair: test_repair)",
    "llama_step_profile.py": "profiles Gemma-3-270M's decode steps in llama.cpp",
}
TINY_RUN = {  # scripts a test below runs on tiny data
    "ablation_report.py",
    "compare_translations.py",
    "router_ablation.py",
    "two_stage_ablation.py",
}
SCRIPTS = sorted(p.name for p in BENCH.glob("*.py"))


def test_every_script_is_covered():
    assert set(SCRIPTS) == set(HELP_ONLY) | TINY_RUN


@pytest.mark.parametrize("script", SCRIPTS)
def test_help(script: str, monkeypatch):
    monkeypatch.setattr(sys, "argv", [script, "--help"])
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
        runpy.run_path(str(BENCH / script), run_name="__main__")
    assert done.value.code == 0
    assert out.getvalue().startswith("usage:")


def _run(args: list[str], env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


WORDS = [
    "the",
    "cat",
    "dog",
    "sleeps",
    "runs",
    "house",
    "tree",
    "river",
    "stone",
    "light",
    "night",
    "morning",
    "city",
    "road",
]


def _tiny_study(root: Path, n: int = 60) -> tuple[Path, Path, dict[str, str]]:
    """A WMT layout (en-de, en-es; the six strong systems), the prefill file and the small
    model's translations of its 2n segments; returns (prefill path, translations, env)."""
    rng = np.random.default_rng(0)
    sources = [" ".join(rng.choice(WORDS, 6 + i % 9)) + f" {i}." for i in range(n)]
    txt = root / "wmt" / "txt"
    rows, small_rows = [], []
    for pair in ("en-de", "en-es"):
        refs = [" ".join(rng.choice(WORDS, 8)) + f" {pair} {i}." for i in range(n)]
        _write(txt / "sources" / f"{pair}.txt", sources)
        _write(txt / "references" / f"{pair}.refA.txt", refs)
        _write(txt / "documents" / f"{pair}.docs", [f"news\tdoc{i // 10}" for i in range(n)])
        for system in STRONG:
            _write(
                txt / "system-outputs" / pair / f"{system}.txt", [_blur(r, rng, 0.2) for r in refs]
            )
        for i, ref in enumerate(refs):
            rows.append(
                (f"wmt24/{pair}/{i}", pair, source_id("wmt24", sources[i]), len(sources[i]))
            )
            small_rows.append({"segment_id": rows[-1][0], "text": _blur(ref, rng, 0.8)})
    translations = root / "translations.jsonl"
    translations.write_text("".join(json.dumps(r) + "\n" for r in small_rows), encoding="utf-8")
    m = len(rows)
    states = rng.normal(size=(m, 19, 4))
    prefill = root / "ablation" / "prefill.npz"
    prefill.parent.mkdir(parents=True)
    np.savez(
        prefill,
        ids=np.array([r[0] for r in rows]),
        directions=np.array([r[1] for r in rows]),
        groups=np.array([r[2] for r in rows]),
        last=states,
        mean=states + rng.normal(size=states.shape),
        entropy=rng.uniform(0, 5, m),
        source_tokens=np.array([r[3] // 4 for r in rows]),
        prompt_tokens=np.array([r[3] // 4 + 30 for r in rows]),
        source_chars=np.array([r[3] for r in rows]),
    )
    env = dict(os.environ)
    env["ROUTELMT_DATA"] = str(root / "wmt")
    env["ROUTELMT_CACHE"] = str(root / "cache")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    return prefill, translations, env


def _write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def _blur(text: str, rng: np.random.Generator, drop: float) -> str:
    words = text.split()
    kept = [w for w in words if rng.random() > drop * rng.random() * 2]
    return " ".join(kept or words[:1])


def test_router_ablation_and_its_report_on_tiny_data(tmp_path: Path):
    prefill, translations, env = _tiny_study(tmp_path)
    out = tmp_path / "ablation" / "in-model-gpt4"
    args = [str(BENCH / "router_ablation.py"), "--prefill", str(prefill)]
    args += ["--small", str(translations), "--large", "GPT-4", "--quick", "--bootstrap", "20"]
    args += ["--layers", "3,6", "-o", str(out)]
    printed = _run(args, env, tmp_path)
    assert "large = GPT-4, kfold" in printed and "large = GPT-4, lodo" in printed
    report = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    result = report["GPT-4/kfold"]
    assert set(result["directions"]) == {"en-de", "en-es"}
    expected = {"length", "entropy", "quality oracle", "probe (paper: ridge, one layer by CV)"}
    assert expected <= set(result["mean_hc"])
    cell = result["directions"]["en-de"]["routers"]["probe (paper: ridge, one layer by CV)"]
    assert np.isfinite(cell["hc"]) and "length" in cell["vs"]
    table = _run([str(BENCH / "ablation_report.py"), str(out.with_suffix(".json"))], env, tmp_path)
    assert "#### GPT-4/kfold" in table and "en-de: minus length" in table


def test_two_stage_ablation_on_tiny_data(tmp_path: Path):
    pytest.importorskip("sklearn", reason="its GBT rows need scikit-learn (the ablation extra)")
    prefill, translations, env = _tiny_study(tmp_path)
    out = tmp_path / "ablation" / "two-stage"
    args = [str(BENCH / "two_stage_ablation.py"), "--prefill", str(prefill)]
    args += ["--small", str(translations), "--large", "GPT-4", "--schemes", "kfold"]
    args += ["--bootstrap", "20", "-o", str(out)]
    printed = _run(args, env, tmp_path)
    assert "two-stage as shipped (ridge, quadratic)" in printed
    report = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert set(report["GPT-4/kfold"]["split"]) == {"0.0", "0.25", "0.5", "0.75", "1.0"}
    with np.load(out.with_name(out.name + "-scores.npz")) as scores:
        assert np.isfinite(scores["GPT-4/kfold/two-stage, learned (GBT)"]).all()


def test_compare_translations_on_two_tiny_runs(tmp_path: Path):
    _, translations, env = _tiny_study(tmp_path)
    rows = [json.loads(line) for line in translations.read_text(encoding="utf-8").splitlines()]
    wmt = tmp_path / "wmt" / "txt"
    refs = {
        pair: (wmt / "references" / f"{pair}.refA.txt").read_text(encoding="utf-8").splitlines()
        for pair in ("en-de", "en-es")
    }
    for run, change in (("a", False), ("b", True)):
        folder = tmp_path / run
        segments, outputs = [], []
        for row in rows:
            _, pair, index = row["segment_id"].split("/")
            segments.append(
                {
                    "id": row["segment_id"],
                    "direction": pair,
                    "source": f"source {index}",
                    "reference": refs[pair][int(index)],
                }
            )
            text = row["text"] + (" extra" if change and int(index) % 2 else "")
            if change and int(index) == 0:  # run b answers nothing once: a failure on b only
                text = ""
            outputs.append({"segment_id": row["segment_id"], "system": "small", "text": text})
        _write(folder / "data" / "segments.jsonl", [json.dumps(s) for s in segments])
        _write(
            folder / "translate" / "hf-small" / "translations.jsonl",
            [json.dumps(o) for o in outputs],
        )
        ids = [o["segment_id"] for o in outputs]
        q_small = 11.0 if change else 10.0  # b's small model one point better everywhere
        for system, q in (("hf-small", q_small), ("GPT-4", 20.0)):
            _write(
                folder / "score" / system / "scores.jsonl",
                [json.dumps({"segment_id": i, "q": q}) for i in ids],
            )
        large_out = [{"segment_id": i, "system": "GPT-4", "text": "x"} for i in ids]
        _write(folder / "translate" / "GPT-4" / "translations.jsonl", map(json.dumps, large_out))
        routed = {"router": "r", "ids": ids, "scores": [float(k) for k in range(len(ids))]}
        _write(folder / "routers" / "GPT-4" / "r" / "scores.json", [json.dumps(routed)])
    printed = _run(
        [
            str(BENCH / "compare_translations.py"),
            str(tmp_path / "a"),
            str(tmp_path / "b"),
            "--n-boot",
            "50",
            "--failures",
            "--no-language-check",
            "--hybrid",
            "GPT-4",
            "--router",
            "r",
        ],
        env,
        tmp_path,
    )
    assert "en-de" in printed and "en-es" in printed
    failures = printed.split("catastrophic outputs (empty, echo, copy)")[1].splitlines()
    total = next(line.split() for line in failures if line.startswith("all"))
    n = len(rows)
    assert total == ["all", str(n), "0", "(0.0%)", "2", f"({100 * 2 / n:.1f}%)", "0", "2"]
    # hybrid: 30% of each direction goes large in both runs (20); the rest gains b's point
    hybrid = printed.split("hybrid chrF at p = 0.3")[1].splitlines()
    rows_by = {line.split()[0]: line.split() for line in hybrid[2:] if line.strip()}
    assert set(rows_by) == {"en-de", "en-es", "all"}
    for name in ("en-de", "en-es"):
        count = int(rows_by[name][1])
        large = int(0.3 * count + 0.5)  # the library's k per direction
        assert float(rows_by[name][4]) == pytest.approx((count - large) / count, abs=0.006)
