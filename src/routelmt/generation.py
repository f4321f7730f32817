"""Translation with an in-process causal LM, whose prefill is shared with the router.

Decoding is a plain loop over the model's KV cache (no ``generate()`` for greedy), because the
in-model router reads the hidden state of the very prefill that starts decoding: ``prefill``
runs one forward over the prompts and keeps the cache, the next-token logits and the feature
row of each prompt; ``generate_from`` continues greedy decoding for the chosen rows only. A
segment that stays on the small model therefore costs one prefill, not two.

``translate`` is ``prefill`` + ``generate_from`` on every row, chunk by chunk, so both paths run
the same code. Prompts are left-padded (position ids from the attention mask, as in
``routelmt.features``); a row stops at EOS, at a stop string (the few-shot template's next
example, or a newline when the source is one line) or at its own length limit (a multiple of the
source length), and finished rows leave the batch at once, so one long row does not make the
others decode past their end.

Speed (decoding a small model on a CPU is bound by reading its weights): the prompt prefix that
a template puts before every source of a direction (few-shot examples, instructions) is
prefilled once and its KV cache reused by every later prompt, so a prompt costs only its own
tail (``prefix_cache``); the next token comes from ``lmhead.GreedyHead``, by default the fp32
arg-max found through an int8 copy of the head (``head="exact"``). ``prefix_cache=False,
head="full"`` is the plain path (every prompt in full, the fp32 head), kept for comparison.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from routelmt.errors import ConfigError
from routelmt.features import MIN_SHARED_PREFIX, resolve_layers
from routelmt.lm import common_prefix_length, decoder_body, num_layers_of, pad_left
from routelmt.lmhead import GreedyHead
from routelmt.locks import FairLock
from routelmt.prompts import FewShotTemplate, PromptTemplate, encode_prompts
from routelmt.records import Segment

log = logging.getLogger(__name__)

DEFAULT_MAX_NEW_TOKENS = 512
DEFAULT_LENGTH_RATIO = 2.0
LENGTH_SLACK = 16  # new tokens allowed beyond ratio x source tokens (short sources, punctuation)


@dataclass
class GenerationStats:
    """Token counts and seconds of the last call, for throughput reports."""

    segments: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    prefill_s: float = 0.0
    decode_s: float = 0.0
    batches: int = 0
    reused_prompt_tokens: int = 0  # of prompt_tokens, read from the cached prefix
    # ``routelmt.repair``: outputs flagged, those replaced by their second decode, and what the
    # checks and that decode cost (its tokens are in ``generated_tokens`` too: small-model cost)
    repair_flagged: int = 0
    repair_fixed: int = 0
    repair_s: float = 0.0
    repair_generated_tokens: int = 0

    @property
    def seconds(self) -> float:
        return self.prefill_s + self.decode_s + self.repair_s

    def add_repair(self, report: Any) -> None:
        """Count one ``repair.RepairReport`` as this call's small-model work."""
        self.repair_flagged += sum(report.flagged.values())
        self.repair_fixed += report.repaired
        self.repair_s += report.seconds
        self.repair_generated_tokens += report.generated_tokens
        self.generated_tokens += report.generated_tokens

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "seconds": self.seconds}


@dataclass
class _Chunk:
    """One prefilled batch: its KV cache and what decoding needs to continue every row."""

    rows: list[int]  # positions of these rows in the prefilled segment list
    cache: Any
    mask: Any  # (B, T) attention mask of the prompts (left padding = 0)
    next_pos: Any  # (B,) position id of each row's first new token
    last: Any  # (B, H) final hidden state at the end of each prompt (the first new token's)
    prompt_tokens: list[int]
    reused: int = 0  # prompt tokens per row taken from the cached prefix


