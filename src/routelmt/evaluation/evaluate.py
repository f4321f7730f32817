"""Evaluate routers on a labelled test set: every metric of docs/method.md section 4 with group
bootstrap intervals, reference lines, per-direction / per-domain breakdowns, the mean over
directions (the paper's averaging) and paired differences against baseline routers.

Result schema (``SCHEMA``; every number is a plain float or None for NaN, so it is valid JSON).
A *stat* is ``{"value": float|None, "ci_low": float|None, "ci_high": float|None}`` (95% group
bootstrap, percentile method; the CI fields are None when ``n_boot`` is 0). A *diff* is a stat
of ``A - B`` computed on the same resamples for both routers, plus ``"beats": bool|None``
(True when the whole interval lies above zero; None without an interval)::

    {
      "schema": "routelmt.evaluation/2",
      "n": int, "n_groups": int,
      "metric": str,                      # the metric signature of the labels
      "small_systems": [str], "large_systems": [str],
      "budgets": [float],                 # the budgets asked for
      "severe_delta": float,
      "settings": {"k_rule", "tie_break", "bootstrap": {...}, "curve_step", "cpt_levels",
                   "seed", "random_line", "hc", "paired": {"baselines", "missing", "rule"}},
      "reference": {
        "small_only": stat, "large_only": stat, "mean_gain": stat,
        "oracle_auc": stat, "random_auc": stat,
        "oracle": {"<p>": {"k", "hit_rate", "mean_delta", "hybrid_quality", "severe_loss", "hc"}},
        "random": {"<p>": {"k", "hit_rate", "mean_delta", "hybrid_quality", "severe_loss", "hc"}},
      },                                  # "random" holds exact expectations (no CI)
      "routers": {
        "<name>": {
          "spearman": stat, "auc": stat, "apgr": stat,
          "cpt": {"50": stat, "80": stat, "95": stat},   # budget share; None = never
          "budgets": {"<p>": {"k": int, "hit_rate": stat, "mean_delta": stat,
                              "hybrid_quality": stat, "severe_loss": stat, "hc": stat}},
        }
      },
      "paired": {"<baseline>": {"<router>": {
          "spearman": diff, "budgets": {"<p>": {"hc": diff, "mean_delta": diff}}}}},
      "curves": {"budgets": [float], "small_only": [...], "large_only": [...],
                 "oracle": [...], "random": [...], "routers": {"<name>": [...]}},
      "breakdowns": {"direction": {"en-es": {<the same without "breakdowns">}, ...},
                     "domain": {...}},
      "direction_mean": {                 # with the direction breakdown: the paper's averaging
        "directions": [str],
        "reference": {"mean_gain": stat, "oracle": {"<p>": {"mean_delta": stat}}},
        "routers": {"<name>": {"spearman": stat,
                               "budgets": {"<p>": {"hit_rate", "mean_delta", "hc": stat}}}},
        "paired": {<as above>},
      },
      "run": {...}                        # whatever the caller passed as run_info
    }

``"<p>"`` is the budget formatted with ``format(p, "g")`` (e.g. "0.3"). Spearman, AUC, APGR
and CPT do not depend on the budget, so they sit at the router level. Within a breakdown
subset the routing is recomputed on that subset alone (k = floor(p * N_subset + 0.5)), as if
the router served only that traffic.

**HC@p** (headroom closed) = 100 * (MeanDelta@p - mean g) / (oracle MeanDelta@p - mean g),
computed on each resample from that resample's own mean gain and oracle (random 0, oracle 100).

**Resamples.** The pooled set draws source groups with replacement. Each direction subset uses
*the same* draws restricted to its own segments, so that the per-direction values, their mean
and every paired difference come from one set of resamples (a source shared by several en-xx
directions is drawn, or not, for all of them together). Other breakdowns (domain, ...) are
resampled within the subset.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from routelmt.budget.allocation import budget_count, descending_order, tie_keys
from routelmt.errors import ConfigError, InputError
from routelmt.evaluation import curves as C
from routelmt.evaluation.bootstrap import group_index, summarise, weight_chunks
from routelmt.evaluation.ranking import (
    OrderedWeights,
    average_ranks,
    budget_metrics,
    spearman,
    validate_budgets,
    weighted_spearman,
)
from routelmt.records import ScoredExample

log = logging.getLogger(__name__)

SCHEMA = "routelmt.evaluation/2"
BUDGET_FIELDS = ("hit_rate", "mean_delta", "hybrid_quality", "severe_loss", "hc")
PAIRED_BUDGET_FIELDS = ("hc", "mean_delta")
MEAN_BUDGET_FIELDS = ("hit_rate", "mean_delta", "hc")
DEFAULT_BASELINES = ("length", "entropy")
BREAKDOWN_KEYS = ("direction", "domain", "doc_id", "source_id")
K_RULE = "k = floor(p * N + 0.5) (round half up)"
TIE_RULE = (
    "descending score; ties broken by a seeded random permutation of the segments "
    "(the same permutation orders the true gains)"
)
HC_RULE = (
    "HC@p = 100 * (MeanDelta@p - mean gain) / (oracle MeanDelta@p - mean gain), "
    "per resample; random 0, oracle 100"
)
PAIRED_RULE = (
    "A - B on the same resamples; 'beats' = the whole interval lies above zero "
    "(two overlapping intervals do not answer that question)"
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


def headroom_closed(
    mean_delta: np.ndarray | float, mean_gain: np.ndarray | float, oracle_delta: np.ndarray | float
) -> np.ndarray:
    """HC in percent: the share of the oracle's MeanDelta advantage over random routing.

    NaN where the oracle is no better than random (all gains equal) or MeanDelta is undefined.
    """
    md = np.asarray(mean_delta, dtype=float)
    span = np.asarray(oracle_delta, dtype=float) - np.asarray(mean_gain, dtype=float)
    tol = 1e-9 * np.maximum(1.0, np.abs(np.asarray(oracle_delta, dtype=float)))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.abs(span) > tol, 100.0 * (md - mean_gain) / span, np.nan)


def _compute(
    data: _Data,
    w: np.ndarray,
    budgets: list[float],
    grid: np.ndarray,
    severe_delta: float,
    cpt_levels: Sequence[float],
    point: bool,
) -> dict[str, Any]:
    """Every metric on each weighted row of ``w``; arrays with one entry per row.

    A row may hold no copy at all (a direction none of whose sources was drawn): its metrics
    are NaN, which the percentile intervals ignore.
    """
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
    for p in budgets:
        cell = out["oracle"][p]
        cell["hc"] = headroom_closed(cell["mean_delta"], out["mean_gain"], cell["mean_delta"])
    gain_ranks = None if point else average_ranks(g, w)
    routers: dict[str, Any] = {}
    for name, s in data.scores.items():
        ranked = OrderedWeights(data.orders[name], w)
        curve = C.quality_curve(ranked, g, qs_sum, total, grid)
        area = C.auc(curve, grid)
        cells = {
            p: budget_metrics(ranked, oracle, g, qs_sum, total, p, severe_delta) for p in budgets
        }
        for p, cell in cells.items():
            cell["hc"] = headroom_closed(
                cell["mean_delta"], out["mean_gain"], out["oracle"][p]["mean_delta"]
            )
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
            "budgets": cells,
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
    k = budget_count(n, p)
    mean_g = float(data.gains.mean())
    flat = bool(np.ptp(data.gains) == 0)

    def exact(value: float | None) -> dict[str, Any]:
        return {"value": value, "ci_low": None, "ci_high": None}

    return {
        "k": k,
        "hit_rate": exact(100.0 * k / n),
        "mean_delta": exact(mean_g if k else None),
        "hybrid_quality": exact(float(data.q_small.mean() + k / n * mean_g)),
        "severe_loss": exact(float(100.0 * np.mean(data.gains < -severe_delta)) if k else None),
        "hc": exact(0.0 if k and not flat else None),
    }


_Replicates = tuple[dict[str, Any], dict[str, Any] | None]


def _replicates(
    data: _Data,
    budgets: list[float],
    weights: Iterable[np.ndarray] | None,
    *,
    grid: np.ndarray,
    severe_delta: float,
    cpt_levels: Sequence[float],
) -> _Replicates:
    """The point values (one row of ones) and, given resample weights, one row per resample."""
    ones = np.ones((1, data.gains.size), dtype=np.int64)
    pt = _compute(data, ones, budgets, grid, severe_delta, cpt_levels, point=True)
    if weights is None:
        return pt, None
    with np.errstate(divide="ignore", invalid="ignore"):
        chunks = [
            _compute(data, w, budgets, grid, severe_delta, cpt_levels, point=False) for w in weights
        ]
    return pt, (_concat(chunks) if chunks else None)


def _get(tree: Any, path: Sequence[Any]) -> Any:
    for key in path:
        tree = tree[key]
    return tree


def _stat(reps: _Replicates, path: Sequence[Any], level: float, **kw: Any) -> dict[str, Any]:
    pt, bs = reps
    return summarise(float(_get(pt, path)[0]), None if bs is None else _get(bs, path), level, **kw)


def _diff(reps: _Replicates, a: Sequence[Any], b: Sequence[Any], level: float) -> dict[str, Any]:
    """A - B on the same resamples, and whether its interval lies above zero."""
    pt, bs = reps
    point = float(_get(pt, a)[0] - _get(pt, b)[0])
    stat = summarise(point, None if bs is None else _get(bs, a) - _get(bs, b), level)
    stat["beats"] = None if stat["ci_low"] is None else bool(stat["ci_low"] > 0)
    return stat


def _paired(
    reps: _Replicates, names: Sequence[str], baselines: Sequence[str], budgets: list[float], level
) -> dict[str, Any]:
    """Every router against every baseline present: Spearman, HC@p and MeanDelta@p diffs."""
    out: dict[str, Any] = {}
    for base in baselines:
        if base not in names:
            continue
        against: dict[str, Any] = {}
        for name in names:
            if name == base:
                continue
            r, b = ["routers", name], ["routers", base]
            against[name] = {
                "spearman": _diff(reps, [*r, "spearman"], [*b, "spearman"], level),
                "budgets": {
                    budget_key(p): {
                        f: _diff(reps, [*r, "budgets", p, f], [*b, "budgets", p, f], level)
                        for f in PAIRED_BUDGET_FIELDS
                    }
                    for p in budgets
                },
            }
        out[base] = against
    return out


def _summary(
    data: _Data,
    reps: _Replicates,
    budgets: list[float],
    *,
    severe_delta: float,
    level: float,
    grid: np.ndarray,
    cpt_levels: Sequence[float],
    baselines: Sequence[str],
) -> dict[str, Any]:
    pt = reps[0]

    def stat(path: Sequence[Any], *, nan_as_inf: bool = False) -> dict[str, Any]:
        return _stat(reps, path, level, nan_as_inf=nan_as_inf)

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
        "n": int(data.gains.size),
        "n_groups": int(data.n_groups),
        "reference": reference,
        "routers": routers,
        "paired": _paired(reps, list(data.scores), baselines, budgets, level),
        "curves": curves,
    }


def _mean_over(parts: list[_Replicates], names: Sequence[str], budgets: list[float]) -> _Replicates:
    """Replicate trees holding the mean over subsets (rows aligned: the same resamples)."""

    def avg(path: Sequence[Any], which: int) -> np.ndarray:
        return np.mean(np.stack([_get(part[which], path) for part in parts]), axis=0)

    def tree(which: int) -> dict[str, Any]:
        return {
            "mean_gain": avg(["mean_gain"], which),
            "oracle": {p: {"mean_delta": avg(["oracle", p, "mean_delta"], which)} for p in budgets},
            "routers": {
                name: {
                    "spearman": avg(["routers", name, "spearman"], which),
                    "budgets": {
                        p: {
                            f: avg(["routers", name, "budgets", p, f], which)
                            for f in MEAN_BUDGET_FIELDS
                        }
                        for p in budgets
                    },
                }
                for name in names
            },
        }

    with_boot = all(part[1] is not None for part in parts)
    return tree(0), (tree(1) if with_boot else None)


def _direction_mean(
    parts: dict[str, _Replicates],
    names: Sequence[str],
    budgets: list[float],
    baselines: Sequence[str],
    level: float,
) -> dict[str, Any]:
    """The mean over directions of each per-direction value (how the paper reports)."""
    reps = _mean_over(list(parts.values()), names, budgets)
    return {
        "directions": list(parts),
        "reference": {
            "mean_gain": _stat(reps, ["mean_gain"], level),
            "oracle": {
                budget_key(p): {"mean_delta": _stat(reps, ["oracle", p, "mean_delta"], level)}
                for p in budgets
            },
        },
        "routers": {
            name: {
                "spearman": _stat(reps, ["routers", name, "spearman"], level),
                "budgets": {
                    budget_key(p): {
                        f: _stat(reps, ["routers", name, "budgets", p, f], level)
                        for f in MEAN_BUDGET_FIELDS
                    }
                    for p in budgets
                },
            }
            for name in names
        },
        "paired": _paired(reps, list(names), baselines, budgets, level),
    }


def _segment_attr(example: ScoredExample, key: str) -> str:
    value = getattr(example.segment, key, None)
    return "unknown" if value is None else str(value)


def _validate_options(
    budgets: Iterable[float],
    severe_delta: float,
    n_boot: int,
    level: float,
    curve_step: float,
    cpt_levels: Sequence[float],
    breakdowns: Sequence[str],
    baselines: Sequence[str] | None,
) -> tuple[list[float], list[str]]:
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
    for key in breakdowns:
        if key not in BREAKDOWN_KEYS:
            raise ConfigError(f"unknown breakdown '{key}'; known: {', '.join(BREAKDOWN_KEYS)}")
    base_list = list(DEFAULT_BASELINES if baselines is None else baselines)
    if isinstance(baselines, str) or not all(isinstance(b, str) and b for b in base_list):
        raise ConfigError(f"baselines must be a list of router names, got {baselines!r}")
    return budget_list, list(dict.fromkeys(base_list))


def _check_arrays(
    q_small: Any, q_large: Any, groups: Sequence[str], attributes: Mapping[str, Sequence[str]]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The qualities as 1-D float arrays of one length, one group and one value per breakdown
    key for each example."""
    q_small = np.asarray(q_small, dtype=float)
    q_large = np.asarray(q_large, dtype=float)
    n = q_small.size
    if n == 0:
        raise InputError("empty test set: no scored examples to evaluate routers on")
    if q_small.shape != (n,) or q_large.shape != (n,):
        raise InputError(
            f"q_small and q_large must be 1-D arrays of one length, got shapes "
            f"{q_small.shape} and {q_large.shape}"
        )
    if not (np.isfinite(q_small).all() and np.isfinite(q_large).all()):
        raise InputError("the qualities (or gains) hold NaN or infinite values")
    group_list = [str(g) for g in groups]
    if len(group_list) != n:
        raise InputError(f"got {len(group_list)} source ids for {n} examples; expected one each")
    for key, values in attributes.items():
        if len(values) != n:
            raise InputError(f"got {len(values)} '{key}' values for {n} examples")
    return q_small, q_large, group_list


