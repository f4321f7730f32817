"""Evaluate routers on a labelled test set: every metric of docs/method.md section 4 with group
bootstrap intervals, reference lines and per-direction / per-domain breakdowns.

Result schema (``SCHEMA``; every number is a plain float or None for NaN, so it is valid JSON).
A *stat* is ``{"value": float|None, "ci_low": float|None, "ci_high": float|None}`` (95% group
bootstrap, percentile method; the CI fields are None when ``n_boot`` is 0)::

    {
      "schema": "routelmt.evaluation/1",
      "n": int, "n_groups": int,
      "metric": str,                      # the metric signature of the labels
      "small_systems": [str], "large_systems": [str],
      "budgets": [float],                 # the budgets asked for
      "severe_delta": float,
      "settings": {"k_rule", "tie_break", "bootstrap": {...}, "curve_step", "cpt_levels",
                   "seed", "random_line"},
      "reference": {
        "small_only": stat, "large_only": stat, "mean_gain": stat,
        "oracle_auc": stat, "random_auc": stat,
        "oracle": {"<p>": {"k", "hit_rate", "mean_delta", "hybrid_quality", "severe_loss"}},
        "random": {"<p>": {"k", "hit_rate", "mean_delta", "hybrid_quality", "severe_loss"}},
      },                                  # "random" holds exact expectations (no CI)
      "routers": {
        "<name>": {
          "spearman": stat, "auc": stat, "apgr": stat,
          "cpt": {"50": stat, "80": stat, "95": stat},   # budget share; None = never
          "budgets": {"<p>": {"k": int, "hit_rate": stat, "mean_delta": stat,
                              "hybrid_quality": stat, "severe_loss": stat}},
        }
      },
      "curves": {"budgets": [float], "small_only": [...], "large_only": [...],
                 "oracle": [...], "random": [...], "routers": {"<name>": [...]}},
      "breakdowns": {"direction": {"en-es": {<the same without "breakdowns">}, ...},
                     "domain": {...}},
      "run": {...}                        # whatever the caller passed as run_info
    }

``"<p>"`` is the budget formatted with ``format(p, "g")`` (e.g. "0.3"). Spearman, AUC, APGR
and CPT do not depend on the budget, so they sit at the router level. Within a breakdown
subset the routing is recomputed on that subset alone (k = floor(p * N_subset + 0.5)), as if
the router served only that traffic.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from routelmt.errors import ConfigError, InputError
from routelmt.evaluation import curves as C
from routelmt.evaluation.bootstrap import group_index, summarise, weight_chunks
from routelmt.evaluation.ranking import (
    OrderedWeights,
    average_ranks,
    budget_k,
    budget_metrics,
    descending_order,
    spearman,
    tie_keys,
    validate_budgets,
    weighted_spearman,
)
from routelmt.records import ScoredExample

log = logging.getLogger(__name__)

SCHEMA = "routelmt.evaluation/1"
BUDGET_FIELDS = ("hit_rate", "mean_delta", "hybrid_quality", "severe_loss")
K_RULE = "k = floor(p * N + 0.5) (round half up)"
TIE_RULE = (
    "descending score; ties broken by a seeded random permutation of the segments "
    "(the same permutation orders the true gains)"
)


def budget_key(p: float) -> str:
    return format(p, "g")


def _check_scores(scores: Mapping[str, Any], n: int) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name, values in scores.items():
        try:
            arr = np.asarray(values, dtype=float)
        except (TypeError, ValueError) as exc:
            raise InputError(f"router '{name}': scores are not numbers ({exc})") from None
        if arr.ndim != 1 or arr.size != n:
            raise InputError(
                f"router '{name}': got {arr.size} scores (shape {arr.shape}) "
                f"for {n} test examples; expected one score per example"
            )
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            raise InputError(
                f"router '{name}': score {arr[bad[0]]} at example {bad[0]} is not finite "
                f"({bad.size} such scores)"
            )
        out[str(name)] = arr
    return out


class _Data:
    """The arrays one evaluation needs (the whole set or one breakdown subset)."""

    def __init__(
        self,
        q_small: np.ndarray,
        q_large: np.ndarray,
        groups: Sequence[str],
        keys: np.ndarray,
        scores: dict[str, np.ndarray],
    ) -> None:
        self.q_small = q_small
        self.q_large = q_large
        self.gains = q_large - q_small
        self.group_idx, self.n_groups = group_index(groups)
        self.scores = scores
        self.oracle_order = descending_order(self.gains, keys)
        self.orders = {name: descending_order(s, keys) for name, s in scores.items()}


def _compute(
    data: _Data,
    w: np.ndarray,
    budgets: list[float],
    grid: np.ndarray,
    severe_delta: float,
    cpt_levels: Sequence[float],
    point: bool,
) -> dict[str, Any]:
    """Every metric on each weighted row of ``w``; arrays with one entry per row."""
    g = data.gains
    wf = w.astype(float)
    total = wf.sum(axis=1)
    qs_sum = wf @ data.q_small
    g_sum = wf @ g
    oracle = OrderedWeights(data.oracle_order, w)
    out: dict[str, Any] = {
        "small_only": qs_sum / total,
        "large_only": (qs_sum + g_sum) / total,
        "mean_gain": g_sum / total,
    }
    oracle_curve = C.quality_curve(oracle, g, qs_sum, total, grid)
    random_curve = C.random_curve(qs_sum, g_sum, total, grid)
    out["oracle_curve"] = oracle_curve
    out["random_curve"] = random_curve
    out["oracle_auc"] = C.auc(oracle_curve, grid)
    out["random_auc"] = C.auc(random_curve, grid)
    out["oracle"] = {
        p: budget_metrics(oracle, oracle, g, qs_sum, total, p, severe_delta) for p in budgets
    }
    gain_ranks = None if point else average_ranks(g, w)
    routers: dict[str, Any] = {}
    for name, s in data.scores.items():
        ranked = OrderedWeights(data.orders[name], w)
        curve = C.quality_curve(ranked, g, qs_sum, total, grid)
        area = C.auc(curve, grid)
        routers[name] = {
            "spearman": (
                np.array([spearman(s, g)])
                if point
                else weighted_spearman(s, g, w, gain_ranks=gain_ranks)
            ),
            "curve": curve,
            "auc": area,
            "apgr": C.apgr(area, out["random_auc"], out["oracle_auc"]),
            "cpt": {lvl: C.cpt(ranked, g, g_sum, total, lvl) for lvl in cpt_levels},
            "budgets": {
                p: budget_metrics(ranked, oracle, g, qs_sum, total, p, severe_delta)
                for p in budgets
            },
        }
    out["routers"] = routers
    return out


def _concat(parts: list[Any]) -> Any:
    if isinstance(parts[0], dict):
        return {key: _concat([part[key] for part in parts]) for key in parts[0]}
    return np.concatenate(parts, axis=0)


def _random_expectations(data: _Data, p: float, severe_delta: float) -> dict[str, Any]:
    """Exact expectations of uniformly random routing (no interval needed)."""
    n = data.gains.size
    k = int(budget_k(p, n))
    mean_g = float(data.gains.mean())
    return {
        "k": k,
        "hit_rate": {"value": 100.0 * k / n, "ci_low": None, "ci_high": None},
        "mean_delta": {"value": mean_g if k else None, "ci_low": None, "ci_high": None},
        "hybrid_quality": {
            "value": float(data.q_small.mean() + k / n * mean_g),
            "ci_low": None,
            "ci_high": None,
        },
        "severe_loss": {
            "value": float(100.0 * np.mean(data.gains < -severe_delta)) if k else None,
            "ci_low": None,
            "ci_high": None,
        },
    }


def _evaluate_data(
    data: _Data,
    budgets: list[float],
    *,
    severe_delta: float,
    n_boot: int,
    seed: np.random.SeedSequence,
    level: float,
    grid: np.ndarray,
    cpt_levels: Sequence[float],
) -> dict[str, Any]:
    n = data.gains.size
    ones = np.ones((1, n), dtype=np.int64)
    pt = _compute(data, ones, budgets, grid, severe_delta, cpt_levels, point=True)
    bs: dict[str, Any] | None = None
    if n_boot > 0:
        chunks = [
            _compute(data, w, budgets, grid, severe_delta, cpt_levels, point=False)
            for w in weight_chunks(data.group_idx, data.n_groups, n_boot, seed)
        ]
        bs = _concat(chunks)

    def stat(path: Sequence[Any], *, nan_as_inf: bool = False) -> dict[str, Any]:
        p_val: Any = pt
        b_val: Any = bs
        for key in path:
            p_val = p_val[key]
            b_val = None if b_val is None else b_val[key]
        return summarise(float(p_val[0]), b_val, level, nan_as_inf=nan_as_inf)

    def budget_block(path: Sequence[Any]) -> dict[str, Any]:
        block: dict[str, Any] = {"k": int(_get(pt, path)["k"][0])}
        for field in BUDGET_FIELDS:
            block[field] = stat([*path, field])
        return block

    reference = {
        "small_only": stat(["small_only"]),
        "large_only": stat(["large_only"]),
        "mean_gain": stat(["mean_gain"]),
        "oracle_auc": stat(["oracle_auc"]),
        "random_auc": stat(["random_auc"]),
        "oracle": {budget_key(p): budget_block(["oracle", p]) for p in budgets},
        "random": {budget_key(p): _random_expectations(data, p, severe_delta) for p in budgets},
    }
    routers: dict[str, Any] = {}
    for name in data.scores:
        base = ["routers", name]
        routers[name] = {
            "spearman": stat([*base, "spearman"]),
            "auc": stat([*base, "auc"]),
            "apgr": stat([*base, "apgr"]),
            "cpt": {
                format(lvl, "g"): stat([*base, "cpt", lvl], nan_as_inf=True) for lvl in cpt_levels
            },
            "budgets": {budget_key(p): budget_block([*base, "budgets", p]) for p in budgets},
        }
    curves = {
        "budgets": [float(x) for x in grid],
        "small_only": [float(pt["small_only"][0])] * grid.size,
        "large_only": [float(pt["large_only"][0])] * grid.size,
        "oracle": [float(x) for x in pt["oracle_curve"][0]],
        "random": [float(x) for x in pt["random_curve"][0]],
        "routers": {
            name: [float(x) for x in pt["routers"][name]["curve"][0]] for name in data.scores
        },
    }
    return {
        "n": int(n),
        "n_groups": int(data.n_groups),
        "reference": reference,
        "routers": routers,
        "curves": curves,
    }


def _get(tree: Any, path: Sequence[Any]) -> Any:
    for key in path:
        tree = tree[key]
    return tree


def _segment_attr(example: ScoredExample, key: str) -> str:
    value = getattr(example.segment, key, None)
    return "unknown" if value is None else str(value)


def evaluate_routers(
    examples: Sequence[ScoredExample],
    scores: Mapping[str, Any],
    budgets: Iterable[float] = (0.1, 0.2, 0.3, 0.4, 0.5),
    *,
    severe_delta: float = 10.0,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    breakdowns: Sequence[str] = ("direction", "domain"),
    breakdown_boot: bool = True,
    curve_step: float = 0.05,
    cpt_levels: Sequence[float] = (50, 80, 95),
    run_info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Score every router against the true gains; see the module docstring for the schema.

    ``scores[name]`` holds one score per example (higher = route to the large model).
    ``breakdown_boot=False`` skips the intervals inside breakdown subsets.
    """
    started = time.perf_counter()
    if len(examples) == 0:
        raise InputError("empty test set: no scored examples to evaluate routers on")
    budget_list = validate_budgets(budgets)
    if not (isinstance(severe_delta, int | float) and math.isfinite(severe_delta)):
        raise ConfigError(f"severe_delta must be a finite number, got {severe_delta!r}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 0:
        raise ConfigError(f"n_boot must be a whole number >= 0, got {n_boot!r}")
    if not 0.0 < level < 1.0:
        raise ConfigError(f"confidence level must be in (0, 1), got {level!r}")
    if not 0.0 < curve_step <= 0.5 or abs(round(1 / curve_step) * curve_step - 1) > 1e-9:
        raise ConfigError(f"curve_step must divide 1 evenly (e.g. 0.05), got {curve_step!r}")
    for lvl in cpt_levels:
        if not 0.0 < float(lvl) <= 100.0:
            raise ConfigError(f"CPT level {lvl!r} must be a percentage in (0, 100]")
    for ex in examples:
        if not isinstance(ex, ScoredExample):
            raise InputError(
                f"expected scored examples (with q_small and q_large), got {type(ex).__name__}"
            )
    for key in breakdowns:
        if key not in ("direction", "domain", "doc_id", "source_id"):
            raise ConfigError(
                f"unknown breakdown '{key}'; known: direction, domain, doc_id, source_id"
            )
    metrics = sorted({ex.metric for ex in examples})
    if len(metrics) > 1:
        raise InputError(
            f"the test set mixes labels from different metrics ({', '.join(metrics)}); "
            "evaluate one metric at a time"
        )
    n = len(examples)
    checked = _check_scores(scores, n)
    q_small = np.array([ex.q_small for ex in examples], dtype=float)
    q_large = np.array([ex.q_large for ex in examples], dtype=float)
    groups = [ex.segment.group for ex in examples]
    root = np.random.SeedSequence(seed)
    tie_seed, boot_seed = root.spawn(2)
    keys = tie_keys(n, tie_seed)
    grid = C.curve_grid(curve_step)
    options = {
        "severe_delta": float(severe_delta),
        "level": level,
        "grid": grid,
        "cpt_levels": [float(x) for x in cpt_levels],
    }
    data = _Data(q_small, q_large, groups, keys, checked)
    result: dict[str, Any] = {"schema": SCHEMA}
    body = _evaluate_data(data, budget_list, n_boot=n_boot, seed=boot_seed, **options)
    result.update(
        n=body.pop("n"),
        n_groups=body.pop("n_groups"),
        metric=metrics[0],
        small_systems=sorted({ex.small_system for ex in examples}),
        large_systems=sorted({ex.large_system for ex in examples}),
        budgets=budget_list,
        severe_delta=float(severe_delta),
        settings={
            "k_rule": K_RULE,
            "tie_break": TIE_RULE,
            "seed": seed,
            "bootstrap": {
                "n": n_boot,
                "level": level,
                "method": "percentile",
                "unit": "group (Segment.group = source_id, else id)",
                "breakdowns": bool(breakdown_boot and n_boot > 0),
            },
            "curve_step": curve_step,
            "cpt_levels": [float(x) for x in cpt_levels],
            "random_line": "exact expectation: mean q_S + (k/N) * mean g",
        },
    )
    result.update(body)
    result["breakdowns"] = {}
    for i, key in enumerate(breakdowns):
        values = [_segment_attr(ex, key) for ex in examples]
        subsets: dict[str, Any] = {}
        for j, value in enumerate(sorted(set(values))):
            idx = np.flatnonzero(np.array(values) == value)
            sub = _Data(
                q_small[idx],
                q_large[idx],
                [groups[t] for t in idx],
                keys[idx],
                {name: s[idx] for name, s in checked.items()},
            )
            subsets[value] = _evaluate_data(
                sub,
                budget_list,
                n_boot=n_boot if breakdown_boot else 0,
                seed=np.random.SeedSequence([seed, 1, i, j]),
                **options,
            )
        result["breakdowns"][key] = subsets
    result["run"] = dict(run_info or {})
    log.info(
        "evaluated %d routers on %d examples (%d bootstrap resamples) in %.1fs",
        len(checked),
        n,
        n_boot,
        time.perf_counter() - started,
    )
    return result
