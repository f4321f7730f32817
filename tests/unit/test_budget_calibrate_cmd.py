from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from routelmt.commands import calibrate
from routelmt.errors import ConfigError, InputError


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    calibrate.add_parser(sub)
    return calibrate.run(parser.parse_args(["calibrate", *argv]))


def _write(path, scores) -> None:
    path.write_text(
        "".join(
            json.dumps({"id": f"s{i}", "score": float(s)}) + "\n" for i, s in enumerate(scores)
        ),
        encoding="utf-8",
    )


def test_calibrate_writes_threshold_and_shares(tmp_path) -> None:
    rng = np.random.default_rng(0)
    held, test = rng.normal(size=400), rng.normal(1.0, 1.0, size=300)
    _write(tmp_path / "held.jsonl", held)
    _write(tmp_path / "test.jsonl", test)
    out = tmp_path / "cal" / "calibration.json"
    args = ["-i", str(tmp_path / "held.jsonl"), "--budget", "0.3", "-o", str(out)]
    assert _run([*args, "--test", str(tmp_path / "test.jsonl")]) == 0
    cal = json.loads(out.read_text(encoding="utf-8"))
    assert cal["p"] == 0.3 and cal["n"] == 400 and cal["routed"] == 120
    assert cal["realised_share"] == 0.3
    assert np.mean(held >= cal["threshold"]) == 0.3
    assert cal["test"]["n"] == 300
    assert cal["test"]["realised_share"] == pytest.approx(np.mean(test >= cal["threshold"]))
    assert cal["test"]["realised_share"] > 0.5  # shifted traffic: the static threshold drifts
    assert cal["quantiles"]["q0"] == held.min()


def test_calibrate_prints_json_without_output(tmp_path, capsys) -> None:
    _write(tmp_path / "s.jsonl", [3.0, 1.0, 2.0, 4.0])
    assert _run(["-i", str(tmp_path / "s.jsonl"), "-b", "0.5"]) == 0
    cal = json.loads(capsys.readouterr().out)
    assert cal["threshold"] == 2.5 and cal["routed"] == 2


def test_calibrate_errors(tmp_path) -> None:
    _write(tmp_path / "s.jsonl", [1.0, 2.0])
    with pytest.raises(ConfigError, match="1.5"):
        _run(["-i", str(tmp_path / "s.jsonl"), "-b", "1.5"])
    with pytest.raises(InputError, match="not found"):
        _run(["-i", str(tmp_path / "missing.jsonl"), "-b", "0.3"])


def test_calibrate_reads_one_router_column_of_evaluate_scores(tmp_path) -> None:
    """``routelmt evaluate`` writes one column per router; --router picks one."""
    path = tmp_path / "scores.jsonl"
    path.write_text(
        "".join(
            json.dumps({"id": f"s{i}", "direction": "en-es", "gain": 0.5, "length": i, "rand": -i})
            + "\n"
            for i in range(10)
        ),
        encoding="utf-8",
    )
    out = tmp_path / "tau.json"
    assert _run(["-i", str(path), "--budget", "0.3", "--router", "length", "-o", str(out)]) == 0
    cal = json.loads(out.read_text(encoding="utf-8"))
    assert cal["column"] == "length" and cal["routed"] == 3 and cal["threshold"] == 6.5
    assert _run(["-i", str(path), "-b", "0.3", "-r", "rand", "-o", str(out)]) == 0
    assert json.loads(out.read_text(encoding="utf-8"))["threshold"] == -2.5
    with pytest.raises(InputError, match=r"one column per router \(length, rand\).*--router"):
        _run(["-i", str(path), "-b", "0.3"])
    with pytest.raises(InputError, match="no column 'routelmt'; the routers here are length, rand"):
        _run(["-i", str(path), "-b", "0.3", "--router", "routelmt"])
