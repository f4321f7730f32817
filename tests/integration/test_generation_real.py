"""Live translation with Gemma-3-270M on a few short WMT24 en-es segments, with shared prefill.

Loads the converted model from the user's model cache (the first run ever converts the GGUF,
see test_hf_real.py); kept to three short segments and a small length cap.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

pytestmark = pytest.mark.integration
pytest.importorskip("torch")
pytest.importorskip("transformers")

from routelmt.backends.hf import HFTranslator, load_causal_lm  # noqa: E402
from routelmt.features import compute_features  # noqa: E402

SPANISH = re.compile(r"[áéíóúñ¿¡]|\b(el|la|los|las|de|que|es|un|una|en|y|por|con|se|no|del)\b")


@pytest.fixture(scope="module")
def gemma():
    model, tokenizer, _ = load_causal_lm("gemma3-270m")
    return model, tokenizer


@pytest.fixture(scope="module")
def segments(short_en_es):
    return short_en_es[:3]


def test_gemma_translates_and_shared_prefill_matches(gemma, segments):
    model, tokenizer = gemma
    tr = HFTranslator(
        model=model, tokenizer=tokenizer, max_new_tokens=40, batch_size=8, repair="off"
    )
    assert tr.name == "hf:gemma3-270m" and tr.template.name == "fewshot"
    out = tr.translate(segments)
    stats = tr.last_stats
    assert len(out) == 3 and all(text.strip() for text in out)
    assert all("\n" not in text and "English:" not in text for text in out)  # stop rules cut
    # a 270M base model sometimes copies a title through; most outputs must be translations
    assert sum(text != s.source for text, s in zip(out, segments, strict=True)) >= 2, out
    assert sum(bool(SPANISH.search(text.lower())) for text in out) >= 2, out
    assert 0 < stats.generated_tokens <= 40 * 3 and stats.prompt_tokens > 0

    layer = 9
    state = tr.prefill(segments, layer=layer)
    assert tr.generate_from(state, [2, 0]) == [out[2], out[0]]
    assert tr.generate_from(state, [1]) == [out[1]]
    expected = compute_features(
        model, tokenizer, tr.template, segments, layers=[layer], progress=False, cache=False
    ).layers[layer]
    # the same numbers up to float32 rounding (Gemma's residual stream is large: compare
    # relative to each row's scale)
    scale = np.abs(expected).max(axis=1, keepdims=True)
    assert np.all(np.abs(state.features - expected) <= 1e-4 * scale + 1e-4)
