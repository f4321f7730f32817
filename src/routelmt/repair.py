"""Repair before escalating: catch the small model's catastrophic outputs and decode them again.

A base model prompted with few-shot examples sometimes fails in ways any string check sees: it
copies the source, echoes one of the prompt's example translations for an unrelated text, writes
in the wrong language, or writes nothing. Routing spends budget on such failures (or misses
them), so before the router's second look each small translation is checked here
(``failure_of``) and every flagged one is decoded once more with a different prompt (the
``repair`` template: zero-shot, or another example set). The repaired text replaces the first
one only when it passes the same checks; otherwise the first stands and the router sees it.

The checks are deterministic: normalised string comparisons, and lingua's language confidence
(the same detector as ``qe-embed``; skipped, with one warning, when lingua is not installed).
The extra decode is small-model work: its seconds and tokens are reported (``RepairReport``)
and added to the generator's ``last_stats``.
"""

from __future__ import annotations

import difflib
import logging
import time
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from routelmt.errors import ConfigError
from routelmt.languages import parse_direction
from routelmt.records import Segment

log = logging.getLogger(__name__)

FAILURES = ("empty", "echo", "copy", "wrong_language")
#: ``repair`` settings: "off", or the registered template that decodes a flagged segment again
REPAIR_OFF = "off"
# off by default: measured on 252 WMT24 segments of en-de/es/zh (docs/benchmarks.md, "Repair
# before escalating"), neither repair prompt raised hybrid chrF and zero-shot lowered en-de's
DEFAULT_REPAIR = REPAIR_OFF
MIN_ECHO_CHARS = 8  # a shorter output inside an example sentence is no evidence of an echo
ECHO_BLOCK = 0.6  # an unbroken run of this share of an example's characters is an echo
ECHO_RATIO = 0.7  # so is this overall similarity (difflib's ratio) to an example
MIN_COPY_WORDS = 3  # a source this short (a name, a number) may rightly be copied
MIN_LANGUAGE_LETTERS = 15  # fewer letters: too short for a language check (as qe-embed)
LANGUAGE_TOLERANCE = 0.5  # wrong language: target confidence < tolerance x the best one's

_warned: set[str] = set()


def normalise(text: str) -> str:
    """Casefolded letters and digits only, so punctuation and spacing do not hide a copy."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in text if ch.isalnum())


def example_pairs(templates: Sequence[Any], direction: str) -> list[tuple[str, str]]:
    """The (source, translation) example pairs that ``templates`` put in this direction's
    prompt (a template without examples contributes none)."""
    pairs: list[tuple[str, str]] = []
    for template in templates:
        examples_for = getattr(template, "examples_for", None)
        if callable(examples_for):
            pairs.extend(examples_for(direction))
    return pairs


def _resembles(text: str, example: str) -> bool:
    """``text`` (normalised) holds most of ``example`` (normalised): the whole of it, a run of
    ``ECHO_BLOCK`` of its characters in one piece, or an ``ECHO_RATIO`` similarity overall (an
    echo with a word or two changed: "Der Staatsanwalt hat am Montag den neuen Haushalt ...")."""
    if not example:
        return False
    if example in text or (len(text) >= MIN_ECHO_CHARS and text in example):
        return True
    matcher = difflib.SequenceMatcher(None, text, example, autojunk=False)
    block = matcher.find_longest_match(0, len(text), 0, len(example)).size
    return block >= ECHO_BLOCK * len(example) or matcher.ratio() >= ECHO_RATIO


def is_echo(text: str, source: str, pairs: Sequence[tuple[str, str]]) -> bool:
    """The output holds (most of) an example's translation whose example source the segment's
    own source does not hold (then the example's words may rightly be in its translation)."""
    out, src = normalise(text), normalise(source)
    if len(out) < MIN_ECHO_CHARS:
        return False
    return any(
        _resembles(out, normalise(ex_tgt)) and not _resembles(src, normalise(ex_src))
        for ex_src, ex_tgt in pairs
    )


def is_copy(text: str, source: str) -> bool:
    """The output is the source again (up to case, spacing and punctuation), for a source of
    at least ``MIN_COPY_WORDS`` words."""
    if len(source.split()) < MIN_COPY_WORDS:
        return False
    out, src = normalise(text), normalise(source)
    return bool(out) and out == src


def _detector() -> Any | None:
    """qe-embed's shared lingua detector over every listed language (None without lingua)."""
    try:
        from routelmt.languages import LANGUAGE_NAMES
        from routelmt.metrics import qe
    except ImportError:  # pragma: no cover - the metrics package is part of the library
        return None
    try:
        codes = tuple(sorted(c for c in LANGUAGE_NAMES if qe._lingua_language(c) is not None))
        return qe._detector(codes)
    except Exception as exc:  # lingua missing (MissingDependencyError) or unusable
        if "lingua" not in _warned:
            _warned.add("lingua")
            log.warning("repair: no wrong-language check (%s)", exc)
        return None


def is_wrong_language(text: str, target: str) -> bool:
    """lingua's confidence for the target language is below ``LANGUAGE_TOLERANCE`` times its
    best guess (texts under ``MIN_LANGUAGE_LETTERS`` letters and targets lingua does not know
    pass)."""
    if sum(ch.isalpha() for ch in text) < MIN_LANGUAGE_LETTERS:
        return False
    detector = _detector()
    if detector is None:
        return False
    from routelmt.metrics import qe

    language = qe._lingua_language(target)
    if language is None:
        return False
    values = detector.compute_language_confidence_values(text)
    best = values[0].value if values else 0.0
    if best <= 0.0:
        return False
    confidence = next((v.value for v in values if v.language == language), 0.0)
    return confidence < LANGUAGE_TOLERANCE * best


def failure_of(
    segment: Segment, text: str, templates: Sequence[Any] = (), *, language_check: bool = True
) -> str | None:
    """The first failure in ``FAILURES`` order that ``text`` shows, or None (it passes)."""
    if not normalise(text):
        return "empty"
    if is_echo(text, segment.source, example_pairs(templates, segment.direction)):
        return "echo"
    if is_copy(text, segment.source):
        return "copy"
    target = parse_direction(segment.direction)[1]
    if language_check and is_wrong_language(text, target):
        return "wrong_language"
    return None


@dataclass
class RepairReport:
    """What one repair pass found and cost (the extra decode is small-model cost)."""

    checked: int = 0
    flagged: Counter = field(default_factory=Counter)  # failure -> segments
    repaired: int = 0  # flagged segments whose second decode passed (and replaced the first)
    seconds: float = 0.0  # checks and the second decode
    decode_s: float = 0.0
    generated_tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "flagged": dict(self.flagged),
            "repaired": self.repaired,
            "seconds": self.seconds,
            "decode_s": self.decode_s,
            "generated_tokens": self.generated_tokens,
        }


