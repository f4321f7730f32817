"""``GET /metrics`` through ``prometheus_client``: counters, histograms, budget gauges, process
metrics, and multiprocess mode for replicas.

Replicas (several worker processes behind one port, or several services sharing one budget
store) set ``PROMETHEUS_MULTIPROC_DIR`` to an empty folder before they start: every process then
writes its counters and histograms there, and a scrape of any one of them returns the sum over
all (``prometheus_client.multiprocess``). The budget gauges are read from the budget state at
scrape time, so with a shared budget store every replica reports the shared budget. Process
metrics (CPU, memory, open files) describe the process that answers the scrape.

The service calls ``inc(*label_values)`` and ``observe(value, *label_values)``; the thin classes
below keep that call shape over ``prometheus_client``'s ``labels(...)`` children.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import prometheus_client as prom
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
CONTENT_TYPE = prom.CONTENT_TYPE_LATEST
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# "<name>_created" samples double every counter in the exposition and nobody here reads them
prom.disable_created_metrics()


def multiprocess_dir() -> str | None:
    """The shared folder of multiprocess mode, when replicas set one."""
    return os.environ.get(MULTIPROC_ENV) or None


class Counter:
    """A labelled counter: ``inc("translate", "200")``, ``inc(amount=3)``."""

    def __init__(
        self, name: str, help: str, labels: Sequence[str] = (), *, registry: Any = None
    ) -> None:
        self.name = name
        self.label_names = tuple(labels)
        self._metric = prom.Counter(name, help, self.label_names, registry=registry)

    def _child(self, labels: Sequence[str]) -> Any:
        return self._metric.labels(*labels) if self.label_names else self._metric

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        self._child(labels).inc(amount)

    def value(self, *labels: str) -> float:
        """This process's count (tests and /health; a scrape sums over replicas)."""
        return float(self._child(labels)._value.get())

    def total(self) -> float:
        return sum(
            s.value for m in self._metric.collect() for s in m.samples if s.name.endswith("_total")
        )


class Histogram:
    """A labelled histogram: ``observe(0.012, "small")``."""

    def __init__(
        self,
        name: str,
        help: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = LATENCY_BUCKETS,
        *,
        registry: Any = None,
    ) -> None:
        self.name = name
        self.label_names = tuple(labels)
        self._metric = prom.Histogram(
            name, help, self.label_names, buckets=tuple(buckets), registry=registry
        )

    def observe(self, value: float, *labels: str) -> None:
        child = self._metric.labels(*labels) if self.label_names else self._metric
        child.observe(value)

    def count(self, *labels: str) -> int:
        wanted = dict(zip(self.label_names, labels, strict=True))
        total = 0.0
        for family in self._metric.collect():
            for sample in family.samples:
                mine = all(sample.labels.get(k) == v for k, v in wanted.items())
                if sample.name.endswith("_count") and mine:
                    total += sample.value
        return int(total)