@dataclass
class HFPrefillState:
    """What ``prefill`` returns (``hybrid.PrefillState``): features plus the decoder state.

    Holds the KV cache until it is dropped; ``generate_from`` never changes it, so rows may be
    decoded in several calls (the hybrid translator retries a failed batch row by row).
    """

    segments: list[Segment]
    features: np.ndarray  # (n, hidden) last-token state at ``layer``; (n, 0) when not asked
    layer: int | None
    prefill_s: float
    prompt_tokens: int
    chunks: list[_Chunk] = field(repr=False, default_factory=list)
    where: list[tuple[int, int]] = field(repr=False, default_factory=list)  # -> (chunk, row)
    owner: int = 0  # id() of the generator that made it


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    for value in (
        getattr(getattr(model, "generation_config", None), "eos_token_id", None),
        getattr(model.config, "eos_token_id", None),
        tokenizer.eos_token_id,
    ):
        if value is None:
            continue
        ids.update(int(v) for v in (value if isinstance(value, list | tuple) else [value]))
    return ids


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """The translation before the first stop string (leading whitespace is not a stop).

    Returns (text, whether a stop string was found).
    """
    lead = len(text) - len(text.lstrip())
    cut = min((p for p in (text.find(s, lead) for s in stops if s) if p >= 0), default=-1)
    if cut < 0:
        return text.strip(), False
    return text[:cut].strip(), True


class SegmentLimits:
    """The stop rule and length cap of one segment, shared by every generator (the HF path and
    llama.cpp must stop at the same place for their outputs to be comparable)."""

    template: Any
    tokenizer: Any
    stop_at_newline: bool
    max_new_tokens: int
    max_length_ratio: float

    def stops_for(self, segment: Segment) -> list[str]:
        stops = list(self.template.stop_strings(segment.direction))
        if self.stop_at_newline and "\n" not in segment.source.strip():
            stops.append("\n")
        return stops

    def limit_for(self, segment: Segment) -> int:
        """New tokens allowed for this segment (relative to its source length, capped)."""
        n = len(self.tokenizer(segment.source.strip(), add_special_tokens=False)["input_ids"])
        return max(1, min(self.max_new_tokens, math.ceil(self.max_length_ratio * n) + LENGTH_SLACK))