def _settings(
    seed: int,
    n_boot: int,
    level: float,
    breakdown_boot: bool,
    curve_step: float,
    cpt_levels: Sequence[float],
    base_list: list[str],
    routers: Mapping[str, Any],
) -> dict[str, Any]:
    """Every rule and setting behind the numbers, written into the result."""
    return {
        "k_rule": K_RULE,
        "tie_break": TIE_RULE,
        "seed": seed,
        "bootstrap": {
            "n": n_boot,
            "level": level,
            "method": "percentile",
            "unit": "group (Segment.group = source_id, else id)",
            "breakdowns": bool(breakdown_boot and n_boot > 0),
            "direction": "the pooled resamples restricted to each direction",
        },
        "curve_step": curve_step,
        "cpt_levels": [float(x) for x in cpt_levels],
        "random_line": "exact expectation: mean q_S + (k/N) * mean g",
        "hc": HC_RULE,
        "paired": {
            "baselines": [b for b in base_list if b in routers],
            "missing": [b for b in base_list if b not in routers],
            "rule": PAIRED_RULE,
        },
    }


@dataclass
class _Plan:
    """What every subset of one evaluation shares: the budgets, the metric options, and the
    seeds of the pooled and per-subset resamples."""

    budgets: list[float]
    compute: dict[str, Any]
    summary_opts: dict[str, Any]
    n_boot: int
    seed: int
    boot_seed: np.random.SeedSequence
    breakdown_boot: bool

    def pooled_draws(self, data: _Data) -> Iterator[np.ndarray]:
        return weight_chunks(data.group_idx, data.n_groups, self.n_boot, self.boot_seed)