class _BudgetCollector(Collector):
    """Budget gauges read from the budget state at scrape time (never stale, never summed).

    With a two-stage router, ``routelmt_routed_share`` is the share of all requests routed
    large by either stage (what the budget promises) and ``routelmt_stage_routed_share`` each
    stage's own: stage 1's of all requests, stage 2's of the requests that reached it."""

    def __init__(
        self,
        state: Callable[[], dict[str, Any]],
        stage2: Callable[[], dict[str, Any]] | None = None,
        *,
        saving: Callable[[], tuple[float, float]] | None = None,
    ) -> None:
        self._state = state
        self._stage2 = stage2
        self._saving = saving

    def _saved(self) -> Iterator[GaugeMetricFamily]:
        if self._saving is None:
            return
        spent, all_large = self._saving()
        yield GaugeMetricFamily(
            "routelmt_cost_saved",
            "Saved against sending every request to the most expensive tier (all_large - cost)",
            value=all_large - spent,
        )
        yield GaugeMetricFamily(
            "routelmt_cost_saved_share",
            "The saving as a share of the all-large cost",
            value=(all_large - spent) / all_large if all_large else 0.0,
        )

    def _stage_shares(self, state: dict[str, Any]) -> Iterator[GaugeMetricFamily]:
        second = (self._stage2() or {}) if self._stage2 is not None else None
        seen = state.get("requests") or 0
        spent = float(state.get("spent") or 0.0)
        stages = GaugeMetricFamily(
            "routelmt_stage_routed_share",
            "Large share decided by each routing stage (stage 2: of the requests it saw)",
            labels=["stage"],
        )
        stages.add_metric(["1"], float(state.get("realised_share") or 0.0))
        gaps = GaugeMetricFamily(
            "routelmt_stage_threshold_gap",
            "Threshold minus the one the router's shipped score distribution expects, in units "
            "of the recent scores' spread (absent without a shipped distribution)",
            labels=["stage"],
        )
        for stage, st in (("1", state), ("2", second or {})):
            if isinstance(st.get("threshold_gap_scales"), (int, float)):
                gaps.add_metric([stage], float(st["threshold_gap_scales"]))
        if second is not None:
            stages.add_metric(["2"], float(second.get("realised_share") or 0.0))
            spent += float(second.get("spent") or 0.0)
        yield stages
        yield gaps
        yield GaugeMetricFamily(
            "routelmt_routed_share",
            "Large share of decided requests, all routing stages together",
            value=spent / seen if seen else 0.0,
        )

    def collect(self) -> Iterator[GaugeMetricFamily]:
        state = self._state() or {}
        spec = state.get("spec") or {}
        yield from self._saved()
        if spec.get("kind") == "share":
            yield from self._stage_shares(state)
        else:  # a cost budget or tiers: the spend as a share of all-large spend
            yield GaugeMetricFamily(
                "routelmt_routed_share",
                "Spend as a share of sending every request to the large model",
                value=float(state.get("realised_share") or 0.0),
            )
        gauges = (
            ("routelmt_budget_target", "Budget target share p", spec, "target"),
            (
                "routelmt_budget_threshold",
                "Routing threshold the next request meets",
                state,
                "next_threshold",
            ),
            ("routelmt_budget_spent", "Budget spent (requests or cost)", state, "spent"),
            ("routelmt_budget_remaining", "Budget left to spend now", state, "remaining"),
        )
        for name, help_text, source, key in gauges:
            value = source.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                yield GaugeMetricFamily(name, help_text, value=float(value))


class _BreakerCollector(Collector):
    """Each large tier's circuit breaker, read at scrape time: one sample per state, 1 for the
    state it is in (``routelmt_breaker_state{tier, state}``), and how often it opened."""

    STATES = ("closed", "open", "half_open")

    def __init__(self, breakers: Callable[[], list[tuple[str, Any]]]) -> None:
        self._breakers = breakers

    def collect(self) -> Iterator[GaugeMetricFamily]:
        state = GaugeMetricFamily(
            "routelmt_breaker_state",
            "Circuit breaker of each large tier: 1 for the state it is in (closed, open, "
            "half_open)",
            labels=["tier", "state"],
        )
        opened = GaugeMetricFamily(
            "routelmt_breaker_opened",
            "Times each large tier's circuit breaker opened since the process started",
            labels=["tier"],
        )
        for tier, breaker in self._breakers():
            info = breaker.to_dict()
            for name in self.STATES:
                state.add_metric([tier, name], 1.0 if info["state"] == name else 0.0)
            opened.add_metric([tier], float(info["opened"]))
        yield state
        yield opened


