"""The service with a live (tiny) small model: route right after the prefill, decode in one
running batch that rows join and leave, and share that batch fairly between requests.

Correctness and ordering only (no timings): the same translations as the plain hybrid path,
a large call that starts before the small rows of its batch finish decoding, rows joining and
leaving, and the order in which requests' rows are admitted.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import httpx
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from serve_fixtures import serve  # noqa: E402
from test_features_tiny import SOURCES, _byte_tokenizer, _tiny_model  # noqa: E402
from test_generation_tiny import StopTemplate  # noqa: E402

from routelmt.backends.base import Translator  # noqa: E402
from routelmt.backends.hf import HFTranslator  # noqa: E402
from routelmt.budget import BudgetSpec, Pacer  # noqa: E402
from routelmt.hybrid import HybridTranslator  # noqa: E402
from routelmt.records import Segment  # noqa: E402
from routelmt.serve.batcher import ContinuousDecoder, MicroBatcher  # noqa: E402
from routelmt.serve.service import TranslationService  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def small():
    model = _tiny_model("llama").to(torch.float64)
    return HFTranslator(
        model=model, tokenizer=_byte_tokenizer(), template=StopTemplate(shots=1), batch_size=4,
        max_new_tokens=10, name="tiny", repair="off",
    )  # fmt: skip


def _segments(prefix: str = "s") -> list[Segment]:
    return [Segment(id=f"{prefix}{i}", direction="en-es", source=s) for i, s in enumerate(SOURCES)]


class FirstFeature:
    """A feature router: score = the first feature of the final-norm output."""

    name = "first-feature"
    layer = None

    def score_features(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(features)[:, 0].astype(float)

    def score(self, batch):  # pragma: no cover - the service uses the shared prefill
        raise AssertionError("the shared prefill should be used")


class GatedLarge(Translator):
    """A large model whose call opens ``called``; records how many small rows were pending."""

    name = "large-gated"

    def __init__(self) -> None:
        self.called = threading.Event()
        self.pending_at_call: list[int] = []
        self.decoder: ContinuousDecoder | None = None

    def translate(self, segments: Sequence[Segment]) -> list[str]:
        if self.decoder is not None:
            self.pending_at_call.append(self.decoder.pending())
        self.called.set()
        return [f"LARGE {s.id}" for s in segments]


def _service(small, large, share=0.4, **options) -> TranslationService:
    hybrid = HybridTranslator(
        small, large, FirstFeature(), Pacer(BudgetSpec(share=share), warmup=2)
    )
    options.setdefault("directions", ["en-es"])
    return TranslationService(hybrid, **options)


def test_same_translations_as_the_hybrid_path_over_http(small):
    large = GatedLarge()
    reference = HybridTranslator(
        small, large, FirstFeature(), Pacer(BudgetSpec(share=0.4), warmup=2)
    ).translate(_segments())
    service = _service(small, large)
    assert service.decoder is not None
    srv = serve(service)
    try:
        reply = httpx.post(
            srv.url + "/v1/translate",
            json={"texts": SOURCES, "source_lang": "en", "target_lang": "es"},
            timeout=120,
        )
        assert reply.status_code == 200, reply.text
        got = reply.json()["results"]
        health = httpx.get(srv.url + "/health").json()
    finally:
        srv.stop()
    assert [g["tier"] for g in got] == [r.tier for r in reference]
    for g, r in zip(got, reference, strict=True):  # the service names segments itself
        if r.tier == "small":
            assert g["translation"] == r.translation
        else:
            assert g["translation"].startswith("LARGE ")
    assert {"small", "large"} <= {r.tier for r in reference}
    assert health["batching"]["continuous_decoding"] is True
    assert health["batching"]["decode_steps"] > 0
    service.close()


def test_a_large_routed_segment_does_not_wait_for_small_decoding(small):
    """Decoding is held until the large call has been made: if routing waited for the small
    rows of its batch (the old stage_small), this request would never finish."""
    large = GatedLarge()
    service = _service(small, large, share=0.5)
    large.decoder = service.decoder
    gen = small.generator
    real_step = service.decoder.batch.step

    def gated_step():
        assert large.called.wait(60), "the large call never started while small rows waited"
        return real_step()

    service.decoder.batch.step = gated_step  # type: ignore[method-assign]
    results = asyncio.run(service.translate(_segments(), "auto", request_id="r1", endpoint="test"))
    tiers = [r.tier for r in results]
    assert "large" in tiers and "small" in tiers
    # the gate above is the check: no decode step ran before a large call had been made
    assert large.called.is_set() and service.decoder.steps > 0
    plain = dict(zip([s.id for s in _segments()], small.translate(_segments()), strict=True))
    assert all(r.translation == plain[r.segment_id] for r in results if r.tier == "small")
    assert gen.lock is not None
    service.close()


def test_fair_admission_and_rows_joining_and_leaving(small):
    """A request with many rows holds at most max_share of the batch; a later one-row request
    is admitted before the big one's remaining rows, and every row gets its own translation."""
    segments = _segments("big") * 2  # ten rows
    state = small.prefill(segments)
    lone = small.prefill([Segment(id="one", direction="en-es", source="Hi.")])
    expected = small.translate(segments)
    expected_one = small.translate([Segment(id="one", direction="en-es", source="Hi.")])[0]
    decoder = ContinuousDecoder(small.generator, max_rows=4, max_share=0.75)
    sizes: list[int] = []
    decoder.on_step = lambda size, _s: sizes.append(size)
    with decoder._cond:  # everything queued before the first admission
        big = [decoder.submit(state, i, owner="big") for i in range(len(segments))]
        one = decoder.submit(lone, 0, owner="one")
    assert [f.result(120) for f in big] == expected
    assert one.result(120) == expected_one
    # the first four admitted: the big request's first row, then the lone row, then big rows
    assert decoder.admitted[:4] == ["big", "one", "big", "big"]
    assert max(sizes) <= 4 and decoder.steps > 0
    assert len(decoder.admitted) == len(segments) + 1
    decoder.close()
    closed = decoder.submit(lone, 0)
    with pytest.raises(RuntimeError, match="shut down"):
        closed.result(5)


