"""evaluate_routers: schema, intervals, validation, breakdowns; write_report output files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from routelmt.errors import ConfigError, InputError
from routelmt.evaluation import evaluate_routers, write_report
from routelmt.evaluation.bootstrap import (
    group_bootstrap_weights,
    group_index,
    group_weights,
    mean_interval,
    percentile_interval,
    resampled_means,
    summarise,
    weight_chunks,
)
from routelmt.records import ScoredExample, Segment


def make_examples(n_sources: int = 60, directions=("en-de", "en-es"), seed: int = 0):
    rng = np.random.default_rng(seed)
    examples = []
    for d in directions:
        for i in range(n_sources):
            q_small = float(rng.uniform(30, 70))
            gain = float(rng.normal(5, 12))
            seg = Segment(
                id=f"{d}:{i}",
                direction=d,
                source="word " * (i % 7 + 1),
                domain=("news", "social")[i % 2],
                source_id=str(i),
            )
            examples.append(
                ScoredExample(seg, "S", "L", "s", "l", "chrF2", q_small, q_small + gain)
            )
    return examples


def gains_of(examples):
    return np.array([e.gain for e in examples])


@pytest.fixture(scope="module")
def result():
    examples = make_examples()
    g = gains_of(examples)
    rng = np.random.default_rng(1)
    scores = {"oracle": g, "noisy": g + rng.normal(0, 10, g.size), "const": np.zeros(g.size)}
    return evaluate_routers(examples, scores, [0.3, 0.1], n_boot=200, seed=0)


def test_schema_and_reference_values(result):
    examples = make_examples()
    g = gains_of(examples)
    assert result["n"] == 120 and result["n_groups"] == 60
    assert result["budgets"] == [0.3, 0.1]
    assert result["metric"] == "chrF2"
    assert result["reference"]["mean_gain"]["value"] == pytest.approx(g.mean())
    oracle = result["routers"]["oracle"]
    assert oracle["budgets"]["0.3"]["hit_rate"]["value"] == 100.0
    assert oracle["budgets"]["0.3"]["k"] == 36
    assert oracle["budgets"]["0.3"]["mean_delta"]["value"] == pytest.approx(
        np.sort(g)[::-1][:36].mean()
    )
    assert oracle["apgr"]["value"] == pytest.approx(1.0)
    assert set(oracle["cpt"]) == {"50", "80", "95"}
    assert result["routers"]["const"]["spearman"]["value"] is None
    curves = result["curves"]
    assert len(curves["budgets"]) == 21 == len(curves["routers"]["noisy"])
    assert curves["oracle"] == pytest.approx(curves["routers"]["oracle"])
    json.dumps(result, allow_nan=False)  # strict JSON: no NaN anywhere


def test_intervals_contain_point_and_are_reproducible(result):
    examples = make_examples()
    g = gains_of(examples)
    rng = np.random.default_rng(1)
    scores = {"oracle": g, "noisy": g + rng.normal(0, 10, g.size), "const": np.zeros(g.size)}
    again = evaluate_routers(examples, scores, [0.3, 0.1], n_boot=200, seed=0)
    assert again["routers"] == result["routers"]
    other = evaluate_routers(examples, scores, [0.3, 0.1], n_boot=200, seed=1)
    assert other["routers"]["noisy"]["spearman"] != result["routers"]["noisy"]["spearman"]
    noisy = result["routers"]["noisy"]
    for stat in [noisy["spearman"], noisy["apgr"], noisy["auc"]] + [
        noisy["budgets"]["0.3"][f] for f in ("hit_rate", "mean_delta", "hybrid_quality")
    ]:
        assert stat["ci_low"] <= stat["value"] <= stat["ci_high"]
        assert stat["ci_low"] < stat["ci_high"]


def test_group_resampling_keeps_groups_together():
    groups = ["a", "a", "b", "c", "c", "c", "d"]
    index, n_groups = group_index(groups)
    w = group_weights(index, n_groups, 500, np.random.default_rng(0))
    assert n_groups == 4
    assert (w[:, 0] == w[:, 1]).all() and (w[:, 3] == w[:, 4]).all() and (w[:, 4] == w[:, 5]).all()
    # each resample draws exactly n_groups groups
    per_group = w[:, [0, 2, 3, 6]]
    assert (per_group.sum(axis=1) == 4).all()
    assert per_group.mean() == pytest.approx(1.0, abs=0.1)


def test_cpt_interval_treats_never_as_infinite_budget():
    replicates = np.r_[np.linspace(0.1, 0.2, 90), [np.nan] * 10]
    low, high = percentile_interval(replicates, 0.95, nan_as_inf=True)
    assert 0.1 <= low < 0.2
    assert not np.isfinite(high)
    stat = summarise(0.15, replicates, nan_as_inf=True)
    assert stat["ci_high"] is None and stat["ci_low"] == pytest.approx(low)
    # other metrics simply ignore NaN replicates
    assert percentile_interval(replicates)[1] <= 0.2


def test_breakdowns_recompute_routing_within_each_subset(result):
    by_dir = result["breakdowns"]["direction"]
    assert set(by_dir) == {"en-de", "en-es"}
    assert by_dir["en-de"]["n"] == 60
    examples = [e for e in make_examples() if e.segment.direction == "en-de"]
    g = gains_of(examples)
    assert by_dir["en-de"]["routers"]["oracle"]["budgets"]["0.3"]["mean_delta"][
        "value"
    ] == pytest.approx(np.sort(g)[::-1][:18].mean())
    assert set(result["breakdowns"]["domain"]) == {"news", "social"}


def test_validation_errors():
    examples = make_examples(10)
    g = gains_of(examples)
    with pytest.raises(InputError, match="empty test set"):
        evaluate_routers([], {"x": []}, [0.3])
    with pytest.raises(InputError, match="router 'short'"):
        evaluate_routers(examples, {"short": g[:-1]}, [0.3], n_boot=0)
    with pytest.raises(InputError, match="router 'nan'"):
        evaluate_routers(examples, {"nan": np.r_[g[:-1], np.nan]}, [0.3], n_boot=0)
    with pytest.raises(ConfigError, match="1.2"):
        evaluate_routers(examples, {"ok": g}, [0.3, 1.2], n_boot=0)
    with pytest.raises(ConfigError, match="breakdown"):
        evaluate_routers(examples, {"ok": g}, [0.3], n_boot=0, breakdowns=("colour",))


def test_write_report_files(tmp_path, result):
    paths = write_report(result, tmp_path / "out")
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["routers"]["noisy"] == json.loads(json.dumps(result["routers"]["noisy"]))
    report = (tmp_path / "out" / "report.md").read_text()
    assert "Budget p = 0.3 (k = 36 of 120)" in report
    assert "| noisy |" in report and "APGR" in report and "direction = en-de" in report
    assert "chrF2" in report and "200 resamples" in report
    for key in ("curves", "curves_by_direction"):
        data = paths[key].read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_resampled_means_and_the_paired_interval():
    groups = [str(i // 3) for i in range(60)]  # 20 groups of 3
    values = np.random.default_rng(1).normal(1.0, 2.0, 60)
    w = group_bootstrap_weights(groups, 400, seed=0)
    rows = np.arange(60) % 4 == 0
    means = resampled_means(w, values, rows)
    by_hand = [np.repeat(values[rows], w[b, rows]).mean() for b in range(3)]
    np.testing.assert_allclose(means[:3], by_hand)
    np.testing.assert_allclose(resampled_means(np.ones((1, 60)), values), [values.mean()])
    # a resample that holds none of the rows gives NaN, not an error
    assert np.isnan(resampled_means(np.zeros((1, 60)), values, rows)).all()
    # mean_interval streams the same resamples (seed 0) as the whole weight matrix above
    low, high = mean_interval(values, groups, n_boot=400, seed=0)
    assert (low, high) == percentile_interval(resampled_means(w, values))
    assert low < values.mean() < high


def test_bootstrap_draws_do_not_depend_on_chunk_size():
    index, n_groups = group_index([str(i // 2) for i in range(50)])
    big = np.concatenate(list(weight_chunks(index, n_groups, 30, 5, max_cells=10_000)))
    small = np.concatenate(list(weight_chunks(index, n_groups, 30, 5, max_cells=120)))
    assert big.shape == small.shape == (30, 50)
    np.testing.assert_array_equal(big, small)
