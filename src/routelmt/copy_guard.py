"""A decode-time guard against the small model's commonest failures: copying the source and
echoing a prompt example's translation (docs/benchmarks.md section 17: a few-shot 270M model
copies 13-15% of its sources and echoes an example in up to 7%).

A greedy step may not make a run of ``n`` tokens that the source or one of the prompt's example
translations already holds: where the last ``n - 1`` tokens written appear in one of them, each
token that follows them there is banned for that step and the model's best other token is
taken. Short shared spans (names, numbers, a few words) survive; a copied sentence cannot form.
Repair (``routelmt.repair``) decodes a failed output again; this guard keeps it from forming in
the first decode, at no extra decode. Off by default: what it costs and buys is measured in
docs/benchmarks.md section 17f.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from routelmt.errors import ConfigError
from routelmt.records import Segment

Bans = dict[tuple[int, ...], set[int]]


def ngram_bans(token_lists: Iterable[Sequence[int]], n: int) -> Bans:
    """For every ``n - 1`` tokens in the lists, the tokens that follow them there."""
    table: Bans = {}
    for ids in token_lists:
        for i in range(len(ids) - n + 1):
            table.setdefault(tuple(ids[i : i + n - 1]), set()).add(int(ids[i + n - 1]))
    return table


class CopyGuard:
    """The banned continuations of one segment's decode (``bans``) and the check of a step."""

    def __init__(self, n: int, tokenizer: Any, template: Any) -> None:
        if int(n) < 2:
            raise ConfigError(f"copy_guard is a run length of at least 2 tokens, got {n}")
        self.n = int(n)
        self.tokenizer = tokenizer
        self.template = template

    def bans(self, segment: Segment) -> Bans:
        """What this segment's decode may not continue: its source and its prompt's example
        translations, each as written mid-sentence and after a space."""
        examples_for = getattr(self.template, "examples_for", None)
        examples = [target for _, target in examples_for(segment.direction)] if examples_for else []
        texts = [segment.source.strip(), *examples]
        variants = [t for text in texts for t in (text, " " + text)]
        ids = self.tokenizer(variants, add_special_tokens=False)["input_ids"]
        return ngram_bans(ids, self.n)

    def banned(self, bans: Bans, written: Sequence[int]) -> set[int]:
        """The tokens this step may not write after ``written``."""
        if len(written) < self.n - 1:
            return set()
        return bans.get(tuple(written[len(written) - self.n + 1 :]), set())
