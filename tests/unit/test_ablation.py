"""The ablation protocol in the library: out-of-fold scoring without leaks, the paired table on
the library's k, tie rule and bootstrap, and the inner-choice helpers."""

from __future__ import annotations

import numpy as np
import pytest

from routelmt.budget.allocation import budget_count
from routelmt.errors import ConfigError
from routelmt.evaluation import compare_routers
from routelmt.evaluation.ablation import (
    guard_veto_scores,
    hc_at,
    markdown_table,
    out_of_fold,
    outer_splits,
    paired_table,
    ranks_within,
    split_curve,
)


def _data(n_sources: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    directions = np.repeat(["en-de", "en-es"], n_sources)
    groups = np.tile([f"src{i}" for i in range(n_sources)], 2)
    gains = rng.normal(10, 8, directions.size)
    return rng, directions, groups, gains


@pytest.mark.parametrize("scheme", ["kfold", "lodo"])
def test_out_of_fold_never_trains_on_a_test_source_or_direction(scheme):
    _, directions, groups, _ = _data()
    seen = []

    def candidate(train, test):
        assert not set(groups[train]) & set(groups[test])  # no shared source text
        if scheme == "lodo":
            assert not set(directions[train]) & set(directions[test])
        seen.append(test)
        return np.full(test.size, float(len(seen)))

    scores = out_of_fold(candidate, groups, directions, scheme)
    assert np.isfinite(scores).all()
    covered = np.sort(np.concatenate(seen))
    assert covered.tolist() == list(range(groups.size))  # every row scored exactly once


def test_unknown_scheme_is_a_config_error():
    _, directions, groups, _ = _data()
    with pytest.raises(ConfigError, match="unknown scheme 'loo'"):
        outer_splits(groups, directions, "loo")


def test_paired_table_is_compare_routers_per_direction():
    rng, directions, groups, gains = _data()
    length = rng.integers(1, 4, gains.size).astype(float)  # integer scores: many ties
    scores = {"oracle": gains, "length": length, "noise": rng.normal(size=gains.size)}
    table = paired_table(gains, directions, groups, scores, baselines=("length",), n_boot=50)
    view = compare_routers(
        scores,
        gains=gains,
        directions=list(directions),
        source_ids=list(groups),
        baselines=["length"],
        n_boot=50,
    )
    for d in ("en-de", "en-es"):
        block = table["directions"][d]
        assert block["n"] == 40
        assert block["routers"]["oracle"]["hc"] == pytest.approx(100.0)
        ref = view["per_direction"][d]["routers"]["noise"]["budgets"]["0.3"]["hc"]
        assert block["routers"]["noise"]["hc"] == pytest.approx(ref["value"])
        assert block["routers"]["noise"]["hc_ci"] == pytest.approx([ref["ci_low"], ref["ci_high"]])
        vs = block["routers"]["oracle"]["vs"]["length"]
        assert vs["hc"] == pytest.approx(100.0 - block["routers"]["length"]["hc"])
        assert vs["beats"] == (vs["hc_ci"][0] > 0)
        assert "length" not in block["routers"]["length"]["vs"]  # no self-comparison
        # the point HC equals the inner-choice helper's (same k; distinct scores, so the tie
        # keys, drawn for the whole table there and per call here, do not matter)
        rows = directions == d
        assert hc_at(gains[rows], scores["noise"][rows], 0.3) == pytest.approx(
            block["routers"]["noise"]["hc"]
        )
    mean = np.mean([table["directions"][d]["routers"]["noise"]["hc"] for d in ("en-de", "en-es")])
    assert table["mean_hc"]["noise"] == pytest.approx(mean)
    text = markdown_table(table, ["oracle", "noise", "length"], "t", ("length",))
    assert "**beats**" in text.splitlines()[4]  # the oracle beats length


def test_hc_at_uses_the_library_k_not_pythons_round():
    gains = np.array([5.0, 4.0, 3.0, 2.0, 1.0, 0.0, -1.0, -2.0, -3.0, -4.0])
    # p = 0.25 of 10: k = floor(2.5 + 0.5) = 3 (Python's round(2.5) would give 2)
    assert budget_count(10, 0.25) == 3
    scores = np.array([10.0, 9.0, 0.0, 8.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])  # top 3: 5, 4, 2
    mean_gain, oracle = gains.mean(), (5 + 4 + 3) / 3
    expected = 100 * ((5 + 4 + 2) / 3 - mean_gain) / (oracle - mean_gain)
    assert hc_at(gains, scores, 0.25) == pytest.approx(expected)


def test_a_constant_router_gets_the_seeded_tie_break_not_the_file_order():
    gains = np.linspace(10, -10, 50)  # the file is sorted best first
    assert hc_at(gains, np.zeros(50), 0.3) < 50  # index ties would route the best 15: HC 100


def test_ranks_within_gives_ties_one_rank_per_direction():
    values = np.array([3.0, 1.0, 3.0, 2.0, 5.0, 5.0])
    dirs = np.array(["a", "a", "a", "a", "b", "b"])
    assert ranks_within(values, dirs).tolist() == [3.5 / 4, 1 / 4, 3.5 / 4, 2 / 4, 1.5 / 2, 0.75]


def test_split_curve_ends_are_the_single_stage_rankings():
    rng, directions, _, gains = _data()
    s1, s2 = rng.normal(size=gains.size), gains + rng.normal(size=gains.size)
    curve = split_curve(s1, s2, gains, directions, 0.3)
    for d in ("en-de", "en-es"):
        rows = directions == d
        assert curve["1.0"]["hc"][d] == pytest.approx(hc_at(gains[rows], s1[rows], 0.3))
        assert curve["0.0"]["hc"][d] == pytest.approx(hc_at(gains[rows], s2[rows], 0.3))
    assert curve["1.0"]["wasted_small_decodes_per_request"] == 0.0


def test_guard_veto_scores_sink_what_the_chosen_threshold_vetoes():
    rng, directions, _, gains = _data()
    qe = -gains + rng.normal(0, 1, gains.size)  # a guard that sees the small output's quality
    scores = rng.normal(size=gains.size)
    out = guard_veto_scores((scores, qe, gains, directions), (scores, qe), 0.3)
    vetoed = out < -1e5
    assert vetoed.any()  # this guard helps on its training rows, so a threshold is chosen
    assert np.allclose(out[~vetoed], scores[~vetoed])
    assert qe[vetoed].min() >= qe[~vetoed].min()
