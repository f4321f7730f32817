"""Guards in HybridTranslator: quality-predict on the prefill features (no decode), quality-hypo
on the small translation (decoded first), refunds, freed budget, fallback, and every result
saying whether a guard acted."""

from __future__ import annotations

import numpy as np
from serve_fixtures import Reverse, Upper
from test_hybrid import Copier, Down, HeadRouter, PrefillSmall

from routelmt.budget import BudgetSpec, Pacer
from routelmt.budget.online_guards import FunctionGuard
from routelmt.hybrid import HybridTranslator
from routelmt.records import Segment
from routelmt.routers import get_router


def _stream(n: int, seed: int = 0, copy_rate: float = 0.5) -> list[Segment]:
    rng = np.random.default_rng(seed)
    return [
        Segment(
            id=f"s{i}",
            direction="en-es",
            source=("x" if rng.random() < copy_rate else "w") * int(rng.integers(5, 300)),
        )
        for i in range(n)
    ]


def _copy_guard() -> FunctionGuard:
    """A quality-hypo stand-in: a copied small output is bad (0), a translated one good (100)."""

    def quality(segments, translations, features):
        return [0.0 if t == s.source else 100.0 for s, t in zip(segments, translations)]

    return FunctionGuard(50.0, quality, needs_translation=True, name="quality-hypo")


def test_predict_guard_vetoes_on_prefill_features_refunds_and_keeps_the_share():
    seen: list[np.ndarray] = []

    def predicted_quality(segments, translations, features):
        seen.append(features)
        return np.where(features[:, 0] % 2 == 0, 90.0, 10.0)  # even lengths: "already good"

    guard = FunctionGuard(50.0, predicted_quality, name="quality-predict")
    pacer = Pacer(BudgetSpec(share=0.3), warmup=20)
    h = HybridTranslator(PrefillSmall(), Reverse(), HeadRouter(), pacer, guard=guard)
    results = []
    for chunk in range(20):
        results += h.translate(_stream(50, seed=chunk, copy_rate=0.0))
    assert all(f is not None for f in seen)  # read the router's own prefill features
    vetoed = [r for r in results if r.guard and r.guard["vetoed"]]
    passed = [r for r in results if r.guard and not r.guard["vetoed"]]
    assert vetoed and passed
    assert all(r.tier == "small" and r.reason == "guard_quality-predict" for r in vetoed)
    assert all(len(r.translation) % 2 == 0 for r in vetoed)
    assert all(r.tier == "large" for r in passed)
    assert all(r.guard is None for r in results if r.tier == "small" and r not in vetoed)
    assert all("guard" in r.timings for r in vetoed + passed)
    late = results[300:]  # after warm-up: vetoes are refunded, so the budget is spent anyway
    assert abs(np.mean([r.tier == "large" for r in late]) - 0.3) < 0.03
    assert guard.stats()["vetoes"] == len(vetoed)
    assert pacer.state()["spent"] == len([r for r in results if r.tier == "large"])


def test_hypo_guard_decodes_candidates_keeps_good_ones_small_and_sends_copies_large():
    guard = _copy_guard()
    small = Copier()
    pacer = Pacer(BudgetSpec(share=0.3), warmup=20)
    h = HybridTranslator(small, Reverse(), get_router("length"), pacer, guard=guard)
    results = []
    for chunk in range(30):
        results += h.translate(_stream(50, seed=chunk))
    checked = [r for r in results if r.guard is not None]
    assert checked and all(r.policy == "auto" for r in checked)
    for r in checked:
        copied = "x" in r.translation if r.tier == "small" else True
        if r.guard["vetoed"]:  # a translated (not copied) small output: kept
            assert r.tier == "small" and r.reason == "guard_quality-hypo"
            assert not copied or r.translation.isupper()
        else:  # a copy: goes large
            assert r.tier == "large" and r.translation.startswith("x"[::-1])
    late = results[500:]  # vetoes are refunded: the pacer spends that budget on later ones
    assert abs(np.mean([r.tier == "large" for r in late]) - 0.3) < 0.03
    assert pacer.state()["spent"] == len([r for r in results if r.tier == "large"])


def test_hypo_guard_pass_falls_back_to_the_decoded_small_translation():
    guard = _copy_guard()
    pacer = Pacer(BudgetSpec(share=0.5), initial_threshold=0.0)
    h = HybridTranslator(Copier(), Down(), get_router("length"), pacer, guard=guard)
    (r,) = h.translate([Segment(id="a", direction="en-es", source="x" * 50)])
    assert r.tier == "small" and r.fallback and r.translation == "x" * 50
    assert r.guard is not None and not r.guard["vetoed"]
    assert pacer.state()["spent"] == 0.0  # refunded


def test_route_marks_hypo_candidates_pending_and_guard_review_decides():
    guard = _copy_guard()
    pacer = Pacer(BudgetSpec(share=0.5), initial_threshold=0.0)
    h = HybridTranslator(Upper(), Reverse(), get_router("length"), pacer, guard=guard)
    segs = [Segment(id="a", direction="en-es", source="long source")]
    (routed,) = h.route(segs)
    assert routed.goes_large and routed.guard_pending and routed.translation is None
    routed.translation = "LONG SOURCE"  # the caller's decode (the service's decoder)
    (after,) = h.guard_review([routed])
    assert not after.goes_large and after.guard.vetoed and after.reason == "guard_quality-hypo"
    assert pacer.state()["spent"] == 0.0


def test_forced_large_is_never_guarded():
    guard = _copy_guard()
    h = HybridTranslator(
        Upper(), Reverse(), get_router("length"), Pacer(BudgetSpec(share=0.3)), guard=guard
    )
    (r,) = h.translate([Segment(id="a", direction="en-es", source="abc")], policy="large")
    assert r.tier == "large" and r.guard is None and guard.stats()["evaluations"] == 0
