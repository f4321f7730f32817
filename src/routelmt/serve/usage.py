"""Token counts for ``usage`` (OpenAI's prompt/completion tokens) in every response.

The service counts with one tokenizer for every tier, so that counts add up across tiers and a
recorded or remote large model (whose own count is not known here) is counted like the rest:
the small model's tokenizer when it has one (a live ``hf:`` model), else words and punctuation
marks (``\\w+|[^\\w\\s]``, an approximation that says so in ``usage.counted_by``).
``prompt_tokens`` counts the text to translate, not the prompt template around it.
"""

from __future__ import annotations

import re
from typing import Any

_WORDS = re.compile(r"\w+|[^\w\s]")


class TokenCounter:
    """``usage(source, translation)`` -> OpenAI's usage object."""

    def __init__(self, small: Any = None) -> None:
        self._small = small
        self._tokenizer: Any = None

    def _find(self) -> Any:
        if self._tokenizer is None and self._small is not None:
            # hf backend: the tokenizer is there once the model has loaded (warm_up loads it)
            self._tokenizer = getattr(self._small, "_tokenizer", None)
        return self._tokenizer

    @property
    def counted_by(self) -> str:
        return "small-model tokenizer" if self._find() is not None else "words and punctuation"

    def count(self, text: str) -> int:
        tokenizer = self._find()
        if tokenizer is not None:
            return len(tokenizer(text, add_special_tokens=False)["input_ids"])
        return len(_WORDS.findall(text))

    def usage(self, source: str, translation: str) -> dict[str, Any]:
        prompt, completion = self.count(source), self.count(translation)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
