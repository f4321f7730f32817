"""The loader and replay backend on the real WMT24 folder (../shared/data/wmt24)."""

from __future__ import annotations

from collections import Counter

import pytest

from routelmt.backends.replay import ReplayTranslator
from routelmt.datasets.wmt import WMTDataset

pytestmark = pytest.mark.integration

PAIRS = ["en-de", "en-es", "en-hi", "en-is", "en-uk", "en-zh"]


@pytest.fixture(scope="module")
def data(wmt_root):
    return WMTDataset(wmt_root)


def test_pairs_and_segments(data, wmt_root):
    assert data.pairs() == PAIRS
    first_lines = {}
    for pair in PAIRS:
        segs = data.segments(pair)
        assert len(segs) == 997
        assert len({s.id for s in segs}) == 997
        assert segs[0].id == f"wmt24/{pair}/0"
        assert not any(s.source.startswith("CANARY") or s.domain == "canary" for s in segs)
        raw = (wmt_root / "txt/sources" / f"{pair}.txt").read_text(encoding="utf-8").split("\n")
        assert raw[0].startswith("CANARY") and segs[0].source == raw[1]
        assert all(s.reference for s in segs)
        first_lines[pair] = [s.source_id for s in segs]
    assert all(ids == first_lines["en-es"] for ids in first_lines.values())
    counts = Counter(s.domain for s in data.segments("en-es"))
    assert counts == {"literary": 206, "news": 149, "social": 531, "speech": 111}


def test_systems_and_replay(data):
    systems = data.valid_systems("en-es")
    assert {"Phi-3-Medium", "GPT-4"} <= set(systems)
    segs = data.segments("en-es")
    large = ReplayTranslator.from_wmt(data, "GPT-4", "en-es")
    out = large.translate(segs[:5])
    assert out == [data.system_outputs("en-es", "GPT-4")[s.id] for s in segs[:5]]
    assert all(out)


def test_broken_submission_is_listed_but_not_valid(data):
    assert "ONLINE-empty" in data.systems("en-hi")
    assert "ONLINE-empty" not in data.valid_systems("en-hi")
