"""The hard cap holds for every path: two replicas on one budget store, 5% of requests forced
large (before the fix, forced-large requests bypassed the pacer and the cap)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import yaml
from test_serve_crash import _free_port, _write_replay

from routelmt.budget import BudgetSpec
from routelmt.serve.shared_pacer import SQLitePacer

CAP = 25
N = 200  # requests per replica


def _start(tmp_path, name: str, port: int) -> subprocess.Popen:
    config = {
        "small": str(tmp_path / "small.jsonl"),
        "large": str(tmp_path / "large.jsonl"),
        "router": {"name": "random"},
        "budget": {"share": 0.3, "hard_cap": CAP, "store": str(tmp_path / "budget.sqlite")},
        "server": {
            "port": port,
            "log_path": None,
            "directions": None,
            "allow_policy_override": True,
        },
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.Popen(
        [sys.executable, "-m", "routelmt.cli", "-q", "serve", "--config", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _wait(url: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
        time.sleep(0.1)


def test_hard_cap_holds_with_two_replicas_and_forced_large(tmp_path):
    _write_replay(tmp_path / "small.jsonl", "tiny", N, lambda i: f"small {i}")
    _write_replay(tmp_path / "large.jsonl", "big", N, lambda i: f"large {i}")
    ports = [_free_port(), _free_port()]
    procs = [_start(tmp_path, f"r{k}", port) for k, port in enumerate(ports)]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    try:
        for url, proc in zip(urls, procs, strict=True):
            _wait(url, proc)
        lock = threading.Lock()
        results: list[dict] = []

        def one(i: int) -> None:
            body = {"text": "x", "id": f"s{i % N}"}
            if i % 20 == 0:  # 5% ask for the large model
                body["policy"] = "large"
            r = httpx.post(urls[i % 2] + "/v1/translate", json=body, timeout=30)
            assert r.status_code == 200, r.text
            with lock:
                results.append({**r.json(), "forced": "policy" in body})

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(one, range(2 * N)))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
    large = [r for r in results if r["tier"] == "large"]
    forced = [r for r in results if r["forced"]]
    assert len(results) == 2 * N and len(forced) == 2 * N // 20
    assert len(large) <= CAP  # every path: routed and forced together
    assert len(large) >= CAP - 2  # and the budget was in fact used up
    assert any(r["reason"] == "hard_cap" for r in forced)  # forced ones were refused too
    assert all(
        r["translation"].startswith("large" if r["tier"] == "large" else "small") for r in results
    )
    store = SQLitePacer(BudgetSpec(share=0.3, hard_cap=CAP), tmp_path / "budget.sqlite")
    state = store.state()
    store.close()
    assert state["spent"] == len(large) and state["requests"] == len(results)


def _two_stage_service(cap: int):
    """A two-stage service built as ``build_service`` builds its pacers (``make_pacers``)."""
    from serve_fixtures import Reverse
    from test_hybrid import Copier, CopyDetector

    from routelmt.hybrid import HybridTranslator, SecondStage
    from routelmt.routers import get_router
    from routelmt.serve.config import load_config
    from routelmt.serve.service import TranslationService, make_pacers

    budget = {**load_config(None)["budget"], "hard_cap": cap, "warmup": 5}
    first, second = make_pacers(budget, CopyDetector())
    hybrid = HybridTranslator(
        Copier(),
        Reverse(),
        get_router("length"),
        first,
        second_stage=SecondStage(CopyDetector(), second),
    )
    return TranslationService(
        hybrid, log_path=None, directions=None, allow_policy_override=True, max_items=64
    )


def test_two_stage_forced_large_requests_get_the_whole_cap():
    """Before: the cap was split by stage1_share, so forced requests (decided at stage 1) were
    refused after a quarter of it."""
    from serve_fixtures import serve

    service = _two_stage_service(cap=8)
    srv = serve(service)
    try:
        body = {"texts": [f"text {i}" for i in range(12)], "policy": "large"}
        reply = httpx.post(srv.url + "/v1/translate", json=body, timeout=60)
        assert reply.status_code == 200, reply.text
        tiers = [r["tier"] for r in reply.json()["results"]]
        assert tiers == ["large"] * 8 + ["small"] * 4
        assert {r["reason"] for r in reply.json()["results"][8:]} == {"hard_cap"}
        health = httpx.get(srv.url + "/health", timeout=10).json()
        assert health["budget"]["hard_cap"] == 8 and health["budget"]["remaining"] == 0
    finally:
        srv.stop()
        service.close()


def test_two_stage_routed_and_forced_together_never_pass_the_cap():
    from serve_fixtures import serve

    cap = 15
    service = _two_stage_service(cap=cap)
    srv = serve(service)
    rng = np.random.default_rng(0)
    try:
        large = 0
        for k in range(12):
            texts = [
                ("x" if rng.random() < 0.3 else "w") * int(rng.integers(5, 60)) for _ in range(20)
            ]
            body = {"texts": texts, **({"policy": "large"} if k % 3 == 2 else {})}
            reply = httpx.post(srv.url + "/v1/translate", json=body, timeout=60)
            assert reply.status_code == 200, reply.text
            large += sum(r["tier"] == "large" for r in reply.json()["results"])
        stage2 = service.hybrid.second_stage.pacer.state()
        assert stage2["routed"] > 0  # stage 2 spent some of the cap too
        assert large == cap  # every path together: used up, and not passed
        assert service.hybrid.pacer.state()["spent"] + stage2["spent"] == cap
    finally:
        srv.stop()
        service.close()
