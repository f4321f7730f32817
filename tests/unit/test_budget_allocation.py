from __future__ import annotations

import math

import numpy as np
import pytest

from routelmt.budget import (
    allocate_top_p,
    budget_count,
    calibrate_threshold,
    descending_order,
    rank_order,
    read_scores,
    realised_share,
    tie_keys,
    top_share_mask,
)
from routelmt.errors import ConfigError, InputError


@pytest.mark.parametrize(
    ("n", "p", "k"),
    [(10, 0.3, 3), (5, 0.3, 2), (3, 0.5, 2), (1, 0.5, 1), (4, 0.125, 1), (7, 0.1, 1), (0, 0.3, 0)],
)
def test_budget_count_rounds_half_up(n: int, p: float, k: int) -> None:
    assert budget_count(n, p) == k


def test_allocate_routes_exactly_k_highest() -> None:
    scores = [0.1, 0.9, -0.3, 0.5, 0.7, 0.2, 0.0, 0.8, -1.0, 0.4]
    mask = allocate_top_p(scores, 0.3)
    assert mask.sum() == 3
    assert np.flatnonzero(mask).tolist() == [1, 4, 7]


def test_ties_follow_the_seeded_permutation_not_the_index() -> None:
    scores = [1.0, 2.0, 1.0, 1.0, 2.0, 0.0]
    keys = tie_keys(len(scores))
    order = rank_order(scores)
    # higher scores first; within equal scores, ascending tie key (the evaluation's rule)
    assert [scores[i] for i in order] == [2.0, 2.0, 1.0, 1.0, 1.0, 0.0]
    for a, b in zip(order, order[1:], strict=False):
        assert scores[a] > scores[b] or keys[a] < keys[b]
    assert order.tolist() == descending_order(scores, keys).tolist()
    # k = floor(6 * 0.5 + 0.5) = 3: both 2.0s, then the first 1.0 in tie-key order
    assert np.flatnonzero(allocate_top_p(scores, 0.5)).tolist() == sorted(order[:3].tolist())
    # deterministic: the same answer every time
    assert (allocate_top_p(scores, 0.5) == allocate_top_p(np.array(scores), 0.5)).all()


def test_top_share_mask_is_the_one_selection() -> None:
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 4, size=41).astype(float)  # many ties, as length's scores have
    keys = rng.permutation(41)
    mask = top_share_mask(scores, 0.3, keys)
    assert mask.sum() == budget_count(41, 0.3) == 12
    chosen, left = scores[mask], scores[~mask]
    assert chosen.min() >= left.max()  # the highest scores
    tied = scores == chosen.min()  # at the k-th score: the lowest tie keys are taken
    assert keys[tied & mask].max() < keys[tied & ~mask].min()
    # allocate_top_p is the same selection with the default keys; p may be 0 or 1 here only
    assert (top_share_mask(scores, 0.3) == allocate_top_p(scores, 0.3)).all()
    assert top_share_mask(scores, 0.0).sum() == 0 and top_share_mask(scores, 1.0).all()
    with pytest.raises(ConfigError):
        allocate_top_p(scores, 1.0)


def test_a_constant_router_does_not_route_the_first_rows() -> None:
    # with index tie-breaks a constant score would route rows 0..k-1: the file order
    mask = allocate_top_p(np.zeros(100), 0.3)
    assert mask.sum() == 30
    assert np.flatnonzero(mask).tolist() != list(range(30))


def test_positive_only_routes_fewer() -> None:
    scores = [-0.5, 0.2, 0.0, -0.1, 0.3, -2.0, 0.0, -0.2, -0.3, -0.4]
    assert allocate_top_p(scores, 0.5).sum() == 5
    mask = allocate_top_p(scores, 0.5, positive_only=True)
    assert np.flatnonzero(mask).tolist() == [1, 4]  # zero gain is not worth the large model
    assert allocate_top_p(scores, 0.1, positive_only=True).tolist() == [i == 4 for i in range(10)]


