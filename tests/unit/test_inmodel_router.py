"""The in-model probe (routelmt, routelmt-q) and the entropy router on a tiny random model."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from test_features_tiny import _byte_tokenizer, _tiny_model  # noqa: E402

from routelmt.errors import ConfigError, InputError  # noqa: E402
from routelmt.prompts import FewShotTemplate, get_template  # noqa: E402
from routelmt.records import ScoredExample, Segment  # noqa: E402
from routelmt.routers.inmodel import (  # noqa: E402
    EntropyRouter,
    FeatureSource,
    RouteLMTQualityRouter,
    RouteLMTRouter,
)
from routelmt.routers.provenance import training_overlap  # noqa: E402

WORDS = ["cat", "house", "river", "green", "quick", "night", "city", "bread", "small", "sun"]


def _source(template=None, identity: str = "tiny-llama@test") -> FeatureSource:
    model = _tiny_model("llama", identity=identity)
    tokenizer = _byte_tokenizer()
    layers = model.config.num_hidden_layers
    info = SimpleNamespace(identity=identity, num_layers=layers, dtype="float32")
    source = FeatureSource(model="tiny-llama", batch_size=4)
    source._head = (tokenizer, info, template or FewShotTemplate(shots=1))
    source._weights = model
    return source


def _examples(n: int = 24) -> list[ScoredExample]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        words = rng.choice(WORDS, size=int(rng.integers(2, 7)))
        source = " ".join(words)
        gain = float(len(source)) + rng.normal(0, 1)  # learnable from the prompt
        seg = Segment(id=f"s{i}", direction="en-es", source=source, reference="x")
        out.append(ScoredExample(seg, "S", "L", "a", "b", "chrF2", 50.0 - gain, 50.0))
    return out


def test_probe_fits_scores_saves_and_loads(tmp_path):
    source = _source()
    examples = _examples()
    router = RouteLMTRouter(layer="auto", source=source, cv_folds=3).fit(examples[:18])
    assert router.layer in range(1, 4) and set(router.layer_cv_mse) == {1, 2, 3}
    scores = router.score(examples[18:])
    assert scores.shape == (6,) and np.all(np.isfinite(scores))
    feats = source.layer(examples[18:], router.layer)
    np.testing.assert_allclose(router.score_features(feats), scores)
    router.save(tmp_path / "r")
    loaded = RouteLMTRouter.load(tmp_path / "r", source=source)
    np.testing.assert_allclose(loaded.score(examples[18:]), scores)
    # the artifact records what it was trained on, so evaluate can warn about overlap
    overlap = training_overlap(tmp_path / "r", examples)
    seen = {ex.segment.source for ex in examples[:18]}
    expected = sum(ex.segment.source in seen for ex in examples)
    assert overlap.recorded and (overlap.same_source, overlap.n_train) == (expected, 18)
    assert loaded.train_sources == router.train_sources


def test_probe_refuses_another_template_or_model(tmp_path):
    router = RouteLMTRouter(layer=2, source=_source(), cv_folds=3).fit(_examples())
    router.save(tmp_path / "r")
    with pytest.raises(ConfigError, match="template_fingerprint"):
        RouteLMTRouter.load(tmp_path / "r", source=_source(template=get_template("zeroshot")))
    with pytest.raises(ConfigError, match="trained with model"):
        RouteLMTRouter.load(tmp_path / "r", source=_source(identity="other@test"))
    with pytest.raises(InputError, match="not 'routelmt-q'"):
        RouteLMTQualityRouter.load(tmp_path / "r", source=_source())


def test_quality_target_negates_and_layer_errors():
    source = _source()
    examples = _examples()
    q = RouteLMTQualityRouter(layer=1, source=source, cv_folds=3).fit(examples)
    np.testing.assert_allclose(q.score(examples), -q.predict(examples))
    with pytest.raises(ConfigError, match="out of range"):
        RouteLMTRouter(layer=9, source=source).fit(examples)
    with pytest.raises(ConfigError, match="integer or 'auto'"):
        RouteLMTRouter(layer="middle", source=source)
    with pytest.raises(ConfigError, match="not trained"):
        RouteLMTRouter(source=source).score(examples)


def test_entropy_router_reads_the_shared_prefill():
    source = _source()
    examples = _examples(8)
    router = EntropyRouter(source=source)
    router.prepare(examples)
    scores = router.score(examples)
    assert scores.shape == (8,) and np.all(scores > 0)
    np.testing.assert_allclose(scores, source.entropy(examples).astype(float))


def test_cached_features_are_read_without_the_weights(monkeypatch):
    """A second process (here: a second source) finds the prefill in the disk cache from the
    tokenizer alone; the weights load only for segments not cached."""
    examples = _examples(8)
    first = _source()
    expected = first.layer(examples, 1)
    second = _source()
    second._weights = None
    monkeypatch.setattr(FeatureSource, "_model", lambda self: pytest.fail("weights loaded"))
    np.testing.assert_array_equal(second.layer(examples, 1), expected)
    np.testing.assert_array_equal(second.entropy(examples), first.entropy(examples))
    with pytest.raises(pytest.fail.Exception, match="weights loaded"):
        second.layer(_examples(9)[-1:], 1)  # a segment never computed needs the model