def _breakdown(
    plan: _Plan, data: _Data, groups: list[str], keys: np.ndarray, i: int, key: str, raw: Any
) -> tuple[dict[str, Any], dict[str, _Replicates]]:
    """One breakdown key: the summary of each of its values, and (for ``direction``) each
    subset's replicates, drawn from the pooled resamples."""
    values = np.array([str(v) for v in raw], dtype=object)
    subsets: dict[str, Any] = {}
    parts: dict[str, _Replicates] = {}
    for j, value in enumerate(sorted(set(values))):
        idx = np.flatnonzero(values == value)
        sub = _Data(
            data.q_small[idx],
            data.q_large[idx],
            [groups[t] for t in idx],
            keys[idx],
            {name: s[idx] for name, s in data.scores.items()},
        )
        draws: Iterable[np.ndarray] | None = None
        if plan.n_boot and plan.breakdown_boot:
            if key == "direction":
                draws = (w[:, idx] for w in plan.pooled_draws(data))
            else:
                sub_seed = np.random.SeedSequence([plan.seed, 1, i, j])
                draws = weight_chunks(sub.group_idx, sub.n_groups, plan.n_boot, sub_seed)
        sub_reps = _replicates(sub, plan.budgets, draws, **plan.compute)
        subsets[value] = _summary(sub, sub_reps, plan.budgets, **plan.summary_opts)
        if key == "direction":
            parts[value] = sub_reps
    return subsets, parts


