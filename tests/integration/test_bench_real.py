"""The shipped default bench config on real WMT24 data with Gemma-3-270M live, on 2 segments
per pair (short outputs), then a rerun that finds every stage finished."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
pytest.importorskip("torch")
pytest.importorskip("transformers")

from routelmt.pipeline import load_bench_config, run_bench  # noqa: E402

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "default.yaml"


def test_default_config_end_to_end_then_cached(wmt_root, tmp_path, monkeypatch):
    sets = [
        f"data.root={wmt_root}",
        "data.limit=2",
        "small_options={max_new_tokens: 24}",
        "routers=[gain-oracle, random, length, entropy]",
        "evaluation={folds: 2, bootstrap: 20, plots: false}",
    ]
    config = load_bench_config([CONFIG], sets, output=tmp_path / "run")
    assert config["small"] == "llamacpp:gemma3-270m"  # the default engine (the llamacpp extra)
    first = run_bench(config)
    assert {r.status for r in first.stages} == {"ran"}
    assert set(first.results) == {"replay:Llama3-70B", "replay:GPT-4"}
    rows = [
        json.loads(line)
        for line in (tmp_path / "run/translate/llamacpp-gemma3-270m/translations.jsonl").open()
    ]
    # llama.cpp's running batch stores each row as it finishes: every segment once, any order
    assert sorted(r["segment_id"] for r in rows) == [
        "wmt24/en-de/0",
        "wmt24/en-de/1",
        "wmt24/en-es/0",
        "wmt24/en-es/1",
    ]
    assert all(r["system"] == "llamacpp:gemma3-270m" and r["text"].strip() for r in rows)
    for result in first.results.values():
        assert result["n"] == 4
        assert result["routers"]["gain-oracle"]["spearman"]["value"] == pytest.approx(1.0)

    second = run_bench(config)
    assert {r.status for r in second.stages} == {"cached"}
    assert second.results == first.results
