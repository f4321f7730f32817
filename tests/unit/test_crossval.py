"""Out-of-fold scoring on a few source groups: fewer folds, or the router left out; no crash."""

from __future__ import annotations

import logging

import numpy as np

from routelmt.crossval import out_of_fold_scores, router_scores
from routelmt.records import ScoredExample, Segment
from routelmt.routers.base import Router, get_router


class MeanGain(Router):
    """A trainable router: scores every item with the training set's mean gain."""

    name = "mean-gain"
    trainable = True

    def __init__(self) -> None:
        self.mean = 0.0

    def fit(self, train):
        self.mean = float(np.mean([ex.gain for ex in train]))
        return self

    def score(self, batch):
        return np.full(len(batch), self.mean)


def _examples(n_sources: int) -> list[ScoredExample]:
    out = []
    for d in ("en-es", "en-de"):  # the same source in both pairs: one group per source
        for i in range(n_sources):
            seg = Segment(id=f"{d}:{i}", direction=d, source=f"source {i}", source_id=str(i))
            out.append(ScoredExample(seg, "S", "L", "s", "l", "chrF2", 10.0, 10.0 + i))
    return out


def test_fewer_groups_than_folds_makes_one_fold_per_group(caplog):
    examples = _examples(3)
    with caplog.at_level(logging.WARNING, logger="routelmt"):
        scores = out_of_fold_scores(MeanGain, examples, folds=5)
    assert "3 source groups: 3 folds instead of 5" in caplog.text
    # each source scored by the mean gain of the two other sources
    expected = {0: 1.5, 1: 1.0, 2: 0.5}
    assert scores.tolist() == [expected[i] for _ in range(2) for i in range(3)]


def test_a_trainable_router_is_left_out_on_two_groups_the_others_scored(caplog):
    examples = _examples(2)
    factories = {"mean-gain": MeanGain, "length": lambda: get_router("length")}
    with caplog.at_level(logging.WARNING, logger="routelmt"):
        scores, seconds = router_scores(factories, examples, folds=5)
    assert set(scores) == set(seconds) == {"length"}
    assert "router mean-gain left out: 2 source group(s) are too few" in caplog.text
