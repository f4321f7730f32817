"""Group bootstrap: resample source groups, not segments, and summarise by percentile intervals.

The same English source appears in several language pairs; its segments are not independent,
so a resample draws whole groups (``Segment.group``) with replacement. A resample is a weight
matrix (copies of each segment), which the ranking metrics consume directly.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np


def group_index(groups: Sequence[str]) -> tuple[np.ndarray, int]:
    """Map group names to 0..G-1 (first-seen order); returns (index per item, G)."""
    ids: dict[str, int] = {}
    index = np.fromiter((ids.setdefault(g, len(ids)) for g in groups), dtype=np.int64)
    return index, len(ids)


def group_weights(
    index: np.ndarray, n_groups: int, n_boot: int, rng: np.random.Generator
) -> np.ndarray:
    """(n_boot, N) copies per segment: G groups drawn uniformly with replacement per resample."""
    counts = rng.multinomial(n_groups, np.full(n_groups, 1.0 / n_groups), size=n_boot)
    return counts[:, index].astype(np.int64)


def group_bootstrap_weights(groups: Sequence[str], n_boot: int, seed: int = 0) -> np.ndarray:
    """(n_boot, N) copies per segment of ``n_boot`` group resamples drawn with ``seed`` (the
    whole bootstrap in memory: for tables of a few rows; ``weight_chunks`` streams it)."""
    index, n_groups = group_index(groups)
    return group_weights(index, n_groups, n_boot, np.random.default_rng(seed))


def weight_chunks(
    index: np.ndarray,
    n_groups: int,
    n_boot: int,
    seed: int | np.random.SeedSequence,
    max_cells: int = 250_000,
) -> Iterator[np.ndarray]:
    """The resamples in chunks of at most ``max_cells`` weights, to bound memory.

    Chunks of ~250k cells stay in cache (measured 2x faster than 4M); the draws are taken
    row by row from one generator, so they do not depend on the chunk size.
    """
    rng = np.random.default_rng(seed)
    per_chunk = max(1, max_cells // max(1, index.size))
    done = 0
    while done < n_boot:
        size = min(per_chunk, n_boot - done)
        yield group_weights(index, n_groups, size, rng)
        done += size


def resampled_means(
    weights: np.ndarray, values: np.ndarray, rows: np.ndarray | None = None
) -> np.ndarray:
    """The mean of ``values`` (over the ``rows`` mask, default all) in each resample of
    ``weights`` (n_boot x N copies per segment); NaN where a resample holds none of the rows."""
    w = weights if rows is None else weights[:, rows]
    v = np.asarray(values, dtype=np.float64)
    v = v if rows is None else v[rows]
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w @ v) / w.sum(axis=1)


def mean_interval(
    values: np.ndarray,
    groups: Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile interval of the mean of ``values`` over group resamples (streamed in chunks):
    a paired difference's interval when ``values`` is a per-segment difference."""
    index, n_groups = group_index(groups)
    reps = [resampled_means(w, values) for w in weight_chunks(index, n_groups, n_boot, seed)]
    return percentile_interval(np.concatenate(reps), level)


def percentile_interval(
    replicates: np.ndarray, level: float = 0.95, *, nan_as_inf: bool = False
) -> tuple[float, float]:
    """Percentile interval of the replicates.

    NaN replicates are ignored, unless ``nan_as_inf`` (for CPT, where NaN means "never": an
    infinite budget), in which case a bound that falls among them is reported as +inf.
    """
    values = np.asarray(replicates, dtype=float)
    missing = np.isnan(values)
    values = np.where(missing, np.inf, values) if nan_as_inf else values[~missing]
    if values.size == 0:
        return math.nan, math.nan
    alpha = (1.0 - level) / 2.0
    with np.errstate(invalid="ignore"):
        low, high = np.quantile(values, [alpha, 1.0 - alpha], method="linear")
    return float(low), float(high)


def _clean(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def summarise(
    point: float, replicates: np.ndarray | None, level: float = 0.95, *, nan_as_inf: bool = False
) -> dict[str, Any]:
    """{"value", "ci_low", "ci_high"} with None for NaN/inf (JSON has neither)."""
    if replicates is None:
        return {"value": _clean(float(point)), "ci_low": None, "ci_high": None}
    low, high = percentile_interval(replicates, level, nan_as_inf=nan_as_inf)
    return {"value": _clean(float(point)), "ci_low": _clean(low), "ci_high": _clean(high)}
