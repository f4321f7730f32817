"""The fast transformers path (a direction's few-shot prefix prefilled once, the exact fp32
arg-max found through a bf16 screen) against the plain one (every prompt whole, the full fp32
head), on the real Gemma-3-270M: the docs say it keeps the outputs exactly; this checks it on
real WMT24 sentences of different lengths, batched (so padding is exercised)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration
pytest.importorskip("torch")
pytest.importorskip("transformers")

from routelmt.backends.hf import HFTranslator, cached_causal_lm  # noqa: E402


def test_fast_and_plain_paths_translate_identically(short_en_es):
    segments = sorted(short_en_es[:6], key=lambda s: len(s.source))[::2]  # short, mid, long
    model, tokenizer, _ = cached_causal_lm("gemma3-270m")
    common = {"model": model, "tokenizer": tokenizer, "max_new_tokens": 32, "batch_size": 8}
    fast = HFTranslator(**common)  # the defaults: prefix_cache on, head exact
    plain = HFTranslator(**common, prefix_cache=False, head="full")
    got, expected = fast.translate(segments), plain.translate(segments)
    assert all(text.strip() for text in expected)
    assert got == expected
