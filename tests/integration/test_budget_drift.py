from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "budget_drift.py"


@pytest.mark.integration
def test_pacer_holds_the_budget_on_shifting_wmt24_traffic(
    wmt_root: Path, tmp_path, capsys, monkeypatch
) -> None:
    spec = importlib.util.spec_from_file_location("budget_drift", BENCH)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "budget_drift", module)  # dataclasses look it up
    spec.loader.exec_module(module)
    rc = module.main(["--data", str(wmt_root), "-o", str(tmp_path)])
    assert "pacer within 1pt overall and 3pt" in capsys.readouterr().out
    rows = json.loads((tmp_path / "budget_drift.json").read_text(encoding="utf-8"))
    by = {(r["p"], r["policy"]): r for r in rows}
    for p in (0.1, 0.3, 0.5):
        pacer, static = by[(p, "pacer")], by[(p, "static, first 20%")]
        assert pacer["overall_dev"] <= 0.01 and pacer["window_dev"] <= 0.03
        assert static["overall_dev"] > 0.05  # the drift the pacer exists for
        # holding the budget costs little quality against offline top-p on the same scores
        assert pacer["hybrid"] >= by[(p, "offline top-p")]["hybrid"] - 0.5
    assert rc == 0
