"""Decode-then-route: the small-output features and the two-stage router on a tiny model."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from test_inmodel_router import _examples, _source  # noqa: E402

from routelmt.errors import ConfigError, InputError  # noqa: E402
from routelmt.metrics.base import Metric  # noqa: E402
from routelmt.output_features import (  # noqa: E402
    OUTPUT_FEATURES,
    copy_rate,
    output_features,
    repetition,
)
from routelmt.records import ScoredExample, Segment  # noqa: E402
from routelmt.routers.artifacts import load_router  # noqa: E402
from routelmt.routers.two_stage import TwoStageRouter  # noqa: E402


class LengthQE(Metric):
    """A stand-in QE scorer (the real one loads a sentence encoder): longer output scores
    higher, an output equal to its source scores 0, and a language check that fails on 'xx'."""

    name = "test-qe"
    needs_reference = False

    def sentence_scores(self, hypotheses, references, target_languages, sources=None):
        return np.array(
            [0.0 if h == s else min(100.0, 10.0 * len(h)) for h, s in zip(hypotheses, sources)]
        )

    def language_factors(self, hypotheses, target_languages):
        return np.array([0.0 if h.startswith("xx") else 1.0 for h in hypotheses])

    def signature(self):
        return "test-qe"


def test_repetition_and_copy_rate():
    assert repetition("abcdefgh") == 0.0
    assert repetition("abcabcabcabcabcabc") > 0.6
    assert repetition("") == 0.0
    assert copy_rate("the cat sleeps", "the cat sleeps") == pytest.approx(1.0)
    assert copy_rate("el gato duerme", "the cat sleeps") < 0.3
    assert copy_rate("", "the cat") == 0.0


def test_output_features_flag_copies_and_wrong_language():
    segs = [Segment(id=f"s{i}", direction="en-es", source="the cat sleeps") for i in range(3)]
    texts = ["el gato duerme", "the cat sleeps", "xx ein Katze"]
    feats = output_features(segs, texts, LengthQE())
    assert feats.matrix.shape == (3, len(OUTPUT_FEATURES))
    assert feats.column("qe")[1] == 0.0 and feats.column("qe")[0] > 0
    assert feats.column("copy")[1] == pytest.approx(1.0)
    assert list(feats.column("lang_fail")) == [0.0, 0.0, 1.0]
    assert feats.column("abs_log_ratio")[1] == 0.0


def _labelled(n: int = 30) -> list[ScoredExample]:
    """The gain is high exactly where the small output copies its source (no prefill can
    know that): a second stage must find it, a prefill router cannot."""
    out = []
    for i, ex in enumerate(_examples(n)):
        copied = i % 3 == 0
        small = ex.segment.source if copied else "una traduccion " + "x" * (i % 5)
        gain = 40.0 if copied else float(i % 5)
        out.append(ScoredExample(ex.segment, "S", "L", small, "b", "chrF2", 50.0 - gain, 50.0))
    return out


def test_two_stage_learns_what_the_prefill_cannot_see(tmp_path):
    source = _source()
    examples = _labelled()
    train, test = examples[:21], examples[21:]
    stage1 = {"layer": 2, "source": source, "cv_folds": 3}
    router = TwoStageRouter(qe=LengthQE(), inner_folds=3, stage1=stage1).fit(train)
    scores = router.score(test)
    copied = np.array([ex.small_text == ex.segment.source for ex in test])
    assert copied.any() and (~copied).any()
    assert scores[copied].min() > scores[~copied].max()  # every copy ranks above every other
    stage1 = router.score([ex.segment for ex in test])  # before decoding: stage 1
    np.testing.assert_allclose(stage1, router.score_stage1(test))
    with pytest.raises(InputError, match="not a mix"):
        router.score([test[0].segment, test[1]])


def test_two_stage_saves_loads_and_refuses_another_model(tmp_path):
    source = _source()
    stage1 = {"layer": 2, "source": source, "cv_folds": 3}
    router = TwoStageRouter(qe="qe-embed", inner_folds=3, stage1=stage1)
    router.qe = LengthQE()
    router.fit(_labelled())
    router.qe = "qe-embed"  # what the artifact names
    router.save(tmp_path / "r")
    loaded = TwoStageRouter.load(tmp_path / "r", source=source)
    assert loaded.layer == 2 and loaded.qe == "qe-embed"
    loaded.qe = router.qe = LengthQE()
    test = _labelled()[:6]
    np.testing.assert_allclose(loaded.score(test), router.score(test))
    with pytest.raises(ConfigError, match="trained with model"):
        TwoStageRouter.load(tmp_path / "r", source=_source(identity="other@test"))
    assert load_router  # the registry names it
    from routelmt.routers.base import ROUTERS

    assert "routelmt-2stage" in ROUTERS


def test_two_stage_artifact_records_its_training_sources(tmp_path):
    from routelmt.routers.provenance import read_training_sources

    source = _source()
    router = TwoStageRouter(inner_folds=3, stage1={"layer": 2, "source": source, "cv_folds": 3})
    router.qe = LengthQE()
    train = _labelled()
    router.fit(train)
    router.qe = "qe-embed"
    router.save(tmp_path / "r")
    record = read_training_sources(tmp_path / "r")
    assert record is not None and record["n_examples"] == len(train)
    assert len(record["sources"]) == len({ex.segment.source for ex in train})
    assert TwoStageRouter.load(tmp_path / "r", source=source).train_sources == record


def test_cli_style_settings_reach_stage_one():
    router = TwoStageRouter(
        model="tiny-llama", layer=2, stage1={"cv_folds": 3, "source": _source()}
    )
    assert router.stage1_args["model"] == "tiny-llama" and router.stage1_args["layer"] == 2
    assert router.stage1_args["cv_folds"] == 3


def test_the_qe_scorer_is_built_once(monkeypatch):
    import routelmt.metrics.base as base

    built = []
    monkeypatch.setattr(base, "get_metric", lambda name: built.append(name) or LengthQE())
    router = TwoStageRouter(stage1={"layer": 2, "source": _source(), "cv_folds": 3})
    segs = [Segment(id="a", direction="en-es", source="the cat")]
    for _ in range(3):
        router.stage2_inputs(segs, ["el gato"], np.zeros(1))
    assert built == ["qe-embed"]


def test_the_service_builds_the_qe_scorer_without_its_disk_cache(monkeypatch, tmp_path):
    """Served texts leave no embedding on disk (a shard a request, and a trace of each text);
    a scorer without that option (cometkiwi) is built as it is."""
    from routelmt.serve.service import serve_without_disk_cache

    monkeypatch.setenv("ROUTELMT_CACHE", str(tmp_path))
    router = TwoStageRouter(stage1={"layer": 2, "source": _source(), "cv_folds": 3})
    serve_without_disk_cache(router)
    assert router.qe_options == {"use_cache": False}
    qe = router.qe_metric()
    assert qe.use_cache is False
    scores = qe.sentence_scores(
        ["el gato duerme en la alfombra"], None, "es", sources=["the cat sleeps on the mat"]
    )
    assert scores.shape == (1,) and not list(tmp_path.rglob("*.npz"))
    # offline (no serve_without_disk_cache) the same scorer caches, as before
    assert TwoStageRouter(stage1={"layer": 2, "source": _source()}).qe_options == {}
    kiwi = TwoStageRouter(qe="cometkiwi", stage1={"layer": 2, "source": _source()})
    serve_without_disk_cache(kiwi)
    assert kiwi.qe_options == {}
