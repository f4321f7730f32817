"""Threshold calibration for streaming traffic: pick tau_p on held-out scores.

Rule: a request goes to the large model when ``score >= threshold``. Among all thresholds, the
calibration picks the one whose realised share on the calibration scores is closest to p
(ties in that distance go to the larger share, the same round-half-up rule as
``budget_count``). With distinct scores this routes exactly ``floor(p*n + 0.5)`` of them.
The threshold is placed halfway between the lowest routed and the highest unrouted score, so
unseen scores that fall in the gap are split evenly rather than all one way.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from routelmt.budget.allocation import as_scores, check_share
from routelmt.errors import InputError
from routelmt.records import iter_jsonl_dicts
from routelmt.storage import open_text, utf8_errors

__all__ = [
    "Calibration",
    "calibrate_threshold",
    "realised_share",
    "read_scores",
    "QUANTILE_LEVELS",
]

QUANTILE_LEVELS: tuple[float, ...] = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0)


@dataclass(frozen=True)
class Calibration:
    """A fitted threshold and what it did on the calibration set."""

    threshold: float
    p: float
    realised_share: float
    n: int
    routed: int
    rule: str = "score >= threshold"
    quantiles: dict[str, float] = field(default_factory=dict)

    def route(self, scores: Sequence[float] | np.ndarray) -> np.ndarray:
        return as_scores(scores) >= self.threshold

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def realised_share(scores: Sequence[float] | np.ndarray, threshold: float) -> float:
    """Share of ``scores`` that the rule ``score >= threshold`` sends to the large model."""
    arr = as_scores(scores)
    if arr.size == 0:
        return 0.0
    return float(np.mean(arr >= threshold))


def calibrate_threshold(scores: Sequence[float] | np.ndarray, p: float) -> Calibration:
    """Fit tau_p so that the share of calibration scores >= tau_p is as close to p as possible."""
    p = check_share(p)
    arr = as_scores(scores)
    n = arr.size
    if n == 0:
        raise InputError("cannot calibrate a threshold on zero scores", field="scores")
    values, counts = np.unique(arr, return_counts=True)  # ascending distinct values
    desc_values = values[::-1]
    routed_if = np.cumsum(counts[::-1])  # routed count when threshold = desc_values[i]
    # candidate shares: 0 (threshold above max) and routed_if / n
    shares = np.concatenate(([0.0], routed_if / n))
    dist = np.abs(shares - p)
    best = int(np.flatnonzero(dist <= dist.min() + 1e-12)[-1])  # largest share among the closest
    if best == 0:
        threshold = float(np.nextafter(desc_values[0], math.inf))  # just above every score
        routed = 0
    else:
        lowest_routed = float(desc_values[best - 1])
        if best < desc_values.size:
            highest_unrouted = float(desc_values[best])
            threshold = (lowest_routed + highest_unrouted) / 2.0
            if not threshold > highest_unrouted:  # adjacent floats
                threshold = lowest_routed
        else:
            threshold = lowest_routed
        routed = int(routed_if[best - 1])
    quantiles = {f"q{level:g}": float(np.quantile(arr, level)) for level in QUANTILE_LEVELS}
    return Calibration(
        threshold=threshold,
        p=p,
        realised_share=routed / n,
        n=n,
        routed=routed,
        quantiles=quantiles,
    )


def _score_from(data: object, where: dict[str, object], column: str) -> tuple[str, float]:
    if not isinstance(data, dict):
        raise InputError(
            f"expected an object with 'id' and '{column}', got {type(data).__name__}", **where
        )
    if "id" not in data or data["id"] is None:
        raise InputError("missing required field", field="id", **where)
    if column not in data or data[column] is None:
        columns = _router_columns(data)
        if column == "score" and columns:
            raise InputError(
                "no 'score' field; this file has one column per router "
                f"({', '.join(columns)}): pick one with --router",
                **where,
            )
        if column not in data and columns:
            raise InputError(
                f"no column '{column}'; the routers here are {', '.join(columns)}", **where
            )
        raise InputError("missing required field", field=column, **where)
    score = data[column]
    if isinstance(score, bool) or not isinstance(score, (int, float)):
        raise InputError(f"expected a number, got {score!r:.40}", field=column, **where)
    if not math.isfinite(float(score)):
        raise InputError(f"expected a finite number, got {score}", field=column, **where)
    return str(data["id"]), float(score)


_NOT_ROUTERS = frozenset({"id", "direction", "gain", "domain", "source_id"})


def _router_columns(data: dict[str, object]) -> list[str]:
    """The numeric columns of a ``routelmt evaluate`` scores line (one per router)."""
    return [
        key
        for key, value in data.items()
        if key not in _NOT_ROUTERS
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
    ]


def read_scores(path: str | Path, column: str = "score") -> tuple[list[str], np.ndarray]:
    """Read router scores: JSONL lines ``{"id": ..., "score": ...}``, or a JSON array of such
    objects, or a JSON object with a ``"scores"`` array of them. ``column`` names the field that
    holds the score: ``routelmt evaluate`` writes ``scores.jsonl`` with one column per router
    (``{"id", "direction", "gain", "routelmt": ..., "length": ...}``)."""
    path = Path(path)
    if not path.exists():
        raise InputError("file not found", path=str(path))
    with open_text(path) as handle, utf8_errors(path):
        text = handle.read()
    items: list[tuple[str, float]] = []
    try:
        whole = json.loads(text)
    except json.JSONDecodeError as exc:
        whole = None
        if text.lstrip().startswith("["):
            raise InputError(f"invalid JSON: {exc.msg}", path=str(path), line=exc.lineno) from None
    if isinstance(whole, dict) and "scores" in whole:
        whole = whole["scores"]
        if not isinstance(whole, list):
            raise InputError("expected an array", path=str(path), field="scores")
    if isinstance(whole, list):
        for i, entry in enumerate(whole):
            items.append(_score_from(entry, {"path": f"{path}[{i}]"}, column))
    else:
        for lineno, data in iter_jsonl_dicts(path):
            items.append(_score_from(data, {"path": str(path), "line": lineno}, column))
    if not items:
        raise InputError("no scores: the file is empty", path=str(path))
    seen: dict[str, int] = {}
    for i, (key, _) in enumerate(items):
        if key in seen:
            raise InputError(
                f"duplicate id '{key}' (entries {seen[key] + 1} and {i + 1})",
                path=str(path),
                field="id",
            )
        seen[key] = i
    return [k for k, _ in items], np.array([s for _, s in items], dtype=float)
