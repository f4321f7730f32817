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
        self._generator: Any = None

    def _build(self) -> Any:
        if self._generator is None:
            from transformers import AutoConfig, AutoTokenizer

            from routelmt.llama_engine import LlamaGenerator, import_llama_cpp
            from routelmt.prompts import resolve_template

            import_llama_cpp()  # a clear error before converting anything
            gguf = gguf_path(self.spec)
            folder = resolve_model(self.spec).folder  # the same tokenizer as the hf backend
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            config = AutoConfig.from_pretrained(folder, local_files_only=True)
            layers = int(config.get_text_config().num_hidden_layers)
            template = resolve_template(self._template_setting, tokenizer)
            self._generator = LlamaGenerator(
                gguf, tokenizer, template, num_layers=layers, **self._options
            )
            log.info("llama.cpp: %s, %d threads", gguf, self._options["threads"])
        return self._generator

    def translate_iter(self, segments: Sequence[Segment]) -> Iterator[tuple[int, str]]:
        """``(index, text)`` as each segment finishes, the running batch refilled throughout
        (``resumable.translate_resumable`` stores them as they come)."""
        return self._build().translate_iter(segments)
