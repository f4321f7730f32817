"""llama.cpp as the small translator (``llamacpp:<alias or .gguf file>``), with shared prefill.

Runs the GGUF file itself through ``llama-cpp-python`` (the optional ``llamacpp`` extra, which
compiles llama.cpp). Prompts, token ids, stop rules and length caps are those of the ``hf``
backend (the same template and tokenizer), and ``prefill``/``generate_from`` make it a
``hybrid.SharedPrefillSmall``: the router's features come from the prefill that decoding
continues from (``llama_engine``). The numbers are llama.cpp's (quantised weights): a router
trained on the ``hf`` backend's fp32 features must be re-validated on these
(``bench/llamacpp_router.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

from routelmt.backends.base import BACKENDS, GeneratorBackend, Translator, threads_from_env
from routelmt.errors import ConfigError
from routelmt.models import DEFAULT_MODEL, gguf_path, resolve_model
from routelmt.records import Segment
from routelmt.repair import DEFAULT_REPAIR, check_repair_setting

log = logging.getLogger(__name__)


def _threads(threads: int | None) -> int:
    import os

    threads = threads_from_env(threads)
    if threads is None:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    if int(threads) < 1:
        raise ConfigError(f"threads must be at least 1, got {threads}")
    return int(threads)


@BACKENDS.register
class LlamaCppTranslator(GeneratorBackend, Translator):
    """A GGUF model run by llama.cpp (``llamacpp:gemma3-270m`` or ``llamacpp:/path/model.gguf``).

    Options: ``batch_size`` (prompts per prefill chunk in ``translate``), ``max_new_tokens``,
    ``max_length_ratio``, ``stop_at_newline``, ``template`` as for ``hf``; ``threads`` (default
    ``$ROUTELMT_THREADS``, else every core); ``max_rows`` (sequences alive at once, prefilled or
    decoding); ``n_ctx`` (KV cells shared by them); ``prefix_cache`` (the few-shot prefix
    prefilled once per direction). Loads on first use.
    """

    kind = "llamacpp"
    #: in-model routers in a bench read the same model's weights through transformers
    model_for_routers = True

    def __init__(
        self,
        spec: str = DEFAULT_MODEL,
        *,
        template: Any = "auto",
        batch_size: int = 8,
        max_new_tokens: int | None = None,
        max_length_ratio: float = 2.0,
        stop_at_newline: bool | None = None,
        threads: int | None = None,
        max_rows: int = 128,
        n_ctx: int = 16384,
        prefix_cache: bool = True,
        repair: str | None = DEFAULT_REPAIR,
        name: str | None = None,
    ) -> None:
        self.spec = spec
        self.name = name or f"llamacpp:{spec}"
        self._template_setting = template
        self._options = {
            "batch_size": int(batch_size),
            "max_new_tokens": max_new_tokens,
            "max_length_ratio": float(max_length_ratio),
            "stop_at_newline": stop_at_newline,
            "threads": _threads(threads),
            "max_rows": int(max_rows),
            "n_ctx": int(n_ctx),
            "prefix_cache": bool(prefix_cache),
        }
        self._repair_setting = check_repair_setting(repair)
        self._generator: Any = None
        self._parts: tuple[Any, Any, int] | None = None  # gguf, tokenizer, layers

    def _load_parts(self) -> tuple[Any, Any, int]:
        """The GGUF file, the tokenizer (the hf backend's) and the layer count."""
        if self._parts is None:
            from transformers import AutoConfig, AutoTokenizer

            from routelmt.llama_engine import import_llama_cpp

            import_llama_cpp()  # a clear error before converting anything
            gguf = gguf_path(self.spec)
            folder = resolve_model(self.spec).folder  # the same tokenizer as the hf backend
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            config = AutoConfig.from_pretrained(folder, local_files_only=True)
            self._parts = (gguf, tokenizer, int(config.get_text_config().num_hidden_layers))
        return self._parts

    def _build(self) -> Any:
        if self._generator is None:
            from routelmt.llama_engine import LlamaGenerator
            from routelmt.prompts import resolve_template

            gguf, tokenizer, layers = self._load_parts()
            template = resolve_template(self._template_setting, tokenizer)
            self._generator = LlamaGenerator(
                gguf, tokenizer, template, num_layers=layers, **self._options
            )
            log.info("llama.cpp: %s, %d threads", gguf, self._options["threads"])
        return self._generator

    def _sibling(self, template: Any) -> Any:
        """A second context on the same GGUF, sized for the few rows a repair decodes, without
        the feature capture (a repair decode feeds no router)."""
        from routelmt.llama_engine import LlamaGenerator

        gguf, tokenizer, layers = self._load_parts()
        options = {**self._options, "max_rows": self._options["batch_size"], "n_ctx": 4096}
        return LlamaGenerator(
            gguf, tokenizer, template, num_layers=layers, capture=False, **options
        )

    def translate_iter(self, segments: Sequence[Segment]) -> Iterator[tuple[int, str]]:
        """``(index, text)`` as each segment finishes, the running batch refilled throughout
        (``resumable.translate_resumable`` stores them as they come). With repair, an output
        that fails the checks is held back and repaired with the others at the end."""
        generator = self._build()
        repairer = self.repairer
        if repairer is None:
            yield from generator.translate_iter(segments)
            return
        held: dict[int, str] = {}
        for i, text in generator.translate_iter(segments):
            if repairer.failures([segments[i]], [text])[0] is None:
                yield i, text
            else:
                held[i] = text
        if held:
            order = sorted(held)
            fixed = repairer.repair([segments[i] for i in order], [held[i] for i in order])
            generator.last_stats.add_repair(repairer.last_report)
            yield from zip(order, fixed, strict=True)
