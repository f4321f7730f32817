"""Offline (batch) top-p allocation: exactly how many requests go to the large model, and which.

The two rules every budgeted ranking in the library follows (allocation, guards, evaluation,
the ablation tables), defined here once:

- **k** = ``budget_count(n, p)`` = floor(p * n + 0.5) (round half up, unlike Python's ``round``
  which rounds half to even), so p = 0.3 of 5 requests is 2 and p = 0.5 of 3 requests is 2.
- **Ties** in scores are broken by a seeded random permutation of the positions
  (``tie_keys``, ``descending_order``), never by the data order, so a constant-score router
  cannot profit from how its input is sorted; the same seed always gives the same routing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, overload

import numpy as np

from routelmt.errors import ConfigError, InputError

__all__ = [
    "budget_count",
    "check_share",
    "tie_keys",
    "descending_order",
    "rank_order",
    "allocate_top_p",
    "top_share_mask",
    "as_scores",
]


def check_share(p: float, name: str = "budget") -> float:
    """Validate a budget share strictly inside (0, 1); the error names the bad value."""
    if isinstance(p, bool) or not isinstance(p, (int, float, np.floating, np.integer)):
        raise ConfigError(f"{name} must be a number in (0, 1), got {p!r}")
    value = float(p)
    if not math.isfinite(value) or not 0.0 < value < 1.0:
        raise ConfigError(f"{name} must be a share strictly between 0 and 1, got {p!r}")
    return value


@overload
def budget_count(n: int, p: float) -> int: ...


@overload
def budget_count(n: np.ndarray | int, p: np.ndarray | float) -> np.ndarray: ...


def budget_count(n: Any, p: Any) -> Any:
    """Requests the budget share ``p`` allows out of ``n``: floor(p * n + 0.5), at most n.

    The one definition of k. Scalars give an int; arrays (a grid of budgets, the group totals
    of bootstrap resamples) broadcast and give an int64 array. ``p`` may be 0 or 1 here (a
    curve's end points); callers that take a budget from a user check it with ``check_share``.
    """
    shares = np.asarray(p, dtype=float)
    counts = np.asarray(n)
    if not np.all(np.isfinite(shares) & (shares >= 0.0) & (shares <= 1.0)):
        raise ConfigError(f"budget share must be in [0, 1], got {p!r}")
    if np.any(counts < 0):
        raise ValueError(f"n must be >= 0, got {n}")
    k = np.minimum(np.floor(shares * counts + 0.5), counts).astype(np.int64)
    return int(k) if k.ndim == 0 else k


def as_scores(scores: Sequence[float] | np.ndarray, name: str = "scores") -> np.ndarray:
    """A 1-D float array of finite scores, or an InputError naming the first bad position."""
    arr = np.asarray(scores, dtype=float)
    if arr.ndim != 1:
        raise InputError(f"expected a 1-D array of scores, got shape {arr.shape}", field=name)
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise InputError(
            f"score at position {int(bad[0])} is {arr[bad[0]]}; scores must be finite", field=name
        )
    return arr


def tie_keys(n: int, seed: int | np.random.SeedSequence = 0) -> np.ndarray:
    """A seeded random permutation of ``n`` positions: the secondary sort key (ties in scores)."""
    return np.random.default_rng(seed).permutation(n)


def descending_order(scores: Sequence[float] | np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Indices by descending score, ties by ascending ``keys`` (from ``tie_keys``)."""
    # lexsort sorts by the last key first: -score ascending, then the tie key ascending.
    return np.lexsort((keys, -np.asarray(scores, dtype=float)))


def rank_order(scores: Sequence[float] | np.ndarray, seed: int = 0) -> np.ndarray:
    """Indices from most to least worth routing: higher score first, ties by ``tie_keys``."""
    arr = as_scores(scores)
    return descending_order(arr, tie_keys(arr.size, seed))


def top_share_mask(
    scores: Sequence[float] | np.ndarray, p: float, keys: np.ndarray | None = None
) -> np.ndarray:
    """True for the ``budget_count(n, p)`` highest scores, equal scores ordered by ``keys``
    (default ``tie_keys(n)``): the one top-p selection that every offline path uses. ``p``
    may be 0 or 1 (a curve's end points), as in ``budget_count``."""
    arr = as_scores(scores)
    order = descending_order(arr, tie_keys(arr.size) if keys is None else keys)
    mask = np.zeros(arr.size, dtype=bool)
    mask[order[: budget_count(arr.size, p)]] = True
    return mask


def allocate_top_p(
    scores: Sequence[float] | np.ndarray, p: float, *, positive_only: bool = False
) -> np.ndarray:
    """Boolean mask of the requests sent to the large model under budget share ``p``.

    Routes exactly ``budget_count(n, p)`` requests, or fewer with ``positive_only`` when fewer
    scores are > 0 (a predicted gain <= 0 is never worth the large model).
    """
    mask = top_share_mask(scores, check_share(p))
    return mask & (as_scores(scores) > 0) if positive_only else mask
