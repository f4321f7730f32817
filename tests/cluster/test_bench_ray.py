"""``routelmt bench --ray``: Gemma-3-270M translating live on Ray actors of a local cluster gives
the local run's numbers, and a run killed mid-translation resumes without redoing the segments
it finished."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.ray, pytest.mark.integration]
pytest.importorskip("torch")
pytest.importorskip("transformers")

from routelmt.pipeline import load_bench_config, run_bench  # noqa: E402

N = 8
SMALL = "translate/hf-gemma3-270m"


def _config(tmp_path: Path, wmt_root: Path) -> Path:
    config = {
        "name": "ray-small",
        "data": {"root": str(wmt_root), "pairs": ["en-es"], "limit": N},
        "small": "hf:gemma3-270m",
        "small_options": {"max_new_tokens": 12},
        "large": ["replay:GPT-4"],
        "translate": {"batch_size": 1},  # one segment per block: a kill lands between them
        "routers": ["gain-oracle", "random", "length"],
        "evaluation": {"folds": 2, "bootstrap": 50, "budgets": [0.25, 0.5], "plots": False},
    }
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _metrics(output: Path, large: str = "GPT-4") -> dict:
    data = json.loads((output / "report" / large / "metrics.json").read_text())
    data["run"].pop("router_seconds")  # wall-clock times of the router stages
    return data


def _lines(path: Path) -> list[str]:
    if not path.is_file():
        return []
    return [line for line in path.read_text(encoding="utf-8").split("\n")[:-1] if line]


def _bench(config: Path, output: Path, address: str, env: dict[str, str]) -> subprocess.Popen:
    command = [sys.executable, "-m", "routelmt.cli", "-q", "bench", str(config)]
    command += ["-o", str(output), "--ray", address, "--set", "executor.workers=2"]
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )


def test_bench_on_ray_matches_local_and_resumes_after_a_kill(wmt_root, ray_cluster, tmp_path):
    # wmt_root first: without the data the test is skipped before a Ray cluster starts
    config = _config(tmp_path, wmt_root)
    local = run_bench(load_bench_config([config], [], output=tmp_path / "local"))
    assert local.config["executor"]["kind"] == "local"

    out = tmp_path / "ray"
    translations = out / SMALL / "translations.jsonl"
    first = _bench(config, out, ray_cluster.address, ray_cluster.driver_env())
    deadline = time.monotonic() + 240
    while len(_lines(translations)) < 2:
        assert first.poll() is None, first.communicate()[1].decode()[-3000:]
        assert time.monotonic() < deadline, "no translation came back from Ray in 240 s"
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)  # the driver, mid-translation
    first.wait()
    finished = len(_lines(translations))
    assert 2 <= finished < N, f"the kill came too late: {finished} of {N} were done"

    second = _bench(config, out, ray_cluster.address, ray_cluster.driver_env())
    _, err = second.communicate(timeout=600)
    assert second.returncode == 0, err.decode()[-3000:]
    stage = json.loads((out / SMALL / "stage.json").read_text())
    assert stage["status"] == "complete"
    assert stage["info"]["reused"] == finished  # nothing finished was translated again
    assert stage["info"]["translated"] == N - finished
    assert stage["info"]["executor"] == "ray"

    ours = _lines(translations)
    assert len(ours) == N
    assert ours == _lines(tmp_path / "local" / SMALL / "translations.jsonl")
    assert _metrics(out) == _metrics(tmp_path / "local")


def test_scoring_on_ray_writes_the_local_scores(ray_cluster, tmp_path):
    """``executor.stages: [translate, score]``: sentence scores computed by Ray workers (each
    building the metric once) land in the same scores.jsonl as a local run's."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
    from test_cli import _layout

    root = _layout(tmp_path / "wmt", n=24)
    config = {
        "name": "tiny",
        "data": {"root": str(root), "pairs": ["en-es"], "limit": 20},
        "small": "Small",
        "large": ["Large"],
        "routers": ["gain-oracle", "random", "length"],
        "evaluation": {"folds": 2, "bootstrap": 20, "budgets": [0.2, 0.5], "plots": False},
    }
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    run_bench(load_bench_config([path], [], output=tmp_path / "local"))
    on_ray = [
        "executor.kind=ray",
        f"executor.address={ray_cluster.address!r}",
        "executor.stages=[translate, score]",
        "executor.workers=1",
    ]
    result = run_bench(load_bench_config([path], on_ray, output=tmp_path / "ray"))
    assert result.config["executor"]["stages"] == ["translate", "score"]
    for system in ("Small", "Large"):
        ours = (tmp_path / "ray" / "score" / system / "scores.jsonl").read_text()
        assert ours == (tmp_path / "local" / "score" / system / "scores.jsonl").read_text()
        stage = json.loads((tmp_path / "ray" / "score" / system / "stage.json").read_text())
        assert stage["info"]["executor"] == "ray"  # scored by the Ray workers
    assert _metrics(tmp_path / "ray", "Large") == _metrics(tmp_path / "local", "Large")
