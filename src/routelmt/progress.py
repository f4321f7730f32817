"""Progress bars for long loops, switched off globally by ``--quiet`` (the library never prints)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
_enabled = True


def set_enabled(enabled: bool) -> None:
    global _enabled
    _enabled = enabled


def progress(
    iterable: Iterable[T], *, desc: str, total: int | None = None, **kwargs: Any
) -> Iterator[T]:
    """Wrap a loop in a progress bar on stderr, hidden when disabled or not a terminal-ish run."""
    disable = not _enabled
    yield from tqdm(iterable, desc=desc, total=total, disable=disable, file=sys.stderr, **kwargs)


def bar(*, desc: str, total: int | None = None, **kwargs: Any) -> tqdm:
    """A manual progress bar (``update(n)``) for batched work."""
    return tqdm(desc=desc, total=total, disable=not _enabled, file=sys.stderr, **kwargs)
