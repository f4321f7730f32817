"""The RouteLMT probe on the real Gemma-3-270M: train on a few WMT24 segments, save, load."""

from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("torch")

from routelmt.errors import ConfigError  # noqa: E402
from routelmt.labels import wmt_labels  # noqa: E402
from routelmt.routers.artifacts import load_router  # noqa: E402
from routelmt.routers.inmodel import RouteLMTRouter  # noqa: E402

pytestmark = pytest.mark.integration

_REAL_CACHE = os.environ.get("ROUTELMT_CACHE")  # read before conftest redirects it


@pytest.fixture(scope="module", autouse=True)
def _gemma_from_the_real_model_cache():
    """Load (or convert once) Gemma under the user's cache; the router then reuses that copy."""
    from routelmt.backends.hf import cached_causal_lm

    saved = os.environ.get("ROUTELMT_CACHE")
    if _REAL_CACHE:
        os.environ["ROUTELMT_CACHE"] = _REAL_CACHE
    else:
        os.environ.pop("ROUTELMT_CACHE", None)
    try:
        cached_causal_lm("gemma3-270m", "float32")  # same key as FeatureSource's call
    finally:
        if saved is None:
            os.environ.pop("ROUTELMT_CACHE", None)
        else:
            os.environ["ROUTELMT_CACHE"] = saved


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
