"""The quality-metric interface: sentence scores plus a signature that makes them reproducible."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from routelmt.registry import Registry


class Metric(ABC):
    """Scores hypotheses against references (or sources, for reference-free QE).

    Scores are on the metric's natural scale (chrF and BLEU: 0-100). ``signature()`` names the
    metric, its version and every setting, so a number can be reproduced.
    """

    name: str
    needs_reference: bool = True

    @abstractmethod
    def sentence_scores(
        self,
        hypotheses: Sequence[str],
        references: Sequence[str] | None,
        target_languages: Sequence[str],
        sources: Sequence[str] | None = None,
    ) -> np.ndarray:
        """One score per hypothesis. ``target_languages`` holds ISO codes (tokenisation)."""

    @abstractmethod
    def signature(self) -> str:
        """A string such as ``chrF2|nc:6|nw:0|space:no|version:2.6.0``."""


METRICS: Registry[Metric] = Registry("metric")


def get_metric(name: str, **kwargs: object) -> Metric:
    """Create a registered metric by name (importing the built-ins on first use)."""
    import routelmt.metrics.builtin  # noqa: F401  (registers chrf, bleu, comet)

    return METRICS.create(name, **kwargs)
