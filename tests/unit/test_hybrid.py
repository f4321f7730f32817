"""HybridTranslator: routing share, forced policies, fallback with refund, shared prefill."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pytest
from serve_fixtures import Reverse, Upper

from routelmt.backends.base import Translator
from routelmt.budget import BudgetSpec, Pacer
from routelmt.errors import BackendError, ConfigError, InputError
from routelmt.hybrid import FeatureRouter, HybridTranslator, SharedPrefillSmall
from routelmt.records import Segment
from routelmt.routers import get_router


def segments(n: int, seed: int = 0) -> list[Segment]:
    rng = np.random.default_rng(seed)
    return [
        Segment(id=f"s{i}", direction="en-es", source="w" * int(rng.integers(1, 200)))
        for i in range(n)
    ]


class Down(Translator):
    name = "down"

    def translate(self, segments):
        raise BackendError("endpoint unreachable")


def hybrid(large: Translator | None = None, share: float = 0.3, **kw) -> HybridTranslator:
    pacer = Pacer(BudgetSpec(share=share), warmup=20)
    return HybridTranslator(Upper(), large or Reverse(), get_router("length"), pacer, **kw)


def test_hard_cap_holds_for_forced_large_requests():
    pacer = Pacer(BudgetSpec(share=0.3, hard_cap=4), warmup=20)
    h = HybridTranslator(Upper(), Reverse(), get_router("length"), pacer)
    out = h.translate(segments(10), policy="large")
    assert [r.tier for r in out] == ["large"] * 4 + ["small"] * 6
    assert {r.reason for r in out[4:]} == {"hard_cap"} and pacer.state()["spent"] == 4


def test_routes_the_budget_share_to_the_large_model_and_longest_first():
    h = hybrid(share=0.3)
    segs = segments(600)
    results = h.translate(segs)
    large = [r for r in results if r.tier == "large"]
    share = len(large) / len(results)
    assert abs(share - 0.3) < 0.05, share
    for r, s in zip(results, segs, strict=True):
        expected = s.source[::-1] if r.tier == "large" else s.source.upper()
        assert r.translation == expected and r.segment_id == s.id
        assert r.model == ("large-reverse" if r.tier == "large" else "small-upper")
        assert r.score == len(s.source)
    # routed segments are longer on average: the router's score was used
    small_len = np.mean([r.score for r in results if r.tier == "small"])
    assert np.mean([r.score for r in large]) > small_len
    assert results[-1].budget["requests"] == 600


def test_forced_policies_skip_the_threshold_and_forced_large_is_charged():
    h = hybrid()
    segs = segments(10)
    assert {r.tier for r in h.translate(segs, policy="large")} == {"large"}
    assert {r.tier for r in h.translate(segs, policy="small")} == {"small"}
    mixed = h.translate(segs[:3], policy=["small", "large", "small"])
    assert [r.tier for r in mixed] == ["small", "large", "small"]
    assert [r.reason for r in mixed] == ["forced_small", "forced_large", "forced_small"]
    state = h.pacer.state()  # forced small is not decided; forced large is charged
    assert state["requests"] == 11 and state["spent"] == 11
    with pytest.raises(InputError, match="policy"):
        h.translate(segs[:1], policy="medium")


def test_failed_large_calls_fall_back_and_are_refunded():
    h = hybrid(large=Down(), share=0.5)
    results = h.translate(segments(100))
    assert all(r.tier == "small" for r in results)
    fallbacks = [r for r in results if r.fallback]
    assert fallbacks, "some segments should have been routed"
    assert all("unreachable" in r.error for r in fallbacks)
    assert all(r.reason in ("above_threshold", "warmup") for r in fallbacks)
    state = h.pacer.state()
    assert state["refunds"] == len(fallbacks)
    assert state["spent"] == 0.0 and state["routed"] == 0


def test_one_bad_segment_does_not_fail_its_batch_mates():
    h = hybrid()
    segs = [
        Segment(id=str(i), direction="en-es", source=t)
        for i, t in enumerate(["a", "FAIL-SMALL", "c"])
    ]
    routed = h.stage_small(segs, "small")
    assert [r.translation for r in routed] == ["A", None, "C"]
    assert routed[1].error and "cannot translate" in routed[1].error
    with pytest.raises(BackendError, match="segment 1"):
        h.translate(segs, policy="small")


@dataclass
class State:
    features: np.ndarray


class PrefillSmall(Translator):
    """Implements the shared-prefill protocol; counts what was prefilled and decoded."""

    name = "prefill-small"

    def __init__(self) -> None:
        self.prefilled: list[int] = []
        self.generated: list[list[int]] = []
        self.translated = 0
        self.layers: list[int | None] = []

    def prefill(self, segments: Sequence[Segment], *, layer: int | None = None) -> State:
        self.prefilled.append(len(segments))
        self.layers.append(layer)
        feats = np.array([[len(s.source), 1.0] for s in segments])
        state = State(feats)
        state.segments = list(segments)  # type: ignore[attr-defined]
        return state

    def generate_from(self, state: State, indices: Sequence[int]) -> list[str]:
        self.generated.append(list(indices))
        return [state.segments[i].source.upper() for i in indices]  # type: ignore[attr-defined]

    def translate(self, segments: Sequence[Segment]) -> list[str]:
        self.translated += len(segments)
        return [s.source.upper() for s in segments]


class HeadRouter:
    name = "head"
    layer = 7

    def score(self, batch):
        return np.array([len(s.source) for s in batch], dtype=float)

    def score_features(self, features: np.ndarray) -> np.ndarray:
        return features[:, 0] * 1.0


def test_shared_prefill_continues_decoding_for_those_staying_small():
    small = PrefillSmall()
    router = HeadRouter()
    assert isinstance(small, SharedPrefillSmall) and isinstance(router, FeatureRouter)
    pacer = Pacer(BudgetSpec(share=0.3), warmup=5)
    h = HybridTranslator(small, Reverse(), router, pacer)
    assert h.shared_prefill
    segs = segments(40, seed=3)
    fast = h.translate(segs)
    assert small.prefilled == [40] and small.translated == 0
    assert small.layers == [7]  # the router's layer was asked for
    stayed = [i for i, r in enumerate(fast) if r.tier == "small"]
    assert small.generated == [stayed]
    # same routing and outputs as the generic path on an identical pacer
    slow_h = HybridTranslator(
        PrefillSmall(),
        Reverse(),
        router,
        Pacer(BudgetSpec(share=0.3), warmup=5),
        shared_prefill=False,
    )
    slow = slow_h.translate(segs)
    assert [r.translation for r in slow] == [r.translation for r in fast]
    assert [r.tier for r in slow] == [r.tier for r in fast]
    with pytest.raises(ConfigError, match="shared_prefill"):
        HybridTranslator(Upper(), Reverse(), get_router("length"), pacer, shared_prefill=True)


class CopyDetector:
    """A stand-in second-stage router: a small output that equals its source scores high."""

    def score_stage2(self, segments, texts, stage1):
        return np.array(
            [100.0 if t == s.source else 0.0 for s, t in zip(segments, texts, strict=True)]
        )


class Copier(Translator):
    """A small model that copies some sources (those containing 'x') instead of translating."""

    name = "small-copier"

    def translate(self, segments):
        return [s.source if "x" in s.source else s.source.upper() for s in segments]


def _two_stage(large: Translator | None = None, stage1_share: float = 0.0, p: float = 0.3):
    from routelmt.budget.plan import split_budget
    from routelmt.hybrid import SecondStage

    first, second = split_budget(p, stage1_share)
    pacer1 = Pacer(BudgetSpec(share=max(first, 1e-6)), warmup=20)
    pacer2 = Pacer(BudgetSpec(share=second), warmup=20)
    return HybridTranslator(
        Copier(),
        large or Reverse(),
        get_router("length"),
        pacer1,
        second_stage=SecondStage(CopyDetector(), pacer2),
    )


def copy_segments(n: int) -> list[Segment]:
    rng = np.random.default_rng(1)
    return [
        Segment(
            id=f"c{i}",
            direction="en-es",
            source=("x" if i % 5 == 0 else "w") * int(rng.integers(5, 60)),
        )
        for i in range(n)
    ]


def test_second_stage_escalates_copied_outputs_and_says_so():
    h = _two_stage(p=0.3)
    segs = copy_segments(400)
    results = h.translate(segs)
    by_id = {r.segment_id: r for r in results}
    copies = [s for s in segs[100:] if "x" in s.source]  # after the pacers' warm-up
    assert copies
    for s in copies:
        r = by_id[s.id]
        assert r.tier == "large" and r.stage == 2 and r.reason.startswith("stage2_")
        assert r.to_dict()["stage"] == 2 and r.stage2_score == 100.0
        assert "stage2" in r.timings and r.timings["small"] >= 0.0
    share = np.mean([r.tier == "large" for r in results])
    assert abs(share - 0.3) < 0.06, share


def test_second_stage_fallback_reuses_the_small_translation_and_refunds():
    h = _two_stage(large=Down(), p=0.3)
    segs = copy_segments(200)
    results = h.translate(segs)
    escalated = [r for r in results if r.stage == 2 and r.fallback]
    assert escalated
    small_out = dict(zip([s.id for s in segs], Copier().translate(segs), strict=True))
    for r in escalated:  # the translation kept from the stage-2 decode, not a second decode
        assert r.tier == "small" and r.translation == small_out[r.segment_id]
        assert "unreachable" in r.error
    assert h.second_stage.pacer.state()["refunds"] == len(escalated)
    assert h.pacer.state()["refunds"] == sum(r.fallback and r.stage == 1 for r in results)
