"""group_kfold: whole source groups per fold, balanced, seeded."""

from __future__ import annotations

import numpy as np
import pytest

from routelmt.errors import ConfigError, InputError
from routelmt.records import Segment
from routelmt.splits import group_kfold


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