class ServiceMetrics:
    """Everything ``GET /metrics`` exposes, in a registry of its own (one per service)."""

    def __init__(
        self,
        budget_state: Callable[[], dict] | None = None,
        stage2_state: Callable[[], dict] | None = None,
        breakers: Callable[[], list[tuple[str, Any]]] | None = None,
    ) -> None:
        self.registry = prom.CollectorRegistry(auto_describe=True)
        reg = self.registry
        self._traffic_counters(reg)
        self._latency_histograms(reg)
        self._spend_counters(reg)
        self._budget = _BudgetCollector(
            budget_state or (lambda: {}), stage2_state, saving=self.saving
        )
        self._process = [
            prom.ProcessCollector(registry=None),
            prom.PlatformCollector(registry=None),
        ]
        self._breakers = _BreakerCollector(breakers or list)  # this process's breakers
        if multiprocess_dir() is None:
            for collector in (self._budget, self._breakers, *self._process):
                reg.register(collector)

    def _traffic_counters(self, reg: Any) -> None:
        """Requests, segments, fallbacks, errors and tokens."""
        self.requests = Counter(
            "routelmt_requests_total",
            "HTTP requests by endpoint and status",
            ("endpoint", "status"),
            registry=reg,
        )
        self.segments = Counter(
            "routelmt_segments_total",
            "Translated segments by tier that answered and policy",
            ("tier", "policy"),
            registry=reg,
        )
        self.fallbacks = Counter(
            "routelmt_fallbacks_total",
            "Large calls that failed and fell back to the small model",
            ("reason",),
            registry=reg,
        )
        self.errors = Counter("routelmt_errors_total", "Errors by kind", ("kind",), registry=reg)
        self.tokens = Counter(
            "routelmt_tokens_total",
            "Tokens by tier and kind (prompt or completion), as the answering model counted them",
            ("tier", "kind"),
            registry=reg,
        )

    def _latency_histograms(self, reg: Any) -> None:
        """Per-segment, per-request, per-model-call and routing time; batch sizes."""
        self.latency = Histogram(
            "routelmt_segment_latency_seconds",
            "Per-segment latency from arrival to answer, by tier that answered",
            ("tier",),
            registry=reg,
        )
        self.request_latency = Histogram(
            "routelmt_request_latency_seconds",
            "HTTP request latency by endpoint",
            ("endpoint",),
            registry=reg,
        )
        self.model_latency = Histogram(
            "routelmt_model_call_seconds", "Model call time by tier", ("tier",), registry=reg
        )
        self.route_latency = Histogram(
            "routelmt_route_seconds",
            "Routing overhead per segment (router score + pacer decision)",
            buckets=(1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 0.1),
            registry=reg,
        )
        self.batch_size = Histogram(
            "routelmt_small_batch_size",
            "Segments per small-model batch",
            buckets=SIZE_BUCKETS,
            registry=reg,
        )
        self.decode_step = Histogram(
            "routelmt_decode_step_seconds",
            "One step of the continuous small-model decode batch (every running row)",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=reg,
        )

    def _spend_counters(self, reg: Any) -> None:
        """Spend by tier, the all-large counterfactual, and the guards' checks and time."""
        self.cost = Counter(
            "routelmt_cost_total",
            "Spend by the tier that answered (configured per-request costs)",
            ("tier",),
            registry=reg,
        )
        self.cost_all_large = Counter(
            "routelmt_cost_all_large_total",
            "What the same requests would have cost on the most expensive tier",
            registry=reg,
        )
        self.guard_checks = Counter(
            "routelmt_guard_checks_total",
            "Guard checks of large-model candidates, by guard and whether it vetoed",
            ("guard", "vetoed"),
            registry=reg,
        )
        self.guard_seconds = Counter(
            "routelmt_guard_seconds_total",
            "Time spent in guard checks (QE pass or quality head)",
            ("guard",),
            registry=reg,
        )

    def observe_usage(self, tier: str, prompt_tokens: int, completion_tokens: int) -> None:
        """Count one answer's tokens (``usage`` of an OpenAI-style answer) for its tier."""
        if prompt_tokens:
            self.tokens.inc(tier, "prompt", amount=float(prompt_tokens))
        if completion_tokens:
            self.tokens.inc(tier, "completion", amount=float(completion_tokens))

    def saving(self) -> tuple[float, float]:
        """(spent, what all-large would have spent), this process's counters."""
        return self.cost.total(), self.cost_all_large.total()

    def observe_result(self, result: Any, usage: dict[str, int]) -> None:
        """One answered segment: its tokens, its cost and saving, its guard check."""
        self.observe_usage(result.tier, usage["prompt_tokens"], usage["completion_tokens"])
        cost = result.cost or {}
        if cost:
            if cost["cost"]:
                self.cost.inc(result.tier, amount=float(cost["cost"]))
            self.cost_all_large.inc(amount=float(cost["all_large"]))
        if result.guard:
            name = str(result.guard["name"])
            self.guard_checks.inc(name, str(bool(result.guard["vetoed"])).lower())
            self.guard_seconds.inc(name, amount=float(result.guard["ms"]) / 1000.0)

    def scrape_registry(self) -> Any:
        """What a scrape reads: this service's registry, or in multiprocess mode the files of
        every process plus this process's budget gauges, breakers and process metrics."""
        if multiprocess_dir() is None:
            return self.registry
        from prometheus_client import multiprocess

        registry = prom.CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        for collector in (self._budget, self._breakers, *self._process):
            registry.register(collector)
        return registry

    def render(self) -> str:
        return prom.generate_latest(self.scrape_registry()).decode("utf-8")
