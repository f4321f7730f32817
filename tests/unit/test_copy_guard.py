"""The copy guard's bans: a run of n tokens of the source or of an example translation cannot be
continued, shorter shared spans can, and the settings are checked."""

from __future__ import annotations

import pytest

from routelmt.copy_guard import CopyGuard, ngram_bans
from routelmt.errors import ConfigError
from routelmt.prompts import FewShotTemplate
from routelmt.records import Segment


class WordTokenizer:
    """One id per word (a leading space makes no difference): enough to see the n-grams."""

    def __init__(self):
        self.ids: dict[str, int] = {}

    def __call__(self, texts, add_special_tokens=False):
        return {"input_ids": [[self.id(w) for w in t.split()] for t in texts]}

    def id(self, word: str) -> int:
        return self.ids.setdefault(word, len(self.ids))


def test_ngram_bans_map_each_run_to_what_follows_it():
    assert ngram_bans([[1, 2, 3, 4], [2, 3, 9]], 3) == {(1, 2): {3}, (2, 3): {4, 9}}
    assert ngram_bans([[5]], 2) == {}


def test_a_copy_of_the_source_or_an_example_cannot_go_on():
    tok = WordTokenizer()
    template = FewShotTemplate()
    guard = CopyGuard(3, tok, template)
    segment = Segment(id="s", direction="en-es", source="the cat sat on the mat")
    bans = guard.bans(segment)
    the, cat, sat, on = (tok.id(w) for w in ("the", "cat", "sat", "on"))
    assert guard.banned(bans, [the, cat]) == {sat}  # "the cat" may not go on to "sat"
    assert guard.banned(bans, [cat]) == set()  # too short a run to ban anything
    assert guard.banned(bans, [sat, cat]) == set()  # not a run of the source
    example = template.examples_for("en-es")[0][1].split()
    first, second, third = (tok.id(w) for w in example[:3])
    assert third in guard.banned(bans, [first, second])  # an example's translation neither
    assert on not in guard.banned(bans, [first, second])


def test_a_run_shorter_than_two_is_refused():
    with pytest.raises(ConfigError, match="at least 2"):
        CopyGuard(1, WordTokenizer(), FewShotTemplate())
