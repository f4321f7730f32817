"""``routelmt bench`` end to end on a tiny WMT layout: caching, resuming, config errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from test_cli import _layout
from test_translate_cli import SLOW_CLI

from routelmt import pipeline
from routelmt.backends.resolve import make_translator
from routelmt.cli import main
from routelmt.errors import ConfigError
from routelmt.pipeline import load_bench_config, run_bench


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    root = _layout(tmp_path / "wmt", n=24)
    # a second large system, so one run evaluates two (small, large) pairs
    large = (root / "txt/system-outputs/en-es/Large.txt").read_text(encoding="utf-8")
    (root / "txt/system-outputs/en-es/Large2.txt").write_text(large.lower(), encoding="utf-8")
    return root


def _config(tmp_path: Path, corpus: Path, **extra: object) -> Path:
    config = {
        "name": "tiny",
        "data": {"root": str(corpus), "pairs": ["en-es"], "limit": 20},
        "small": "Small",
        "large": ["Large", "Large2"],
        "translate": {"batch_size": 3},
        "routers": ["gain-oracle", "random", "length"],
        "evaluation": {"folds": 2, "bootstrap": 20, "budgets": [0.2, 0.5], "plots": False},
    }
    config.update(extra)
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _stage_files(output: Path) -> dict[str, str]:
    return {str(p.relative_to(output)): p.read_text() for p in output.rglob("stage.json")}


def _routers(output: Path, large: str) -> dict:
    return json.loads((output / "evaluate" / large / "result.json").read_text())["routers"]


def test_bench_runs_every_stage_then_skips_them(tmp_path, corpus, capsys):
    config = _config(tmp_path, corpus)
    out = tmp_path / "run"
    assert main(["-q", "bench", str(config), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "HitRate" in printed and "large = Large2" in printed
    assert "HC%" in printed and "paired vs length" in printed  # baselines default: length
    assert (out / "report" / "Large" / "report.md").is_file()
    assert (out / "report" / "Large2" / "metrics.json").is_file()
    resolved = yaml.safe_load((out / "report" / "config.yaml").read_text())
    assert resolved["data"]["limit"] == 20 and resolved["output"] == str(out)
    oracle = _routers(out, "Large")["gain-oracle"]["budgets"]["0.2"]
    assert oracle["hit_rate"]["value"] == pytest.approx(100.0)
    segments = (out / "data" / "segments.jsonl").read_text().splitlines()
    assert len(segments) == 20
    before = _stage_files(out)
    # data, 3 x (translate, score), 2 x (3 routers + evaluate), report
    assert len(before) == 1 + 6 + 8 + 1
    assert all(json.loads(s)["status"] == "complete" for s in before.values())

    assert main(["-q", "bench", str(config), "-o", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert {s["status"] for s in summary["stages"]} == {"cached"}
    assert _stage_files(out) == before  # nothing rewritten

    # a changed evaluation setting reruns evaluate + report only
    assert (
        main(
            ["-q", "bench", str(config), "-o", str(out), "--json"]
            + ["--set", "evaluation.bootstrap=30"]
        )
        == 0
    )
    ran = {
        s["stage"] for s in json.loads(capsys.readouterr().out)["stages"] if s["status"] == "ran"
    }
    assert ran == {"evaluate/Large", "evaluate/Large2", "report"}


class _Counting:
    """Wraps a translator: counts segments, and raises after ``fail_after`` of them."""

    def __init__(self, inner, log: list[str], fail_after: int | None = None) -> None:
        self.inner, self.log, self.fail_after = inner, log, fail_after
        self.name = inner.name

    def translate(self, segments):
        if self.fail_after is not None and len(self.log) >= self.fail_after:
            raise KeyboardInterrupt  # as if Ctrl-C hit mid-stage
        self.log.extend(s.id for s in segments)
        return self.inner.translate(segments)

    def close(self) -> None:
        pass


def test_interrupted_translation_resumes_per_segment(tmp_path, corpus):
    config = load_bench_config([_config(tmp_path, corpus)], output=tmp_path / "clean")
    clean = run_bench(config)

    def flaky(spec, **kwargs):
        inner = make_translator(spec, **kwargs)
        return _Counting(inner, [], fail_after=9 if spec == "Large" else None)

    config["output"] = str(tmp_path / "killed")
    with pytest.raises(KeyboardInterrupt):
        run_bench(config, make_translator=flaky)
    killed = tmp_path / "killed"
    stage = json.loads((killed / "translate" / "Large" / "stage.json").read_text())
    assert stage["status"] == "running"
    partial = (killed / "translate" / "Large" / "translations.jsonl").read_text().splitlines()
    assert len(partial) == 9  # three batches of three were durably written
    finished = _stage_files(killed)
    assert json.loads(finished["translate/Small/stage.json"])["status"] == "complete"

    redone: list[str] = []

    def counting(spec, **kwargs):
        inner = make_translator(spec, **kwargs)
        return _Counting(inner, redone if spec == "Large" else [], None)

    resumed = run_bench(config, make_translator=counting)
    status = {r.name: r.status for r in resumed.stages}
    assert status["data"] == status["translate/Small"] == status["score/Small"] == "cached"
    assert status["translate/Large"] == "ran"
    done_before = {json.loads(line)["segment_id"] for line in partial}
    assert len(redone) == 20 - 9 and not done_before & set(redone)
    for large in ("Large", "Large2"):
        assert resumed.results[large]["routers"] == clean.results[large]["routers"]


def test_changed_data_recomputes_but_salvages_translations(tmp_path, corpus):
    config = load_bench_config([_config(tmp_path, corpus)], output=tmp_path / "run")
    config["data"]["limit"] = 10
    run_bench(config)
    config["data"]["limit"] = 20  # e.g. the default subset, then --full
    redone: list[str] = []

    def counting(spec, **kwargs):
        inner = make_translator(spec, **kwargs)
        return _Counting(inner, redone if spec == "Large" else [], None)

    again = run_bench(config, make_translator=counting)
    assert {r.status for r in again.stages} == {"ran"}
    stage = {r.name: r for r in again.stages}["translate/Large"]
    assert stage.info["salvaged"] == 10 and stage.info["translated"] == 10
    assert redone == [f"wmt24/en-es/{i}" for i in range(10, 20)]
    lines = (tmp_path / "run" / "translate" / "Large" / "translations.jsonl").read_text()
    assert len(lines.splitlines()) == 20
    assert again.results["Large"]["n"] == 20
    clean = run_bench({**config, "output": str(tmp_path / "clean")})
    assert clean.results["Large"]["routers"] == again.results["Large"]["routers"]

    # a changed source text is translated again, never served from the old output
    source = corpus / "txt" / "sources" / "en-es.txt"
    lines_src = source.read_text(encoding="utf-8").splitlines()
    lines_src[3] = "a brand new sentence"
    source.write_text("\n".join(lines_src) + "\n", encoding="utf-8")
    redone.clear()
    run_bench(config, make_translator=counting)
    assert redone == ["wmt24/en-es/3"]


def test_shipped_configs_load_by_name():
    assert load_bench_config(["default"])["data"]["limit"] > 0
    assert load_bench_config(["default"], full=True)["data"]["limit"] is None
    in_model = load_bench_config(["in-model"])
    assert in_model["small"] == "llamacpp:gemma3-270m" and len(in_model["large"]) == 2
    assert load_bench_config(["paper-table"])["data"]["pairs"] == "all"
    assert in_model["guards"]["gain_router"] == "routelmt"  # the guard table's run
    with pytest.raises(ConfigError, match="'guards.quality_router'"):
        load_bench_config(["in-model"], ["routers=[length,routelmt]"])
    with pytest.raises(ConfigError, match="guards.p"):
        load_bench_config(["in-model"], ["guards.p=1.5"])


def test_precedence_files_then_sets_then_full(tmp_path, corpus):
    base = _config(tmp_path, corpus)
    over = tmp_path / "over.yaml"
    over.write_text("data: {limit: 5}\nevaluation: {folds: 3}\n", encoding="utf-8")
    config = load_bench_config([base, over], ["evaluation.folds=4", "routers=[random]"])
    assert config["data"]["limit"] == 5 and config["evaluation"]["folds"] == 4
    assert config["routers"] == ["random"] and config["large"] == ["Large", "Large2"]
    assert load_bench_config([base, over], full=True)["data"]["limit"] is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("data: {limt: 5}", ["'data.limt'", "did you mean 'limit'", "allowed here:", "pairs"]),
        ("rooters: [random]", ["'rooters'", "did you mean 'routers'"]),
        ("data: {limit: ten}", ["'data.limit'", "an integer or null", "ten"]),
        ("evaluation: {budgets: [0.3, 2]}", ["'evaluation.budgets'", "(0, 1)"]),
        ("data: 5", ["'data' must be a mapping"]),
        ("router_args: {routelmt: {layer: 3}}", ["'router_args'", "routelmt", "not in 'routers'"]),
        ("evaluation: {cv: loo}", ["'evaluation.cv'", "kfold, lodo", "'loo'"]),
        ("evaluation: {cv: lodo}", ["'evaluation.cv: lodo'", "two", "['en-es']"]),
        ("evaluation: {baselines: length}", ["'evaluation.baselines'", "a list"]),
    ],
)
def test_config_errors_name_the_key(tmp_path, corpus, text, expected):
    extra = tmp_path / "extra.yaml"
    extra.write_text(text + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_bench_config([_config(tmp_path, corpus), extra])
    message = str(info.value)
    assert str(extra) in message
    for part in expected:
        assert part in message


def test_missing_files_are_clear_errors(tmp_path, corpus, capsys):
    missing = tmp_path / "nope.yaml"
    assert main(["bench", str(missing)]) == 2
    assert f"config file not found: {missing}" in capsys.readouterr().err
    assert main(["bench", "nosuch"]) == 2
    assert "shipped config by name: default, in-model, paper-table" in capsys.readouterr().err

    config = _config(tmp_path, corpus)
    gone = tmp_path / "gone"
    assert main(["bench", str(config), "--set", f"data.root={gone}"]) == 2
    assert f"'data.root': folder not found: {gone}" in capsys.readouterr().err

    assert main(["bench", str(config), "--set", "small=missing/out.jsonl"]) == 2
    assert "recorded translations file not found: missing/out.jsonl" in capsys.readouterr().err

    assert main(["bench", str(config), "--set", "data.limit=[1]"]) == 2
    assert "'data.limit' must be an integer or null" in capsys.readouterr().err

    assert main(["bench", str(config), "--set", "routers=[random,nosuch]"]) == 2
    assert "unknown router 'nosuch'" in capsys.readouterr().err


def test_stage_hash_covers_upstream(tmp_path):
    runner = pipeline.StageRunner(tmp_path)
    calls: list[str] = []

    def work(name: str):
        def run(directory: Path) -> dict:
            calls.append(name)
            (directory / "out").write_text(name)
            return {}

        return run

    runner.run("a", {"x": 1}, [], ["out"], work("a"))
    runner.run("b", {}, ["a"], ["out"], work("b"))
    again = pipeline.StageRunner(tmp_path)
    again.run("a", {"x": 2}, [], ["out"], work("a"))
    again.run("b", {}, ["a"], ["out"], work("b"))  # same settings, changed upstream
    assert calls == ["a", "b", "a", "b"]
    (tmp_path / "b" / "out").unlink()  # a lost output is recomputed too
    third = pipeline.StageRunner(tmp_path)
    third.run("a", {"x": 2}, [], ["out"], work("a"))
    third.run("b", {}, ["a"], ["out"], work("b"))
    assert calls == ["a", "b", "a", "b", "b"]


def test_two_runs_on_one_output_are_refused(tmp_path, corpus):
    config = load_bench_config([_config(tmp_path, corpus)], output=tmp_path / "run")
    busy = pytest.raises(ConfigError, match="another routelmt bench is running")
    with pipeline._exclusive(tmp_path / "run"), busy:
        run_bench(config)
    assert run_bench(config).results["Large"]["n"] == 20  # free again afterwards


def test_sigkill_mid_translation_then_rerun_matches_a_clean_run(tmp_path, corpus):
    """A real kill -9 of ``routelmt bench`` while the small model translates: the rerun keeps
    every finished stage and every durably written translation, and ends where a clean run does."""
    import os
    import signal
    import subprocess
    import sys
    import time

    config = _config(tmp_path, corpus, small="slow:x", translate={"batch_size": 1})

    def bench(output: Path, sleep: str) -> subprocess.Popen:
        argv = ["-q", "bench", str(config), "-o", str(output), "--json"]
        env = {**os.environ, "SLOW_SLEEP": sleep}
        return subprocess.Popen(
            [sys.executable, "-c", SLOW_CLI, *argv],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    clean_out, killed_out = tmp_path / "clean", tmp_path / "killed"
    clean = bench(clean_out, "0")
    _, clean_err = clean.communicate(timeout=120)
    assert clean.returncode == 0, clean_err

    proc = bench(killed_out, "0.2")
    deadline = time.monotonic() + 60
    written: list[Path] = []
    while time.monotonic() < deadline and proc.poll() is None:
        written = list(killed_out.glob("translate/slow*/translations.jsonl"))
        if written and written[0].read_bytes().count(b"\n") >= 3:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL  # killed mid-stage, not finished
    partial = written[0].read_bytes().split(b"\n")[:-1]
    assert 3 <= len(partial) < 20
    stage = json.loads((written[0].parent / "stage.json").read_text())
    assert stage["status"] == "running"

    rerun = bench(killed_out, "0")
    stdout, stderr = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, stderr
    statuses = {s["stage"]: s["status"] for s in json.loads(stdout)["stages"]}
    assert statuses["data"] == "cached"  # finished before the kill: not recomputed
    small_stage = written[0].parent
    info = json.loads((small_stage / "stage.json").read_text())["info"]
    assert info["reused"] == len(partial) and info["translated"] == 20 - len(partial)
    assert (small_stage / "translations.jsonl").read_bytes().split(b"\n")[: len(partial)] == partial
    for large in ("Large", "Large2"):
        assert _routers(killed_out, large) == _routers(clean_out, large)
