"""The RouteLMT probe on the real Gemma-3-270M: train on a few WMT24 segments, save, load."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from routelmt.errors import ConfigError  # noqa: E402
from routelmt.labels import wmt_labels  # noqa: E402
from routelmt.routers.artifacts import load_router, resolve_artifact  # noqa: E402
from routelmt.routers.inmodel import RouteLMTRouter  # noqa: E402

pytestmark = pytest.mark.integration


def test_probe_on_gemma_round_trip_and_template_refusal(wmt_root, tmp_path):
    examples = wmt_labels(pairs="en-es", limit=12, root=wmt_root)
    router = RouteLMTRouter(layer=6, cv_folds=3).fit(examples[:9])
    scores = router.score(examples[9:])
    assert scores.shape == (3,) and np.all(np.isfinite(scores))
    router.save(tmp_path / "probe")
    loaded = load_router(tmp_path / "probe")  # through the generic artifact loader
    np.testing.assert_allclose(loaded.score(examples[9:]), scores, rtol=1e-5)
    with pytest.raises(ConfigError, match="template_fingerprint"):
        _load_zeroshot(tmp_path / "probe")


def _load_zeroshot(directory):
    from routelmt.routers.inmodel import feature_source

    return RouteLMTRouter.load(directory, source=feature_source(template="zeroshot"))


def test_shipped_two_stage_router_scores_real_outputs_and_refuses_another_template(wmt_root):
    """The artifact that ships for Gemma-3-270M loads on the real model, ranks a copied
    source above a real translation of it, and refuses a model/template it was not trained on."""
    from routelmt.routers.inmodel import feature_source
    from routelmt.routers.two_stage import TwoStageRouter

    examples = wmt_labels(pairs="en-es", limit=4, root=wmt_root)
    router = load_router("shipped:routelmt-2stage")
    assert isinstance(router, TwoStageRouter) and router.layer is not None
    segments = [ex.segment for ex in examples]
    stage1 = router.score_stage1(segments)
    assert stage1.shape == (4,) and np.all(np.isfinite(stage1))
    copies = router.score_stage2(segments, [s.source for s in segments], stage1)
    real = router.score_stage2(segments, [s.reference for s in segments], stage1)
    assert np.all(copies > real)  # a copy of the source is worth escalating, a good output is not
    with pytest.raises(ConfigError, match="template_fingerprint"):
        TwoStageRouter.load(
            resolve_artifact("shipped:routelmt-2stage"), source=feature_source(template="zeroshot")
        )