def check_repair_setting(value: Any) -> str:
    """``off`` or a registered prompt template name (a clear error otherwise)."""
    from routelmt.prompts import TEMPLATES

    if value is None or value is False:
        return REPAIR_OFF
    if not isinstance(value, str) or (value != REPAIR_OFF and value not in TEMPLATES):
        raise ConfigError(
            f"repair must be '{REPAIR_OFF}' or a prompt template "
            f"({', '.join(TEMPLATES.names())}), got {value!r:.40}"
        )
    return value


class Repairer:
    """Checks small translations and decodes the flagged ones once more with ``decode``.

    ``templates``: the prompts whose examples an output may echo (the first prompt's and the
    repair prompt's); ``decode(segments) -> (texts, generated_tokens)`` runs the repair prompt.
    """

    def __init__(
        self,
        templates: Sequence[Any],
        decode: Callable[[list[Segment]], tuple[list[str], int]],
        *,
        language_check: bool = True,
    ) -> None:
        self.templates = list(templates)
        self.decode = decode
        self.language_check = bool(language_check)
        self.last_report = RepairReport()

    def failures(self, segments: Sequence[Segment], texts: Sequence[str]) -> list[str | None]:
        return [
            failure_of(s, t, self.templates, language_check=self.language_check)
            for s, t in zip(segments, texts, strict=True)
        ]

    def repair(self, segments: Sequence[Segment], texts: Sequence[str]) -> list[str]:
        """``texts`` with every flagged output replaced by its second decode where that one
        passes; ``last_report`` says what happened."""
        started = time.perf_counter()
        report = RepairReport(checked=len(texts))
        out = list(texts)
        found = self.failures(segments, texts)
        flagged = [i for i, f in enumerate(found) if f is not None]
        report.flagged.update(f for f in found if f is not None)
        if flagged:
            t0 = time.perf_counter()
            again, tokens = self.decode([segments[i] for i in flagged])
            report.decode_s = time.perf_counter() - t0
            report.generated_tokens = int(tokens)
            for i, text in zip(flagged, again, strict=True):
                if (
                    failure_of(
                        segments[i], text, self.templates, language_check=self.language_check
                    )
                    is None
                ):
                    out[i] = text
                    report.repaired += 1
        report.seconds = time.perf_counter() - started
        self.last_report = report
        if flagged:
            log.info(
                "repair: %d of %d flagged (%s), %d repaired in %.2fs",
                len(flagged),
                len(texts),
                dict(report.flagged),
                report.repaired,
                report.seconds,
            )
        return out
