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
from routelmt.languages import target_language
from routelmt.models import DEFAULT_MODEL, gguf_path, resolve_model
from routelmt.output_vocab import ENGLISH_WORDS, parse_languages
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
    prefilled once per direction); ``output_languages`` (target languages, e.g. ``de,es,zh``:
    decode with an output head cut to the tokens those languages write: faster, at a measured
    chrF loss, see ``output_vocab``; a request into another language is refused) and
    ``output_english_words`` (English words the cut head also keeps, for names and terms;
    default 5,000); ``head_screen`` (score every token with a Q4_0 copy of the output head and
    re-check exactly the few it cannot rule out: the full head's choice, faster, see
    ``screened_head``); ``copy_guard`` (n >= 2: no run of n tokens of the source or of a prompt
    example's translation is written, see ``copy_guard``; 0, the default, is off). Loads on
    first use.
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
        output_languages: str | Sequence[str] | None = None,
        output_english_words: int = ENGLISH_WORDS,
        head_screen: bool = False,
        copy_guard: int = 0,
        name: str | None = None,
    ) -> None:
        self.spec = spec
        self.output_languages = parse_languages(output_languages)
        if output_english_words < 0:
            raise ConfigError(f"output_english_words must be >= 0, got {output_english_words}")
        self.output_english_words = int(output_english_words)
        cut = f"+out-{'-'.join(self.output_languages)}" if self.output_languages else ""
        if cut and self.output_english_words != ENGLISH_WORDS:
            cut += f"-en{self.output_english_words}"
        if head_screen and cut:
            raise ConfigError("head_screen and output_languages cannot be combined; pick one")
        self.head_screen = bool(head_screen)
        if copy_guard and (int(copy_guard) < 2 or cut):
            raise ConfigError(
                f"copy_guard must be 0 (off) or a run of at least 2 tokens, without "
                f"output_languages; got {copy_guard}"
            )
        suffix = ("+screen" if head_screen else "") + (f"+guard{copy_guard}" if copy_guard else "")
        self.name = name or f"llamacpp:{spec}{cut}{suffix}"
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
            "copy_guard": int(copy_guard),
        }
        self._repair_setting = check_repair_setting(repair)
        self._generator: Any = None
        self._parts: tuple[Any, Any, int] | None = None  # gguf, tokenizer, layers
        self._cut: Any = None  # the cut output vocabulary, once built or read
        self._screen: Any = None  # the screened head's file, once built or read

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
                gguf,
                tokenizer,
                template,
                num_layers=layers,
                output_vocab=self._output_vocab(gguf, tokenizer),
                head_screen=self._screened(gguf),
                **self._options,
            )
            log.info("llama.cpp: %s, %d threads", self._generator.file, self._options["threads"])
        return self._generator

    def writes(self, direction: str) -> str | None:
        if not self.output_languages or target_language(direction) in self.output_languages:
            return None
        return (
            f"the small model's output head is cut to {', '.join(self.output_languages)} "
            "(output_languages)"
        )

    def _output_vocab(self, gguf: Any, tokenizer: Any) -> Any:
        """The cut vocabulary, found once for the main context and the repair sibling."""
        if not self.output_languages:
            return None
        if self._cut is None:
            from routelmt.output_vocab import cut_vocabulary

            self._cut = cut_vocabulary(
                gguf, tokenizer, self.output_languages, english_words=self.output_english_words
            )
        return self._cut

    def _screened(self, gguf: Any) -> Any:
        """The screened head's file, found once for the main context and the repair sibling."""
        if self.head_screen and self._screen is None:
            from routelmt.screened_head import screened_file

            self._screen = screened_file(gguf)
        return self._screen

    def _sibling(self, template: Any) -> Any:
        """A second context on the same GGUF, sized for the few rows a repair decodes, without
        the feature capture (a repair decode feeds no router)."""
        from routelmt.llama_engine import LlamaGenerator

        gguf, tokenizer, layers = self._load_parts()
        options = {**self._options, "max_rows": self._options["batch_size"], "n_ctx": 4096}
        return LlamaGenerator(
            gguf,
            tokenizer,
            template,
            num_layers=layers,
            capture=False,
            output_vocab=self._output_vocab(gguf, tokenizer),
            head_screen=self._screened(gguf),
            **options,
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
