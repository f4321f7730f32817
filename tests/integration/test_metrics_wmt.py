"""Sentence chrF on real WMT24 outputs reproduces the number in shared/data/README.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from routelmt.metrics import get_metric

WMT_TXT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "wmt24" / "txt"


def _segments(path: Path) -> list[str]:
    """The 997 real segments of a WMT24 file (line 1 is a contamination canary)."""
    lines = path.read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    assert lines[0].startswith("CANARY"), path
    return lines[1:]


@pytest.mark.integration
def test_phi3_medium_en_es_mean_sentence_chrf() -> None:
    txt = WMT_TXT
    if not (txt / "references" / "en-es.refA.txt").is_file():
        pytest.skip(f"real WMT24 data not found at {txt}")
    hyps = _segments(txt / "system-outputs" / "en-es" / "Phi-3-Medium.txt")
    refs = _segments(txt / "references" / "en-es.refA.txt")
    assert len(hyps) == len(refs) == 997
    scores = get_metric("chrf").sentence_scores(hyps, refs, "es")
    assert scores.shape == (997,)
    assert scores.mean() == pytest.approx(61.4, abs=0.05)
