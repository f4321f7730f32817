"""The live-model replay on the real service: Gemma-3-270M through llama.cpp decoding live, the
shipped two-stage router scoring live, GPT-4's recorded translations as the large model, chrF
labels on what was served. Three short WMT24 en-es sentences, one order, one request at a time:
it checks the wiring, not the figures (bench/live_replay.py --live-small measures those)."""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

from routelmt.datasets.wmt import WMTDataset
from routelmt.labels import score_pairs
from routelmt.metrics.base import get_metric
from routelmt.serve.config import DEFAULTS
from routelmt.serve.live_model import (
    LivePlan,
    compare_live,
    label_order,
    live_config,
    parse_live_variant,
    serve_order,
)
from routelmt.serve.live_replay import LabelledStream

pytestmark = pytest.mark.integration
if importlib.util.find_spec("llama_cpp") is None:
    MISSING = "llama-cpp-python is not installed (pip install 'routelmt[llamacpp]')"
    if os.environ.get("ROUTELMT_ALLOW_NO_LLAMACPP") == "1":
        pytest.skip(MISSING, allow_module_level=True)
    pytest.fail(f"{MISSING} (set ROUTELMT_ALLOW_NO_LLAMACPP=1 to skip)", pytrace=False)


def test_the_live_service_serves_scores_and_is_labelled_on_what_it_served(wmt_root, short_en_es):
    data = WMTDataset(wmt_root)
    wanted = {s.id for s in short_en_es[:3]}
    segments = [s for s in data.segments("en-es") if s.id in wanted]
    gpt4 = data.system_outputs("en-es", "GPT-4")
    chrf = get_metric("chrf")
    large = [gpt4[s.id] for s in segments]
    small = ["-"] * 3  # a bench text no live decode reproduces: every served one differs
    q_small = np.asarray(score_pairs(chrf, segments, small))
    q_large = np.asarray(score_pairs(chrf, segments, large))
    stream = LabelledStream(
        "en-es", segments, small, large, q_small, q_large, np.zeros(3), q_large - q_small
    )
    budget = {**DEFAULTS["budget"], "share": 0.34}
    _, variant = parse_live_variant("alone:batching=false", budget, DEFAULTS["server"])
    plan = LivePlan(small_options={"max_new_tokens": 32, "threads": 1, "repair": "off"})
    config = live_config(plan, variant)
    served = serve_order(config, stream, np.arange(3), concurrency=3)
    lab = label_order(stream, served, chrf)
    assert lab.decoded == 3 and lab.differ == 3  # stage1_share 0: every request decodes small
    texts = [served.texts[s.id] for s in segments]
    assert all(t.strip() and t != "-" for t in texts)
    assert np.allclose(lab.gains, q_large - np.asarray(score_pairs(chrf, segments, texts)))
    assert all(np.isfinite(served.scores[s.id]) for s in segments)  # the shipped head's score
    table = compare_live(stream, [lab], n_boot=5)
    assert set(table) >= {"online", "own", "offline", "length", "online-own"}
