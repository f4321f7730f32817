"""Cross-validation splits by source group: the same source never sits on both sides of a split.

``group_kfold`` is k-fold by source group; ``group_lodo`` leaves one direction out.

The English source of WMT is shared by every en-xx pair, so splitting by pair or by segment
would leak a source (and its difficulty) from train into test.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from routelmt.errors import ConfigError, InputError
from routelmt.records import ScoredExample, Segment


def _groups(items: Sequence[Segment | ScoredExample | str]) -> list[str]:
    out: list[str] = []
    for i, item in enumerate(items):
        if isinstance(item, ScoredExample):
            out.append(item.segment.group)
        elif isinstance(item, Segment):
            out.append(item.group)
        elif isinstance(item, str):
            out.append(item)
        else:
            raise InputError(
                f"item {i}: expected a Segment, ScoredExample or group id, "
                f"got {type(item).__name__}"
            )
    return out


def fold_ids(groups: Sequence[object] | np.ndarray, k: int = 5, seed: int = 0) -> np.ndarray:
    """The fold (0..k-1) of every item; all items of a group share one fold.

    Groups are shuffled with ``seed``, then assigned largest first to the fold with the fewest
    items so far (ties: the lower fold), which keeps folds balanced in items, not just groups.
    """
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 2:
        raise ConfigError(f"k-fold needs an integer k >= 2, got {k!r}")
    groups_arr = np.asarray(groups)
    if groups_arr.ndim != 1:
        raise InputError(f"groups must be one-dimensional, got shape {groups_arr.shape}")
    if len(groups_arr) == 0:
        raise InputError("empty data set: nothing to split into folds")
    names, index = np.unique(groups_arr, return_inverse=True)
    if len(names) < k:
        raise ConfigError(f"cannot make {k} folds from {len(names)} source groups; lower k")
    sizes = np.bincount(index, minlength=len(names))
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(len(names))
    ordered = shuffled[np.argsort(-sizes[shuffled], kind="stable")]
    fold_of_group = np.empty(len(names), dtype=np.int64)
    load = np.zeros(int(k), dtype=np.int64)
    for group in ordered:
        fold = int(np.argmin(load))
        fold_of_group[group] = fold
        load[fold] += sizes[group]
    return fold_of_group[index]


def group_kfold(
    examples_or_groups: Sequence[Segment | ScoredExample | str], k: int = 5, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` (train indices, test indices) pairs; every group is in exactly one test fold.

    Indices are sorted within each side; see ``fold_ids`` for the assignment.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ConfigError(f"k-fold needs an integer k >= 2, got {k!r}")
    groups = _groups(examples_or_groups)
    if not groups:
        raise InputError("empty data set: nothing to split into folds")
    fold_of_item = fold_ids(np.array(groups, dtype=object), k, seed)
    all_idx = np.arange(len(groups))
    return [(all_idx[fold_of_item != f], all_idx[fold_of_item == f]) for f in range(k)]


CV_SCHEMES = ("kfold", "lodo")


def _direction_and_source(items: Sequence[Segment | ScoredExample]) -> tuple[list[str], list[str]]:
    directions: list[str] = []
    sources: list[str] = []
    for i, item in enumerate(items):
        segment = item.segment if isinstance(item, ScoredExample) else item
        if not isinstance(segment, Segment):
            raise InputError(
                f"item {i}: leave-one-direction-out needs Segments or ScoredExamples "
                f"(with a direction), got {type(item).__name__}"
            )
        directions.append(segment.direction)
        sources.append(segment.source.strip())
    return directions, sources


def group_lodo(
    examples: Sequence[Segment | ScoredExample], k: int = 5, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Leave one direction out: train on every other direction, test on the one left out.

    How a user deploys a router to a language pair it never saw. No source sits on both sides:
    a training example is dropped when its source group (``Segment.group``) or its source text
    also occurs among the test examples. When the left-out direction shares sources with the
    others (WMT's English source is the same for every en-xx pair), excluding all of them would
    leave nothing to train on, so the left-out direction is split into ``k`` folds by source
    group and each fold is scored by a router trained on the other directions' examples whose
    sources are not in that fold. A direction that shares no source is one split.
    Returns (train indices, test indices) pairs; every example is tested exactly once.
    """
    directions, sources = _direction_and_source(examples)
    groups = _groups(examples)
    names = sorted(set(directions))
    if len(names) < 2:
        raise ConfigError(
            "leave-one-direction-out needs at least two directions; got "
            f"{', '.join(names) or 'none'} (use k-fold cross-validation for one direction)"
        )
    dirs = np.array(directions, dtype=object)
    all_idx = np.arange(len(directions))
    splits: list[tuple[np.ndarray, np.ndarray]] = []
    for name in names:
        test_all = all_idx[dirs == name]
        others = all_idx[dirs != name]
        keys = {groups[i] for i in test_all} | {sources[i] for i in test_all}
        if not any(groups[i] in keys or sources[i] in keys for i in others):
            splits.append((others, test_all))
            continue
        fold = fold_ids(np.array([groups[i] for i in test_all], dtype=object), k, seed)
        for f in range(int(k)):
            test = test_all[fold == f]
            held = {groups[i] for i in test} | {sources[i] for i in test}
            train = np.array(
                [i for i in others if groups[i] not in held and sources[i] not in held],
                dtype=np.int64,
            )
            if train.size == 0:
                raise ConfigError(
                    f"leave-one-direction-out: nothing to train on for {name} fold {f}: every "
                    "example of the other directions shares its source with it"
                )
            splits.append((train, test))
    return splits


def cv_splits(
    examples: Sequence[Segment | ScoredExample], scheme: str = "kfold", k: int = 5, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The splits of a named scheme: ``kfold`` (by source group) or ``lodo``."""
    if scheme == "kfold":
        return group_kfold(examples, k=k, seed=seed)
    if scheme == "lodo":
        return group_lodo(examples, k=k, seed=seed)
    raise ConfigError(f"unknown cross-validation scheme '{scheme}'; known: {', '.join(CV_SCHEMES)}")
