"""Generation and shared prefill on tiny random models (float64, so argmax ties cannot flip)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from test_features_tiny import SOURCES, _byte_tokenizer, _tiny_model  # noqa: E402

from routelmt.backends.hf import HFTranslator  # noqa: E402
from routelmt.errors import ConfigError  # noqa: E402
from routelmt.features import compute_features  # noqa: E402
from routelmt.generation import LENGTH_SLACK, cut_at_stop  # noqa: E402
from routelmt.hybrid import SharedPrefillSmall  # noqa: E402
from routelmt.prompts import FewShotTemplate  # noqa: E402
from routelmt.records import Segment  # noqa: E402


@dataclass
class StopTemplate(FewShotTemplate):
    """Few-shot prompt whose stop strings the test chooses (random models never write '\\n\\n')."""

    stops: tuple[str, ...] = ()

    def stop_strings(self, direction: str) -> list[str]:
        return list(self.stops)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # Tiny matrices: thread hand-offs cost more than the maths, the more so on a busy machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tokenizer():
    return _byte_tokenizer()


@pytest.fixture(scope="module", params=["llama", "gemma3"])
def model(request):
    return _tiny_model(request.param).to(torch.float64)


@pytest.fixture
def segments():
    return [Segment(id=f"s{i}", direction="en-es", source=s) for i, s in enumerate(SOURCES)]


def _translator(model, tokenizer, **kwargs):
    # repair off: a random model's output fails the repair checks (test_repair covers repair)
    options = dict(template=StopTemplate(shots=1), batch_size=2, max_new_tokens=12, name="tiny")
    options.update(repair="off", **kwargs)
    return HFTranslator(model=model, tokenizer=tokenizer, **options)


def test_batched_equals_one_by_one(model, tokenizer, segments):
    tr = _translator(model, tokenizer)
    batched = tr.translate(segments)
    stats = tr.last_stats
    assert stats.segments == len(segments) and stats.batches == 3
    assert stats.generated_tokens > 0 and stats.prompt_tokens > 0
    assert all(isinstance(t, str) and t for t in batched)
    one_by_one = [tr.translate([s])[0] for s in segments]
    assert batched == one_by_one
    # Another batch size groups other rows together: still the same translations.
    assert _translator(model, tokenizer, batch_size=5).translate(segments) == batched


def test_shared_prefill_equals_plain_generation(model, tokenizer, segments):
    tr = _translator(model, tokenizer)
    assert isinstance(tr, SharedPrefillSmall)
    plain = tr.translate(segments)
    state = tr.prefill(segments, layer=1)
    chosen = [4, 0, 2]  # across chunks, out of order
    assert tr.generate_from(state, chosen) == [plain[i] for i in chosen]
    assert tr.last_stats.segments == 3 and tr.last_stats.generated_tokens > 0
    # The state is not consumed: the same rows again, then the rest, one by one.
    assert tr.generate_from(state, chosen) == [plain[i] for i in chosen]
    assert [tr.generate_from(state, [i])[0] for i in (1, 3)] == [plain[1], plain[3]]
    assert tr.generate_from(state, []) == []
    # The plain translation of only the chosen segments agrees too.
    assert tr.translate([segments[i] for i in chosen]) == [plain[i] for i in chosen]


def test_prefill_features_match_feature_extraction(model, tokenizer, segments):
    tr = _translator(model, tokenizer)
    n_layers = model.config.num_hidden_layers
    for layer in (0, 1, n_layers):
        state = tr.prefill(segments, layer=layer)
        assert state.layer == layer and state.features.shape == (len(segments), 32)
        expected = compute_features(
            model, tokenizer, tr.template, segments, layers=[layer], batch_size=3,
            progress=False, cache=False,
        ).layers[layer]  # fmt: skip
        np.testing.assert_allclose(state.features, expected, atol=1e-4, rtol=1e-4)
    # None = the final-norm output; negative layers count from the end.
    default = tr.prefill(segments[:2]).features
    np.testing.assert_allclose(default, tr.prefill(segments[:2], layer=-1).features)
    with pytest.raises(ConfigError, match="out of range"):
        tr.prefill(segments, layer=n_layers + 1)


def test_stop_strings_cut_and_end_decoding(model, tokenizer, segments):
    free = _translator(model, tokenizer, max_new_tokens=24, stop_at_newline=False)
    text = free.translate(segments[:1])[0]
    free_tokens = free.last_stats.generated_tokens
    assert free_tokens == 24  # no stop: the cap ends it
    # a printable two-character piece from the middle of the free continuation
    start = next(
        (k for k in range(2, len(text) - 1) if text[k : k + 2].isascii()
         and text[k : k + 2].isprintable() and not text[k : k + 2].isspace()),
        None,
    )  # fmt: skip
    assert start is not None, f"no printable piece in {text!r}"
    stop = text[start : start + 2]
    cut = _translator(
        model, tokenizer, template=StopTemplate(shots=1, stops=(stop,)), max_new_tokens=24,
        stop_at_newline=False,
    )  # fmt: skip
    got = cut.translate(segments[:1])[0]
    assert got == text[: text.find(stop)].strip()
    assert stop not in got
    assert cut.last_stats.generated_tokens < free_tokens  # stopped right after the stop string


def test_cut_at_stop_and_default_stops(tokenizer, segments):
    assert cut_at_stop(" Hola.\n\nEnglish: Hi", ["\n\n", "\nEnglish:"]) == ("Hola.", True)
    assert cut_at_stop("\n Hola.\nmás", ["\n"]) == ("Hola.", True)  # leading space is no stop
    assert cut_at_stop(" Hola. ", ["\n"]) == ("Hola.", False)
    tr = HFTranslator(model=_tiny_model("llama"), tokenizer=tokenizer, template="fewshot")
    stops = tr.generator.stops_for(segments[0])
    assert "\n\n" in stops and "\nEnglish:" in stops and "\n" in stops
    two_lines = Segment(id="m", direction="en-es", source="one\ntwo")
    assert "\n" not in tr.generator.stops_for(two_lines)
    chat = HFTranslator(model=_tiny_model("llama"), tokenizer=tokenizer, template="chat")
    assert chat.generator.stops_for(segments[0]) == []


def test_max_length_respected(model, tokenizer, segments):
    tr = _translator(model, tokenizer, max_new_tokens=5, stop_at_newline=False)
    for segment in segments:
        tr.translate([segment])
        assert 1 <= tr.last_stats.generated_tokens <= 5
    tr.translate(segments)
    assert tr.last_stats.generated_tokens <= 5 * len(segments)
    # the per-segment limit grows with the source and is capped by max_new_tokens
    ratio = _translator(model, tokenizer, max_new_tokens=1000, max_length_ratio=0.5)
    for segment in segments:
        n = len(tokenizer(segment.source.strip(), add_special_tokens=False)["input_ids"])
        assert ratio.generator.limit_for(segment) == math.ceil(0.5 * n) + LENGTH_SLACK
    long = Segment(id="l", direction="en-es", source="word " * 100)
    assert ratio.generator.limit_for(long) == math.ceil(0.5 * 500) + LENGTH_SLACK
    capped = _translator(model, tokenizer, max_new_tokens=40, max_length_ratio=0.5)
    assert capped.generator.limit_for(long) == 40
    ratio.translate([segments[0]])
    assert ratio.last_stats.generated_tokens <= ratio.generator.limit_for(segments[0])


def test_beam_search_option(model, tokenizer, segments):
    tr = _translator(model, tokenizer, num_beams=2, max_new_tokens=6, stop_at_newline=False)
    out = tr.translate(segments[:3])
    assert len(out) == 3 and all(isinstance(t, str) for t in out)
    assert 0 < tr.last_stats.generated_tokens <= 6 * 3
    # with beams the shared prefill still answers (the prompts are decoded again)
    state = tr.prefill(segments[:3], layer=1)
    assert tr.generate_from(state, [2, 0]) == [out[2], out[0]]


def test_bad_settings_and_foreign_state(model, tokenizer, segments):
    with pytest.raises(ConfigError, match="batch_size"):
        _translator(model, tokenizer, batch_size=0)
    with pytest.raises(ConfigError, match="num_beams"):
        _translator(model, tokenizer, num_beams=0)
    with pytest.raises(ConfigError, match="both model and tokenizer"):
        HFTranslator(model=model)
    with pytest.raises(ConfigError, match="dtype"):
        HFTranslator("x", dtype="int8")
    a, b = _translator(model, tokenizer), _translator(model, tokenizer)
    state = a.prefill(segments[:2])
    with pytest.raises(ConfigError, match="another"):
        b.generate_from(state, [0])
    with pytest.raises(IndexError, match="outside"):
        a.generate_from(state, [2])


def test_registered_backend_loads_a_model_folder_lazily(tokenizer, segments, tmp_path):
    from routelmt.backends.resolve import make_translator

    folder = tmp_path / "tiny-gen"
    _tiny_model("llama").save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    tr = make_translator(f"hf:{folder}", batch_size=2, max_new_tokens=4, template="fewshot")
    assert isinstance(tr, HFTranslator) and tr.name == f"hf:{folder}"
    assert tr._generator is None  # nothing loaded yet
    out = tr.translate(segments[:2])
    assert len(out) == 2 and tr.last_stats.generated_tokens <= 8


class _HeadRouter:
    """A feature router over the tiny model's layer 2 (score = first feature)."""

    name = "head"
    layer = 2

    def score_features(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(features)[:, 0].astype(float)

    def score(self, batch):  # the generic path: features from a separate prefill
        feats = compute_features(
            self.model, self.tokenizer, self.template, batch, layers=[2], progress=False,
            cache=False,
        )  # fmt: skip
        return self.score_features(feats.layers[2])


def test_hybrid_translator_shares_the_prefill(model, tokenizer, segments):
    from routelmt.backends.base import Translator
    from routelmt.budget import BudgetSpec, Pacer
    from routelmt.hybrid import HybridTranslator

    class Large(Translator):  # marks its outputs
        name = "large"

        def translate(self, segs):
            return [f"LARGE {s.id}" for s in segs]

    router = _HeadRouter()
    fast_small = _translator(model, tokenizer)
    router.model, router.tokenizer, router.template = model, tokenizer, fast_small.template
    pacer = Pacer(BudgetSpec(share=0.4), warmup=2)
    fast = HybridTranslator(fast_small, Large(), router, pacer)
    assert fast.shared_prefill
    slow = HybridTranslator(
        _translator(model, tokenizer), Large(), router, Pacer(BudgetSpec(share=0.4), warmup=2),
        shared_prefill=False,
    )  # fmt: skip
    a, b = fast.translate(segments), slow.translate(segments)
    assert [r.tier for r in a] == [r.tier for r in b]
    assert "small" in {r.tier for r in a}  # some rows continue from the shared prefill
    assert [r.score for r in a] == pytest.approx([r.score for r in b], abs=1e-6)
    assert [r.translation for r in a] == [r.translation for r in b]
    plain = fast_small.translate(segments)
    assert all(r.translation == plain[i] for i, r in enumerate(a) if r.tier == "small")


@pytest.fixture(scope="module", params=["llama", "gemma3"])
def roomy(request):
    """The tiny models with a sliding window wide enough for the cached prefix to be used."""
    return _tiny_model(request.param, sliding_window=512).to(torch.float64)


def test_fast_path_equals_plain_path(roomy, tokenizer, segments):
    """The cached few-shot prefix and the screened head change the cost, not the outputs."""
    model = roomy
    plain = _translator(model, tokenizer, prefix_cache=False, head="full")
    fast = _translator(model, tokenizer)  # defaults: prefix_cache=True, head="exact"
    expected = plain.translate(segments)
    assert plain.last_stats.reused_prompt_tokens == 0
    assert fast.translate(segments) == expected
    stats = fast.last_stats
    prefix = fast.generator._prefixes["en-es"][0]
    assert len(prefix) >= 8 and stats.reused_prompt_tokens == len(prefix) * len(segments)
    assert fast.generator.head.screened > 0 and fast.generator.head.fallbacks == 0
    # one by one (a server's single requests) reuses the same cached prefix
    assert [fast.translate([s])[0] for s in segments] == expected
    # the router features are those of the whole prompt
    for layer in (1, model.config.num_hidden_layers):
        np.testing.assert_allclose(
            fast.prefill(segments, layer=layer).features,
            plain.prefill(segments, layer=layer).features,
            rtol=1e-9, atol=1e-9,
        )  # fmt: skip


def test_prefix_cache_per_direction_and_sliding_window_guard(model, tokenizer, segments):
    mixed = [
        Segment(id=f"m{i}", direction=("en-es", "en-de")[i % 2], source=s.source)
        for i, s in enumerate(segments)
    ]
    plain = _translator(model, tokenizer, prefix_cache=False, head="full")
    fast = _translator(model, tokenizer)
    assert fast.translate(mixed) == plain.translate(mixed)
    assert set(fast.generator._prefixes) == {"en-es", "en-de"}
    window = getattr(model.config, "sliding_window", None)
    if window:  # a prompt that could outgrow the window is prefilled in full, not reused
        long = [Segment(id="long", direction="en-es", source="x" * (window // 2))]
        assert fast.translate(long) == plain.translate(long)
        assert fast.last_stats.reused_prompt_tokens == 0


def test_greedy_head_modes():
    from routelmt.lmhead import GreedyHead

    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(3000, 48, generator=gen)
    hidden = torch.randn(64, 48, generator=gen) * 4
    full = (hidden @ weight.T).argmax(-1)
    exact = GreedyHead(weight, "exact")
    assert torch.equal(exact.argmax(hidden), full)
    assert exact.fallbacks == 0 and 64 <= exact.screened < 64 * 50  # few rescored per row
    # near-ties: two rows of the head that differ below bf16 precision still pick the fp32 max
    tied = weight.clone()
    tied[7] = tied[3] * (1 + 2.0**-12)
    h = tied[3][None, :]
    assert int(GreedyHead(tied, "exact").argmax(h)[0]) == int((h @ tied.T).argmax())
    assert torch.equal(GreedyHead(weight, "full").argmax(hidden), full)
    for mode in ("bfloat16", "int8"):  # reduced precision: mostly the same, not guaranteed
        got = GreedyHead(weight, mode).argmax(hidden)
        assert got.shape == full.shape and (got == full).float().mean() > 0.8
    with pytest.raises(ConfigError, match="unknown head"):
        GreedyHead(weight, "fp8")


def test_threads_from_environment(monkeypatch):
    from routelmt.backends.hf import set_cpu_threads

    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("ROUTELMT_THREADS", "1")
        assert set_cpu_threads() == 1 and torch.get_num_threads() == 1
        assert set_cpu_threads(2) == 2  # an explicit number wins
        monkeypatch.setenv("ROUTELMT_THREADS", "many")
        with pytest.raises(ConfigError, match="ROUTELMT_THREADS"):
            set_cpu_threads()
        monkeypatch.setenv("ROUTELMT_THREADS", "0")
        with pytest.raises(ConfigError, match="at least 1"):
            set_cpu_threads()
    finally:
        torch.set_num_threads(before)


def test_rows_join_a_running_batch_and_leave_when_done(roomy, tokenizer, segments):
    """Continuous batching gives every row the translation it gets alone."""
    from routelmt.generation import DecodeBatch

    tr = _translator(roomy, tokenizer)
    expected = {s.id: t for s, t in zip(segments, tr.translate(segments), strict=True)}
    gen = tr.generator
    first = tr.prefill(segments[:3])
    second = tr.prefill(segments[3:], layer=1)  # another prefill, other prompt lengths
    batch = DecodeBatch(gen)
    batch.join(first, [2, 0, 1], keys=["s2", "s0", "s1"])
    assert len(batch) == 3
    got: dict[str, str] = {}
    sizes = []
    for _ in range(2):
        got.update((k, text) for k, text, _n in batch.step())
        sizes.append(len(batch))
    assert batch.can_join(second, [0, 1])
    batch.join(second, [1, 0], keys=["s4", "s3"])  # mid-flight, padded to a common length
    assert len(batch) == sizes[-1] + 2
    while len(batch):
        got.update((k, text) for k, text, _n in batch.step())
        sizes.append(len(batch))
    assert got == expected
    assert sizes == sorted(sizes[:2], reverse=True) + sizes[2:]  # rows left as they finished
    assert batch.step() == []  # an empty batch is a no-op
    # a row of an empty batch may be joined again (a fresh start)
    batch.join(first, [0], keys=["again"])
    while len(batch):
        done = batch.step()
    assert done[0][:2] == ("again", expected["s0"])


def test_join_refuses_rows_that_could_outgrow_a_sliding_window(model, tokenizer, segments):
    from routelmt.generation import DecodeBatch

    window = getattr(model.config, "sliding_window", None)
    if not window:
        pytest.skip("no sliding window")
    tr = _translator(model, tokenizer)
    state = tr.prefill(segments[:2])
    batch = DecodeBatch(tr.generator)
    batch.join(state, [0], keys=[0])  # alone: always allowed
    assert not batch.can_join(state, [1])
    with pytest.raises(ValueError, match="sliding window"):
        batch.join(state, [1], keys=[1])
    with pytest.raises(ConfigError, match="another model"):
        DecodeBatch(_translator(model, tokenizer).generator).join(state, [0], keys=[0])


def test_prefix_shorter_than_the_template_prefix_is_cropped(roomy, tokenizer, segments):
    tr = _translator(roomy, tokenizer)
    gen = tr.generator
    tr.translate(segments[:1])
    prefix = gen._prefixes["en-es"][0]
    row = prefix[:10] + [5, 6, 7]  # tokenised differently from the 11th token on
    shared, cache = gen._prefix_for(segments[0], [row], 4)
    assert shared == 10 and cache.layers[0].keys.shape[2] == 10
    assert gen._prefixes["en-es"][1].layers[0].keys.shape[2] == len(prefix)  # intact
