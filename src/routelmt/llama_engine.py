"""Greedy translation through llama.cpp's C API (``llama-cpp-python``), with a shared prefill.

llama.cpp runs the GGUF file as it is (Q4_K_M weights, a Q6_K head, SIMD kernels), which on a
CPU decodes several times faster than the transformers path over dequantised fp32 weights. The
high-level ``llama_cpp.Llama`` decodes one sequence; this module uses the C API directly to get
what the hybrid translator needs:

- **one prefill for routing and decoding**: a prompt is prefilled once; the router's feature row
  (the last prompt token's hidden state at a chosen layer) is captured from that very forward
  pass with an eval callback (llama.cpp names each block's output ``l_out-<i>``), and decoding
  continues from the same KV cache;
- **a shared few-shot prefix**: a direction's template prefix is prefilled once into its own
  sequence and copied (cells shared, not recomputed) into every prompt's sequence;
- **continuous batching**: ``LlamaDecodeBatch`` decodes one token for every running row per
  ``llama_decode`` (one sequence id per row in a unified KV cache); rows join at any step and
  leave (their cells freed) as soon as they finish.

Token ids come from the model's transformers tokenizer (the one the rest of the project uses),
so prompts, stop strings and length limits are exactly those of ``generation.LMGenerator``.
The numbers differ from the fp32 path (quantised weights and activations): outputs and features
are close, not equal; ``bench/small_throughput.py`` measures by how much.

One context serves one process; every call into it holds ``lock`` (llama.cpp contexts are not
thread-safe), which is also what lets a server prefill new requests between decode steps.
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from routelmt.copy_guard import Bans, CopyGuard
from routelmt.errors import BackendError, ConfigError, MissingDependencyError
from routelmt.features import MIN_SHARED_PREFIX
from routelmt.generation import (
    DEFAULT_LENGTH_RATIO,
    DEFAULT_MAX_NEW_TOKENS,
    GenerationStats,
    SegmentLimits,
    cut_at_stop,
)
from routelmt.lm import common_prefix_length
from routelmt.locks import FairLock
from routelmt.output_vocab import CutVocabulary, FullEmbeddings
from routelmt.prompts import FewShotTemplate, PromptTemplate, encode_prompts
from routelmt.records import Segment
from routelmt.screened_head import HeadScreen, ScreenedFile

log = logging.getLogger(__name__)

PREFIX_SEQS = 4  # sequence ids kept for cached direction prefixes (least recently used leaves)
SLOT_WAIT_S = 120.0  # how long a prefill waits for sequence slots that other threads hold
FINAL_NORM = b"result_norm"  # llama.cpp's name for the output head's input


def import_llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as exc:
        raise MissingDependencyError(
            "the llamacpp backend needs llama-cpp-python (it compiles llama.cpp, a few minutes): "
            f"pip install 'routelmt[llamacpp]' ({exc})"
        ) from None
    # llama-cpp-python prints llama.cpp's log (hundreds of lines per load) unless its logger
    # is told otherwise: errors only, unless the user set a level
    quiet = logging.getLogger("llama-cpp-python")
    if quiet.level == logging.NOTSET:
        quiet.setLevel(logging.ERROR)
    return llama_cpp


class _TensorReader:
    """ggml's tensor accessors (name, size, copy out), from the library llama_cpp loaded."""

    def __init__(self, llama_cpp: Any) -> None:
        lib_dir = Path(llama_cpp.__file__).parent / "lib"
        candidates = sorted(lib_dir.glob("libggml-base.*")) + sorted(lib_dir.glob("libggml.*"))
        if not candidates:
            raise MissingDependencyError(f"no ggml library found beside llama_cpp in {lib_dir}")
        lib = ctypes.CDLL(str(candidates[0]))
        lib.ggml_get_name.argtypes = [ctypes.c_void_p]
        lib.ggml_get_name.restype = ctypes.c_char_p
        lib.ggml_nbytes.argtypes = [ctypes.c_void_p]
        lib.ggml_nbytes.restype = ctypes.c_size_t
        lib.ggml_backend_tensor_get.argtypes = [
            ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t,
        ]  # fmt: skip
        lib.ggml_backend_tensor_get.restype = None
        self.lib = lib

    def name(self, tensor: int) -> bytes:
        return self.lib.ggml_get_name(tensor) or b""

    def rows(self, tensor: int, width: int, wanted: Sequence[int]) -> np.ndarray:
        """Rows ``wanted`` of a contiguous f32 (n_tokens, width) tensor."""
        nbytes = int(self.lib.ggml_nbytes(tensor))
        if nbytes % (4 * width):
            raise BackendError(f"captured tensor is not f32 rows of {width} ({nbytes} bytes)")
        out = np.empty((len(wanted), width), dtype=np.float32)
        row = 4 * width
        for k, r in enumerate(wanted):
            self.lib.ggml_backend_tensor_get(tensor, out[k].ctypes.data, r * row, row)
        return out


