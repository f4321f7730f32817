"""GET /dashboard/data over a real loopback server: a bounded ring, the numbers' sources, the
key (Bearer or Basic), bad parameters as 4xx, and never a user's text."""

from __future__ import annotations

import json
import math

import httpx
import pytest
from serve_fixtures import make_service

from routelmt.serve.app import create_app
from routelmt.serve.breaker import CircuitBreaker
from routelmt.serve.dashboard_data import finite, threshold_series
from routelmt.serve.metrics import ServiceMetrics
from routelmt.serve.recent import Decision, DecisionRing
from routelmt.serve.runner import ServerThread
from routelmt.serve.security import Security

KEY = "a-long-enough-key"


def _decision(i: int, threshold: float | None = 0.5) -> Decision:
    return Decision(
        time=float(i), direction="en-es", tier="small", policy="auto", reason="below_threshold",
        stage=1, score=float(i), stage2_score=None, threshold=threshold, fallback=False,
        guard=None, vetoed=False, latency_ms=1.0, cost=0.0, source_sha256="ab" * 8,
        source_chars=3,
    )  # fmt: skip


def test_the_ring_keeps_the_last_decisions_only():
    ring = DecisionRing(5)
    ring.extend(_decision(i) for i in range(12))
    assert len(ring) == 5 and ring.added == 12
    assert [d.time for d in ring.snapshot()] == [7.0, 8.0, 9.0, 10.0, 11.0]
    view = ring.memo(3, lambda: {"held": len(ring)})
    assert ring.memo(3, dict) is view  # nothing added: the view is reused
    assert ring.memo(4, dict) == {}  # another key
    ring.extend([_decision(12)])
    assert ring.memo(4, lambda: {"held": 5}) == {"held": 5}
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="capacity"):
            DecisionRing(bad)


def test_threshold_series_is_thinned_evenly_and_keeps_both_ends():
    decisions = [_decision(i, None if i % 3 == 0 else 0.1 * i) for i in range(3000)]
    series = threshold_series(decisions, limit=400)
    assert len(series["time"]) <= 400
    met = [d for d in decisions if d.threshold is not None]
    assert series["time"][0] == met[0].time and series["time"][-1] == met[-1].time
    assert None not in series["threshold"]


def test_non_finite_numbers_become_null():
    assert finite({"a": [math.inf, 1.0, math.nan], "b": {"c": -math.inf}}) == {
        "a": [None, 1.0, None],
        "b": {"c": None},
    }


def test_breaker_state_is_in_the_metrics():
    breaker = CircuitBreaker(failures=2, cooldown_s=60)
    text = ServiceMetrics(breakers=lambda: [("large", breaker)]).render()
    assert 'routelmt_breaker_state{state="closed",tier="large"} 1.0' in text
    breaker.record(False)
    breaker.record(False)
    text = ServiceMetrics(breakers=lambda: [("large", breaker)]).render()
    assert 'routelmt_breaker_state{state="open",tier="large"} 1.0' in text
    assert 'routelmt_breaker_state{state="closed",tier="large"} 0.0' in text
    assert 'routelmt_breaker_opened{tier="large"} 1.0' in text


@pytest.fixture
def server():
    service = make_service(recent_decisions=20)  # log_text=True: the service holds the texts
    srv = ServerThread(create_app(service, security=Security(api_keys=(KEY,)))).start()
    yield srv, service
    srv.stop()


def test_data_is_a_view_of_the_service_without_text(server):
    srv, service = server
    bearer = {"Authorization": f"Bearer {KEY}"}
    c = httpx.Client(base_url=srv.url, timeout=30, headers=bearer)
    texts = [f"secret sentence number {i}" for i in range(30)]
    assert c.post("/v1/translate", json={"texts": texts}).status_code == 200
    r = c.get("/dashboard/data", params={"last": 3})
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    data = r.json()
    assert "secret" not in r.text
    recent = data["recent"]
    assert (recent["capacity"], recent["held"], recent["added"]) == (20, 20, 30)
    assert len(recent["last"]) == 3 and recent["last"][0]["source_chars"] == len(texts[-1])
    assert data["budget"]["requests"] == service.hybrid.pacer.state()["requests"] == 30
    assert data["metrics"]["segments_by_tier"] == {
        tier: service.metrics.segments.value(tier, "auto")
        for tier in data["metrics"]["segments_by_tier"]
    }
    assert sum(data["metrics"]["segments_by_tier"].values()) == 30
    assert data["breakers"] == [] and data["guard"] is None
    json.dumps(data, allow_nan=False)  # strict JSON


@pytest.mark.parametrize("last", ["abc", "-1", "501", "1e3"])
def test_bad_last_is_a_400_naming_it(server, last):
    srv, _ = server
    r = httpx.get(srv.url + "/dashboard/data", params={"last": last}, auth=("x", KEY))
    assert r.status_code == 400 and r.json()["error"]["param"] == "last"


def test_the_key_bearer_or_basic(server):
    srv, _ = server
    url = srv.url + "/dashboard/data"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Basic !!!"}).status_code == 401
    assert httpx.get(url, headers={"Authorization": f"Bearer {KEY}x"}).status_code == 401
    assert httpx.get(url, auth=(KEY, "")).status_code == 401  # the key is the password
    assert httpx.get(url, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    assert httpx.get(url, auth=("", KEY)).status_code == 200
    page = httpx.get(srv.url + "/dashboard", auth=("ops", KEY))
    assert page.headers["content-type"].startswith("text/html")
    assert "/dashboard/dashboard.js" in page.text
    script = httpx.get(srv.url + "/dashboard/dashboard.js", auth=("ops", KEY))
    assert script.headers["content-type"].startswith("text/javascript")
    assert ".innerHTML" not in script.text  # values are set as text, never as markup


def test_open_without_a_key():
    service = make_service()
    srv = ServerThread(create_app(service)).start()
    try:
        assert httpx.get(srv.url + "/dashboard").status_code == 200
        assert httpx.get(srv.url + "/dashboard/data").json()["recent"]["held"] == 0
    finally:
        srv.stop()
