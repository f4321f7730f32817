"""HybridTranslator over three tiers: the tier pacer's choice answers, costs per answer."""

from __future__ import annotations

import numpy as np
import pytest
from serve_fixtures import Reverse, Upper
from test_hybrid import Down, segments

from routelmt.backends.base import Translator
from routelmt.budget.tiers import TierPacer, TierSpec
from routelmt.hybrid import HybridTranslator, Tier
from routelmt.routers import get_router


class Lower(Translator):
    name = "mid-lower"

    def translate(self, segments):
        return [s.source.lower() + "!" for s in segments]


def _tiers(mid: Translator | None = None) -> tuple[HybridTranslator, TierPacer]:
    specs = [TierSpec("mid", 0.3, 0.6), TierSpec("large", 1.0, 1.0)]
    pacer = TierPacer(specs, 0.3, warmup=20)
    tiers = [Tier(specs[0], mid or Lower()), Tier(specs[1], Reverse())]
    h = HybridTranslator(Upper(), Reverse(), get_router("length"), pacer, tiers=tiers)
    return h, pacer


def test_three_tiers_answer_by_the_pacers_choice_and_report_costs():
    h, pacer = _tiers()
    results = []
    for chunk in range(20):
        results += h.translate(segments(50, seed=chunk))
    by_tier = {t: [r for r in results if r.tier == t] for t in ("small", "mid", "large")}
    assert all(by_tier.values())  # every tier answered
    assert all(r.model == "mid-lower" and r.translation.endswith("!") for r in by_tier["mid"])
    assert all(r.model == "large-reverse" for r in by_tier["large"])
    # the longest sources (highest predicted gain) buy the most expensive tier
    assert np.mean([len(r.translation) for r in by_tier["large"]]) > np.mean(
        [len(r.translation) for r in by_tier["mid"]]
    )
    assert {r.cost["cost"] for r in by_tier["mid"]} == {0.3}
    assert {r.cost["cost"] for r in by_tier["large"]} == {1.0}
    assert all(r.cost["all_large"] == 1.0 for r in results)
    spend = sum(r.cost["cost"] for r in results[300:]) / len(results[300:])
    assert abs(spend - 0.3) < 0.03  # 30% of what all-large would cost
    assert pacer.state()["tier_counts"]["mid"] == len(by_tier["mid"])


def test_a_failed_mid_call_falls_back_to_small_and_is_refunded():
    h, pacer = _tiers(mid=Down())
    results = h.translate(segments(200, seed=1))
    failed = [r for r in results if r.fallback]
    assert failed and all(r.tier == "small" and r.cost["cost"] == 0.0 for r in failed)
    assert pacer.state()["refunds"] == len(failed)
    assert pacer.state()["spent"] == pytest.approx(sum(r.cost["cost"] for r in results))