class LMGenerator(SegmentLimits):
    """Batched greedy (or beam) translation with one causal LM and one prompt template.

    ``max_new_tokens`` caps every row; each row's own limit is ``ceil(max_length_ratio x source
    tokens) + 16`` under that cap. ``stop_at_newline`` (default: for few-shot templates) ends a
    one-line source's translation at the first newline, where a base model starts another line.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        template: PromptTemplate,
        *,
        batch_size: int = 8,
        max_new_tokens: int | None = None,
        max_length_ratio: float = DEFAULT_LENGTH_RATIO,
        num_beams: int = 1,
        stop_at_newline: bool | None = None,
        default_layer: int | None = None,
        head: str = "exact",
        prefix_cache: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        if num_beams < 1:
            raise ConfigError(f"num_beams must be at least 1, got {num_beams}")
        if max_new_tokens is not None and max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        if not max_length_ratio > 0:
            raise ConfigError(f"max_length_ratio must be positive, got {max_length_ratio}")
        self.model = model
        self.tokenizer = tokenizer
        self.template = template
        self.batch_size = int(batch_size)
        self.max_new_tokens = int(max_new_tokens or DEFAULT_MAX_NEW_TOKENS)
        self.max_length_ratio = float(max_length_ratio)
        self.num_beams = int(num_beams)
        self.stop_at_newline = (
            isinstance(template, FewShotTemplate) if stop_at_newline is None else stop_at_newline
        )
        self.num_layers = num_layers_of(model)
        self.default_layer = self.num_layers if default_layer is None else default_layer
        self.eos_ids = _eos_ids(model, tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.device = next(model.parameters()).device
        self.last_stats = GenerationStats()
        self.body = decoder_body(model)
        output = model.get_output_embeddings()
        if output is None or getattr(output, "bias", None) is not None:
            raise ConfigError(f"{type(model).__name__} has no bias-free linear LM head")
        self.head = GreedyHead(output.weight, head)
        self.prefix_cache = bool(prefix_cache)
        self._prefixes: dict[str, tuple[list[int], Any]] = {}  # direction -> (ids, KV cache)
        # one forward at a time: a prefill's feature hooks would also fire on a concurrent
        # decode step (a server prefills new requests while its running batch decodes); taken
        # in arrival order so the decode loop and the prefills take turns
        self.lock = FairLock()

    # -- prefill --------------------------------------------------------------------------
    def prefill(self, segments: Sequence[Segment], *, layer: int | None = None) -> HFPrefillState:
        """One forward per chunk of prompts: features at ``layer`` (None: the default layer, the
        final-norm output) and the KV cache that ``generate_from`` continues from."""
        wanted = self.default_layer if layer is None else layer
        return self._prefill(segments, resolve_layers([wanted], self.num_layers)[0])

    def _prefill(self, segments: Sequence[Segment], layer: int | None) -> HFPrefillState:
        segs = list(segments)
        encoded = encode_prompts(self.template, segs, self.tokenizer) if segs else []
        hidden = int(self.model.config.get_text_config().hidden_size)
        features = np.zeros((len(segs), hidden if layer is not None else 0), dtype=np.float32)
        # one direction per chunk (one shared prefix), longest first within it (little padding)
        order = sorted(range(len(segs)), key=lambda i: (segs[i].direction, -len(encoded[i])))
        state = HFPrefillState(
            segments=segs,
            features=features,
            layer=layer,
            prefill_s=0.0,
            prompt_tokens=sum(len(e) for e in encoded),
            where=[(0, 0)] * len(segs),
            owner=id(self),
        )
        start = time.perf_counter()
        chunks: list[list[int]] = []
        for i in order:
            if (
                chunks
                and len(chunks[-1]) < self.batch_size
                and segs[chunks[-1][0]].direction == segs[i].direction
            ):
                chunks[-1].append(i)
            else:
                chunks.append([i])
        for rows in chunks:
            with self.lock:
                self._prefill_rows(state, rows, segs, encoded, layer, features)
        state.prefill_s = time.perf_counter() - start
        return state

    def _prefill_rows(  # one chunk: one direction, at most batch_size rows
        self,
        state: HFPrefillState,
        rows: list[int],
        segs: list[Segment],
        encoded: list[list[int]],
        layer: int | None,
        features: np.ndarray,
    ) -> None:
        prefix = self._prefix_for(
            segs[rows[0]],
            [encoded[i] for i in rows],
            max(self.limit_for(segs[i]) for i in rows),
        )
        chunk, pooled = self._prefill_chunk([encoded[i] for i in rows], layer, prefix)
        chunk.rows = rows
        for r, i in enumerate(rows):
            state.where[i] = (len(state.chunks), r)
        if pooled is not None:
            features[np.asarray(rows)] = pooled
        state.chunks.append(chunk)

    # -- the shared prompt prefix ---------------------------------------------------------
    def _template_prefix(self, segment: Segment) -> list[int]:
        """The tokens this template puts before every source of the segment's direction."""
        probes = [
            Segment(id=f"probe{k}", direction=segment.direction, source=text)
            for k, text in enumerate(("Q", "7 z"))
        ]
        a, b = encode_prompts(self.template, probes, self.tokenizer)
        return a[: common_prefix_length([a, b])]

    def _prefix_for(
        self, segment: Segment, batch: list[list[int]], new_tokens: int
    ) -> tuple[int, Any] | None:
        """(length, KV cache of batch size 1) of the cached prefix these prompts start with.

        None when reuse is off, the prefix is too short, or a row with ``new_tokens`` more
        could outgrow a sliding attention window (the padding between prefix and tail would
        count towards it, unlike left padding).
        """
        if not self.prefix_cache:
            return None
        entry = self._prefixes.get(segment.direction)
        if entry is None:
            ids = self._template_prefix(segment)
            entry = (ids, self._prefill_prefix(ids) if len(ids) >= MIN_SHARED_PREFIX else None)
            if len(self._prefixes) >= 64:  # directions are few; bound the memory anyway
                self._prefixes.pop(next(iter(self._prefixes)))
            self._prefixes[segment.direction] = entry
        ids, cache = entry
        if cache is None:
            return None
        shared = len(ids)
        for row in batch:  # tokenisation may merge the prefix's last token with the source
            limit = min(shared, len(row) - 1)
            k = 0
            while k < limit and row[k] == ids[k]:
                k += 1
            shared = k
        if shared < MIN_SHARED_PREFIX:
            return None
        window = getattr(self.model.config.get_text_config(), "sliding_window", None) or 0
        longest = max(len(row) for row in batch) - shared
        if window and shared + longest + new_tokens >= window:
            return None
        if shared < len(ids):
            cache = copy.deepcopy(cache)
            _crop_cache(cache, shared)
        return shared, cache

    def _prefill_prefix(self, ids: list[int]) -> Any:
        import torch
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        tensor = torch.tensor([ids], dtype=torch.long, device=self.device)
        with torch.inference_mode():
            self.body(
                input_ids=tensor,
                attention_mask=torch.ones_like(tensor),
                position_ids=torch.arange(len(ids), device=self.device)[None, :],
                cache=cache,
                use_cache=True,
            )
        return cache

    def _prefill_chunk(
        self, batch: list[list[int]], layer: int | None, prefix: tuple[int, Any] | None = None
    ) -> tuple[_Chunk, Any]:
        """Prefill left-padded prompts, or (with ``prefix``) only their tails after the cached
        prefix: mask = prefix, padding, tail; positions continue from the prefix."""
        import torch

        shared = prefix[0] if prefix is not None else 0
        input_ids, mask = pad_left([ids[shared:] for ids in batch], self.pad_id)
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        position_ids = shared + (mask.cumsum(-1) - 1).clamp(min=0)
        cache = None
        if prefix is not None:
            cache = copy.deepcopy(prefix[1])
            if len(batch) > 1:
                cache.batch_repeat_interleave(len(batch))
            mask = torch.cat([mask.new_ones((len(batch), shared)), mask], dim=1)
        else:
            from transformers import DynamicCache

            cache = DynamicCache(config=self.model.config)
        captured: dict[str, Any] = {}
        handles = self._capture_hooks(layer, captured)
        try:
            with torch.inference_mode():
                out = self.body(
                    input_ids=input_ids,
                    attention_mask=mask,
                    position_ids=position_ids,
                    cache=cache,
                    use_cache=True,
                )
        finally:
            for handle in handles:
                handle.remove()
        pooled = None
        if layer is not None:
            pooled = captured["state"].to(torch.float32).cpu().numpy()
        chunk = _Chunk(
            rows=[],
            cache=cache,
            mask=mask,
            next_pos=mask.sum(-1),
            last=out.last_hidden_state[:, -1, :].clone(),
            prompt_tokens=[len(ids) for ids in batch],
            reused=shared,
        )
        return chunk, pooled

    def _capture_hooks(self, layer: int | None, captured: dict[str, Any]) -> list[Any]:
        """Hooks that keep the last position's state of ``layer`` (features.py's numbering)."""
        if layer is None:
            return []
        body = decoder_body(self.model)

        def keep(hidden: Any) -> None:
            # left padding: the last column is every row's last prompt token
            captured["state"] = hidden[:, -1, :].float().clone()

        if layer == 0:

            def pre_hook(_module: Any, args: tuple, kwargs: dict) -> None:
                keep(args[0] if args else kwargs["hidden_states"])

            return [body.layers[0].register_forward_pre_hook(pre_hook, with_kwargs=True)]
        if layer < self.num_layers:
            module = body.layers[layer - 1]
        else:
            module = getattr(body, "norm", None)
            if module is None:
                raise ConfigError(f"cannot find the final norm of {type(body).__name__}")

        def hook(_module: Any, _args: Any, output: Any) -> None:
            keep(output[0] if isinstance(output, tuple | list) else output)

        return [module.register_forward_hook(hook)]

    # -- decoding -------------------------------------------------------------------------
    def generate_from(self, state: HFPrefillState, indices: Sequence[int]) -> list[str]:
        """Greedy continuation of the prefilled segments at ``indices`` (in that order)."""
        if state.owner != id(self):
            raise ConfigError("this prefill state was made by another model or translator")
        indices = [int(i) for i in indices]
        n = len(state.segments)
        bad = [i for i in indices if not 0 <= i < n]
        if bad:
            raise IndexError(f"indices {bad} are outside the prefilled batch of {n}")
        stats = GenerationStats(segments=len(indices))
        for i in indices:
            c, r = state.where[i]
            stats.prompt_tokens += state.chunks[c].prompt_tokens[r]
            stats.reused_prompt_tokens += state.chunks[c].reused
        out: dict[int, str] = {}
        start = time.perf_counter()
        if self.num_beams > 1:  # beam search re-runs the prompts (the cache holds one hypothesis)
            stats.prompt_tokens = 0  # counted by _beam, which prefills again
            texts = self._beam([state.segments[i] for i in indices], stats)
            self.last_stats = stats
            return texts
        by_chunk: dict[int, list[int]] = {}
        for i in indices:
            by_chunk.setdefault(state.where[i][0], []).append(i)
        for c, members in by_chunk.items():
            chunk = state.chunks[c]
            rows = [state.where[i][1] for i in members]
            texts, generated = self._decode(chunk, rows, [state.segments[i] for i in members])
            out.update(zip(members, texts, strict=True))
            stats.generated_tokens += generated
            stats.batches += 1
        stats.decode_s = time.perf_counter() - start
        self.last_stats = stats
        return [out[i] for i in indices]

    def _decode(
        self, chunk: _Chunk, rows: list[int], segments: list[Segment]
    ) -> tuple[list[str], int]:
        batch = DecodeBatch(self)
        batch._add(chunk, rows, segments, list(range(len(rows))))
        texts: list[str] = [""] * len(rows)
        generated = 0
        while len(batch):
            for slot, text, count in batch.step():
                texts[slot] = text
                generated += count
        return texts, generated

    def _has_stop(self, ids: list[int], stops: list[str]) -> bool:
        return cut_at_stop(self.tokenizer.decode(ids, skip_special_tokens=True), stops)[1]

    # -- whole translations ---------------------------------------------------------------
    def translate(self, segments: Sequence[Segment]) -> list[str]:
        """Translate in length-sorted chunks of ``batch_size`` (prefill, then decode each)."""
        segs = list(segments)
        stats = GenerationStats(segments=len(segs))
        out: list[str] = [""] * len(segs)
        if not segs:
            self.last_stats = stats
            return out
        if self.num_beams > 1:
            out = self._beam(segs, stats)
            self.last_stats = stats
            return out
        encoded_len = [len(ids) for ids in encode_prompts(self.template, segs, self.tokenizer)]
        order = sorted(range(len(segs)), key=lambda i: -encoded_len[i])
        for first in range(0, len(order), self.batch_size):
            rows = order[first : first + self.batch_size]
            t0 = time.perf_counter()
            state = self._prefill([segs[i] for i in rows], None)
            t1 = time.perf_counter()
            texts = self.generate_from(state, range(len(rows)))
            stats.decode_s += time.perf_counter() - t1
            stats.prefill_s += t1 - t0
            stats.prompt_tokens += state.prompt_tokens
            stats.reused_prompt_tokens += sum(c.reused * len(c.rows) for c in state.chunks)
            stats.generated_tokens += self.last_stats.generated_tokens
            stats.batches += 1
            for i, text in zip(rows, texts, strict=True):
                out[i] = text
        self.last_stats = stats
        return out

    def _beam(self, segs: list[Segment], stats: GenerationStats) -> list[str]:
        import torch
        from transformers import GenerationConfig

        encoded = encode_prompts(self.template, segs, self.tokenizer)
        order = sorted(range(len(segs)), key=lambda i: -len(encoded[i]))
        out: list[str] = [""] * len(segs)
        for first in range(0, len(order), self.batch_size):
            rows = order[first : first + self.batch_size]
            t0 = time.perf_counter()
            input_ids, mask = pad_left([encoded[i] for i in rows], self.pad_id)
            limits = [self.limit_for(segs[i]) for i in rows]
            stops = [self.stops_for(segs[i]) for i in rows]
            config = GenerationConfig(
                num_beams=self.num_beams,
                do_sample=False,
                max_new_tokens=max(limits),
                pad_token_id=self.pad_id,
                eos_token_id=sorted(self.eos_ids) or None,
                stop_strings=sorted({s for row in stops for s in row}) or None,
            )
            with torch.inference_mode():
                result = self.model.generate(
                    input_ids=input_ids.to(self.device),
                    attention_mask=mask.to(self.device),
                    generation_config=config,
                    tokenizer=self.tokenizer,
                )
            new = result[:, input_ids.shape[1] :].tolist()
            for i, ids, limit, stop in zip(rows, new, limits, stops, strict=True):
                ends = self.eos_ids | {self.pad_id}  # finished beams are padded after their end
                cut = next((k for k, t in enumerate(ids) if t in ends), len(ids))
                ids = ids[: min(cut, limit)]
                out[i] = cut_at_stop(self.tokenizer.decode(ids, skip_special_tokens=True), stop)[0]
                stats.generated_tokens += len(ids)
            stats.prompt_tokens += int(mask.sum())
            stats.decode_s += time.perf_counter() - t0
            stats.batches += 1
        return out


