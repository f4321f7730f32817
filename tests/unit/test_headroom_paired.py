"""Headroom closed (HC@p), paired differences on shared resamples, the mean over directions,
and the compare_routers library API, on small synthetic gains."""

from __future__ import annotations

import json

import numpy as np
import pytest

from routelmt.errors import ConfigError, InputError
from routelmt.evaluation import evaluate_routers
from routelmt.evaluation.compare import compare_routers, headline
from routelmt.evaluation.evaluate import headroom_closed
from routelmt.evaluation.report import render_markdown, summary, summary_table
from routelmt.records import ScoredExample, Segment

DIRS = ("en-de", "en-es", "en-zh")


def _data(n_sources: int = 80, seed: int = 0):
    """Three directions over the same sources (as WMT's en-xx); gains differ by direction."""
    rng = np.random.default_rng(seed)
    directions, sources, gains = [], [], []
    for shift, d in zip((0.0, 5.0, 10.0), DIRS):
        directions += [d] * n_sources
        sources += [f"src{i}" for i in range(n_sources)]
        gains += list(rng.normal(shift, 10.0, n_sources))
    return np.array(gains), directions, sources


def _examples(gains, directions, sources):
    return [
        ScoredExample(
            Segment(id=f"{d}:{s}", direction=d, source=f"text {s}", source_id=s),
            "S",
            "L",
            "s",
            "l",
            "chrF2",
            0.0,  # q_small 0, so the gain is exactly g (as compare_routers takes it)
            float(g),
        )
        for g, d, s in zip(gains, directions, sources)
    ]


def test_headroom_closed_by_hand():
    # gains 4,3,2,1,0 at p = 0.4: k = 2, oracle MeanDelta 3.5, mean gain 2
    assert headroom_closed(3.5, 2.0, 3.5) == pytest.approx(100.0)
    assert headroom_closed(2.0, 2.0, 3.5) == pytest.approx(0.0)
    assert headroom_closed(0.5, 2.0, 3.5) == pytest.approx(-100.0)  # the reversed ranking
    assert np.isnan(headroom_closed(1.0, 1.0, 1.0))  # all gains equal: no headroom
    gains = np.array([4.0, 3.0, 2.0, 1.0, 0.0])
    ex = _examples(gains, ["en-de"] * 5, [f"s{i}" for i in range(5)])
    res = evaluate_routers(ex, {"reversed": -gains, "oracle": gains}, [0.4], n_boot=0)
    assert res["routers"]["reversed"]["budgets"]["0.4"]["hc"]["value"] == pytest.approx(-100.0)
    assert res["routers"]["oracle"]["budgets"]["0.4"]["hc"]["value"] == pytest.approx(100.0)
    assert res["reference"]["random"]["0.4"]["hc"]["value"] == 0.0


def test_oracle_closes_all_headroom_and_random_none():
    gains, dirs, srcs = _data()
    rng = np.random.default_rng(5)
    randoms = {f"random{i}": rng.normal(size=gains.size) for i in range(40)}
    out = compare_routers(
        {"oracle": gains, **randoms}, gains=gains, directions=dirs, source_ids=srcs, n_boot=0
    )
    assert out["directions"] == list(DIRS)
    for block in [out["mean"], out["pooled"], *out["per_direction"].values()]:
        assert block["routers"]["oracle"]["budgets"]["0.3"]["hc"]["value"] == pytest.approx(100.0)
    per_random = [out["mean"]["routers"][name]["budgets"]["0.3"]["hc"]["value"] for name in randoms]
    # one random router's HC is noise around 0 (its sd here is about 10 points), the mean of 40
    # is close to 0
    assert abs(np.mean(per_random)) < 4.0
    assert max(abs(v) for v in per_random) < 40.0


