"""The translator interface shared by replayed, in-process and remote models."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from routelmt.errors import ConfigError
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

    def writes(self, direction: str) -> str | None:
        """None when this translator can write ``direction``'s target language, else why not
        (a llama.cpp head cut to other languages cannot), checked before any work."""
        return None

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


def threads_from_env(threads: int | None) -> int | None:
    """``threads`` if given, else ``$ROUTELMT_THREADS`` (checked), else None: one rule for every
    in-process engine (torch and llama.cpp read the same variable)."""
    import os

    if threads is None and os.environ.get("ROUTELMT_THREADS"):
        raw = os.environ["ROUTELMT_THREADS"]
        try:
            threads = int(raw)
        except ValueError:
            raise ConfigError(f"ROUTELMT_THREADS must be a whole number, got '{raw}'") from None
        if threads < 1:
            raise ConfigError(f"ROUTELMT_THREADS must be at least 1, got {threads}")
    return threads


class GeneratorBackend:
    """The shared-prefill surface of an in-process backend, delegated to the generator its
    ``_build()`` loads on first use (hf and llamacpp differ only in what they build).

    ``repair`` (``routelmt.repair``): every small translation this backend returns has been
    checked, and a catastrophic one (copy, echoed example, wrong language, empty) decoded once
    more with the ``repair`` template by a second generator (``_sibling``) on the same weights.
    """

    _generator: Any = None
    _repair_setting: str = "off"
    _repairer: Any = None

    def _build(self) -> Any:
        raise NotImplementedError

    def _sibling(self, template: Any) -> Any:
        """A generator like ``_build()``'s with another prompt template (for repair)."""
        raise NotImplementedError

    @property
    def generator(self) -> Any:
        """The generator (loads the model on first use)."""
        return self._build()

    @property
    def template(self) -> Any:
        return self._build().template

    @property
    def last_stats(self) -> Any:
        """``GenerationStats`` of the last translate/generate_from call."""
        if self._generator is None:
            from routelmt.generation import GenerationStats

            return GenerationStats()
        return self._generator.last_stats

    @property
    def repairer(self) -> Any:
        """The ``repair.Repairer`` of this backend (None when repair is off)."""
        from routelmt.repair import REPAIR_OFF, Repairer

        if self._repair_setting == REPAIR_OFF:
            return None
        if self._repairer is None:
            from routelmt.prompts import get_template

            template = get_template(self._repair_setting)
            siblings: list[Any] = []
            loading = threading.Lock()  # a server repairs from several threads

            def decode(segments: list[Segment]) -> tuple[list[str], int]:
                with loading:
                    if not siblings:
                        siblings.append(self._sibling(template))
                texts = siblings[0].translate(segments)
                return texts, int(siblings[0].last_stats.generated_tokens)

            self._repairer = Repairer([self._build().template, template], decode)
        return self._repairer

    def repair(self, segments: Sequence[Segment], texts: Sequence[str]) -> list[str]:
        """``texts`` after the repair pass (unchanged when repair is off); its cost is added to
        ``last_stats``."""
        repairer = self.repairer
        if repairer is None or not texts:
            return list(texts)
        out = repairer.repair(segments, texts)
        self._build().last_stats.add_repair(repairer.last_report)
        return out

    def translate(self, segments: Sequence[Segment]) -> list[str]:
        return self.repair(segments, self._build().translate(segments))

    def prefill(self, segments: Sequence[Segment], *, layer: int | None = None) -> Any:
        """Features at ``layer`` (None: the final-norm output), and the state to decode from."""
        return self._build().prefill(segments, layer=layer)

    def generate_from(self, state: Any, indices: Sequence[int]) -> list[str]:
        texts = self._build().generate_from(state, indices)
        return self.repair([state.segments[int(i)] for i in indices], texts)

    def close(self) -> None:
        self._generator = None
        self._repairer = None
