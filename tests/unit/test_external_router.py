from __future__ import annotations

import sys
import types

import numpy as np
import pytest
from scipy.stats import spearmanr

from routelmt.encoders import SentenceEncoder, encode_cached, get_encoder
from routelmt.errors import ConfigError, MissingDependencyError
from routelmt.records import ScoredExample, Segment
from routelmt.routers.base import ROUTERS
from routelmt.routers.external import (
    ExternalDeltaRouter,
    ExternalDifficultyRouter,
    ExternalEncoderRouter,
    router_input,
)
from routelmt.routers.provenance import training_overlap

WORDS = ["hard", "idiom", "easy", "the", "cat", "name", "spanish", "german"]


class BagEncoder(SentenceEncoder):
    """Word counts over a tiny vocabulary: fast, deterministic, and linear in the signal."""

    def __init__(self, tag: str = "v1") -> None:
        self.spec = f"bag-{tag}"
        self.dim = len(WORDS)
        self.calls: list[list[str]] = []

    @property
    def id(self) -> str:
        return self.spec

    def _encode(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        tokens = [t.lower().replace(":", " ").split() for t in texts]
        return np.array([[toks.count(w) for w in WORDS] for toks in tokens], dtype=np.float32)


def _examples(n: int, seed: int) -> list[ScoredExample]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        hard, idiom = int(rng.integers(0, 4)), int(rng.integers(0, 3))
        words = ["hard"] * hard + ["idiom"] * idiom + ["the", "cat"] * int(rng.integers(1, 3))
        direction = "en-es" if i % 2 else "en-de"
        seg = Segment(id=f"s{seed}-{i}", direction=direction, source=" ".join(words),
                      source_id=f"src{seed}-{i // 2}")  # fmt: skip
        q_small = 80 - 10 * hard + rng.normal()
        q_large = q_small + 6 * idiom + rng.normal()
        out.append(ScoredExample(seg, "S", "L", "s", "l", "chrf", float(q_small), float(q_large)))
    return out


def test_router_input_names_the_target_language() -> None:
    seg = Segment(id="1", direction="en-es", source="Hello.")
    assert router_input(seg) == "translate to Spanish: Hello."
    assert router_input(seg, direction_prefix=False) == "Hello."


def test_delta_learns_gain_and_difficulty_learns_minus_q_small() -> None:
    train, test = _examples(200, 0), _examples(100, 1)
    gains = np.array([ex.gain for ex in test])
    q_small = np.array([ex.q_small for ex in test])
    delta = ExternalDeltaRouter(BagEncoder()).fit(train)
    diff = ExternalDifficultyRouter(BagEncoder()).fit(train)
    assert spearmanr(delta.score(test), gains).statistic > 0.8
    assert spearmanr(diff.score(test), -q_small).statistic > 0.8
    # Difficulty and gain are independent here: each router tracks only its own target.
    assert abs(spearmanr(diff.score(test), gains).statistic) < 0.4
    # Segments (no labels) score like the examples that carry them.
    segs = [ex.segment for ex in test[:5]]
    np.testing.assert_array_equal(delta.score(segs), delta.score(test[:5]))


def test_save_load_round_trip_and_encoder_mismatch(tmp_path) -> None:
    train, test = _examples(60, 2), _examples(20, 3)
    router = ExternalDifficultyRouter(BagEncoder(), use_cache=False).fit(train)
    router.save(tmp_path / "r")
    loaded = ExternalEncoderRouter.load(tmp_path / "r", encoder=BagEncoder(), use_cache=False)
    assert isinstance(loaded, ExternalDifficultyRouter)
    np.testing.assert_array_equal(loaded.score(test), router.score(test))
    assert loaded.train_hash == router.train_hash and loaded.n_train == 60
    assert training_overlap(tmp_path / "r", train).same_example == 60
    seen = {ex.segment.source for ex in train}  # these toy sources repeat word bags
    expected = sum(ex.segment.source in seen for ex in test)
    assert training_overlap(tmp_path / "r", test).same_source == expected < len(test)
    with pytest.raises(ConfigError, match="trained on encoder 'bag-v1'"):
        ExternalEncoderRouter.load(tmp_path / "r", encoder=BagEncoder("v2"))
    with pytest.raises(Exception, match="not 'external-delta'"):
        ExternalDeltaRouter.load(tmp_path / "r", encoder=BagEncoder())


def test_embeddings_are_cached_on_disk(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ROUTELMT_CACHE", str(tmp_path / "cache"))
    enc = BagEncoder()
    first = encode_cached(enc, ["the cat", "hard idiom", "the cat"])
    assert enc.calls == [["the cat", "hard idiom"]]  # duplicates embedded once
    second = encode_cached(enc, ["hard idiom", "the cat", "easy"])
    assert enc.calls[-1] == ["easy"]
    np.testing.assert_array_equal(second[:2], first[[1, 0]])
    assert list((tmp_path / "cache" / "embeddings").rglob("*.npz"))
    other = BagEncoder("v2")  # another encoder id never reads these vectors
    encode_cached(other, ["the cat"])
    assert other.calls == [["the cat"]]


def test_untrained_router_and_registry() -> None:
    assert {"external-delta", "external-difficulty"} <= set(ROUTERS.names())
    router = ROUTERS.create("external-delta", encoder=BagEncoder())
    assert router.trainable and not router.oracle
    with pytest.raises(ConfigError, match="not trained"):
        router.score([Segment(id="1", direction="en-es", source="x")])


def test_sentence_transformers_is_optional(tmp_path, monkeypatch) -> None:
    with pytest.raises(ConfigError, match="folder not found"):
        get_encoder(f"sentence-transformers:{tmp_path / 'missing'}")
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # import fails
    with pytest.raises(MissingDependencyError, match="pip install sentence-transformers"):
        get_encoder(f"sentence-transformers:{tmp_path}")


def test_sentence_transformers_adapter(tmp_path, monkeypatch) -> None:
    class FakeST:
        def __init__(self, path: str, device: str | None = None) -> None:
            self.path = path

        def get_sentence_embedding_dimension(self) -> int:
            return 3

        def encode(self, texts, batch_size, convert_to_numpy, normalize_embeddings):
            assert normalize_embeddings
            return np.tile([0.6, 0.8, 0.0], (len(texts), 1))

    monkeypatch.setitem(sys.modules, "sentence_transformers", types.SimpleNamespace(
        SentenceTransformer=FakeST))  # fmt: skip
    (tmp_path / "config.json").write_text("{}")
    enc = get_encoder(f"sentence-transformers:{tmp_path}")
    assert enc.dim == 3 and enc.id.startswith(f"sentence-transformers:{tmp_path}#")
    assert enc.encode(["a", "b"]).shape == (2, 3)