def test_micro_batches_take_requests_round_robin():
    seen: list[list[str]] = []
    batcher: MicroBatcher[str, str] = MicroBatcher(
        lambda items: seen.append(list(items)) or list(items), max_batch_size=3, max_wait_s=0.0
    )
    with batcher._cond:  # all queued before the worker takes any
        futures = [batcher.submit(f"a{i}", owner="a") for i in range(6)]
        futures.append(batcher.submit("b0", owner="b"))
        futures.append(batcher.submit("c0", owner="c"))
    assert [f.result(10) for f in futures] == [f"a{i}" for i in range(6)] + ["b0", "c0"]
    assert seen[0] == ["a0", "b0", "c0"]  # the later, smaller requests share the first batch
    assert [x for batch in seen for x in batch] == ["a0", "b0", "c0", "a1", "a2", "a3", "a4", "a5"]
    batcher.close()


def test_a_big_request_is_prefilled_only_as_fast_as_the_decoder_takes_its_rows(small):
    """Back-pressure: the routing batcher prefills a request's rows only while the decoder
    holds fewer than max_rows of them, so a later one-row request is prefilled in the very next
    micro-batch (not behind the big request's other prefills) and finishes first."""
    big = [Segment(id=f"big{i}", direction="en-es", source=s) for i, s in enumerate(SOURCES * 3)]
    lone = [Segment(id="one", direction="en-es", source="Hi.")]
    expected = dict(zip([s.id for s in big + lone], small.translate(big + lone), strict=True))
    # a long fill window: the first micro-batch is surely the four rows the decoder can hold
    service = _service(small, GatedLarge(), share=0.0001, max_batch_size=4, max_wait_ms=500)
    decoder = service.decoder
    batches: list[list[str]] = []
    held_before: list[int] = []
    route = service.batcher.fn

    def recording_route(items):
        held_before.append(decoder._running.get("big", 0) + len(decoder._waiting.get("big", [])))
        batches.append([owner for _, _, owner in items])
        return route(items)

    service.batcher.fn = recording_route
    lone_queued = threading.Event()
    real_step = decoder.batch.step

    def gated_step():  # no decoding until the lone request is in the routing queue
        assert lone_queued.wait(60)
        return real_step()

    decoder.batch.step = gated_step  # type: ignore[method-assign]
    finished: list[str] = []

    async def run() -> tuple[list, list]:
        async def one(segments, rid):
            out = await service.translate(segments, "small", request_id=rid, endpoint="test")
            finished.append(rid)
            return out

        big_task = asyncio.ensure_future(one(big, "big"))
        while not batches:
            await asyncio.sleep(0.005)
        lone_task = asyncio.ensure_future(one(lone, "lone"))
        while service.batcher._count == 0 and len(batches) < 2:
            await asyncio.sleep(0.001)
        lone_queued.set()
        return await big_task, await lone_task

    big_out, lone_out = asyncio.run(run())
    assert [r.translation for r in big_out] == [expected[s.id] for s in big]
    assert lone_out[0].translation == expected["one"]
    assert batches[0] == ["big"] * 4  # the first micro-batch fills the decoder's four rows
    assert batches[1] == ["lone"]  # the gate held the rest of the big request back
    assert max(h + b.count("big") for h, b in zip(held_before, batches, strict=True)) <= 4
    assert finished == ["lone", "big"]
    assert sum(len(b) for b in batches) == len(big) + 1
    service.close()


def test_continuous_decoding_hands_every_small_output_to_the_backends_repair(small, monkeypatch):
    """The continuous batch decodes outside the backend's translate/generate_from, so the
    service calls the backend's ``repair`` itself: each small row once, before any second look."""
    seen: list[str] = []

    def repair(segments, texts):
        assert len(segments) == len(texts) == 1
        seen.append(texts[0])
        return [f"REPAIRED {texts[0]}"]

    reference = HybridTranslator(
        small, GatedLarge(), FirstFeature(), Pacer(BudgetSpec(share=0.4), warmup=2)
    ).translate(_segments())
    monkeypatch.setattr(small, "repair", repair)
    service = _service(small, GatedLarge())
    results = asyncio.run(service.translate(_segments(), "auto", request_id="r1", endpoint="t"))
    service.close()
    small_rows = [(g, r) for g, r in zip(results, reference, strict=True) if g.tier == "small"]
    assert small_rows and len(seen) == len(small_rows)
    for got, ref in small_rows:
        assert got.translation == f"REPAIRED {ref.translation}"
