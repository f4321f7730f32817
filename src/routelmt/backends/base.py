"""The translator interface shared by replayed, in-process and remote models."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from routelmt.records import Segment
from routelmt.registry import Registry


class Translator(ABC):
    """Anything that turns segments into target-language text.

    ``name`` identifies the system in records and responses; it must be stable across runs
    because caches and router artifacts are keyed by it.
    """

    name: str
    kind: str  # the backend spec's prefix (``hf`` in ``hf:gemma3-270m``); the registry key
    #: the spec's argument names an in-process model that in-model routers can load too (the
    #: bench then gives it to them, so they read the very model that translates)
    model_for_routers: bool = False

    @abstractmethod
    def translate(self, segments: Sequence[Segment]) -> list[str]:
        """Translate a batch; one output string per segment, in order."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (connections, model memory)."""


BACKENDS: Registry[Translator] = Registry(
    "backend", key="kind", package="routelmt.backends", entry_point_group="routelmt.backends"
)
"""Keyed by each class's ``kind`` (``hf``, ``openai``, ...); ``name`` is the system an instance
serves."""


def generated_tokens(translator: Translator) -> int | None:
    """Tokens the last ``translate`` call generated, for backends that report them
    (``last_stats.generated_tokens``, as the transformers backend does)."""
    value = getattr(getattr(translator, "last_stats", None), "generated_tokens", None)
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None
