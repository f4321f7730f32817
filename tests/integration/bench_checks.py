"""What a finished default bench must contain: the metrics of every router of
configs/default.yaml, the trained ones included, finite, on the segments it was given. Shared
by the README test (``make run``) and the wheel test (``routelmt bench default``)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import yaml

# enough segments that every trainable router runs (crossval.MIN_TRAIN_GROUPS source groups on
# each training side of a 2-fold split), few enough to keep the test short
DEFAULT_BENCH_SMALL = [
    "--set",
    "data.limit=6",
    "--set",
    "small_options={max_new_tokens: 16}",
    "--set",
    "evaluation={folds: 2, bootstrap: 20, plots: false}",
]
TRAINED = ("routelmt", "routelmt-q", "routelmt-2stage", "external-delta", "external-difficulty")


def check_default_bench(output: Path, config: Path, stderr: str, n_per_pair: int = 6) -> None:
    """Every router of ``config`` scored on every segment, against every large system."""
    settings = yaml.safe_load(config.read_text(encoding="utf-8"))
    routers = set(settings["routers"])
    assert set(TRAINED) <= routers, "the default bench lost a trained router"
    assert "left out" not in stderr, stderr[-2000:]  # no router dropped for too little data
    for large in settings["large"]:
        name = large.removeprefix("replay:")
        metrics = json.loads((output / "report" / name / "metrics.json").read_text())
        assert metrics["n"] == n_per_pair * len(settings["data"]["pairs"])
        scored = set(metrics["routers"]) | {"gain-oracle"}  # the oracle is the reference
        assert routers <= scored, sorted(routers - scored)
        for router in routers - {"gain-oracle"}:
            result = metrics["routers"][router]
            assert math.isfinite(result["spearman"]["value"]), router
            hc = result["budgets"]["0.3"]["mean_delta"]["value"]
            assert math.isfinite(hc), router
        per_direction = metrics["direction_mean"]["routers"]
        assert set(TRAINED) <= set(per_direction)
        report = (output / "report" / name / "report.md").read_text(encoding="utf-8")
        assert report.startswith("# Routing evaluation")
        assert all(router in report for router in TRAINED)
