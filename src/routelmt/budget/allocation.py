"""Offline (batch) top-p allocation: exactly how many requests go to the large model, and which.

The count is ``k = floor(p * n + 0.5)`` (round half up, unlike Python's ``round`` which rounds
half to even), so p = 0.3 of 5 requests is 2 and p = 0.5 of 3 requests is 2. Ties are broken
stably: higher score first, then lower index, so the same input always gives the same routing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from routelmt.errors import ConfigError, InputError

__all__ = ["budget_count", "check_share", "rank_order", "allocate_top_p", "as_scores"]


def check_share(p: float, name: str = "budget") -> float:
    """Validate a budget share strictly inside (0, 1); the error names the bad value."""
    if isinstance(p, bool) or not isinstance(p, (int, float, np.floating, np.integer)):
        raise ConfigError(f"{name} must be a number in (0, 1), got {p!r}")
    value = float(p)
    if not math.isfinite(value) or not 0.0 < value < 1.0:
        raise ConfigError(f"{name} must be a share strictly between 0 and 1, got {p!r}")
    return value


def budget_count(n: int, p: float) -> int:
    """Number of requests the budget allows for a batch of ``n``: floor(p * n + 0.5)."""
    p = check_share(p)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return min(n, int(math.floor(p * n + 0.5)))


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


def rank_order(scores: Sequence[float] | np.ndarray) -> np.ndarray:
    """Indices from most to least worth routing: higher score first, then lower index."""
    arr = as_scores(scores)
    # lexsort sorts by the last key first: -score ascending, then index ascending.
    return np.lexsort((np.arange(arr.size), -arr))


def allocate_top_p(
    scores: Sequence[float] | np.ndarray, p: float, *, positive_only: bool = False
) -> np.ndarray:
    """Boolean mask of the requests sent to the large model under budget share ``p``.

    Routes exactly ``budget_count(n, p)`` requests, or fewer with ``positive_only`` when fewer
    scores are > 0 (a predicted gain <= 0 is never worth the large model).
    """
    arr = as_scores(scores)
    k = budget_count(arr.size, p)
    order = rank_order(arr)[:k]
    if positive_only:
        order = order[arr[order] > 0]
    mask = np.zeros(arr.size, dtype=bool)
    mask[order] = True
    return mask
