"""The languages a chat request asks for in words: "Translate from English to Spanish".

A system message names languages by name ("Spanish") or code ("es", "zh-Hans"). A word in a
language's place that is no language we know ("Translate to Klingon") is an error the client
must hear about (``UnknownLanguage``, a 400), not a reason to answer in the default direction.
A word is in a language's place in "from A to B" / "from A into B", and in "translate ... to B"
within one sentence; there a capitalised word, a code-shaped word or one followed by "language"
is taken as a language name, while an ordinary lower-case word ("translate it to preserve the
tone", "to the user's language") is not.
"""

from __future__ import annotations

import re

from routelmt.languages import LANGUAGE_NAMES

__all__ = ["UnknownLanguage", "lang_code", "languages_from_instruction"]

_NAME_TO_CODE = {name.lower(): code for code, name in LANGUAGE_NAMES.items()}
# a language's place: a word (or a code such as zh-Hans), an optional capitalised second word
# ("Brazilian Portuguese", "Simplified Chinese"), an optional "language"
_SLOT = r"([A-Za-z]+(?:[-_][A-Za-z]+)?)(?:\s+([A-Z][a-z]+))?((?i:\s+language))?"
_FROM = r"\b(?i:from)\s+"
_TO_WORD = r"\b(?i:(?:in)?to)\s+"
_FROM_TO = re.compile(rf"{_FROM}{_SLOT}\s+(?i:(?:in)?to)\s+{_SLOT}")
_TO = re.compile(rf"{_TO_WORD}{_SLOT}")
_ANY_SLOT = re.compile(rf"(?:{_FROM}|{_TO_WORD}){_SLOT}")
_SENTENCE = re.compile(r"[^.!?\n]+")
_REGION_CODE = re.compile(r"[A-Za-z]{2,3}[-_][A-Za-z]{2,4}")
_NOT_NAMES = frozenset({
    "the", "a", "an", "this", "that", "these", "those", "my", "your", "our", "their", "his",
    "her", "its", "any", "another", "each", "every", "some", "all", "both", "it", "them", "him",
    "me", "us", "you", "one",
})  # fmt: skip


class UnknownLanguage(ValueError):
    """A system message names a language this service does not know."""

    def __init__(self, word: str) -> None:
        known = ", ".join(sorted(LANGUAGE_NAMES.values()))
        super().__init__(
            f"the system message asks for a language this server does not know: {word!r:.40}; "
            f"known (by name or ISO 639-1 code): {known}"
        )
        self.word = word


def lang_code(word: str) -> str | None:
    """'Spanish', 'es', 'ES', 'zh-Hans', 'pt_BR' -> the ISO 639-1 code; None if unknown."""
    w = word.strip().lower().replace("_", "-")
    if w in _NAME_TO_CODE:
        return _NAME_TO_CODE[w]
    base = w.split("-")[0]
    return base if base in LANGUAGE_NAMES and len(base) == 2 else None


def _code(first: str, second: str | None) -> str | None:
    return lang_code(first) or (lang_code(second) if second else None)


def _meant_as_a_name(word: str, suffix: str | None) -> bool:
    """Is ``word``, in a language's place, meant as a language name? Capitalised ("Klingon"),
    a code with a region ("tlh-KX") or followed by "language"; not "the", "it", "preserve"."""
    if word.lower() in _NOT_NAMES:
        return False
    return bool(suffix) or word[:1].isupper() or _REGION_CODE.fullmatch(word) is not None


def _refuse_unknown_names(text: str) -> None:
    """``UnknownLanguage`` for a name in a language's place of a sentence that translates."""
    for sentence in _SENTENCE.findall(text):
        if not re.search(r"translat", sentence, re.IGNORECASE):
            continue
        for m in _ANY_SLOT.finditer(sentence):
            first, second, suffix = m.groups()
            if _code(first, second) is None and _meant_as_a_name(first, suffix):
                raise UnknownLanguage(first if not second else f"{first} {second}")


def languages_from_instruction(text: str) -> tuple[str | None, str | None]:
    """'Translate from English to Spanish' -> ('en', 'es'); 'Translate to German' -> (None,
    'de'); no language named -> (None, None); an unknown one -> ``UnknownLanguage``."""
    _refuse_unknown_names(text)
    for m in _FROM_TO.finditer(text):
        src, tgt = _code(m.group(1), m.group(2)), _code(m.group(4), m.group(5))
        if src and tgt:
            return src, tgt
    for m in _TO.finditer(text):
        tgt = _code(m.group(1), m.group(2))
        if tgt:
            return None, tgt
    return None, None