def test_paired_difference_with_itself_is_exactly_zero_and_a_better_router_beats():
    gains, dirs, srcs = _data()
    rng = np.random.default_rng(1)
    good = gains + rng.normal(0, 3, gains.size)
    length = gains + rng.normal(0, 30, gains.size)
    scores = {"good": good, "length": length, "length-copy": length.copy(), "entropy": -good}
    out = compare_routers(scores, gains=gains, directions=dirs, source_ids=srcs, n_boot=300)
    for block in [out["mean"], out["pooled"], *out["per_direction"].values()]:
        same = block["paired"]["length"]["length-copy"]
        for diff in [same["spearman"], *same["budgets"]["0.3"].values()]:
            assert (diff["value"], diff["ci_low"], diff["ci_high"]) == (0.0, 0.0, 0.0)
            assert diff["beats"] is False
    # the point difference is the difference of the two routers' points
    pooled = out["pooled"]
    hc = {n: pooled["routers"][n]["budgets"]["0.3"]["hc"]["value"] for n in scores}
    diff = pooled["paired"]["length"]["good"]["budgets"]["0.3"]["hc"]
    assert diff["value"] == pytest.approx(hc["good"] - hc["length"])
    # a much better router beats the baseline: the interval lies above zero, everywhere
    for block in [out["mean"], out["pooled"], *out["per_direction"].values()]:
        cell = block["paired"]["length"]["good"]["budgets"]["0.3"]["hc"]
        assert cell["beats"] is True and cell["ci_low"] > 0
        assert block["paired"]["length"]["good"]["spearman"]["beats"] is True
    # and the baseline does not beat it
    assert out["mean"]["paired"]["entropy"]["length"]["budgets"]["0.3"]["hc"]["beats"] is True
    assert out["mean"]["paired"]["length"]["entropy"]["budgets"]["0.3"]["hc"]["beats"] is False


def test_swapped_pair_has_mirrored_interval():
    gains, dirs, srcs = _data(60, seed=3)
    rng = np.random.default_rng(2)
    a = gains + rng.normal(0, 15, gains.size)
    b = gains + rng.normal(0, 15, gains.size)
    ab = compare_routers(
        {"a": a, "length": b}, gains=gains, directions=dirs, source_ids=srcs, n_boot=200
    )["mean"]["paired"]["length"]["a"]["budgets"]["0.3"]["mean_delta"]
    ba = compare_routers(
        {"length": a, "b": b}, gains=gains, directions=dirs, source_ids=srcs, n_boot=200
    )["mean"]["paired"]["length"]["b"]["budgets"]["0.3"]["mean_delta"]
    assert ab["value"] == pytest.approx(-ba["value"])
    assert ab["ci_low"] == pytest.approx(-ba["ci_high"])
    assert ab["ci_high"] == pytest.approx(-ba["ci_low"])


def test_mean_over_directions_is_the_mean_of_per_direction_values():
    gains, dirs, srcs = _data()
    rng = np.random.default_rng(4)
    scores = {"noisy": gains + rng.normal(0, 10, gains.size), "length": rng.normal(size=gains.size)}
    out = compare_routers(scores, gains=gains, directions=dirs, source_ids=srcs, n_boot=100)
    for name in scores:
        for field in ("hc", "mean_delta", "hit_rate"):
            per = [
                out["per_direction"][d]["routers"][name]["budgets"]["0.3"][field]["value"]
                for d in DIRS
            ]
            mean = out["mean"]["routers"][name]["budgets"]["0.3"][field]
            assert mean["value"] == pytest.approx(np.mean(per))
            assert mean["ci_low"] <= mean["value"] <= mean["ci_high"]
        per = [out["per_direction"][d]["routers"][name]["spearman"]["value"] for d in DIRS]
        assert out["mean"]["routers"][name]["spearman"]["value"] == pytest.approx(np.mean(per))
    # pooling adds the between-direction signal: a router that only knows the direction
    direction_only = np.repeat([0.0, 5.0, 10.0], 80)
    out = compare_routers(
        {"direction": direction_only}, gains=gains, directions=dirs, source_ids=srcs, n_boot=0
    )
    pooled = out["pooled"]["routers"]["direction"]["budgets"]["0.3"]["hc"]["value"]
    mean = out["mean"]["routers"]["direction"]["budgets"]["0.3"]["hc"]["value"]
    assert pooled > 20.0 and abs(mean) < 15.0