@dataclass
class _Row:
    key: Any  # the caller's handle for this row
    limit: int
    stops: list[str]
    generated: list[int] = field(default_factory=list)


class DecodeBatch:
    """Greedy decoding of a changing set of rows: rows join at any step, leave when done.

    Rows come from prefill states (any chunk, any prompt length): their KV caches are
    left-padded (masked) to a common length and stacked, so one forward per ``step()`` serves
    every row. This is the continuous batching a server needs: a short request's rows join
    the running batch at the next step and leave as soon as they finish, instead of waiting for
    a batch of long ones. ``LMGenerator.generate_from`` runs on it too (one chunk, then steps
    until empty), so both give the same tokens.
    """

    def __init__(self, generator: LMGenerator) -> None:
        self.gen = generator
        self.cache: Any = None
        self.mask: Any = None  # (B, T) 1 = a real token
        self.pos: Any = None  # (B,) position id of each row's next token
        self.last: Any = None  # (B, H) final hidden state from which the next token comes
        self.rows: list[_Row] = []
        self.steps = 0
        config = generator.model.config.get_text_config()
        self.window = int(getattr(config, "sliding_window", None) or 0)

    def __len__(self) -> int:
        return len(self.rows)

    def _fits(self, width: int, new_tokens: int) -> bool:
        # Padding shifts cache indices; a sliding window counts indices, not positions, so
        # rows are only padded, stacked or trimmed while they all stay inside the window.
        return not self.window or width + new_tokens + 1 < self.window

    def _room(self) -> int:
        return max((r.limit - len(r.generated) for r in self.rows), default=0)

    def can_join(self, state: HFPrefillState, indices: Sequence[int]) -> bool:
        """Whether these rows may join now (always, into an empty batch, from one chunk)."""
        return self.can_join_many([(state, int(i)) for i in indices])

    def can_join_many(self, rows: Sequence[tuple[HFPrefillState, int]]) -> bool:
        """``can_join`` for rows of several prefill states, joined together."""
        widths = {state.chunks[state.where[i][0]].mask.shape[1] for state, i in rows}
        if not self.rows and len(widths) <= 1 and len({id(s) for s, _ in rows}) <= 1:
            return True  # nothing to pad
        width = max([self.mask.shape[1] if self.rows else 0, *widths])
        need = max([self._room()] + [self.gen.limit_for(s.segments[i]) for s, i in rows])
        return self._fits(width, need)

    def join(self, state: HFPrefillState, indices: Sequence[int], keys: Sequence[Any]) -> None:
        """Add the prefilled segments at ``indices``; ``step()`` reports them by ``keys``.

        Raises ValueError when ``can_join`` is false (a row could outgrow a sliding window).
        """
        gen = self.gen
        if state.owner != id(gen):
            raise ConfigError("this prefill state was made by another model or translator")
        if gen.num_beams > 1:
            raise ConfigError("continuous batching is greedy; num_beams must be 1")
        if len(keys) != len(indices):
            raise ValueError(f"{len(keys)} keys for {len(indices)} rows")
        by_chunk: dict[int, list[int]] = {}
        for k, i in enumerate(indices):
            if not 0 <= int(i) < len(state.segments):
                raise IndexError(f"index {i} is outside the prefilled batch")
            by_chunk.setdefault(state.where[int(i)][0], []).append(k)
        if not self.can_join(state, [int(i) for i in indices]):
            raise ValueError("these rows could outgrow the sliding window: decode them alone")
        for c, members in by_chunk.items():
            self._add(
                state.chunks[c],
                [state.where[int(indices[k])][1] for k in members],
                [state.segments[int(indices[k])] for k in members],
                [keys[k] for k in members],
            )

    def _add(self, chunk: _Chunk, rows: list[int], segments: list[Segment], keys: list[Any]):
        import torch

        gen = self.gen
        keep = torch.tensor(rows, dtype=torch.long, device=gen.device)
        cache = _select_rows(chunk.cache, keep)
        mask, pos, last = chunk.mask[keep], chunk.next_pos[keep], chunk.last[keep]
        if self.cache is None or not self.rows:
            self.cache, self.mask, self.pos, self.last = cache, mask, pos, last
        else:  # join() checked that the padded rows stay inside any sliding window
            width = max(self.mask.shape[1], mask.shape[1])
            _pad_cache_left(self.cache, width - self.mask.shape[1])
            _pad_cache_left(cache, width - mask.shape[1])
            for mine, theirs in zip(self.cache.layers, cache.layers, strict=True):
                mine.keys = torch.cat([mine.keys, theirs.keys], dim=0)
                mine.values = torch.cat([mine.values, theirs.values], dim=0)
            self.mask = torch.cat([_pad_mask(self.mask, width), _pad_mask(mask, width)], dim=0)
            self.pos = torch.cat([self.pos, pos])
            self.last = torch.cat([self.last, last], dim=0)
        for key, segment in zip(keys, segments, strict=True):
            self.rows.append(_Row(key, gen.limit_for(segment), gen.stops_for(segment)))

    def step(self) -> list[tuple[Any, str, int]]:
        """One greedy token for every row; returns (key, translation, tokens) of those done."""
        import torch

        if not self.rows:
            return []
        gen = self.gen
        with gen.lock, torch.inference_mode():
            tokens = gen.head.argmax(self.last)
            done: list[tuple[Any, str, int]] = []
            still: list[int] = []
            for a, row in enumerate(self.rows):
                token = int(tokens[a])
                finished = token in gen.eos_ids
                if not finished:
                    row.generated.append(token)
                    finished = len(row.generated) >= row.limit or bool(
                        row.stops and gen._has_stop(row.generated, row.stops)
                    )
                if finished:
                    text = gen.tokenizer.decode(row.generated, skip_special_tokens=True)
                    done.append((row.key, cut_at_stop(text, row.stops)[0], len(row.generated)))
                else:
                    still.append(a)
            if not still:
                self.rows, self.cache = [], None
                return done
            if len(still) < len(self.rows):
                sub = torch.tensor(still, dtype=torch.long, device=gen.device)
                self.cache.batch_select_indices(sub)
                self.mask, self.pos, tokens = self.mask[sub], self.pos[sub], tokens[sub]
                self.rows = [self.rows[a] for a in still]
                self._trim()
            self.mask = torch.cat([self.mask, self.mask.new_ones((len(self.rows), 1))], dim=1)
            out = gen.body(
                input_ids=tokens[:, None],
                attention_mask=self.mask,
                position_ids=self.pos[:, None],
                cache=self.cache,
                use_cache=True,
            )
            self.last = out.last_hidden_state[:, -1, :]
            self.pos = self.pos + 1
            self.steps += 1
        return done

    def clear(self) -> None:
        """Drop every row (a failed step, a shut-down server)."""
        self.rows, self.cache = [], None

    def _trim(self) -> None:
        """Drop leading columns that are padding for every row left (after rows leave)."""
        import torch

        if not self._fits(self.mask.shape[1], self._room()):
            return
        used = torch.nonzero(self.mask.any(0)).flatten()
        first = int(used[0]) if used.numel() else 0
        if first > 0:
            self.mask = self.mask[:, first:]
            _crop_cache_left(self.cache, first)


