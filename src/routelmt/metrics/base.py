"""The quality-metric interface: sentence scores plus a signature that makes them reproducible.

``Metric.sentence_scores`` validates a batch once (lengths, types, references and sources the
metric needs, language codes) and then calls the subclass's ``_score`` hook, so every metric
rejects bad input with the same errors before it loads anything.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from routelmt.errors import InputError
from routelmt.languages import language_name
from routelmt.registry import Registry


def base_language(code: str) -> str:
    """``zh-Hans`` / ``pt_BR`` -> ``zh`` / ``pt``; unknown codes raise ``ConfigError``."""
    language_name(code)
    return code.split("_")[0].split("-")[0].lower()


class Metric(ABC):
    """Scores hypotheses against references (or sources, for reference-free QE).

    Scores are on the metric's natural scale (chrF and BLEU: 0-100). ``signature()`` names the
    metric, its version and every setting, so a number can be reproduced.
    """

    name: str
    needs_reference: bool = True
    needs_sources: bool = False
    #: whether every target code must be a known language (False: the metric copes with others)
    known_languages_only: bool = True

    def sentence_scores(
        self,
        hypotheses: Sequence[str],
        references: Sequence[str] | None,
        target_languages: Sequence[str] | str,
        sources: Sequence[str] | None = None,
    ) -> np.ndarray:
        """One score per hypothesis. ``target_languages`` holds ISO codes (tokenisation), or
        one code for all."""
        targets = self.check_inputs(hypotheses, references, target_languages, sources)
        return self._score(hypotheses, references, targets, sources)

    def _score(
        self,
        hypotheses: Sequence[str],
        references: Sequence[str] | None,
        target_languages: list[str],
        sources: Sequence[str] | None,
    ) -> np.ndarray:
        """Score a validated batch: one target code per hypothesis (a base code such as ``zh``
        when ``known_languages_only``), references and sources present when needed."""
        raise NotImplementedError

    def __init_subclass__(cls, **kwargs: object) -> None:
        """A metric implements ``_score`` (validated input); one that overrides
        ``sentence_scores`` itself (the older contract) validates its own input."""
        super().__init_subclass__(**kwargs)
        if cls._score is Metric._score and cls.sentence_scores is Metric.sentence_scores:
            raise TypeError(f"metric class {cls.__name__} must implement _score")

    @abstractmethod
    def signature(self) -> str:
        """A string such as ``chrF2|nc:6|nw:0|space:no|version:2.6.0``."""

    def check_inputs(
        self,
        hypotheses: Sequence[str],
        references: Sequence[str] | None,
        target_languages: Sequence[str] | str,
        sources: Sequence[str] | None = None,
    ) -> list[str]:
        """Validate a scoring batch; return one target code per hypothesis."""
        n = len(hypotheses)
        if isinstance(target_languages, str):
            target_languages = [target_languages] * n
        columns: dict[str, Sequence[str] | None] = {
            "references": references,
            "target_languages": target_languages,
            "sources": sources,
        }
        for field, column in columns.items():
            if column is not None and len(column) != n:
                raise InputError(
                    f"{n} hypotheses but {len(column)} {field}: metric '{self.name}' needs one "
                    "per hypothesis (expected equal counts)",
                    field=field,
                )
        if references is None and self.needs_reference:
            raise InputError(
                f"metric '{self.name}' compares with a reference translation but none was "
                "given; provide references or use a reference-free metric such as 'cometkiwi'",
                field="references",
            )
        if sources is None and self.needs_sources:
            raise InputError(
                f"metric '{self.name}' needs the sources (the source sentences) but none were "
                "given",
                field="sources",
            )
        for field, column in {"hypotheses": hypotheses, **columns}.items():
            for i, text in enumerate(column or ()):
                if not isinstance(text, str):
                    raise InputError(
                        f"item {i} is {type(text).__name__}, expected a string", field=field
                    )
        if not self.known_languages_only:
            return list(target_languages)
        return [base_language(code) for code in target_languages]


METRICS: Registry[Metric] = Registry(
    "metric", package="routelmt.metrics", entry_point_group="routelmt.metrics"
)


def get_metric(name: str, **kwargs: object) -> Metric:
    """Create a registered metric by name."""
    return METRICS.create(name, **kwargs)
