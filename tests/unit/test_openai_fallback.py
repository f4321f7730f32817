"""The large side's fallback chain against real loopback HTTP servers: a 429 with Retry-After
is waited out, a 500 is retried with backoff, a dead endpoint hands over to the next, and when
every endpoint fails the hybrid translator answers from the small model."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from serve_fixtures import Upper, closed_port_url

from routelmt.backends.openai import OpenAITranslator, retry_after_seconds
from routelmt.budget import BudgetSpec, Pacer
from routelmt.errors import BackendError, ConfigError
from routelmt.hybrid import HybridTranslator
from routelmt.records import Segment
from routelmt.routers import get_router

SEG = Segment(id="s1", direction="en-de", source="good morning")


class Scripted:
    """A loopback endpoint that answers from a script: (status, headers, content), one per
    request, the last repeated; it records when each request arrived and what it asked for."""

    def __init__(self, script: list[tuple[int, dict[str, str], str]]) -> None:
        self.script = list(script)
        self.arrivals: list[float] = []
        self.bodies: list[dict[str, Any]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                owner.arrivals.append(time.monotonic())
                length = int(self.headers.get("Content-Length") or 0)
                owner.bodies.append(json.loads(self.rfile.read(length)))
                i = min(len(owner.arrivals), len(owner.script)) - 1
                status, headers, content = owner.script[i]
                if status == 200:
                    payload = {"choices": [{"message": {"content": content}}]}
                else:
                    payload = {"error": {"message": content}}
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.arrivals, self.arrivals[1:])]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def scripted():
    made: list[Scripted] = []

    def make(script):
        made.append(Scripted(script))
        return made[-1]

    yield make
    for server in made:
        server.close()


def test_429_with_retry_after_then_500_then_success(scripted):
    server = scripted(
        [
            (429, {"Retry-After": "1"}, "slow down"),
            (500, {}, "boom"),
            (200, {}, "Guten Morgen"),
        ]
    )
    backend = OpenAITranslator(base_url=server.url, model="big", timeout=10, backoff=0.2)
    assert backend.translate([SEG]) == ["Guten Morgen"]
    assert len(server.arrivals) == 3
    after_429, after_500 = server.gaps()
    assert 1.0 <= after_429 < 1.8  # waited what the 429 asked for
    assert 0.15 - 0.05 <= after_500 < 0.8  # then exponential backoff from 0.2 s (jittered)
    assert server.bodies[0]["model"] == "big" and server.bodies[0]["messages"][1]["content"] == (
        "good morning"
    )
    assert backend.stats()[0] == {
        "base_url": server.url,
        "model": "big",
        "answered": 1,
        "failed": 2,
    }


def test_retry_after_past_the_timeout_moves_to_the_next_endpoint_at_once(scripted):
    limited = scripted([(429, {"Retry-After": "30"}, "quota")])
    spare = scripted([(200, {}, "Guten Morgen (spare)")])
    backend = OpenAITranslator(
        base_url=limited.url, model="big", fallbacks=[f"{spare.url}#big-2"], timeout=5
    )
    t0 = time.monotonic()
    assert backend.translate([SEG]) == ["Guten Morgen (spare)"]
    assert time.monotonic() - t0 < 2.0  # did not sleep 30 s
    assert len(limited.arrivals) == 1 and spare.bodies[0]["model"] == "big-2"
    assert [s["answered"] for s in backend.stats()] == [0, 1]


def test_chain_in_order_dead_then_garbage_then_answer(scripted):
    garbage = scripted([(200, {}, "   ")])  # empty translation: not retried, next endpoint
    good = scripted([(200, {}, "Hallo")])
    backend = OpenAITranslator(
        base_url=closed_port_url(),
        model="a",
        fallbacks=[f"{garbage.url}#b", {"base_url": good.url, "model": "c", "api_key": "k"}],
        timeout=3,
        max_retries=1,
        backoff=0.05,
    )
    assert backend.translate([SEG]) == ["Hallo"]
    assert len(garbage.arrivals) == 1
    assert [s["answered"] for s in backend.stats()] == [0, 0, 1]
    assert backend.stats()[0]["failed"] == 2  # the dead one: first try and one retry


def test_every_endpoint_failing_names_each_and_the_hybrid_falls_back_to_small(scripted):
    busy = scripted([(503, {"Retry-After": "0"}, "overloaded")])
    backend = OpenAITranslator(
        base_url=busy.url,
        model="a",
        fallbacks=[f"{closed_port_url()}#b"],
        timeout=2,
        max_retries=1,
        backoff=0.05,
    )
    with pytest.raises(BackendError, match=r"all 2 endpoints failed: .*HTTP 503.*\| .*unreachable"):
        backend.translate([SEG])
    assert len(busy.arrivals) == 2  # one retry after Retry-After: 0
    pacer = Pacer(BudgetSpec(share=0.5), initial_threshold=0.0)
    hybrid = HybridTranslator(Upper(), backend, get_router("length"), pacer)
    (result,) = hybrid.translate([SEG], policy="large")
    assert result.fallback and result.tier == "small" and result.translation == "GOOD MORNING"
    assert "all 2 endpoints failed" in (result.error or "")


def test_retry_after_forms_and_bad_fallbacks():
    assert retry_after_seconds({"retry-after": "2"}) == 2.0
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # past
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None
    with pytest.raises(ConfigError, match="BASE_URL#MODEL"):
        OpenAITranslator(base_url="http://h/v1", model="m", fallbacks=["http://x/v1"])
    with pytest.raises(ConfigError, match="unknown keys"):
        OpenAITranslator(base_url="http://h/v1", model="m", fallbacks=[{"url": "http://x"}])
