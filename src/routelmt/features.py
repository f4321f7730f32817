"""Prefill hidden-state features of the small model's own translation prompt (the router's input).

Layer numbering follows transformers' ``output_hidden_states``: layer 0 is the embedding output
(the input of the first decoder block), layer i the output of block i, and layer L (the last)
is the final-norm output. Negative indices count from the end (-1 = L).

Only the prefill runs: no LM head (except on the last position when the next-token entropy is
asked for), and the forward pass stops after the deepest requested layer (a forward hook raises
``_EarlyExit``; hooks are always removed, so the model is unchanged afterwards).
"""

from __future__ import annotations

import copy
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from routelmt.errors import ConfigError, InputError
from routelmt.lm import common_prefix_length, decoder_body, num_layers_of, pad_left, pool
from routelmt.prompts import PromptTemplate, encode_prompts, render_prompts
from routelmt.records import ScoredExample, Segment, segment_of
from routelmt.storage import atomic_open, cache_dir, stable_hash

log = logging.getLogger(__name__)

Pooling = Literal["last", "mean"]
LayerSpec = Sequence[int] | int | Literal["all"]
POOLINGS: tuple[str, ...] = ("last", "mean")
FORMAT_VERSION = 1


@dataclass
class Features:
    """Pooled hidden states per layer ([N, hidden] float32, rows in input order) plus metadata."""

    layers: dict[int, np.ndarray]
    segment_ids: list[str]
    entropy: np.ndarray | None = None  # next-token entropy (nats) at the end of each prompt
    meta: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # e.g. gains of scored examples
    from_cache: bool = False


class _EarlyExit(Exception):
    """Raised by a hook after the deepest needed layer, so deeper blocks never run."""


def resolve_layers(layers: LayerSpec, num_layers: int) -> list[int]:
    """Validate and normalise layer indices to sorted, unique, non-negative ints."""
    if isinstance(layers, str):
        if layers != "all":
            raise ConfigError(f"layers must be 'all' or integers, got '{layers}'")
        return list(range(num_layers + 1))
    items = [layers] if isinstance(layers, int) else list(layers)
    if not items:
        raise ConfigError("no layers requested")
    out = set()
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int | np.integer):
            raise ConfigError(f"layer indices must be integers, got {item!r}")
        if not -(num_layers + 1) <= item <= num_layers:
            raise ConfigError(
                f"layer {item} is out of range for a model with {num_layers} layers: expected "
                f"0..{num_layers} (0 = embedding output, {num_layers} = last layer after the "
                f"final norm) or -{num_layers + 1}..-1 counted from the end"
            )
        out.add(int(item) % (num_layers + 1))
    return sorted(out)


def parse_layers(text: str) -> LayerSpec:
    """CLI form: ``all``, ``12``, ``-1``, ``0,6,12`` or a range ``4:9`` (end exclusive)."""
    text = text.strip()
    if text == "all":
        return "all"
    out: list[int] = []
    try:
        for part in text.split(","):
            if ":" in part:
                start, stop = part.split(":")
                out.extend(range(int(start), int(stop)))
            else:
                out.append(int(part))
    except ValueError:
        raise ConfigError(
            f"invalid --layers '{text}'; expected all, an index (12, -1), a list (0,6,12) "
            "or a range (4:9)"
        ) from None
    return out


