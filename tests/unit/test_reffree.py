"""Reference-free gain labels from the two translations and the source."""

from __future__ import annotations

import numpy as np
import pytest

from routelmt.errors import InputError
from routelmt.metrics.base import METRICS, Metric
from routelmt.records import Segment
from routelmt.reffree import LABELS, reference_free_labels


class WordCountQE(Metric):
    """A stand-in QE scorer (the real one loads a sentence encoder): 10 points per word."""

    name = "test-word-qe"
    needs_reference = False
    needs_sources = True

    def _score(self, hypotheses, references, target_languages, sources):
        return np.array([min(100.0, 10.0 * len(h.split())) for h in hypotheses])

    def signature(self):
        return self.name


if WordCountQE.name not in METRICS:
    METRICS.register(WordCountQE.name)(WordCountQE)


def test_labels_from_both_outputs():
    segs = [Segment(id=f"s{i}", direction="en-es", source="the black cat sleeps") for i in range(3)]
    small = ["el gato negro duerme", "gato", "el perro"]
    large = ["el gato negro duerme", "el gato negro duerme", "el"]
    labels = reference_free_labels(segs, small, large, qe=WordCountQE.name)
    assert set(labels) == set(LABELS)
    np.testing.assert_allclose(labels["qe-gain"], [0.0, 30.0, -10.0])
    np.testing.assert_allclose(labels["qe-small"], [60.0, 90.0, 80.0])
    assert labels["pseudo-ref"][0] == pytest.approx(0.0)  # identical outputs: no gain
    assert labels["pseudo-ref"][1] > 50.0
    assert labels["signed-pseudo-ref"][2] < 0 < labels["signed-pseudo-ref"][1]
    assert np.argmax(labels["mix"]) == 1
    given = reference_free_labels(segs, small, large, qe=WordCountQE.name, qe_small=np.zeros(3))
    np.testing.assert_allclose(given["qe-gain"], [40.0, 40.0, 10.0])
    only = reference_free_labels(segs, small, large, qe=None)
    assert set(only) == {"pseudo-ref"}
    np.testing.assert_allclose(only["pseudo-ref"], labels["pseudo-ref"])


def test_mismatched_inputs_are_refused():
    seg = Segment(id="a", direction="en-es", source="x")
    with pytest.raises(InputError, match="one small and one large"):
        reference_free_labels([seg], ["a", "b"], ["c"], qe=WordCountQE.name)
