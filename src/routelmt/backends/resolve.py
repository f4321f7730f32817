"""Turn a user's backend spec (``GPT-4``, ``replay:GPT-4``, ``hf:gemma3-270m``, a JSONL file)
into a Translator: the one place a spec is read, so every command and the service name systems
the same way and reject the same mistakes.

The rule: ``kind:argument`` with a registered kind is that backend; otherwise a ``.jsonl`` path
is recorded output; otherwise ``word:...`` whose word looks like a backend kind is an error (a
backend this install lacks); anything else is a recorded WMT system.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from routelmt.backends.base import BACKENDS, Translator
from routelmt.errors import ConfigError
from routelmt.storage import stable_hash

log = logging.getLogger(__name__)

_KIND = re.compile(r"[a-z][a-z0-9_-]*")


@dataclass(frozen=True)
class BackendSpec:
    """A parsed spec: ``kind`` is a registered backend, or ``replay`` for recorded output."""

    text: str
    kind: str
    argument: str  # the model / URL / recorded system; the path for a JSONL file
    file: bool = False  # recorded output in a JSONL file

    @property
    def recorded(self) -> bool:
        """Replays recorded outputs (a lookup, no model)."""
        return self.kind == "replay"

    @property
    def system(self) -> str | None:
        """The recorded WMT system it replays, if it is one."""
        return self.argument if self.recorded and not self.file else None


def parse_spec(spec: str) -> BackendSpec:
    """Read a spec by the rule in the module docstring; an unavailable kind is a ConfigError."""
    if not spec:
        raise ConfigError("empty backend spec; expected e.g. GPT-4, replay:GPT-4 or hf:gemma3-270m")
    kind, sep, argument = spec.partition(":")
    if sep and kind in BACKENDS:
        return BackendSpec(spec, kind, argument)
    if spec.endswith(".jsonl"):
        return BackendSpec(spec, "replay", spec, file=True)
    if sep and _KIND.fullmatch(kind):
        raise ConfigError(
            f"backend '{kind}' (from '{spec}') is not available in this install; "
            f"known: {', '.join(BACKENDS.names())}"
        )
    return BackendSpec(spec, "replay", spec)


def check_spec(spec: str, label: str) -> BackendSpec:
    """``parse_spec`` before any work is done: errors name the config key, a JSONL file must
    exist."""
    try:
        parsed = parse_spec(spec)
    except ConfigError as exc:
        raise ConfigError(f"'{label}': {exc}") from None
    if parsed.file and not Path(spec).is_file():
        raise ConfigError(f"'{label}': recorded translations file not found: {spec}")
    return parsed


def make_translator(
    spec: str,
    *,
    dataset: object | None = None,
    pairs: Sequence[str] | None = None,
    **options: object,
) -> Translator:
    """Build the translator a spec names. ``dataset`` and ``pairs`` tell a replay backend where
    the recorded outputs live; recorded output takes no options."""
    parsed = parse_spec(spec)
    if parsed.recorded and options:
        raise ConfigError(
            f"backend '{spec}' replays recorded outputs and takes no options; "
            f"got {', '.join(sorted(options))}"
        )
    if parsed.file:
        from routelmt.backends.replay import ReplayTranslator

        return ReplayTranslator.from_translations(Path(spec))
    if parsed.recorded:
        return BACKENDS.create("replay", system=parsed.argument, dataset=dataset, pairs=pairs)
    translator = BACKENDS.create(parsed.kind, spec=parsed.argument, **options)
    if parsed.kind == "llamacpp" and not llama_cpp_available():  # options were checked above
        return _hf_instead(parsed, options)
    return translator


#: llamacpp options the hf backend has no use for (dropped, with the reason logged)
LLAMACPP_ONLY = ("threads", "max_rows", "n_ctx", "output_languages", "output_english_words")


def llama_cpp_available() -> bool:
    """Whether ``llama_cpp`` (the optional ``llamacpp`` extra) can be imported here."""
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def _hf_instead(parsed: BackendSpec, options: Mapping[str, Any]) -> Translator:
    """The fallback for ``llamacpp:MODEL`` where llama-cpp-python is missing: the same model,
    prompts and stop rules through transformers (slower), with the reason logged."""
    dropped = sorted(k for k in options if k in LLAMACPP_ONLY)
    log.warning(
        "llama-cpp-python is not installed (pip install 'routelmt[llamacpp]'): '%s' runs on "
        "the hf backend instead (hf:%s, slower)%s",
        parsed.text,
        parsed.argument,
        f"; ignoring its llama.cpp options {', '.join(dropped)}" if dropped else "",
    )
    kept = {k: v for k, v in options.items() if k not in LLAMACPP_ONLY}
    return BACKENDS.create("hf", spec=parsed.argument, **kept)


def make_backend(spec: str, options: Mapping[str, Any], data: Mapping[str, Any]) -> Translator:
    """A backend for the service: a recorded WMT system also answers by source text
    (``ReplayBySource``), since a client sends text, not segment ids."""
    from routelmt.backends.replay import ReplayBySource, ReplayTranslator
    from routelmt.datasets.wmt import WMTDataset

    parsed = parse_spec(spec)
    pairs = data.get("pairs")
    if isinstance(pairs, str):
        pairs = [pairs]
    if parsed.system is None:
        return make_translator(spec, **options)
    dataset = WMTDataset(data.get("root"))
    translator = make_translator(spec, dataset=dataset, pairs=pairs, **options)
    if not isinstance(translator, ReplayTranslator):
        return translator
    chosen = pairs or [p for p in dataset.pairs() if translator.system in dataset.systems(p)]
    segments = [seg for pair in chosen for seg in dataset.segments(pair, reference=None)]
    return ReplayBySource(translator, segments)


def warm_up(translator: Translator) -> Translator:
    """Load a lazily loading model now: a missing model fails at startup, not on a request."""
    load = getattr(translator, "load", None)
    if callable(load):
        load()
    elif isinstance(getattr(type(translator), "generator", None), property):
        translator.generator  # noqa: B018  (the hf backend loads on first access)
    return translator


def first_backend(
    specs: str | list[str], options: Mapping[str, Any], data: Mapping[str, Any]
) -> Translator:
    """The first spec that loads (warmed up); the reasons the others failed are logged."""
    specs = [specs] if isinstance(specs, str) else list(specs)
    if not specs:
        raise ConfigError("'small' must name at least one backend")
    errors = []
    for spec in specs:
        try:
            return warm_up(make_backend(spec, options if spec == specs[0] else {}, data))
        except Exception as exc:
            errors.append(f"{spec}: {exc}")
            log.warning("small backend %s unavailable (%s); trying the next one", spec, exc)
    raise ConfigError("no small backend could be loaded: " + "; ".join(errors))


def slug(spec: str) -> str:
    """A folder name for a system spec: ``hf:gemma3-270m`` -> ``hf-gemma3-270m``, ``replay:GPT-4``
    -> ``GPT-4``; specs with other odd characters (URLs, paths) get a short hash."""
    kind, sep, argument = spec.partition(":")
    plain = (argument if sep and kind == "replay" else spec).replace(":", "-")
    text = re.sub(r"[^A-Za-z0-9._-]+", "-", plain).strip("-.") or "system"
    return text if text == plain else f"{text}-{stable_hash(spec, length=6)}"
