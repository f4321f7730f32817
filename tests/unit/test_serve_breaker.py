"""The circuit breaker in front of the large model: open after N failures, one probe, close."""

from __future__ import annotations

import pytest
from serve_fixtures import Upper, closed_port_url

from routelmt.backends.base import Translator
from routelmt.backends.openai import OpenAITranslator
from routelmt.budget import BudgetSpec, Pacer
from routelmt.errors import BackendError, ConfigError
from routelmt.hybrid import HybridTranslator
from routelmt.records import Segment
from routelmt.routers import get_router
from routelmt.serve.breaker import BreakerTranslator, CircuitBreaker, CircuitOpenError
from routelmt.serve.service import fallback_reason


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Flaky(Translator):
    name = "flaky"

    def __init__(self) -> None:
        self.up = False
        self.calls = 0

    def translate(self, segments):
        self.calls += 1
        if not self.up:
            raise BackendError("endpoint unreachable")
        return [s.source[::-1] for s in segments]


SEG = [Segment(id="a", direction="en-es", source="hello")]


def test_opens_after_failures_probes_once_and_closes():
    clock = Clock()
    inner = Flaky()
    large = BreakerTranslator(inner, CircuitBreaker(3, 10.0, clock=clock))
    for _ in range(3):
        with pytest.raises(BackendError, match="unreachable"):
            large.translate(SEG)
    assert large.breaker.state == "open"
    for _ in range(50):  # open: no call goes out
        with pytest.raises(CircuitOpenError, match="circuit open"):
            large.translate(SEG)
    assert inner.calls == 3
    clock.now = 10.0  # half-open: one probe, which fails -> open again
    with pytest.raises(BackendError, match="unreachable"):
        large.translate(SEG)
    assert inner.calls == 4 and large.breaker.state == "open"
    with pytest.raises(CircuitOpenError):
        large.translate(SEG)
    clock.now = 20.0
    inner.up = True
    assert large.translate(SEG) == ["olleh"] and large.breaker.state == "closed"
    assert large.breaker.to_dict()["opened"] == 2 and large.breaker.probes == 2


def test_only_one_probe_at_a_time():
    clock = Clock()
    breaker = CircuitBreaker(1, 1.0, clock=clock)
    assert breaker.allow()
    breaker.record(False)
    clock.now = 1.0
    assert breaker.allow() and not breaker.allow()  # the second waits for the probe
    breaker.record(True)
    assert breaker.allow() and breaker.allow()


def test_bad_settings():
    with pytest.raises(ConfigError, match="failures"):
        CircuitBreaker(0)
    with pytest.raises(ConfigError, match="cooldown"):
        CircuitBreaker(3, 0)


def test_dead_endpoint_is_called_only_until_the_circuit_opens():
    """A real (closed) loopback port: 40 routed requests, 3 connection attempts."""
    inner = OpenAITranslator(base_url=closed_port_url(), model="m", timeout=2)
    attempts = []
    original = inner.translate_one

    def counting(segment):
        attempts.append(segment.id)
        return original(segment)

    inner.translate_one = counting  # type: ignore[method-assign]
    large = BreakerTranslator(inner, CircuitBreaker(3, 60.0))
    pacer = Pacer(BudgetSpec(share=0.5), initial_threshold=0.0)
    hybrid = HybridTranslator(Upper(), large, get_router("length"), pacer, large_workers=1)
    segs = [Segment(id=f"s{i}", direction="en-es", source="x" * (i + 1)) for i in range(40)]
    out = hybrid.translate(segs)
    fell_back = [r for r in out if r.fallback]
    assert len(fell_back) >= 10 and len(attempts) == 3
    assert {fallback_reason(r.error) for r in fell_back} == {"unreachable", "circuit_open"}
    assert pacer.state()["spent"] == 0  # every failed call was refunded