def evaluate_arrays(
    q_small: Any,
    q_large: Any,
    groups: Sequence[str],
    scores: Mapping[str, Any],
    budgets: Iterable[float] = (0.1, 0.2, 0.3, 0.4, 0.5),
    *,
    attributes: Mapping[str, Sequence[str]] | None = None,
    baselines: Sequence[str] | None = None,
    severe_delta: float = 10.0,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    breakdown_boot: bool = True,
    curve_step: float = 0.05,
    cpt_levels: Sequence[float] = (50, 80, 95),
    metric: str = "quality",
    small_systems: Sequence[str] = (),
    large_systems: Sequence[str] = (),
    run_info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``evaluate_routers`` on plain arrays: qualities, a source group per segment, and one
    value list per breakdown key in ``attributes`` (e.g. ``{"direction": [...]}``)."""
    started = time.perf_counter()
    attributes = dict(attributes or {})
    budget_list, base_list = _validate_options(
        budgets, severe_delta, n_boot, level, curve_step, cpt_levels, list(attributes), baselines
    )
    q_small, q_large, group_list = _check_arrays(q_small, q_large, groups, attributes)
    n = q_small.size
    checked = _check_scores(scores, n)
    tie_seed, boot_seed = np.random.SeedSequence(seed).spawn(2)
    keys = tie_keys(n, tie_seed)
    cpt = [float(x) for x in cpt_levels]
    compute = {"grid": C.curve_grid(curve_step), "severe_delta": float(severe_delta)}
    compute["cpt_levels"] = cpt
    summary_opts = {**compute, "level": level, "baselines": base_list}
    plan = _Plan(budget_list, compute, summary_opts, n_boot, seed, boot_seed, breakdown_boot)
    data = _Data(q_small, q_large, group_list, keys, checked)
    reps = _replicates(data, budget_list, plan.pooled_draws(data) if n_boot else None, **compute)
    body = _summary(data, reps, budget_list, **summary_opts)
    result: dict[str, Any] = {"schema": SCHEMA}
    result.update(
        n=body.pop("n"),
        n_groups=body.pop("n_groups"),
        metric=metric,
        small_systems=sorted(set(small_systems)),
        large_systems=sorted(set(large_systems)),
        budgets=budget_list,
        severe_delta=float(severe_delta),
        settings=_settings(
            seed, n_boot, level, breakdown_boot, curve_step, cpt_levels, base_list, checked
        ),
    )
    result.update(body)
    result["breakdowns"] = {}
    for i, (key, raw) in enumerate(attributes.items()):
        result["breakdowns"][key], parts = _breakdown(plan, data, group_list, keys, i, key, raw)
        if key == "direction":
            result["direction_mean"] = _direction_mean(
                parts, list(checked), budget_list, base_list, level
            )
    result["run"] = dict(run_info or {})
    log.info(
        "evaluated %d routers on %d examples (%d bootstrap resamples) in %.1fs",
        len(checked),
        n,
        n_boot,
        time.perf_counter() - started,
    )
    return result


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
    baselines: Sequence[str] | None = None,
    run_info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Score every router against the true gains; see the module docstring for the schema.

    ``scores[name]`` holds one score per example (higher = route to the large model).
    ``baselines`` (default ``length``, ``entropy``) are the routers every other router is
    compared against, paired; those not among ``scores`` are skipped and listed in
    ``settings.paired.missing``. ``breakdown_boot=False`` skips the intervals inside breakdown
    subsets (and so those of the mean over directions).
    """
    if len(examples) == 0:
        raise InputError("empty test set: no scored examples to evaluate routers on")
    for ex in examples:
        if not isinstance(ex, ScoredExample):
            raise InputError(
                f"expected scored examples (with q_small and q_large), got {type(ex).__name__}"
            )
    for key in breakdowns:
        if key not in BREAKDOWN_KEYS:
            raise ConfigError(f"unknown breakdown '{key}'; known: {', '.join(BREAKDOWN_KEYS)}")
    metrics = sorted({ex.metric for ex in examples})
    if len(metrics) > 1:
        raise InputError(
            f"the test set mixes labels from different metrics ({', '.join(metrics)}); "
            "evaluate one metric at a time"
        )
    return evaluate_arrays(
        [ex.q_small for ex in examples],
        [ex.q_large for ex in examples],
        [ex.segment.group for ex in examples],
        scores,
        budgets,
        attributes={key: [_segment_attr(ex, key) for ex in examples] for key in breakdowns},
        baselines=baselines,
        severe_delta=severe_delta,
        n_boot=n_boot,
        seed=seed,
        level=level,
        breakdown_boot=breakdown_boot,
        curve_step=curve_step,
        cpt_levels=cpt_levels,
        metric=metrics[0],
        small_systems=[ex.small_system for ex in examples],
        large_systems=[ex.large_system for ex in examples],
        run_info=run_info,
    )
