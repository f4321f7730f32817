"""The executor switch of ``routelmt bench``: local by default without importing Ray, the
``executor:`` key checked like every other, and ``--ray`` setting it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli import _layout
from test_pipeline import _config

from routelmt.cli import main
from routelmt.errors import ConfigError
from routelmt.executors import LocalExecutor, make_executor
from routelmt.pipeline import load_bench_config


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    return _layout(tmp_path / "wmt", n=24)


def test_a_plain_bench_run_never_imports_ray(tmp_path, corpus):
    config = _config(tmp_path, corpus, large=["Large"])
    code = (
        "import sys\n"
        "from routelmt.cli import main\n"
        f"assert main(['-q', 'bench', {str(config)!r}, '-o', {str(tmp_path / 'run')!r}]) == 0\n"
        "print(json.dumps(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", "import json\n" + code], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
    assert (tmp_path / "run" / "report" / "Large" / "metrics.json").is_file()


def test_local_executor_maps_in_order_with_one_worker():
    built = []

    def factory():
        built.append(1)
        return 10

    out = list(LocalExecutor().map_batches(factory, lambda w, b: [w + x for x in b], [[1], [2, 3]]))
    assert out == [[11], [12, 13]] and built == [1]
    assert make_executor(None).name == "local"


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("executor.kind=spark", "'executor.kind' must be one of local, ray"),
        ("executor.workers=0", "'executor.workers' must be a positive integer"),
        ("executor.threads=two", "'executor.threads' must be an integer"),
        ("executor.nodes=3", "unknown key 'executor.nodes'"),
        ("executor.stages=[features]", "'executor.stages' must list some of translate, score"),
        ("executor.stages=[]", "'executor.stages' must list some of"),
    ],
)
def test_bad_executor_settings_are_config_errors(tmp_path, corpus, setting, message):
    config = _config(tmp_path, corpus)
    with pytest.raises(ConfigError, match=message):
        load_bench_config([config], [setting])


def test_bad_executor_on_the_command_line_exits_2(tmp_path, corpus, capsys):
    config = _config(tmp_path, corpus)
    assert main(["-q", "bench", str(config), "--set", "executor.kind=spark"]) == 2
    assert "executor.kind" in capsys.readouterr().err


def test_ray_flag_sets_the_executor(tmp_path, corpus, monkeypatch):
    seen = {}

    def fake_run_bench(config):
        seen.update(config["executor"])
        raise ConfigError("stop here")

    monkeypatch.setattr("routelmt.pipeline.run_bench", fake_run_bench)
    config = _config(tmp_path, corpus)
    assert main(["-q", "bench", str(config), "--ray", "10.0.0.5:6379"]) == 2
    assert seen["kind"] == "ray" and seen["address"] == "10.0.0.5:6379"
    assert main(["-q", "bench", str(config), "--ray"]) == 2
    assert seen["kind"] == "ray" and seen["address"] is None
