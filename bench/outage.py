"""The large endpoint goes down and comes back: what the service pays, with and without the
circuit breaker and the pacer's threshold bound.

Everything is real except the two models: the service is the real FastAPI app on uvicorn,
called over HTTP by 8 concurrent clients; the large model is a real OpenAI-compatible HTTP
server on 127.0.0.1 that reverses the text when up and, when down, accepts each call and
never answers (the worst outage: every call pays the full timeout). The small model
upper-cases after a fixed delay (a stand-in: no real model is needed to measure the control
loop). Phases: ``--up`` requests, ``--down`` requests with the endpoint hanging, ``--after``
requests with it back.

Three configurations, side by side in one run:

- ``before``: no breaker, and the pacer without its threshold bound (``margin`` infinite):
  the behaviour before the hardening;
- ``bound``: the pacer's threshold bound only;
- ``breaker``: the bound and the circuit breaker (the default service).

Reported per configuration: calls that reached the dead endpoint (and per breaker window,
i.e. per cooldown of down time), the latency of requests during the outage (mean, p95), the
threshold at the end of the outage, and after recovery: the longest run of consecutive large
answers, the share of large answers in the first 100 and the other requests, how many requests
passed before the first large answer (the breaker's cooldown still running), and the share
from that answer on.

    python bench/outage.py [--up 200] [--down 600] [--after 600] [--timeout 0.5] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import numpy as np

from routelmt.backends.base import Translator
from routelmt.backends.openai import OpenAITranslator
from routelmt.budget import BudgetSpec, Pacer
from routelmt.hybrid import HybridTranslator
from routelmt.records import Segment
from routelmt.routers import get_router
from routelmt.serve.app import create_app
from routelmt.serve.breaker import BreakerTranslator, CircuitBreaker
from routelmt.serve.runner import ServerThread
from routelmt.serve.service import TranslationService


class LargeEndpoint:
    """A real OpenAI-compatible server on 127.0.0.1 that can be switched down (hanging)."""

    def __init__(self) -> None:
        self.up = True
        self.calls_while_down = 0
        self.calls = 0
        self._stop = threading.Event()
        lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    owner.calls += 1
                    if not owner.up:
                        owner.calls_while_down += 1
                if not owner.up:  # hang: the client's timeout ends the call
                    owner._stop.wait(30)
                    return
                text = body["messages"][-1]["content"][::-1]
                out = json.dumps({"choices": [{"message": {"content": text}}]}).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(out)))
                    self.end_headers()
                    self.wfile.write(out)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


class SlowUpper(Translator):
    name = "small-upper"

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s

    def translate(self, segments: Sequence[Segment]) -> list[str]:
        time.sleep(self.delay_s)
        return [s.source.upper() for s in segments]


def run_config(name: str, args: argparse.Namespace) -> dict[str, Any]:
    endpoint = LargeEndpoint()
    large: Translator = OpenAITranslator(
        base_url=endpoint.url, model="big", timeout=args.timeout, concurrency=64
    )
    if name == "breaker":
        large = BreakerTranslator(large, CircuitBreaker(args.failures, args.cooldown))
    margin = None if name == "before" else 3.0
    pacer = Pacer(BudgetSpec(share=args.share), warmup=50, margin=margin)
    hybrid = HybridTranslator(
        SlowUpper(args.small_ms / 1000), large, get_router("random", seed=1), pacer
    )
    service = TranslationService(hybrid, directions=None, max_wait_ms=2.0)
    server = ServerThread(create_app(service)).start()
    rows: list[dict[str, Any]] = []
    lock = threading.Lock()
    client = httpx.Client(base_url=server.url, timeout=60, limits=httpx.Limits(max_connections=16))

    def one(i: int) -> None:
        t0 = time.perf_counter()
        r = client.post("/v1/translate", json={"text": f"sentence number {i}"})
        r.raise_for_status()
        out = r.json()
        with lock:
            rows.append(
                {"tier": out["tier"], "fallback": out["fallback"], "s": time.perf_counter() - t0}
            )

    def phase(n: int) -> tuple[list[dict[str, Any]], float]:
        start = len(rows)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(one, range(n)))
        return rows[start:], time.perf_counter() - t0

    try:
        phase(args.up)
        endpoint.up = False
        down, down_s = phase(args.down)
        threshold_end = pacer.threshold
        endpoint.up = True
        after, _ = phase(args.after)
    finally:
        server.stop()
        endpoint.close()
    lat = np.array([r["s"] for r in down])
    tiers = "".join("L" if r["tier"] == "large" else "s" for r in after)
    first = min(100, len(after))
    windows = max(down_s / args.cooldown, 1.0)
    return {
        "config": name,
        "dead_calls": endpoint.calls_while_down,
        "down_s": round(down_s, 2),
        "dead_calls_per_breaker_window": round(endpoint.calls_while_down / windows, 1),
        "down_share_tried": round(endpoint.calls_while_down / max(len(down), 1), 3),
        "down_latency_mean_ms": round(float(lat.mean()) * 1000, 1),
        "down_latency_p95_ms": round(float(np.quantile(lat, 0.95)) * 1000, 1),
        "threshold_at_recovery": round(float(threshold_end), 3),
        "after_longest_large_run": max(len(run) for run in tiers.split("s")),
        "after_share_first_100": round(tiers[:first].count("L") / first, 3),
        "after_share_rest": round(tiers[first:].count("L") / max(len(tiers) - first, 1), 3),
        # until the first large answer, the circuit was still open (or the pacer said no)
        "after_requests_to_first_large": tiers.find("L"),
        "after_share_from_first_large": round(
            tiers[tiers.find("L") :].count("L") / max(len(tiers) - tiers.find("L"), 1), 3
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--up", type=int, default=200)
    parser.add_argument("--down", type=int, default=600)
    parser.add_argument("--after", type=int, default=600)
    parser.add_argument("--share", type=float, default=0.3)
    parser.add_argument("--timeout", type=float, default=0.5, help="large call timeout (s)")
    parser.add_argument("--failures", type=int, default=5, help="breaker: failures in a row")
    parser.add_argument("--cooldown", type=float, default=2.0, help="breaker: open for (s)")
    parser.add_argument("--small-ms", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--json", help="write the numbers here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # one warning per failed call otherwise
    results = [run_config(name, args) for name in ("before", "bound", "breaker")]
    keys = [k for k in results[0] if k != "config"]
    print(f"{'':32}" + "".join(f"{r['config']:>12}" for r in results))
    for k in keys:
        print(f"{k:32}" + "".join(f"{r[k]:>12}" for r in results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
