"""What the operator's dashboard shows, as JSON: a thin view over the service's own state.

Three sources, each named in the answer so the page can say where a number comes from:

- ``metrics``: the very samples ``GET /metrics`` would return now (counters since start, the
  budget gauges read from the budget state), so the page and a Prometheus scrape agree;
- ``budget`` and ``breakers``: the pacer's state and each circuit breaker, read at request time;
- ``recent``: the last decisions this process answered (``serve.recent.DecisionRing``),
  for what counters cannot say: latency percentiles by direction and stage, the threshold
  over time, the last decisions (hashes and scores, never text).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from routelmt.serve.breaker import breakers_of
from routelmt.serve.recent import Decision

PERCENTILES = (50, 95, 99)
MAX_SERIES_POINTS = 400  # the threshold chart: enough to see its course, small to send
LAST_DECISIONS = 50


def metric_samples(registry: Any) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample a scrape of ``registry`` returns: name -> [(labels, value)]."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in registry.collect():
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return out


def _by(samples: dict[str, list], name: str, *labels: str) -> dict[str, Any]:
    """``{label value: sum}`` (one label) or ``{a: {b: sum}}`` (two) for one sample name."""
    out: dict[str, Any] = {}
    for sample_labels, value in samples.get(name, []):
        keys = [sample_labels.get(label, "") for label in labels]
        node = out
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = node.get(keys[-1], 0.0) + value
    return out


def _one(samples: dict[str, list], name: str) -> float | None:
    values = [value for _, value in samples.get(name, [])]
    return sum(values) if values else None


def _metrics_view(samples: dict[str, list]) -> dict[str, Any]:
    """The /metrics numbers the page shows, under their Prometheus names."""
    spent = sum(_by(samples, "routelmt_cost_total", "tier").values())
    return {
        "requests": _by(samples, "routelmt_requests_total", "endpoint", "status"),
        "segments_by_tier": _by(samples, "routelmt_segments_total", "tier"),
        "segments_by_policy": _by(samples, "routelmt_segments_total", "policy"),
        "fallbacks": _by(samples, "routelmt_fallbacks_total", "reason"),
        "errors": _by(samples, "routelmt_errors_total", "kind"),
        "cost_by_tier": _by(samples, "routelmt_cost_total", "tier"),
        "cost_total": spent,
        "cost_all_large": _one(samples, "routelmt_cost_all_large_total") or 0.0,
        "cost_saved": _one(samples, "routelmt_cost_saved"),
        "cost_saved_share": _one(samples, "routelmt_cost_saved_share"),
        "guard_checks": _by(samples, "routelmt_guard_checks_total", "guard", "vetoed"),
        "latency_count_by_tier": _by(samples, "routelmt_segment_latency_seconds_count", "tier"),
        "latency_sum_by_tier": _by(samples, "routelmt_segment_latency_seconds_sum", "tier"),
        "routed_share": _one(samples, "routelmt_routed_share"),
        "stage_routed_share": _by(samples, "routelmt_stage_routed_share", "stage"),
        "budget_target": _one(samples, "routelmt_budget_target"),
        "budget_threshold": _one(samples, "routelmt_budget_threshold"),
        "budget_spent": _one(samples, "routelmt_budget_spent"),
        "budget_remaining": _one(samples, "routelmt_budget_remaining"),
    }


def _budget_view(state: dict[str, Any]) -> dict[str, Any]:
    spec = state.get("spec") or {}
    return {
        "kind": spec.get("kind"),
        "target": spec.get("target"),
        "hard_cap": spec.get("hard_cap"),
        "window": spec.get("window"),
        "requests": state.get("requests"),
        "routed": state.get("routed"),
        "spent": state.get("spent"),
        "remaining": state.get("remaining"),
        "realised_share": state.get("realised_share"),
        "window_share": state.get("window_share"),
        "window_requests": state.get("window_requests"),
        "next_threshold": state.get("next_threshold"),
        "warming_up": state.get("warming_up"),
        "capped": state.get("capped"),
        "refunds": state.get("refunds"),
        "tier_counts": state.get("tier_counts"),
    }


def _breakers(hybrid: Any) -> list[dict[str, Any]]:
    """Each tier's circuit breaker (none: the tier has no breaker configured)."""
    return [
        {"tier": tier, **breaker.to_dict(), "retry_in_s": breaker.retry_in()}
        for tier, breaker in breakers_of(hybrid)
    ]


