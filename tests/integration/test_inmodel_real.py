"""The RouteLMT probe on the real Gemma-3-270M: train on a few WMT24 segments, save, load."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from routelmt.errors import ConfigError  # noqa: E402
from routelmt.labels import wmt_labels  # noqa: E402
from routelmt.routers.artifacts import load_router  # noqa: E402
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
