"""In-process transformers causal LMs: loading (embedded aliases, folders, GGUF, cached hub ids).

The loaded model is plain ``AutoModelForCausalLM``; feature extraction (``routelmt.features``)
and, later, generation with a shared prefill reuse the same object, so load it once per process
(``cached_causal_lm``) and pass it around.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from dataclasses import asdict, dataclass
from typing import Any

from routelmt.backends.base import BACKENDS, GeneratorBackend, Translator, threads_from_env
from routelmt.errors import ConfigError, InputError, MissingDependencyError
from routelmt.models import DEFAULT_MODEL, resolve_model
from routelmt.repair import DEFAULT_REPAIR, check_repair_setting

log = logging.getLogger(__name__)

_DTYPES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class ModelInfo:
    """What was loaded; ``identity`` (name@content-fingerprint) keys caches and router artifacts."""

    spec: str
    name: str
    identity: str
    fingerprint: str
    kind: str  # alias | gguf | folder | hub
    folder: str
    dtype: str
    device: str
    num_layers: int
    hidden_size: int
    vocab_size: int
    has_chat_template: bool
    load_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def set_cpu_threads(threads: int | None = None) -> int:
    """Torch threads: ``threads``, else ``$ROUTELMT_THREADS``, else every core this process may
    run on (unless the user pinned OMP_NUM_THREADS). Decoding a small model is bound by memory
    bandwidth, so a second thread adds little; on a shared machine one is often faster."""
    import torch

    threads = threads_from_env(threads)
    if threads is None:
        if os.environ.get("OMP_NUM_THREADS"):
            return torch.get_num_threads()
        threads = (
            len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        )
    threads = max(1, int(threads or 1))
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def _torch_dtype(dtype: Any) -> Any:
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise ConfigError(f"unknown dtype '{dtype}'; expected one of {', '.join(_DTYPES)}")
    return getattr(torch, dtype)


def _import_transformers() -> Any:
    try:
        import torch  # noqa: F401 - a clear error before anything else
        import transformers
    except ImportError as exc:
        raise MissingDependencyError(
            "the transformers backend needs the 'model' extra: "
            f"pip install 'routelmt[model]' ({exc})"
        ) from None
    # transformers' own bars count weight tensors ("Loading weights 236/236"); ours count
    # segments, and a load is one log line
    transformers.utils.logging.disable_progress_bar()
    return transformers


def _from_folder(auto_class: Any, what: str, folder: Any, **options: Any) -> Any:
    """``auto_class.from_pretrained`` on a local folder; a broken folder is an InputError."""
    try:
        return auto_class.from_pretrained(folder, local_files_only=True, **options)
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(
            f"cannot load {what} from this folder ({type(exc).__name__}: {exc})",
            path=str(folder),
        ) from None


def _load_tokenizer(folder: Any) -> Any:
    transformers = _import_transformers()
    tokenizer = _from_folder(transformers.AutoTokenizer, "a tokenizer", folder)
    if tokenizer.pad_token_id is None:
        # Features and generation pad on the left and mask the padding, so any id works.
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def _info(spec: str, resolved: Any, config: Any, tokenizer: Any, **loaded: Any) -> ModelInfo:
    text_config = config.get_text_config()
    return ModelInfo(
        spec=spec,
        name=resolved.name,
        identity=resolved.identity,
        fingerprint=resolved.fingerprint,
        kind=resolved.kind,
        folder=str(resolved.folder),
        num_layers=int(text_config.num_hidden_layers),
        hidden_size=int(text_config.hidden_size),
        vocab_size=int(text_config.vocab_size),
        has_chat_template=bool(getattr(tokenizer, "chat_template", None)),
        **loaded,
    )


def load_causal_lm(
    spec: str = DEFAULT_MODEL, *, dtype: Any = "float32", device: str = "cpu", tokenizer: Any = None
) -> tuple[Any, Any, ModelInfo]:
    """Load (model, tokenizer, info) in eval mode; GGUF sources are converted once and cached.

    ``spec``: an embedded alias (``gemma3-270m``, ``smollm2-135m``), a local model folder, a
    ``.gguf`` file, or a hub id already in the local Hugging Face cache (nothing is downloaded).
    ``tokenizer``: one already loaded from the same folder (``cached_model_header``'s).
    """
    transformers = _import_transformers()
    torch_dtype = _torch_dtype(dtype)
    set_cpu_threads()
    start = time.perf_counter()
    resolved = resolve_model(spec)
    tokenizer = tokenizer if tokenizer is not None else _load_tokenizer(resolved.folder)
    model = _from_folder(
        transformers.AutoModelForCausalLM, "a causal LM", resolved.folder, dtype=torch_dtype
    )
    try:
        model.to(device)
    except (RuntimeError, AssertionError) as exc:
        raise ConfigError(f"cannot move the model to device '{device}': {exc}") from None
    model.eval()
    info = _info(
        spec,
        resolved,
        model.config,
        tokenizer,
        dtype=str(torch_dtype).removeprefix("torch."),
        device=str(device),
        load_seconds=round(time.perf_counter() - start, 2),
    )
    # Feature caching reads the identity from the model, so callers need not pass it around.
    model.routelmt_identity = info.identity
    log.info(
        "loaded %s (%s, %d layers) in %.1fs",
        info.identity,
        info.kind,
        info.num_layers,
        info.load_seconds,
    )
    return model, tokenizer, info


@functools.lru_cache(maxsize=2)
def cached_model_header(spec: str = DEFAULT_MODEL, dtype: str = "float32") -> tuple[Any, ModelInfo]:
    """(tokenizer, info) without the weights: enough to check an artifact against the model and
    to find its features in the cache (half a model load saved when they are there)."""
    transformers = _import_transformers()
    start = time.perf_counter()
    resolved = resolve_model(spec)
    tokenizer = _load_tokenizer(resolved.folder)
    config = _from_folder(transformers.AutoConfig, "a model config", resolved.folder)
    seconds = round(time.perf_counter() - start, 2)
    dtype_name = str(_torch_dtype(dtype)).removeprefix("torch.")
    info = _info(
        spec, resolved, config, tokenizer, dtype=dtype_name, device="cpu", load_seconds=seconds
    )
    return tokenizer, info


@functools.lru_cache(maxsize=2)
def cached_causal_lm(
    spec: str = DEFAULT_MODEL, dtype: str = "float32", device: str = "cpu"
) -> tuple[Any, Any, ModelInfo]:
    """``load_causal_lm`` once per process (CLI commands, the server, tests share one copy),
    with the tokenizer ``cached_model_header`` loaded."""
    tokenizer = cached_model_header(spec, dtype)[0]
    return load_causal_lm(spec, dtype=dtype, device=device, tokenizer=tokenizer)


@BACKENDS.register
class HFTranslator(GeneratorBackend, Translator):
    """A live transformers model as a translator (``hf:<model spec>``), with shared prefill.

    Loads lazily (once per process, ``cached_causal_lm``) on first use; ``model``/``tokenizer``
    inject an already loaded pair instead (tests, or a caller that holds the model). Greedy by
    default, beam search with ``num_beams > 1``. After each call ``last_stats`` holds the token
    counts and seconds (``generation.GenerationStats``). ``prefill``/``generate_from`` make it a
    ``hybrid.SharedPrefillSmall``: the router's features come from the prefill that decoding
    continues from.

    Speed options (``small_options`` in a config): ``prefix_cache`` (default on) prefills a
    direction's few-shot prefix once and reuses its KV cache; ``head`` picks the greedy
    arg-max: ``exact`` (default; the fp32 head's arg-max, found through a bf16 screen),
    ``full`` (the plain head), ``bfloat16`` or ``int8`` (that precision's own arg-max: faster,
    not output-equal); ``dtype: bfloat16`` runs the whole model in bf16. Threads:
    ``$ROUTELMT_THREADS``. ``repair``: the template that decodes a catastrophic output again
    (``routelmt.repair``), or ``off``.
    """

    kind = "hf"
    model_for_routers = True

    def __init__(
        self,
        spec: str = DEFAULT_MODEL,
        *,
        template: Any = "auto",
        batch_size: int = 8,
        max_new_tokens: int | None = None,
        max_length_ratio: float = 2.0,
        num_beams: int = 1,
        dtype: str = "float32",
        device: str = "cpu",
        stop_at_newline: bool | None = None,
        head: str = "exact",
        prefix_cache: bool = True,
        repair: str | None = DEFAULT_REPAIR,
        model: Any = None,
        tokenizer: Any = None,
        name: str | None = None,
    ) -> None:
        if (model is None) != (tokenizer is None):
            raise ConfigError("pass both model and tokenizer, or neither")
        if dtype not in _DTYPES:
            raise ConfigError(f"unknown dtype '{dtype}'; expected one of {', '.join(_DTYPES)}")
        self.spec = spec
        self.name = name or f"hf:{spec}"
        self.dtype = dtype
        self.device = device
        self._template_setting = template
        self._options = {
            "batch_size": int(batch_size),
            "max_new_tokens": max_new_tokens,
            "max_length_ratio": float(max_length_ratio),
            "num_beams": int(num_beams),
            "stop_at_newline": stop_at_newline,
            "head": head,
            "prefix_cache": bool(prefix_cache),
        }
        self._repair_setting = check_repair_setting(repair)
        self._model = model
        self._tokenizer = tokenizer
        self._generator: Any = None
        if model is not None:
            self._build()

    def _build(self) -> Any:
        from routelmt.generation import LMGenerator
        from routelmt.prompts import resolve_template

        if self._generator is None:
            if self._model is None:
                # the routers load with (spec, dtype): the same key shares one copy on CPU
                where = () if self.device == "cpu" else (self.device,)
                self._model, self._tokenizer, _ = cached_causal_lm(self.spec, self.dtype, *where)
            template = resolve_template(self._template_setting, self._tokenizer)
            self._generator = LMGenerator(self._model, self._tokenizer, template, **self._options)
        return self._generator

    def _sibling(self, template: Any) -> Any:
        from routelmt.generation import LMGenerator

        self._build()
        return LMGenerator(self._model, self._tokenizer, template, **self._options)