def _percentiles(values: np.ndarray) -> dict[str, float | None]:
    if not values.size:
        return {f"p{q}": None for q in PERCENTILES}
    found = np.percentile(values, PERCENTILES)
    return {f"p{q}": round(float(v), 3) for q, v in zip(PERCENTILES, found, strict=True)}


def columns(decisions: list[Decision]) -> dict[str, np.ndarray]:
    """The ring as arrays, read once per refresh (grouping them is then vectorised)."""
    n = len(decisions)
    return {
        "tier": np.array([d.tier for d in decisions], dtype=object),
        "direction": np.array([d.direction for d in decisions], dtype=object),
        "stage": np.array([f"stage {d.stage}" for d in decisions], dtype=object),
        "latency": np.fromiter((d.latency_ms for d in decisions), float, n),
        "fallback": np.fromiter((d.fallback for d in decisions), bool, n),
        "vetoed": np.fromiter((d.vetoed for d in decisions), bool, n),
    }


def group_stats(cols: dict[str, np.ndarray], by: str) -> list[dict]:
    """Per value of column ``by``: decisions, the share answered above the small tier,
    fallbacks, guard vetoes and latency percentiles (ms), in order of first appearance."""
    if not cols[by].size:
        return []
    names, first, group = np.unique(cols[by], return_index=True, return_inverse=True)
    above = cols["tier"] != "small"
    rows = []
    for g in np.argsort(first):
        mine = group == g
        n = int(mine.sum())
        rows.append(
            {
                "key": str(names[g]),
                "n": n,
                "large_share": float(above[mine].sum()) / n,
                "fallbacks": int(cols["fallback"][mine].sum()),
                "vetoes": int(cols["vetoed"][mine].sum()),
                **_percentiles(cols["latency"][mine]),
            }
        )
    return rows


def threshold_series(decisions: list[Decision], limit: int = MAX_SERIES_POINTS) -> dict:
    """The threshold each routed decision met, and its score, over time (evenly thinned)."""
    met = [d for d in decisions if d.threshold is not None]
    if len(met) > limit:
        picks = np.unique(np.linspace(0, len(met) - 1, limit).round().astype(int))
        met = [met[i] for i in picks]
    return {
        "time": [d.time for d in met],
        "threshold": [d.threshold for d in met],
        "score": [d.score for d in met],
        "large": [d.tier != "small" for d in met],
    }


def _recent_view(service: Any, last: int) -> dict[str, Any]:
    decisions = service.recent.snapshot()
    cols = columns(decisions)
    return {
        "capacity": service.recent.capacity,
        "held": len(decisions),
        "added": service.recent.added,
        "since": decisions[0].time if decisions else None,
        "by_tier": group_stats(cols, "tier"),
        "by_direction": group_stats(cols, "direction"),
        "by_stage": group_stats(cols, "stage"),
        "threshold": threshold_series(decisions),
        "last": [d.to_dict() for d in reversed(decisions[-last:])],
    }


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinity as None (JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def dashboard_data(service: Any, *, last: int = LAST_DECISIONS) -> dict[str, Any]:
    """The whole page's numbers; ``last`` decisions in the table, newest first."""
    hybrid = service.hybrid
    second = hybrid.second_stage
    guard = hybrid.guard
    now = finite(
        {
            "generated": time.time(),
            "service": {
                "router": service.router_name,
                "small": hybrid.small.name,
                "large": hybrid.large.name,
                "router_stages": 1 if second is None else 2,
                "tiers": [{"name": n, "cost": c} for n, c in hybrid.costs.items()],
                "uptime_s": round(time.time() - service.started, 3),
            },
            "metrics": _metrics_view(metric_samples(service.metrics.scrape_registry())),
            "budget": _budget_view(hybrid.pacer.state() or {}),
            "budget_stage2": None if second is None else _budget_view(second.pacer.state() or {}),
            "guard": None if guard is None else guard.stats(),
            "breakers": _breakers(hybrid),
        }
    )
    now["recent"] = service.recent.memo(last, lambda: finite(_recent_view(service, last)))
    return now