def _pad_mask(mask: Any, width: int) -> Any:
    import torch

    if mask.shape[1] == width:
        return mask
    return torch.cat([mask.new_zeros((mask.shape[0], width - mask.shape[1])), mask], dim=1)


def _pad_cache_left(cache: Any, count: int) -> None:
    """Prepend ``count`` masked (zero) positions to every layer of ``cache``."""
    import torch

    if count <= 0:
        return
    for layer in cache.layers:
        for name in ("keys", "values"):
            t = getattr(layer, name)
            pad = t.new_zeros((t.shape[0], t.shape[1], count, t.shape[3]))
            setattr(layer, name, torch.cat([pad, t], dim=2))
        _set_length(layer)


def _crop_cache_left(cache: Any, count: int) -> None:
    for layer in cache.layers:
        layer.keys = layer.keys[:, :, count:, :]
        layer.values = layer.values[:, :, count:, :]
        _set_length(layer)


def _crop_cache(cache: Any, length: int) -> None:
    """Keep the first ``length`` positions of every layer (a shorter shared prefix)."""
    for layer in cache.layers:
        layer.keys = layer.keys[:, :, :length, :]
        layer.values = layer.values[:, :, :length, :]
        _set_length(layer)


def _set_length(layer: Any) -> None:
    # sliding-window layers count the tokens seen; every row here is shorter than the window
    if hasattr(layer, "cumulative_length"):
        layer.cumulative_length = int(layer.keys.shape[2])


def _select_rows(cache: Any, rows: Any) -> Any:
    """A new cache with only ``rows`` of the batch; ``cache`` itself is left unchanged.

    The transformers cache layers (full and sliding-window) keep per-batch tensors only in
    ``keys``/``values`` and reassign (never write into) them, so shallow copies of the layer
    objects whose tensors are then indexed (a copy) are independent of the original.
    """
    new = copy.copy(cache)
    layers = getattr(cache, "layers", None)
    if layers is None:
        raise ConfigError(f"unsupported KV cache type {type(cache).__name__} for shared prefill")
    new.layers = [copy.copy(layer) for layer in layers]
    new.batch_select_indices(rows)
    return new