@pytest.mark.parametrize("p", [0.0, 1.0, -0.2, 1.5, math.nan, math.inf, "0.3", True])
def test_bad_share_names_the_value(p: object) -> None:
    with pytest.raises(ConfigError, match=repr(p).replace("(", r"\(").replace(")", r"\)")):
        allocate_top_p([1.0, 2.0], p)  # type: ignore[arg-type]


def test_non_finite_score_names_position() -> None:
    with pytest.raises(InputError, match="position 2"):
        allocate_top_p([1.0, 2.0, math.nan], 0.5)


def test_calibration_distinct_scores_exact_count() -> None:
    rng = np.random.default_rng(3)
    scores = rng.normal(size=997)
    for p in (0.1, 0.3, 0.5):
        cal = calibrate_threshold(scores, p)
        k = budget_count(997, p)
        assert cal.routed == k
        assert cal.realised_share == pytest.approx(k / 997)
        assert realised_share(scores, cal.threshold) == pytest.approx(k / 997)
        routed = cal.route(scores)
        assert routed.sum() == k
        # halfway between the lowest routed and the highest unrouted score
        assert cal.threshold == pytest.approx((scores[routed].min() + scores[~routed].max()) / 2)


def test_calibration_ties_pick_closest_share() -> None:
    scores = [1.0] * 4 + [2.0] * 3 + [3.0] * 3  # shares available: 0, .3, .6, 1.0
    assert calibrate_threshold(scores, 0.3).realised_share == pytest.approx(0.3)
    assert calibrate_threshold(scores, 0.4).realised_share == pytest.approx(0.3)
    assert calibrate_threshold(scores, 0.5).realised_share == pytest.approx(0.6)
    # equally close to 0.3 and 0.6: the larger, as floor(p * n + 0.5) rounds half up
    assert calibrate_threshold(scores, 0.45).realised_share == pytest.approx(0.6)
    cal = calibrate_threshold(scores, 0.3)
    assert 2.0 < cal.threshold <= 3.0
    assert set(cal.quantiles) >= {"q0", "q0.5", "q1"}
    assert cal.quantiles["q1"] == 3.0


def test_calibration_tiny_budget_routes_nothing() -> None:
    cal = calibrate_threshold([5.0, 4.0, 3.0], 0.1)  # 0.3 requests rounds to 0
    assert cal.routed == 0 and cal.threshold > 5.0


def test_read_scores_formats(tmp_path) -> None:
    jsonl = tmp_path / "s.jsonl"
    jsonl.write_text('{"id": "a", "score": 1.5}\n\n{"id": 2, "score": -1}\n', encoding="utf-8")
    ids, scores = read_scores(jsonl)
    assert ids == ["a", "2"] and scores.tolist() == [1.5, -1.0]
    arr = tmp_path / "s.json"
    arr.write_text('[{"id": "a", "score": 1}, {"id": "b", "score": 2}]', encoding="utf-8")
    assert read_scores(arr)[1].tolist() == [1.0, 2.0]
    wrapped = tmp_path / "w.json"
    wrapped.write_text('{"scores": [{"id": "a", "score": 3}]}', encoding="utf-8")
    assert read_scores(wrapped)[0] == ["a"]
    single = tmp_path / "one.jsonl"
    single.write_text('{"id": "x", "score": 0.25}\n', encoding="utf-8")
    assert read_scores(single)[1].tolist() == [0.25]


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ('{"id": "a", "score": 1}\n{"id": "b"}\n', r"s\.jsonl:2: field 'score'"),
        ('{"id": "a", "score": 1}\n{"id": "b", "score": "x"}\n', r":2: field 'score'"),
        ('{"id": "a", "score": 1}\n{"id": "b", "score": NaN}\n', "finite"),
        ('{"score": 1}\n', r":1: field 'id'"),
        ('{"id": "a", "score": 1}\n{"id": "a", "score": 2}\n', "duplicate id 'a'"),
        ("", "empty"),
    ],
)
def test_read_scores_errors_name_line_and_field(tmp_path, text: str, pattern: str) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=pattern):
        read_scores(path)
