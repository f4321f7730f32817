"""group_kfold: whole source groups per fold, balanced, seeded; group_lodo: leave one direction
out, never a source on both sides; out-of-fold scores under either scheme."""

from __future__ import annotations

import numpy as np
import pytest

from routelmt.crossval import out_of_fold_scores, router_scores
from routelmt.errors import ConfigError, InputError
from routelmt.records import ScoredExample, Segment
from routelmt.routers.base import Router
from routelmt.splits import cv_splits, group_kfold, group_lodo


def wmt_like(n_sources: int = 103, pairs=("en-de", "en-es", "en-zh")) -> list[Segment]:
    return [
        Segment(id=f"{p}:{i}", direction=p, source=f"src {i}", source_id=str(i))
        for p in pairs
        for i in range(n_sources)
    ]


def test_no_group_on_both_sides_and_every_item_tested_once():
    segments = wmt_like()
    folds = group_kfold(segments, k=5, seed=0)
    assert len(folds) == 5
    seen = np.concatenate([test for _, test in folds])
    assert sorted(seen) == list(range(len(segments)))
    for train, test in folds:
        assert len(train) + len(test) == len(segments)
        train_groups = {segments[i].group for i in train}
        test_groups = {segments[i].group for i in test}
        assert not train_groups & test_groups


def test_folds_are_balanced_even_with_uneven_groups():
    groups = [f"g{i}" for i in range(50) for _ in range(1 + i % 4)]  # sizes 1..4
    folds = group_kfold(groups, k=4, seed=1)
    sizes = [len(test) for _, test in folds]
    assert max(sizes) - min(sizes) <= 4  # at most one group's size apart
    sizes = [len(test) for _, test in group_kfold(wmt_like(), k=5)]
    assert max(sizes) - min(sizes) == 3  # 103 groups of 3 over 5 folds: 21 or 20 groups


def test_seeded():
    segments = wmt_like(40)
    a = group_kfold(segments, k=3, seed=7)
    b = group_kfold(segments, k=3, seed=7)
    c = group_kfold(segments, k=3, seed=8)
    assert all((x[1] == y[1]).all() for x, y in zip(a, b))
    assert any(not np.array_equal(x[1], y[1]) for x, y in zip(a, c))


def test_errors():
    with pytest.raises(ConfigError, match="k >= 2"):
        group_kfold(["a", "b"], k=1)
    with pytest.raises(ConfigError, match="3 folds from 2 source groups"):
        group_kfold(["a", "b", "b"], k=3)
    with pytest.raises(InputError, match="empty"):
        group_kfold([], k=2)
    with pytest.raises(InputError, match="item 1"):
        group_kfold(["a", 3], k=2)


def _lodo_set() -> list[Segment]:
    """en-de / en-es / en-zh over the same English sources, plus de-en with its own sources,
    plus an en-fr segment whose source text repeats an English source under another id."""
    segments = wmt_like(30)
    segments += [
        Segment(id=f"de-en:{i}", direction="de-en", source=f"quelle {i}", source_id=f"de{i}")
        for i in range(25)
    ]
    segments += [Segment(id="en-fr:0", direction="en-fr", source="src 3", source_id=None)]
    segments += [Segment(id=f"en-fr:{i}", direction="en-fr", source=f"fr only {i}") for i in (1, 2)]
    return segments


def test_lodo_never_puts_a_source_on_both_sides_and_tests_everything_once():
    segments = _lodo_set()
    splits = group_lodo(segments, k=3, seed=0)
    seen = np.concatenate([test for _, test in splits])
    assert sorted(seen) == list(range(len(segments)))  # every example scored exactly once
    for train, test in splits:
        test_dirs = {segments[i].direction for i in test}
        assert len(test_dirs) == 1  # one left-out direction per split
        assert not test_dirs & {segments[i].direction for i in train}
        assert not {segments[i].group for i in train} & {segments[i].group for i in test}
        assert not {segments[i].source for i in train} & {segments[i].source for i in test}
        assert len(train) > 0
    by_dir: dict[str, list] = {}
    for train, test in splits:
        by_dir.setdefault(segments[test[0]].direction, []).append((train, test))
    # de-en shares no source: one split, trained on everything else
    assert len(by_dir["de-en"]) == 1
    assert len(by_dir["de-en"][0][0]) == len(segments) - 25
    # en-de shares its sources with en-es / en-zh: folds of en-de by source group
    assert len(by_dir["en-de"]) == 3
    # the en-fr copy of "src 3" (another id, same text) is kept off en-de's side
    fr_copy = next(i for i, s in enumerate(segments) if s.id == "en-fr:0")
    for train, test in by_dir["en-de"]:
        if any(segments[i].source == "src 3" for i in test):
            assert fr_copy not in train
    # and, as a left-out direction, it keeps "src 3" in every language out of its training side
    (fr_train, fr_test), *_ = [sp for sp in splits if fr_copy in sp[1]]
    assert not any(segments[i].source == "src 3" for i in fr_train)


def test_lodo_errors_and_scheme_names():
    with pytest.raises(ConfigError, match="at least two directions"):
        group_lodo(wmt_like(10, pairs=("en-de",)))
    with pytest.raises(ConfigError, match="lower k"):
        group_lodo(wmt_like(3), k=5)
    with pytest.raises(ConfigError, match="unknown cross-validation scheme 'loo'"):
        cv_splits(wmt_like(10), "loo")
    with pytest.raises(InputError, match="needs Segments"):
        group_lodo(["a", "b"])
    assert len(cv_splits(wmt_like(10), "kfold", k=2)) == 2


class _DirectionMemory(Router):
    """Scores every item with the set of directions it was trained on (as a bitmask)."""

    name = "direction-memory"
    trainable = True
    codes = {"en-de": 1, "en-es": 2, "en-zh": 4}

    def fit(self, train):
        self.seen = sum({self.codes[ex.segment.direction] for ex in train})
        return self

    def score(self, batch):
        return np.full(len(batch), float(self.seen))


def test_out_of_fold_scores_under_lodo_come_from_the_other_directions():
    examples = [ScoredExample(seg, "S", "L", "s", "l", "chrF2", 40.0, 45.0) for seg in wmt_like(20)]
    scores = out_of_fold_scores(_DirectionMemory, examples, folds=4, seed=0, cv="lodo")
    for ex, mask in zip(examples, scores):
        assert mask == 7 - _DirectionMemory.codes[ex.segment.direction]
    kfold = out_of_fold_scores(_DirectionMemory, examples, folds=4, seed=0)
    assert set(kfold) == {7.0}  # k-fold trains on every direction
    with pytest.raises(ConfigError, match="at least two directions"):
        router_scores({"m": _DirectionMemory}, examples[:20], folds=4, cv="lodo")
    with pytest.raises(ConfigError, match="unknown cross-validation 'x'"):
        router_scores({"m": _DirectionMemory}, examples, cv="x")
