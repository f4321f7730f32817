"""Prometheus text exposition without a dependency: counters, gauges and histograms."""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable, Sequence

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


def _fmt(x: float) -> str:
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    if x == int(x) and abs(x) < 1e15:
        return str(int(x))
    return repr(float(x))


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(str(v))}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class _Metric:
    kind = ""

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help
        self.label_names = tuple(labels)
        self._lock = threading.Lock()

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help, labels)
        self._values: dict[tuple[str, ...], float] = {}

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def value(self, *labels: str) -> float:
        with self._lock:
            return self._values.get(labels, 0.0)

    def total(self) -> float:
        with self._lock:
            return sum(self._values.values())

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return self.header() + [
            f"{self.name}{_labels(self.label_names, k)} {_fmt(v)}" for k, v in items
        ]


class Gauge(_Metric):
    """A value read at scrape time from ``fn`` (so it is never stale)."""

    kind = "gauge"

    def __init__(self, name: str, help: str, fn: Callable[[], float | None]) -> None:
        super().__init__(name, help)
        self.fn = fn

    def render(self) -> list[str]:
        value = self.fn()
        if value is None:
            return []
        return self.header() + [f"{self.name} {_fmt(float(value))}"]


class Histogram(_Metric):
    kind = "histogram"

    def __init__(
        self,
        name: str,
        help: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> None:
        super().__init__(name, help, labels)
        self.buckets = tuple(sorted(buckets))
        self._data: dict[tuple[str, ...], list[float]] = {}  # counts per bucket, +Inf, sum

    def observe(self, value: float, *labels: str) -> None:
        i = bisect.bisect_left(self.buckets, value)
        with self._lock:
            row = self._data.setdefault(labels, [0.0] * (len(self.buckets) + 2))
            row[i] += 1  # bucket i is the first with upper bound >= value (+Inf at the end)
            row[-1] += value

    def count(self, *labels: str) -> int:
        with self._lock:
            row = self._data.get(labels)
            return int(sum(row[:-1])) if row else 0

    def render(self) -> list[str]:
        lines = self.header()
        with self._lock:
            items = sorted((k, list(v)) for k, v in self._data.items())
        for key, row in items:
            cumulative = 0.0
            for bound, n in zip((*self.buckets, math.inf), row[:-1], strict=True):
                cumulative += n
                le = f'le="{_fmt(bound)}"'
                lines.append(
                    f"{self.name}_bucket{_labels(self.label_names, key, le)} {_fmt(cumulative)}"
                )
            lab = _labels(self.label_names, key)
            lines.append(f"{self.name}_sum{lab} {_fmt(row[-1])}")
            lines.append(f"{self.name}_count{lab} {_fmt(cumulative)}")
        return lines


class ServiceMetrics:
    """Everything ``GET /metrics`` exposes."""

    def __init__(self, budget_state: Callable[[], dict] | None = None) -> None:
        self._state = budget_state or (lambda: {})
        self.requests = Counter(
            "routelmt_requests_total",
            "HTTP requests by endpoint and status",
            ("endpoint", "status"),
        )
        self.segments = Counter(
            "routelmt_segments_total",
            "Translated segments by tier that answered and policy",
            ("tier", "policy"),
        )
        self.fallbacks = Counter(
            "routelmt_fallbacks_total",
            "Large calls that failed and fell back to the small model",
            ("reason",),
        )
        self.errors = Counter("routelmt_errors_total", "Errors by kind", ("kind",))
        self.latency = Histogram(
            "routelmt_segment_latency_seconds",
            "Per-segment latency from arrival to answer, by tier that answered",
            ("tier",),
        )
        self.request_latency = Histogram(
            "routelmt_request_latency_seconds", "HTTP request latency by endpoint", ("endpoint",)
        )
        self.model_latency = Histogram(
            "routelmt_model_call_seconds", "Model call time by tier", ("tier",)
        )
        self.route_latency = Histogram(
            "routelmt_route_seconds",
            "Routing overhead per segment (router score + pacer decision)",
            buckets=(1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 0.1),
        )
        self.batch_size = Histogram(
            "routelmt_small_batch_size", "Segments per small-model batch", buckets=SIZE_BUCKETS
        )
        self._all = [
            self.requests,
            self.segments,
            self.fallbacks,
            self.errors,
            self.latency,
            self.request_latency,
            self.model_latency,
            self.route_latency,
            self.batch_size,
            Gauge("routelmt_routed_share", "Large share of decided requests", self._share),
            Gauge("routelmt_budget_target", "Budget target share p", self._target),
            Gauge("routelmt_budget_threshold", "Current routing threshold", self._threshold),
            Gauge("routelmt_budget_spent", "Budget spent (requests or cost)", self._spent),
        ]

    def _get(self, key: str) -> float | None:
        value = self._state().get(key)
        return float(value) if isinstance(value, (int, float)) else None

    def _share(self) -> float | None:
        return self._get("realised_share")

    def _threshold(self) -> float | None:
        return self._get("threshold")

    def _spent(self) -> float | None:
        return self._get("spent")

    def _target(self) -> float | None:
        budget = self._state().get("budget") or {}
        return budget.get("target")

    def render(self) -> str:
        lines: list[str] = []
        for metric in self._all:
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"
