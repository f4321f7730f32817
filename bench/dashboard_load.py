"""How fast the operator's dashboard loads with many decisions logged.

Starts the service on loopback (replay small and large models, the length router, a decision
log), answers ``--decisions`` segments through ``POST /v1/translate``, then measures:

- ``GET /dashboard/data``: wall time per answer (client side, loopback) and its size, and the
  CPU time of building it from the whole ring (in process);
- the page in headless Chromium, real time (DevTools protocol, no virtual time): from the
  start of navigation to the first render of every number (the page's own
  ``performance.now()`` when its first ``/dashboard/data`` answer is drawn).

    python bench/dashboard_load.py --decisions 10000 --runs 7

Needs Chromium (``apt-get install chromium``) and the ``websockets`` package (for the DevTools
protocol).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from routelmt.backends.replay import ReplayTranslator
from routelmt.budget import BudgetSpec, Pacer
from routelmt.hybrid import HybridTranslator
from routelmt.routers import get_router
from routelmt.serve.app import create_app
from routelmt.serve.dashboard_data import dashboard_data
from routelmt.serve.runner import ServerThread
from routelmt.serve.service import TranslationService

BATCH = 64


def start_service(n: int, log_path: Path) -> tuple[ServerThread, TranslationService]:
    ids = [f"s{i}" for i in range(n)]
    small = ReplayTranslator("small", {i: f"small {i}" for i in ids})
    large = ReplayTranslator("large", {i: f"large {i}" for i in ids})
    hybrid = HybridTranslator(small, large, get_router("length"), Pacer(BudgetSpec(share=0.3)))
    service = TranslationService(hybrid, log_path=log_path, directions=["en-es", "en-de"])
    return ServerThread(create_app(service)).start(), service


def drive(url: str, n: int) -> float:
    t0 = time.perf_counter()
    with httpx.Client(base_url=url, timeout=60) as client:
        for first in range(0, n, BATCH):
            ids = [f"s{i}" for i in range(first, min(n, first + BATCH))]
            texts = ["word " * (1 + int(i[1:]) % 40) for i in ids]
            lang = ("es", "de")[(first // BATCH) % 2]
            body = {"texts": texts, "ids": ids, "target_lang": lang}
            r = client.post("/v1/translate", json=body)
            r.raise_for_status()
    return time.perf_counter() - t0


def time_data(url: str, runs: int = 20) -> dict:
    times, size = [], 0
    with httpx.Client(base_url=url, timeout=60) as client:
        for _ in range(runs):
            t0 = time.perf_counter()
            r = client.get("/dashboard/data")
            times.append(1000 * (time.perf_counter() - t0))
            r.raise_for_status()
            size = len(r.content)
            held = r.json()["recent"]["held"]
    # the first answer reads the whole ring; the others reuse it (no decision added since)
    return {
        "first_ms": times[0],
        "median_ms": statistics.median(times[1:]),
        "bytes": size,
        "held": held,
    }


def cold_cpu_ms(service: TranslationService, runs: int = 5) -> float:
    """CPU time of building the data from scratch (the ring read anew: a ``last`` the memo has
    not seen), in this process: far less sensitive to other jobs on the machine than wall time.
    """
    times = []
    for k in range(runs):
        t0 = time.process_time()
        dashboard_data(service, last=10 + k)
        times.append(1000 * (time.process_time() - t0))
    return statistics.median(times)


def _devtools(profile: Path) -> tuple[subprocess.Popen, str]:
    browser = shutil.which("chromium") or shutil.which("google-chrome")
    if browser is None:
        sys.exit("dashboard_load: error: Chromium not found (apt-get install chromium)")
    flags = ["--headless", "--disable-gpu", "--remote-debugging-port=0", "--no-first-run"]
    flags += ["--no-sandbox"] if os.geteuid() == 0 else []
    proc = subprocess.Popen(
        [browser, *flags, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 30
    while not port_file.exists() or not port_file.read_text().strip():
        if time.monotonic() > deadline:
            proc.kill()
            sys.exit("dashboard_load: error: Chromium did not open its DevTools port")
        time.sleep(0.1)
    port = port_file.read_text().split()[0]
    pages = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
    return proc, next(p for p in pages if p["type"] == "page")["webSocketDebuggerUrl"]


def time_page(url: str, runs: int) -> list[tuple[float, float]]:
    """Per run: navigation start to the first render of the numbers, and the page's first
    ``/dashboard/data`` call, in ms."""
    from websockets.sync.client import connect

    with tempfile.TemporaryDirectory() as profile:
        proc, ws_url = _devtools(Path(profile))
        try:
            with connect(ws_url, max_size=None) as ws:
                calls = iter(range(1, 10**9))

                def call(method: str, **params: object) -> dict:
                    ident = next(calls)
                    ws.send(json.dumps({"id": ident, "method": method, "params": params}))
                    while True:
                        reply = json.loads(ws.recv())
                        if reply.get("id") == ident:
                            return reply.get("result", {})

                out = []
                for run in range(runs + 1):  # the first run warms the browser up: not kept
                    call("Page.navigate", url=f"{url}/dashboard?run={run}")
                    value = None
                    deadline = time.monotonic() + 30
                    while value is None and time.monotonic() < deadline:
                        time.sleep(0.02)
                        expr = (
                            "document.body && document.body.dataset.firstRenderMs && "
                            "[document.body.dataset.firstRenderMs, "
                            "document.body.dataset.firstFetchMs]"
                        )
                        result = call("Runtime.evaluate", expression=expr, returnByValue=True)
                        value = result.get("result", {}).get("value")
                    if value is None:
                        sys.exit("dashboard_load: error: the page did not render in 30 s")
                    if run:
                        out.append((float(value[0]), float(value[1])))
                return out
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--decisions", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        srv, service = start_service(args.decisions, Path(tmp) / "decisions.jsonl")
        try:
            seconds = drive(srv.url, args.decisions)
            logged = service.log.lines if service.log else 0
            cpu_ms = cold_cpu_ms(service)
            data = time_data(srv.url)
            page = time_page(srv.url, args.runs)
        finally:
            srv.stop()
    renders = [r for r, _ in page]
    summary = {
        "load_average_1min": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "decisions_logged": logged,
        "decisions_held": data["held"],
        "traffic_s": round(seconds, 1),
        "data_cold_cpu_ms": round(cpu_ms, 1),
        "data_first_ms": round(data["first_ms"], 1),
        "data_again_median_ms": round(data["median_ms"], 1),
        "data_kb": round(data["bytes"] / 1024, 1),
        "page_first_render_ms": [round(x, 1) for x in renders],
        "page_its_data_call_ms": [round(f, 1) for _, f in page],
        "page_median_ms": round(statistics.median(renders), 1),
        "page_max_ms": round(max(renders), 1),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for key, value in summary.items():
            print(f"{key:<22} {value}")
        verdict = "under" if summary["page_max_ms"] < 1000 else "NOT under"
        print(f"every page load {verdict} 1 s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