def test_compare_matches_evaluate_routers_on_the_same_resamples():
    gains, dirs, srcs = _data(50)
    rng = np.random.default_rng(7)
    scores = {"r": gains + rng.normal(0, 10, gains.size), "length": rng.normal(size=gains.size)}
    examples = _examples(gains, dirs, srcs)
    full = evaluate_routers(examples, scores, [0.3], n_boot=150, seed=3)
    from_arrays = compare_routers(
        scores, gains=gains, directions=dirs, source_ids=srcs, n_boot=150, seed=3
    )
    from_examples = compare_routers(scores, examples=examples, n_boot=150, seed=3)
    view = headline(full)
    for other in (from_arrays, from_examples):
        assert other["pooled"]["routers"] == view["pooled"]["routers"]
        assert other["mean"]["paired"] == view["mean"]["paired"]
        assert (
            other["per_direction"]["en-es"]["routers"] == view["per_direction"]["en-es"]["routers"]
        )
    cell = full["routers"]["r"]["budgets"]["0.3"]["hc"]
    assert cell == view["pooled"]["routers"]["r"]["budgets"]["0.3"]["hc"]
    json.dumps(full, allow_nan=False)


def test_baselines_missing_and_validation():
    gains, dirs, srcs = _data(20)
    out = compare_routers({"a": gains}, gains=gains, directions=dirs, source_ids=srcs, n_boot=0)
    assert out["baselines"] == [] and out["pooled"]["paired"] == {}
    res = evaluate_routers(
        _examples(gains, dirs, srcs), {"a": gains, "length": -gains}, [0.3], n_boot=0
    )
    assert res["settings"]["paired"] == {
        "baselines": ["length"],
        "missing": ["entropy"],
        "rule": res["settings"]["paired"]["rule"],
    }
    assert res["paired"]["length"]["a"]["budgets"]["0.3"]["hc"]["beats"] is None  # no interval
    with pytest.raises(InputError, match="gains and source_ids"):
        compare_routers({"a": gains}, gains=gains)
    with pytest.raises(InputError, match="not both"):
        compare_routers({"a": gains}, examples=_examples(gains, dirs, srcs), gains=gains)
    with pytest.raises(InputError, match="source ids"):
        compare_routers({"a": gains}, gains=gains, source_ids=srcs[:-1])
    with pytest.raises(InputError, match="router 'a'"):
        compare_routers({"a": gains[:-1]}, gains=gains, source_ids=srcs)
    with pytest.raises(ConfigError, match="baselines"):
        compare_routers({"a": gains}, gains=gains, source_ids=srcs, baselines="length")


def test_report_and_summary_put_per_direction_first_and_label_pooled():
    gains, dirs, srcs = _data(40)
    rng = np.random.default_rng(0)
    scores = {"good": gains + rng.normal(0, 5, gains.size), "length": rng.normal(size=gains.size)}
    res = evaluate_routers(_examples(gains, dirs, srcs), scores, [0.1, 0.3], n_boot=50)
    md = render_markdown(res)
    assert md.index("## Per direction (mean over 3 directions") < md.index("## Pooled")
    assert "HC@0.3 (mean)" in md and "ΔHC en-zh" in md and "HC pooled" in md
    assert "**+" in md  # good beats length: a bold paired cell
    table = summary_table(res)
    assert table.index("mean over 3 directions") < table.index("pooled (all directions")
    assert "paired vs length" in table and "*" in table
    brief = summary(res)
    assert brief["routers"]["good"]["p=0.3"]["hc"] is not None
    assert brief["headline"]["mean"]["paired"]["length"]["good"]["budgets"]["0.3"]["hc"]["beats"]
    # one direction: no per-direction section, the pooled one says so
    one = [e for e in _examples(gains, dirs, srcs) if e.segment.direction == "en-de"]
    md1 = render_markdown(evaluate_routers(one, {"good": gains[:40]}, [0.3], n_boot=0))
    assert "## Per direction" not in md1 and "one direction, en-de" in md1