@dataclass
class _Row:
    key: Any
    seq: int
    pos: int  # position of the next token to feed
    token: int  # the token to feed next (greedy choice from the last logits)
    limit: int
    stops: list[str]
    generated: list[int] = field(default_factory=list)
    bans: Bans | None = None  # with a copy guard: the continuations this row may not write


@dataclass
class LlamaPrefillState:
    """What ``LlamaGenerator.prefill`` returns: features plus one live sequence per segment.

    A sequence's KV cells stay in the context until its row is decoded or the state is
    dropped (then every undecoded sequence is freed).
    """

    segments: list[Segment]
    features: np.ndarray
    layer: int | None
    prefill_s: float
    prompt_tokens: int
    reused_tokens: int
    seqs: list[int] = field(repr=False, default_factory=list)
    positions: list[int] = field(repr=False, default_factory=list)
    first_tokens: list[int] = field(repr=False, default_factory=list)
    taken: set[int] = field(repr=False, default_factory=set)
    owner: int = 0


class LlamaGenerator(SegmentLimits):
    """Batched greedy translation with llama.cpp, the same prompts and stop rules as
    ``generation.LMGenerator`` (``prefill``/``generate_from``/``translate``/``decode_batch``).

    ``max_rows`` bounds the sequences alive at once (prefilled or decoding); ``n_ctx`` the KV
    cells they share (prefix cells are shared by every sequence that copied them).
    """

    num_beams = 1

    def __init__(
        self,
        gguf: str | Path,
        tokenizer: Any,
        template: PromptTemplate,
        *,
        num_layers: int,
        batch_size: int = 8,
        max_new_tokens: int | None = None,
        max_length_ratio: float = DEFAULT_LENGTH_RATIO,
        stop_at_newline: bool | None = None,
        default_layer: int | None = None,
        threads: int = 1,
        max_rows: int = 128,
        n_ctx: int = 16384,
        prefix_cache: bool = True,
        capture: bool = True,
        output_vocab: CutVocabulary | None = None,
        head_screen: ScreenedFile | None = None,
        copy_guard: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        if max_new_tokens is not None and max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        if not max_length_ratio > 0:
            raise ConfigError(f"max_length_ratio must be positive, got {max_length_ratio}")
        if max_rows < batch_size:
            raise ConfigError(f"max_rows ({max_rows}) must be at least batch_size ({batch_size})")
        self.llama_cpp = lc = import_llama_cpp()
        self.tokenizer = tokenizer
        self.template = template
        self.batch_size = int(batch_size)
        self.max_new_tokens = int(max_new_tokens or DEFAULT_MAX_NEW_TOKENS)
        self.max_length_ratio = float(max_length_ratio)
        self.stop_at_newline = (
            isinstance(template, FewShotTemplate) if stop_at_newline is None else stop_at_newline
        )
        self.num_layers = int(num_layers)
        self.default_layer = self.num_layers if default_layer is None else int(default_layer)
        self.prefix_cache = bool(prefix_cache)
        self.copy_guard = CopyGuard(copy_guard, tokenizer, template) if copy_guard else None
        self.lock = FairLock()  # arrival order: decode steps and prefills take turns
        self.last_stats = GenerationStats()
        self.n_ctx = int(n_ctx)
        self.n_batch = 2048
        lc.llama_backend_init()
        mparams = lc.llama_model_default_params()
        gguf = self._attach_vocab(gguf, output_vocab, head_screen)
        capture = capture or self.screen is not None  # the re-check reads the final norm
        self.file = Path(gguf)  # the file llama.cpp runs (the cut or screened one, if any)
        self.model = lc.llama_model_load_from_file(str(gguf).encode(), mparams)
        if not self.model:
            raise BackendError(f"llama.cpp could not load {gguf}")
        self.vocab = lc.llama_model_get_vocab(self.model)
        self.n_vocab = int(lc.llama_vocab_n_tokens(self.vocab))
        self.n_embd = int(lc.llama_model_n_embd(self.model))
        if int(lc.llama_model_n_layer(self.model)) != self.num_layers:
            raise ConfigError(
                f"{gguf} has {lc.llama_model_n_layer(self.model)} layers, the tokenizer's model "
                f"{self.num_layers}: not the same model"
            )
        self.eos_ids = {self._full_id(int(lc.llama_vocab_eos(self.vocab)))}
        eot = int(lc.llama_vocab_eot(self.vocab))
        if eot >= 0:
            self.eos_ids.add(self._full_id(eot))
        if tokenizer.eos_token_id is not None:
            self.eos_ids.add(int(tokenizer.eos_token_id))
        self._reader = _TensorReader(lc)
        self._capture: dict[str, Any] = {"want": {}, "out": {}}  # tensor name -> rows
        self._callback = lc.ggml_backend_sched_eval_callback(self._on_tensor)
        self.ctx = self._open_context(int(max_rows), int(threads), capture)
        self.mem = lc.llama_get_memory(self.ctx)
        self.threads = int(threads)
        self.max_rows = int(max_rows)
        self._free_seqs = list(range(PREFIX_SEQS, PREFIX_SEQS + self.max_rows))
        self._slots = threading.Condition()
        self._prefixes: dict[str, tuple[list[int], int]] = {}  # direction -> (ids, seq id)
        weakref.finalize(self, _free_native, lc, self.ctx, self.model, self._native_batches())

    def _attach_vocab(
        self, gguf: str | Path, output_vocab: CutVocabulary | None, screen: ScreenedFile | None
    ) -> str | Path:
        """The file to load: with a cut head, the cut file (decode steps score its tokens) and
        the full vocabulary's rows kept for prefills (``_decode``); with a screened head, the
        screened file and its exact re-check (``_choose``)."""
        self.output_vocab = output_vocab
        self.screen = None if screen is None else HeadScreen(screen)
        if screen is not None:
            if output_vocab is not None:
                raise ConfigError("head_screen and output_languages cannot be combined")
            return screen.path
        if output_vocab is None:
            return gguf
        if self.copy_guard is not None:  # its bans are full-vocabulary ids
            raise ConfigError("copy_guard and output_languages cannot be combined")
        self._to_full: np.ndarray = output_vocab.keep
        self._to_cut: np.ndarray = output_vocab.to_cut
        self._full_rows = FullEmbeddings(output_vocab.source, output_vocab.embedding)
        return output_vocab.path

    def _native_batches(self) -> list[Any]:
        """llama.cpp batches: of token ids, and (with a cut head) of embedding rows."""
        lc = self.llama_cpp
        self._batch = lc.llama_batch_init(self.n_batch, 0, 1)
        self._embd_batch = None
        if self.output_vocab is not None:
            self._embd_batch = lc.llama_batch_init(self.n_batch, self.n_embd, 1)
            return [self._batch, self._embd_batch]
        return [self._batch]

    def _open_context(self, max_rows: int, threads: int, capture: bool) -> Any:
        lc = self.llama_cpp
        cparams = lc.llama_context_default_params()
        cparams.n_ctx = self.n_ctx
        cparams.n_batch = self.n_batch
        cparams.n_ubatch = self.n_batch  # one ubatch per decode: captured rows keep batch order
        cparams.n_seq_max = max_rows + PREFIX_SEQS
        cparams.n_outputs_max = max_rows + PREFIX_SEQS  # one token per row, never more
        cparams.n_threads = cparams.n_threads_batch = threads
        # prefix cells shared between sequences; the price: every row's attention runs over
        # every row's cells (masked), so long rows slow their neighbours. One stream per
        # sequence (kv_unified false) splits each decode into per-stream ubatches, which the
        # feature capture's row order does not survive (tried: llama.cpp aborts on the read)
        cparams.kv_unified = True
        cparams.swa_full = True  # copied prefix cells must outlive the sliding window's pruning
        cparams.no_perf = True
        cparams.cb_eval = self._callback if capture else lc.ggml_backend_sched_eval_callback()
        cparams.cb_eval_user_data = None
        ctx = lc.llama_init_from_model(self.model, cparams)
        if not ctx:
            raise BackendError("llama.cpp could not create a context (n_ctx or max_rows too big?)")
        return ctx

    # -- settings -------------------------------------------------------------------------
    def set_threads(self, threads: int) -> None:
        with self.lock:
            self.threads = int(threads)
            self.llama_cpp.llama_set_n_threads(self.ctx, self.threads, self.threads)

    # -- the eval callback (feature capture) ----------------------------------------------
    def _on_tensor(self, tensor: int, ask: bool, _user: Any) -> bool:
        want = self._capture["want"]
        if not want:
            return False
        name = self._reader.name(tensor)
        if name not in want:
            return False
        if not ask:
            self._capture["out"][name] = self._reader.rows(tensor, self.n_embd, want[name])
        return True

    @staticmethod
    def tensor_name(layer: int, num_layers: int) -> bytes:
        """llama.cpp's name for features.py's ``layer`` (0 = scaled embeddings, L = final
        norm, else the output of block ``layer - 1``)."""
        if layer == 0:
            return b"inp_scaled"
        if layer == num_layers:
            return FINAL_NORM
        return f"l_out-{layer - 1}".encode()

    # -- low-level batch ------------------------------------------------------------------
    def _full_id(self, token: int) -> int:
        return token if self.output_vocab is None else int(self._to_full[token])

    def _decode(
        self, items: list[tuple[int, int, int, bool]], capture: dict[bytes, list[int]] | None = None
    ) -> dict[bytes, np.ndarray]:
        """One ``llama_decode`` of (token, position, seq, wants logits) items (full-vocabulary
        ids; with a cut head, a batch holding any cut token goes in as embedding rows); the rows
        of the tensors named in ``capture`` (and, with a screened head, every output's final
        norm) from the same pass."""
        want = dict(capture or {})
        outputs = sum(1 for *_, logits in items if logits)
        if self.screen is not None and outputs:
            want[FINAL_NORM] = list(range(outputs))
        b = self._batch
        tokens = [token for token, *_ in items]
        if self.output_vocab is not None:
            table = self._to_cut
            cut = [int(table[t]) if t < len(table) else -1 for t in tokens]
            if min(cut) < 0:
                b = self._embd_batch
                rows = np.ascontiguousarray(self._full_rows.rows(tokens), dtype=np.float32)
                ctypes.memmove(b.embd, rows.ctypes.data, rows.nbytes)
            tokens = cut
        for k, (token, (_, pos, seq, logits)) in enumerate(zip(tokens, items, strict=True)):
            if b is self._batch:
                b.token[k] = token
            b.pos[k] = pos
            b.n_seq_id[k] = 1
            b.seq_id[k][0] = seq
            b.logits[k] = 1 if logits else 0
        b.n_tokens = len(items)
        self._capture.update(want=want, out={})
        try:
            rc = self.llama_cpp.llama_decode(self.ctx, b)
        finally:
            self._capture["want"] = {}
        if rc != 0:
            raise BackendError(
                f"llama_decode failed ({rc}; 1 = no room in the KV cache of {self.n_ctx} cells)"
            )
        missing = set(want) - set(self._capture["out"])
        if missing:
            names = ", ".join(sorted(n.decode() for n in missing))
            raise BackendError(f"llama.cpp did not compute {names} in this pass")
        return self._capture["out"]

    def _logits(self, index: int) -> np.ndarray:
        ptr = self.llama_cpp.llama_get_logits_ith(self.ctx, index)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))

    def _logit_rows(self, indices: Sequence[int]) -> np.ndarray:
        """The logits of the outputs at batch ``indices`` as one (rows, vocabulary) array: a view
        where llama.cpp holds them one after the other (it does for a step's rows), else a copy."""
        ptrs = [self.llama_cpp.llama_get_logits_ith(self.ctx, i) for i in indices]
        starts = [ctypes.cast(p, ctypes.c_void_p).value or 0 for p in ptrs]
        if all(b - a == 4 * self.n_vocab for a, b in zip(starts, starts[1:])):
            return np.ctypeslib.as_array(ptrs[0], shape=(len(ptrs), self.n_vocab))
        return np.stack([np.ctypeslib.as_array(p, shape=(self.n_vocab,)) for p in ptrs])

    def _choose(self, indices: Sequence[int], captured: dict[bytes, np.ndarray]) -> list[int]:
        """The greedy token of each output at batch ``indices`` (full-vocabulary ids); with a
        screened head, re-checked exactly (``screened_head``)."""
        if self.screen is not None:
            return self.screen.choose(self._logit_rows(indices), captured[FINAL_NORM])
        return [self._full_id(int(self._logits(i).argmax())) for i in indices]

    def _unbanned(self, index: int, token: int, banned: set[int], captured: dict) -> int:
        """``token``, or where the copy guard bans it, the best token it does not ban."""
        if token not in banned:
            return token
        logits = self._logits(index).copy()
        logits[list(banned)] = -np.inf
        if self.screen is not None:
            return self.screen.choose(logits[None], captured[FINAL_NORM][index : index + 1])[0]
        return int(logits.argmax())

    def _take_seqs(self, n: int) -> list[int]:
        """``n`` free sequence ids, all at once; waits (up to ``SLOT_WAIT_S``) while other
        threads hold them, e.g. rows queued in a server's decoder that free theirs as they
        finish."""
        if n > self.max_rows:
            raise ConfigError(f"{n} prompts at once, but max_rows is {self.max_rows}")
        with self._slots:
            if not self._slots.wait_for(lambda: len(self._free_seqs) >= n, SLOT_WAIT_S):
                raise BackendError(
                    f"llama.cpp: {n} sequence slots not free after {SLOT_WAIT_S:.0f} s "
                    f"(max_rows {self.max_rows}: decode or drop earlier prefill states)"
                )
            taken, self._free_seqs = self._free_seqs[:n], self._free_seqs[n:]
        return taken

    def release(self, seq: int) -> None:
        with self.lock:
            self.llama_cpp.llama_memory_seq_rm(self.mem, seq, -1, -1)
        with self._slots:
            if seq not in self._free_seqs:
                self._free_seqs.append(seq)
                self._slots.notify_all()

    # -- the shared prompt prefix ---------------------------------------------------------
    def _template_prefix(self, segment: Segment) -> list[int]:
        probes = [
            Segment(id=f"probe{k}", direction=segment.direction, source=text)
            for k, text in enumerate(("Q", "7 z"))
        ]
        a, b = encode_prompts(self.template, probes, self.tokenizer)
        return a[: common_prefix_length([a, b])]

    def _prefix_for(self, segment: Segment) -> tuple[list[int], int] | None:
        if not self.prefix_cache:
            return None
        entry = self._prefixes.pop(segment.direction, None)
        if entry is None:
            ids = self._template_prefix(segment)
            if len(ids) < MIN_SHARED_PREFIX:
                return None
            if len(self._prefixes) >= PREFIX_SEQS:  # the least recently used direction leaves
                old = next(iter(self._prefixes))
                _, seq = self._prefixes.pop(old)
                self.llama_cpp.llama_memory_seq_rm(self.mem, seq, -1, -1)
            used = {s for _, s in self._prefixes.values()}
            seq = next(s for s in range(PREFIX_SEQS) if s not in used)
            for first in range(0, len(ids), self.n_batch):
                part = ids[first : first + self.n_batch]
                self._decode([(t, first + k, seq, False) for k, t in enumerate(part)])
            entry = (ids, seq)
        self._prefixes[segment.direction] = entry  # most recently used last
        return entry

    # -- prefill --------------------------------------------------------------------------
    def prefill(self, segments: Sequence[Segment], *, layer: int | None = None) -> Any:
        """Prefill every prompt into its own sequence; features at ``layer`` (None: the default
        layer) from the same forward pass."""
        wanted = self.default_layer if layer is None else int(layer)
        if not 0 <= wanted <= self.num_layers:
            raise ConfigError(f"layer {wanted} is outside 0..{self.num_layers}")
        return self._prefill(list(segments), wanted)

    def _prefill(self, segs: list[Segment], layer: int | None) -> LlamaPrefillState:
        if self.output_vocab is not None:
            for direction in {seg.direction for seg in segs}:
                self.output_vocab.check_direction(direction)
        encoded = encode_prompts(self.template, segs, self.tokenizer) if segs else []
        state = LlamaPrefillState(
            segments=segs,
            features=np.zeros((len(segs), self.n_embd if layer is not None else 0), np.float32),
            layer=layer,
            prefill_s=0.0,
            prompt_tokens=sum(len(e) for e in encoded),
            reused_tokens=0,
            seqs=[-1] * len(segs),
            positions=[0] * len(segs),
            first_tokens=[0] * len(segs),
            owner=id(self),
        )
        start = time.perf_counter()
        order = sorted(range(len(segs)), key=lambda i: segs[i].direction)
        try:
            state.seqs[:] = self._take_seqs(len(segs))
            weakref.finalize(state, _release_untaken, weakref.ref(self), state.seqs, state.taken)
            with self.lock:
                groups: list[list[int]] = []
                for i in order:  # one direction per group, at most n_batch tokens per decode
                    if (
                        groups
                        and segs[groups[-1][0]].direction == segs[i].direction
                        and sum(len(encoded[j]) for j in groups[-1]) + len(encoded[i])
                        <= self.n_batch
                    ):
                        groups[-1].append(i)
                    else:
                        groups.append([i])
                for rows in groups:
                    self._prefill_group(state, rows, encoded, layer)
        except BaseException:
            for seq in state.seqs:
                if seq >= 0:
                    self.release(seq)
            state.seqs[:] = [-1] * len(segs)
            raise
        state.prefill_s = time.perf_counter() - start
        return state

    def _prefill_group(
        self, state: LlamaPrefillState, rows: list[int], encoded: list[list[int]], layer: int | None
    ) -> None:
        lc = self.llama_cpp
        prefix = self._prefix_for(state.segments[rows[0]])
        items: list[tuple[int, int, int, bool]] = []
        last_index: list[int] = []
        for i in rows:
            ids, seq, shared = encoded[i], state.seqs[i], 0
            if prefix is not None:
                limit = min(len(prefix[0]), len(ids) - 1)
                while shared < limit and ids[shared] == prefix[0][shared]:
                    shared += 1
                if shared < MIN_SHARED_PREFIX:
                    shared = 0
                else:
                    lc.llama_memory_seq_cp(self.mem, prefix[1], seq, 0, shared)
            state.reused_tokens += shared
            if len(items) + len(ids) - shared > self.n_batch:
                raise ConfigError(f"a prompt of {len(ids)} tokens exceeds n_batch {self.n_batch}")
            items.extend((t, shared + k, seq, False) for k, t in enumerate(ids[shared:]))
            items[-1] = (*items[-1][:3], True)
            last_index.append(len(items) - 1)
            state.positions[i] = len(ids)
        capture = {}
        if layer is not None:
            name = self.tensor_name(layer, self.num_layers)
            # the last block keeps only the rows with outputs (one per prompt, in batch order)
            capture[name] = list(range(len(rows))) if name == FINAL_NORM else last_index
        captured = self._decode(items, capture)
        if layer is not None:
            state.features[np.asarray(rows)] = captured[name]
        for i, token in zip(rows, self._choose(last_index, captured), strict=True):
            state.first_tokens[i] = token

    # -- decoding -------------------------------------------------------------------------
    def decode_batch(self) -> LlamaDecodeBatch:
        return LlamaDecodeBatch(self)

    def generate_from(self, state: LlamaPrefillState, indices: Sequence[int]) -> list[str]:
        """Greedy continuation of the prefilled segments at ``indices`` (each at most once)."""
        indices = [int(i) for i in indices]
        batch = self.decode_batch()
        stats = GenerationStats(segments=len(indices))
        stats.prompt_tokens = sum(
            len(ids)
            for ids in encode_prompts(
                self.template, [state.segments[i] for i in indices], self.tokenizer
            )
        )
        start = time.perf_counter()
        batch.join(state, indices, keys=list(range(len(indices))))
        texts = [""] * len(indices)
        while len(batch):
            for slot, text, count in batch.step():
                texts[slot] = text
                stats.generated_tokens += count
        stats.decode_s = time.perf_counter() - start
        stats.batches = 1
        self.last_stats = stats
        return texts

    def translate(self, segments: Sequence[Segment]) -> list[str]:
        """Continuous batching over the whole list: up to ``batch_size`` rows decode together,
        and finished rows are replaced by newly prefilled ones (longest prompts first)."""
        out = [""] * len(segments)
        for i, text in self.translate_iter(segments):
            out[i] = text
        return out

    def translate_iter(self, segments: Sequence[Segment]) -> Iterator[tuple[int, str]]:
        """``translate``, yielding ``(index, text)`` as each row finishes, so a caller can store
        results as they come while the batch stays full (``last_stats`` grows as it goes)."""
        segs = list(segments)
        stats = GenerationStats(segments=len(segs))
        self.last_stats = stats
        lengths = [len(e) for e in encode_prompts(self.template, segs, self.tokenizer)]
        pending = sorted(range(len(segs)), key=lambda i: (segs[i].direction, -lengths[i]))
        batch = self.decode_batch()
        refill = max(1, self.batch_size // 4)  # prefill a few rows at once, not one by one
        try:
            while pending or len(batch):
                free = self.batch_size - len(batch)
                if pending and (free >= refill or not len(batch)):
                    rows, pending = pending[:free], pending[free:]
                    t0 = time.perf_counter()
                    state = self._prefill([segs[i] for i in rows], None)
                    stats.prefill_s += time.perf_counter() - t0
                    stats.prompt_tokens += state.prompt_tokens
                    stats.reused_prompt_tokens += state.reused_tokens
                    stats.batches += 1
                    batch.join(state, range(len(rows)), keys=rows)
                t0 = time.perf_counter()
                done = batch.step()
                stats.decode_s += time.perf_counter() - t0
                for i, text, count in done:
                    stats.generated_tokens += count
                    yield i, text
        finally:
            batch.clear()  # a caller that stops early frees the rows still decoding

    def has_stop(self, ids: list[int], stops: list[str]) -> bool:
        return cut_at_stop(self.tokenizer.decode(ids, skip_special_tokens=True), stops)[1]


class LlamaDecodeBatch:
    """``generation.DecodeBatch`` for llama.cpp: every row is its own sequence, so rows join
    and leave at any step without padding; one ``llama_decode`` per step serves them all."""

    def __init__(self, generator: LlamaGenerator) -> None:
        self.gen = generator
        self.rows: list[_Row] = []
        self.steps = 0

    def __len__(self) -> int:
        return len(self.rows)

    def can_join_many(self, rows: Sequence[tuple[Any, int]]) -> bool:
        return True  # no padding, no shared window: any rows fit

    def can_join(self, state: Any, indices: Sequence[int]) -> bool:
        return True

    def join(self, state: LlamaPrefillState, indices: Sequence[int], keys: Sequence[Any]) -> None:
        gen = self.gen
        if state.owner != id(gen):
            raise ConfigError("this prefill state was made by another model or translator")
        if len(keys) != len(indices):
            raise ValueError(f"{len(keys)} keys for {len(indices)} rows")
        for key, i in zip(keys, indices, strict=True):
            i = int(i)
            if not 0 <= i < len(state.segments):
                raise IndexError(f"index {i} is outside the prefilled batch")
            if i in state.taken or state.seqs[i] < 0:
                raise ConfigError(f"row {i} of this prefill state was already decoded")
            state.taken.add(i)
            segment = state.segments[i]
            self.rows.append(
                _Row(
                    key=key,
                    seq=state.seqs[i],
                    pos=state.positions[i],
                    token=state.first_tokens[i],
                    limit=gen.limit_for(segment),
                    stops=gen.stops_for(segment),
                    bans=None if gen.copy_guard is None else gen.copy_guard.bans(segment),
                )
            )

    def step(self) -> list[tuple[Any, str, int]]:
        """Take every row's pending token; rows that finish leave, the others are fed it."""
        gen = self.gen
        done: list[tuple[Any, str, int]] = []
        still: list[_Row] = []
        for row in self.rows:
            finished = row.token in gen.eos_ids
            if not finished:
                row.generated.append(row.token)
                finished = len(row.generated) >= row.limit or bool(
                    row.stops and gen.has_stop(row.generated, row.stops)
                )
            if finished:
                text = gen.tokenizer.decode(row.generated, skip_special_tokens=True)
                done.append((row.key, cut_at_stop(text, row.stops)[0], len(row.generated)))
                gen.release(row.seq)
            else:
                still.append(row)
        self.rows = still
        if still:
            with gen.lock:
                captured = gen._decode([(r.token, r.pos, r.seq, True) for r in still])
                tokens = gen._choose(range(len(still)), captured)
                for k, (row, token) in enumerate(zip(still, tokens, strict=True)):
                    if row.bans:
                        banned = gen.copy_guard.banned(row.bans, row.generated)  # type: ignore[union-attr]
                        token = gen._unbanned(k, token, banned, captured)
                    row.token = token
                    row.pos += 1
            self.steps += 1
        return done

    def clear(self) -> None:
        """Drop every row (their sequences are freed)."""
        for row in self.rows:
            self.gen.release(row.seq)
        self.rows = []


def _release_untaken(generator_ref: Any, seqs: list[int], taken: set[int]) -> None:
    """A dropped prefill state frees the sequences no decode batch took (those free their own)."""
    generator = generator_ref()
    if generator is None:
        return
    for i, seq in enumerate(seqs):
        if seq >= 0 and i not in taken:
            generator.release(seq)


def _free_native(lc: Any, ctx: Any, model: Any, batches: list[Any]) -> None:
    try:
        for batch in batches:
            lc.llama_batch_free(batch)
        lc.llama_free(ctx)
        lc.llama_model_free(model)
    except Exception:  # interpreter shutdown: the process frees everything anyway
        pass
