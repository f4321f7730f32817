"""Gain labels without references: what a user's own segments can be labelled with.

Each candidate estimates g = q_large - q_small from the two translations and the source only
(``bench/reffree_labels.py`` measures which trains the best router, scored with references):

- ``qe-gain``: QE(large) - QE(small), the registered reference-free scorer (``qe-embed``) on both
  outputs;
- ``qe-small``: 100 - QE(small): the small output's estimated badness (needs no large output);
- ``pseudo-ref``: 100 - chrF(small, reference = large output): the large output taken as a
  perfect translation, so the gain is how far the small one is from it;
- ``signed-pseudo-ref``: ``pseudo-ref`` with the sign of ``qe-gain`` (a disagreement the QE
  scorer credits to the small model counts as a loss);
- ``mix``: the sum of ``qe-gain`` and ``pseudo-ref``, each standardised over the labelled set.

CometKiwi, the usual reference-free scorer, is not installable here (gated weights); a user who
has it can pass its registered name as ``qe``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from routelmt.errors import InputError
from routelmt.languages import target_language
from routelmt.records import Segment

LABELS: tuple[str, ...] = ("qe-gain", "qe-small", "pseudo-ref", "signed-pseudo-ref", "mix")


def _z(x: np.ndarray) -> np.ndarray:
    sd = float(x.std())
    return (x - x.mean()) / (sd if sd > 1e-12 else 1.0)


def reference_free_labels(
    segments: Sequence[Segment],
    small_texts: Sequence[str],
    large_texts: Sequence[str],
    *,
    qe: str | None = "qe-embed",
    qe_small: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Every candidate label of ``LABELS`` per segment (``qe_small``: the small outputs' QE
    scores when already computed, e.g. the two-stage router's own output features); with
    ``qe=None`` only the labels that need no QE scorer (``pseudo-ref``)."""
    from routelmt.metrics.base import get_metric

    if not (len(segments) == len(small_texts) == len(large_texts)) or not segments:
        raise InputError("reference-free labels need one small and one large text per segment")
    targets = [target_language(s.direction) for s in segments]
    sources = [s.source for s in segments]
    chrf = get_metric("chrf")
    agree = np.asarray(chrf.sentence_scores(list(small_texts), list(large_texts), targets), float)
    pseudo = 100.0 - agree
    if qe is None:
        return {"pseudo-ref": pseudo}
    scorer = get_metric(qe)
    if qe_small is None:
        qe_small = scorer.sentence_scores(list(small_texts), None, targets, sources=sources)
    qe_small = np.asarray(qe_small, dtype=np.float64)
    qe_large = np.asarray(
        scorer.sentence_scores(list(large_texts), None, targets, sources=sources), np.float64
    )
    qe_gain = qe_large - qe_small
    return {
        "qe-gain": qe_gain,
        "qe-small": 100.0 - qe_small,
        "pseudo-ref": pseudo,
        "signed-pseudo-ref": np.where(qe_gain < 0, -pseudo, pseudo),
        "mix": _z(qe_gain) + _z(pseudo),
    }