def next_token_logprobs(model: Any, final: Any) -> Any:
    """Log-softmax of the LM head over final-layer states (..., H), with the model's logit
    soft-cap (Gemma's), as the model itself would score the next token."""
    import torch

    head = model.get_output_embeddings()
    if head is None:
        raise ConfigError("next-token probabilities need a model with an LM head")
    logits = head(final).float()
    cap = getattr(model.config.get_text_config(), "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return torch.log_softmax(logits, dim=-1)


def _entropy_of_last(model: Any, last_hidden: Any) -> Any:
    """Entropy (nats) of the next-token distribution from each row's last hidden state."""
    logp = next_token_logprobs(model, last_hidden)  # one position per row, not the whole prompt
    return -(logp.exp() * logp).sum(-1)


def prefill_batch(
    model: Any,
    input_ids: Any,
    attention_mask: Any,
    layers: Sequence[int],
    pooling: str = "last",
    *,
    entropy: bool = False,
) -> tuple[dict[int, Any], Any]:
    """One left-padded batch: pooled states per requested layer, and the entropy if asked."""
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    captured, ent, _ = _hooked_forward(
        model,
        {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids},
        layers,
        pool=lambda hidden, _layer: pool(hidden, attention_mask, pooling),
        last=lambda hidden: hidden[:, -1, :],  # left padding: the last column is the last token
        entropy=entropy,
    )
    return captured, ent


def _hooked_forward(
    model: Any,
    forward_kwargs: dict[str, Any],
    layers: Sequence[int],
    *,
    pool: Any,
    last: Any,
    entropy: bool = False,
    cache: Any = None,
) -> tuple[dict[int, Any], Any, bool]:
    """Run the decoder body, pooling the requested layers and stopping after the deepest one.

    ``pool(hidden, layer)`` reduces [batch, time, hidden] to [batch, hidden]; ``last`` picks each
    row's last real token (for the entropy). With ``cache`` the key/value states are written into
    it (a prefix to reuse). Returns (pooled per layer, entropy or None, whether it stopped early).
    """
    import torch

    body = decoder_body(model)
    blocks = body.layers
    n_layers = num_layers_of(model)
    need = sorted(set(layers))
    deepest = n_layers if entropy else max(need)
    captured: dict[int, Any] = {}
    handles = []

    def pre_hook(_module: Any, args: tuple, kwargs: dict) -> None:
        hidden = args[0] if args else kwargs["hidden_states"]
        captured[0] = pool(hidden, 0)
        if deepest == 0:
            raise _EarlyExit

    def make_hook(index: int):
        def hook(_module: Any, _args: Any, output: Any) -> None:
            hidden = output[0] if isinstance(output, tuple | list) else output
            if index in need:
                captured[index] = pool(hidden, index)
            if index == deepest:
                raise _EarlyExit

        return hook

    stopped = False
    try:
        if 0 in need:
            handles.append(blocks[0].register_forward_pre_hook(pre_hook, with_kwargs=True))
        if deepest < n_layers:
            for index in range(1, deepest + 1):
                if index in need or index == deepest:
                    handles.append(blocks[index - 1].register_forward_hook(make_hook(index)))
        else:
            for index in need:
                if 1 <= index < n_layers:
                    handles.append(blocks[index - 1].register_forward_hook(make_hook(index)))
        with torch.inference_mode():
            try:
                output = body(**forward_kwargs, cache=cache, use_cache=cache is not None)
            except _EarlyExit:
                output = None
                stopped = True
            ent = None
            if output is not None:
                final = output.last_hidden_state
                if n_layers in need:
                    captured[n_layers] = pool(final, n_layers)
                if entropy:
                    ent = _entropy_of_last(model, last(final))
    finally:
        for handle in handles:
            handle.remove()
    missing = [i for i in need if i not in captured]
    if missing:
        raise RuntimeError(f"layers {missing} were not captured (unexpected model structure)")
    return captured, ent, stopped


MIN_SHARED_PREFIX = 8  # tokens; below this a prefix pass is not worth its bookkeeping


class SharedPrefix:
    """The KV cache (and pooled sums) of a prompt prefix that many prompts share.

    Few-shot and chat templates put the same instructions and examples in front of every
    source of a direction; computing them once and prefilling only each prompt's own tail gives
    the same hidden states (attention is causal) for a fraction of the tokens.
    """

    def __init__(
        self, model: Any, prefix: Sequence[int], layers: Sequence[int], *, entropy: bool = False
    ) -> None:
        import torch
        from transformers import DynamicCache

        # The tails run as deep as the prefix's cache must reach: to the top for the entropy.
        layers = sorted(set(layers) | ({num_layers_of(model)} if entropy else set()))
        self.length = len(prefix)
        self.cache = DynamicCache(config=model.config)
        ids = torch.tensor([list(prefix)], dtype=torch.long, device=next(model.parameters()).device)
        self.sums, _, _ = _hooked_forward(
            model,
            {
                "input_ids": ids,
                "attention_mask": torch.ones_like(ids),
                "position_ids": torch.arange(self.length, device=ids.device)[None, :],
            },
            layers,
            pool=lambda hidden, _layer: hidden.float().sum(1),
            last=lambda hidden: hidden[:, -1, :],
            cache=self.cache,
        )

    def expanded(self, batch: int) -> Any:
        cache = copy.deepcopy(self.cache)
        if batch > 1:
            cache.batch_repeat_interleave(batch)
        return cache


def tail_inputs(prefix: SharedPrefix, tails: Sequence[Sequence[int]], pad_id: int) -> Any:
    """Forward inputs for right-padded prompt tails after a shared prefix, and the tail mask:
    ``(inputs, tail_mask)``."""
    import torch

    width = max(len(t) for t in tails)
    ids = torch.full((len(tails), width), pad_id, dtype=torch.long)
    tmask = torch.zeros((len(tails), width), dtype=torch.long)
    for r, tail in enumerate(tails):
        ids[r, : len(tail)] = torch.tensor(list(tail))
        tmask[r, : len(tail)] = 1
    attention = torch.cat([torch.ones((len(tails), prefix.length), dtype=torch.long), tmask], 1)
    positions = (prefix.length + torch.arange(width))[None, :].expand(len(tails), -1)
    return {"input_ids": ids, "attention_mask": attention, "position_ids": positions}, tmask


def every_layer_states(
    model: Any,
    prefix: SharedPrefix,
    inputs: Any,
    tmask: Any,
    n_layers: int,
    pool: Callable[[Any, int], Any],
    *,
    entropy: bool = False,
) -> tuple[np.ndarray, Any, Any]:
    """``pool(hidden, layer)`` of every layer over right-padded tails after a shared prefix (one
    forward); also the top layer's raw states (for LM-head log-probs) and, with ``entropy``, the
    next-token entropy at each tail's end. Returns (states (n, layers + 1, ...), top, entropy)."""
    import torch

    rows = torch.arange(tmask.shape[0])
    lengths = tmask.sum(1)
    top: dict[str, Any] = {}

    def keep_top(hidden: Any, layer: int) -> Any:
        if layer == n_layers:
            top["h"] = hidden
        return pool(hidden, layer)

    captured, ent, _ = _hooked_forward(
        model,
        inputs,
        list(range(n_layers + 1)),
        pool=keep_top,
        last=lambda hidden: hidden[rows, lengths - 1, :],
        entropy=entropy,
        cache=prefix.expanded(len(rows)),
    )
    states = torch.stack([captured[i] for i in range(n_layers + 1)], 1).numpy()
    return states, top["h"], ent


def prefill_with_prefix(
    model: Any,
    prefix: SharedPrefix,
    tails: Sequence[Sequence[int]],
    layers: Sequence[int],
    pooling: str = "last",
    *,
    entropy: bool = False,
    pad_id: int = 0,
) -> tuple[dict[int, Any], Any]:
    """Prefill right-padded prompt tails after a shared prefix; same outputs as the full prompts."""
    import torch

    device = next(model.parameters()).device
    width = max(len(tail) for tail in tails)
    input_ids = torch.full((len(tails), width), pad_id, dtype=torch.long)
    tail_mask = torch.zeros((len(tails), width), dtype=torch.long)
    for row, tail in enumerate(tails):
        input_ids[row, : len(tail)] = torch.tensor(list(tail), dtype=torch.long)
        tail_mask[row, : len(tail)] = 1
    input_ids, tail_mask = input_ids.to(device), tail_mask.to(device)
    lengths = tail_mask.sum(1)
    rows = torch.arange(len(tails), device=device)
    attention_mask = torch.cat(
        [torch.ones((len(tails), prefix.length), dtype=torch.long, device=device), tail_mask], 1
    )
    position_ids = (prefix.length + torch.arange(width, device=device))[None, :].expand(
        len(tails), -1
    )

    def pool_tail(hidden: Any, layer: int) -> Any:
        if pooling == "last":
            return hidden[rows, lengths - 1, :].float().clone()
        # Mean over the whole prompt: this tail's states plus the prefix's sum at the same layer.
        keep = tail_mask.bool().unsqueeze(-1)
        total = torch.where(keep, hidden.float(), torch.zeros((), dtype=torch.float32)).sum(1)
        return (total + prefix.sums[layer]) / (lengths + prefix.length).unsqueeze(-1)

    need = sorted(set(layers))
    captured, ent, _ = _hooked_forward(
        model,
        {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids},
        need,
        pool=pool_tail,
        last=lambda hidden: hidden[rows, lengths - 1, :],
        entropy=entropy,
        cache=prefix.expanded(len(tails)),
    )
    return captured, ent


def _segments_of(items: Sequence[Segment | ScoredExample]) -> list[Segment]:
    return [segment_of(item) for item in items]


def cache_key(
    identity: str,
    dtype: str,
    template: PromptTemplate,
    layers: Sequence[int],
    pooling: str,
    entropy: bool,
    segment_ids: Sequence[str],
    prompts: Sequence[str],
) -> str:
    import transformers

    data = stable_hash(list(segment_ids), list(prompts), length=32)
    return stable_hash(
        FORMAT_VERSION,
        identity,
        dtype,
        transformers.__version__,
        template.name,
        template.fingerprint(),
        list(layers),
        pooling,
        entropy,
        data,
        length=24,
    )


def _prefix_groups(
    model: Any, segments: Sequence[Segment], encoded: Sequence[Sequence[int]], enabled: bool
) -> list[tuple[list[int], int]]:
    """Rows grouped by direction, each with the length of the token prefix its prompts share
    (0: prefill whole prompts, when sharing is off, too short, or past a sliding window)."""
    by_direction: dict[str, list[int]] = {}
    for i, segment in enumerate(segments):
        by_direction.setdefault(segment.direction, []).append(i)
    config = model.config.get_text_config()
    window = getattr(config, "sliding_window", None) or 0
    groups: list[tuple[list[int], int]] = []
    for rows in by_direction.values():
        prefix_len = common_prefix_length([encoded[i] for i in rows]) if enabled else 0
        longest = max(len(encoded[i]) for i in rows)
        if len(rows) < 2 or prefix_len < MIN_SHARED_PREFIX or (window and longest > window):
            prefix_len = 0
        groups.append((rows, prefix_len))
    return groups


def _load_cached(path: Path, ids: list[str]) -> Features | None:
    """The cached features of exactly these segments, if a readable entry holds them."""
    if not path.exists():
        return None
    try:
        cached = load_features(path)
    except InputError as exc:  # a damaged cache entry is recomputed, not fatal
        log.warning("ignoring unreadable feature cache %s: %s", path, exc)
        return None
    if cached.segment_ids != ids:
        return None
    cached.from_cache = True
    log.info("features for %d segments loaded from cache %s", len(ids), path)
    return cached


def _prefill_rows(
    model: Any,
    encoded: Sequence[Sequence[int]],
    rows: list[int],
    prefix_len: int,
    wanted: list[int],
    pooling: str,
    entropy: bool,
    batch_size: int,
    pad_id: int,
) -> Iterator[tuple[list[int], dict[int, Any], Any]]:
    """The prompts ``rows`` (one direction) in batches: their rows, pooled states and entropy.
    With ``prefix_len``, the shared prefix is prefilled once and each batch runs its tails."""
    device = next(model.parameters()).device
    # Longest first: similar lengths share a batch (little padding), memory peaks early.
    rows = sorted(rows, key=lambda i: -len(encoded[i]))
    prefix = (
        SharedPrefix(model, encoded[rows[0]][:prefix_len], wanted, entropy=entropy)
        if prefix_len
        else None
    )
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        if prefix is not None:
            tails = [encoded[i][prefix_len:] for i in batch]
            pooled, ent = prefill_with_prefix(
                model, prefix, tails, wanted, pooling, entropy=entropy, pad_id=pad_id
            )
        else:
            input_ids, mask = pad_left([encoded[i] for i in batch], pad_id)
            pooled, ent = prefill_batch(
                model, input_ids.to(device), mask.to(device), wanted, pooling, entropy=entropy
            )
        yield batch, pooled, ent


def _cache_path(
    identity: str,
    dtype: str,
    template: PromptTemplate,
    wanted: list[int],
    pooling: str,
    entropy: bool,
    ids: list[str],
    prompts: list[str],
) -> Path:
    key = cache_key(identity, dtype, template, wanted, pooling, entropy, ids, prompts)
    return cache_dir("features") / f"{key}.npz"


def cached_features(
    identity: str,
    dtype: str,
    template: PromptTemplate,
    segments: Sequence[Segment | ScoredExample],
    tokenizer: Any,
    num_layers: int,
    *,
    layers: LayerSpec = "all",
    pooling: Pooling = "last",
    entropy: bool = False,
) -> Features | None:
    """What ``compute_features`` would return from its cache for these arguments, without the
    model's weights (None: not cached); the cache key is the same."""
    segs = _segments_of(segments)
    ids = [s.id for s in segs]
    wanted = resolve_layers(layers, num_layers)
    prompts = render_prompts(template, segs, tokenizer)
    return _load_cached(
        _cache_path(identity, dtype, template, wanted, pooling, entropy, ids, prompts), ids
    )


def compute_features(
    model: Any,
    tokenizer: Any,
    template: PromptTemplate,
    segments: Sequence[Segment | ScoredExample],
    *,
    layers: LayerSpec = "all",
    pooling: Pooling = "last",
    batch_size: int = 8,
    entropy: bool = False,
    progress: bool = True,
    cache: bool = True,
    identity: str | None = None,
    shared_prefix: bool = True,
) -> Features:
    """Batched prefill features for ``segments`` (cached on disk by model, prompt and data).

    ``shared_prefix``: prompts of one direction share the template's instructions and examples;
    that prefix is prefilled once per direction and only each prompt's tail per segment (about a
    third of the tokens with the few-shot template). The features are the same either way.
    """
    import torch

    if pooling not in POOLINGS:
        raise ConfigError(f"unknown pooling '{pooling}'; expected one of {', '.join(POOLINGS)}")
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}")
    n_layers = num_layers_of(model)
    wanted = resolve_layers(layers, n_layers)
    segs = _segments_of(segments)
    ids = [s.id for s in segs]
    prompts = render_prompts(template, segs, tokenizer)
    identity = identity or getattr(model, "routelmt_identity", None)
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    meta = {"format": FORMAT_VERSION, "model": identity, "dtype": dtype}
    meta |= {"template": template.name, "template_fingerprint": template.fingerprint()}
    meta |= {"layers": wanted, "num_layers": n_layers, "pooling": pooling}
    meta |= {"entropy": entropy, "count": len(segs)}
    path: Path | None = None
    if cache and identity:
        path = _cache_path(identity, dtype, template, wanted, pooling, entropy, ids, prompts)
        cached = _load_cached(path, ids)
        if cached is not None:
            return cached
    elif cache:
        log.debug("no model identity: features are not cached")

    hidden = int(model.config.get_text_config().hidden_size)
    out = {layer: np.zeros((len(segs), hidden), dtype=np.float32) for layer in wanted}
    ent_out = np.zeros(len(segs), dtype=np.float32) if entropy else None
    if not segs:
        return Features(layers=out, segment_ids=ids, entropy=ent_out, meta=meta)
    encoded = encode_prompts(template, segs, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    bar = _bar(len(segs), progress)

    def store(rows: list[int], pooled: dict[int, Any], ent: Any) -> None:
        index = np.asarray(rows)
        for layer, values in pooled.items():
            out[layer][index] = values.to(torch.float32).cpu().numpy()
        if ent_out is not None and ent is not None:
            ent_out[index] = ent.cpu().numpy()
        if bar is not None:
            bar.update(len(rows))

    try:
        for rows, prefix_len in _prefix_groups(model, segs, encoded, shared_prefix):
            for batch, pooled, ent in _prefill_rows(
                model, encoded, rows, prefix_len, wanted, pooling, entropy, batch_size, pad_id
            ):
                store(batch, pooled, ent)
    finally:
        if bar is not None:
            bar.close()
    features = Features(layers=out, segment_ids=ids, entropy=ent_out, meta=meta)
    if path is not None:
        save_features(path, features)
    return features


def extract_features(
    model: Any,
    tokenizer: Any,
    template: PromptTemplate,
    segments: Sequence[Segment | ScoredExample],
    *,
    layers: LayerSpec = "all",
    pooling: Pooling = "last",
    batch_size: int = 8,
    progress: bool = True,
    cache: bool = True,
) -> dict[int, np.ndarray]:
    """Layer -> [N, hidden] float32 in input order (see ``compute_features`` for entropy)."""
    return compute_features(
        model,
        tokenizer,
        template,
        segments,
        layers=layers,
        pooling=pooling,
        batch_size=batch_size,
        progress=progress,
        cache=cache,
    ).layers


def _bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from routelmt.progress import bar

    return bar(desc="prefill features", total=total, unit="seg")


def save_features(path: str | os.PathLike[str], features: Features) -> None:
    """One .npz: ``layer_<i>`` matrices, ``ids``, optional ``entropy`` and extras, ``meta`` JSON."""
    arrays: dict[str, np.ndarray] = {f"layer_{k}": v for k, v in features.layers.items()}
    arrays["ids"] = np.asarray(features.segment_ids, dtype=str)
    if features.entropy is not None:
        arrays["entropy"] = features.entropy
    for name, values in features.extra.items():
        arrays[f"extra_{name}"] = values
    arrays["meta"] = np.asarray(json.dumps(features.meta, sort_keys=True))
    with atomic_open(path, "wb") as handle:
        np.savez(handle, **arrays)


def load_features(path: str | os.PathLike[str]) -> Features:
    """Read a file written by ``save_features`` (or ``routelmt featurize``)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            layers = {int(k[6:]): data[k] for k in data.files if k.startswith("layer_")}
            extra = {k[6:]: data[k] for k in data.files if k.startswith("extra_")}
            ids = [str(x) for x in data["ids"]]
            entropy = data["entropy"] if "entropy" in data.files else None
            meta = json.loads(str(data["meta"]))
    except FileNotFoundError:
        raise InputError("file not found", path=str(path)) from None
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise InputError(f"not a RouteLMT feature file ({exc})", path=str(path)) from None
    return Features(
        layers=dict(sorted(layers.items())),
        segment_ids=ids,
        entropy=entropy,
        meta=meta,
        extra=extra,
    )
