"""Decode-then-route over real HTTP: a stage-1 decision right after the prefill, a stage-2
escalation of a copied small output, one budget over both stages."""

from __future__ import annotations

import httpx
import numpy as np
from serve_fixtures import Reverse, serve
from test_hybrid import Copier, CopyDetector

from routelmt.budget import BudgetSpec, Pacer
from routelmt.budget.plan import split_budget
from routelmt.hybrid import HybridTranslator, SecondStage
from routelmt.routers import get_router
from routelmt.serve.service import TranslationService


def test_stage1_and_stage2_decisions_and_the_share_over_a_stream():
    p = 0.3
    first, second = split_budget(p, 0.25)
    hybrid = HybridTranslator(
        Copier(),
        Reverse(),
        get_router("length"),
        Pacer(BudgetSpec(share=first), warmup=20),
        second_stage=SecondStage(CopyDetector(), Pacer(BudgetSpec(share=second), warmup=20)),
    )
    service = TranslationService(hybrid, log_path=None, directions=["en-es"], max_items=64)
    srv = serve(service)
    try:
        client = httpx.Client(base_url=srv.url, timeout=60)
        rng = np.random.default_rng(0)
        results = []
        for _ in range(25):
            texts = [
                ("x" if rng.random() < 0.15 else "w") * int(rng.integers(5, 400)) for _ in range(40)
            ]
            reply = client.post("/v1/translate", json={"texts": texts, "direction": "en-es"})
            assert reply.status_code == 200, reply.text
            results += [(t, r) for t, r in zip(texts, reply.json()["results"], strict=True)]
        late = results[200:]  # after both pacers' warm-up
        copied = [r for t, r in late if "x" in t and r["stage"] == 2]
        assert copied and all(r["tier"] == "large" for r in copied)  # every copy escalated
        assert all(r["translation"] == t[::-1] for t, r in late if r["tier"] == "large")
        stage1_large = [r for t, r in late if r["tier"] == "large" and r["stage"] == 1]
        assert stage1_large  # the clearest cases (the longest sources) go large at once
        assert min(r["score"] for r in stage1_large) > np.median([r["score"] for _, r in late])
        share = np.mean([r["tier"] == "large" for _, r in late])
        assert abs(share - p) <= 0.01, share
        health = client.get("/health").json()
        assert health["router_stages"] == 2 and "budget_stage2" in health
        # /metrics: each stage's own share, and the combined share the budget promises
        samples = {
            line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in client.get("/metrics").text.splitlines()
            if line.startswith("routelmt_") and "share" in line
        }
        stage1 = samples['routelmt_stage_routed_share{stage="1"}']
        stage2 = samples['routelmt_stage_routed_share{stage="2"}']
        assert abs(stage1 - first) < 0.02 and abs(stage2 - second) < 0.03
        everything = np.mean([r["tier"] == "large" for _, r in results])
        assert abs(samples["routelmt_routed_share"] - everything) < 1e-9
    finally:
        srv.stop()
        service.close()
