"""Reference-free features of the small model's own translation: the second routing look.

A prefill cannot see what the small model is about to write; after decoding, a few cheap
checks can: a copy of the source, the wrong language, a runaway repetition, an output much
shorter or longer than its source. ``qe`` is the registered reference-free QE scorer
(``qe-embed`` offline: multilingual embedding similarity gated by a language check).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from routelmt.languages import target_language
from routelmt.records import Segment

OUTPUT_FEATURES: tuple[str, ...] = (
    "qe",
    "lang_fail",
    "log_ratio",
    "abs_log_ratio",
    "repetition",
    "copy",
)


def repetition(text: str, n: int = 5) -> float:
    """Share of repeated character n-grams (0: none repeats; near 1: a loop)."""
    grams = [text[i : i + n] for i in range(max(0, len(text) - n + 1))]
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def copy_rate(text: str, source: str) -> float:
    """chrF of the output against its own source, 0-1: high when the source was copied."""
    from sacrebleu.metrics import CHRF

    return CHRF().sentence_score(text, [source]).score / 100.0 if text.strip() else 0.0


@dataclass
class OutputFeatures:
    """Rows aligned with the segments; ``seconds`` is what the QE pass cost."""

    matrix: np.ndarray  # (n, len(OUTPUT_FEATURES))
    seconds: float

    def column(self, name: str) -> np.ndarray:
        return self.matrix[:, OUTPUT_FEATURES.index(name)]


def output_features(
    segments: Sequence[Segment], texts: Sequence[str], qe: object = "qe-embed"
) -> OutputFeatures:
    """The features of ``OUTPUT_FEATURES`` for each (segment, small translation)."""
    from routelmt.metrics.base import Metric, get_metric

    metric = qe if isinstance(qe, Metric) else get_metric(str(qe))
    targets = [target_language(s.direction) for s in segments]
    sources = [s.source for s in segments]
    started = time.perf_counter()
    scores = (
        metric.sentence_scores(list(texts), None, targets, sources=sources)
        if len(texts)
        else np.empty(0)
    )
    seconds = time.perf_counter() - started
    factors = getattr(metric, "language_factors", None)
    lang = factors(list(texts), targets) if factors is not None else np.ones(len(texts))
    ratio = np.array(
        [math.log((len(t) + 1) / (len(s) + 1)) for t, s in zip(texts, sources, strict=True)]
    )
    matrix = np.column_stack(
        [
            np.asarray(scores, dtype=np.float64),
            (np.asarray(lang) < 1).astype(np.float64),
            ratio,
            np.abs(ratio),
            [repetition(t) for t in texts],
            [copy_rate(t, s) for t, s in zip(texts, sources, strict=True)],
        ]
    ).reshape(len(texts), len(OUTPUT_FEATURES))
    return OutputFeatures(matrix=matrix, seconds=seconds)
