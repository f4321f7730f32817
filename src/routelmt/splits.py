"""K-fold splits by source group: the same source never sits on both sides of a split.

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
