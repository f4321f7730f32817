"""Turn a user's backend spec (``GPT-4``, ``replay:GPT-4``, ``hf:gemma3-270m``, a JSONL file)
into a Translator, so every command names systems the same way."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from routelmt.backends.base import BACKENDS, Translator
from routelmt.errors import ConfigError


def make_translator(
    spec: str,
    *,
    dataset: object | None = None,
    pairs: Sequence[str] | None = None,
    **options: object,
) -> Translator:
    """``kind:argument``; a bare name is a recorded WMT system, a ``.jsonl`` path recorded output.

    Kinds are the names in ``BACKENDS`` (replay, hf, openai, ...). ``dataset`` and ``pairs``
    tell a replay backend where the recorded outputs live.
    """

    if not spec:
        raise ConfigError("empty backend spec; expected e.g. GPT-4, replay:GPT-4 or hf:gemma3-270m")
    kind, sep, argument = spec.partition(":")
    replay = not sep or kind not in BACKENDS or kind == "replay"
    if replay and options:
        raise ConfigError(
            f"backend '{spec}' replays recorded outputs and takes no options; "
            f"got {', '.join(sorted(options))}"
        )
    if not sep or kind not in BACKENDS:
        if spec.endswith(".jsonl"):
            from routelmt.backends.replay import ReplayTranslator

            return ReplayTranslator.from_translations(Path(spec))
        kind, argument = "replay", spec
    if kind == "replay":
        return BACKENDS.create("replay", system=argument, dataset=dataset, pairs=pairs)
    return BACKENDS.create(kind, spec=argument, **options)
