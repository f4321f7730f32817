"""Prefill hidden-state features of the small model's own translation prompt (the router's input).

Layer numbering follows transformers' ``output_hidden_states``: layer 0 is the embedding output
(the input of the first decoder block), layer i the output of block i, and layer L (the last)
is the final-norm output. Negative indices count from the end (-1 = L).

Only the prefill runs: no LM head (except on the last position when the next-token entropy is
asked for), and the forward pass stops after the deepest requested layer (a forward hook raises
``_EarlyExit``; hooks are always removed, so the model is unchanged afterwards).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from routelmt.errors import ConfigError, InputError
from routelmt.prompts import PromptTemplate, encode_prompts, render_prompts
from routelmt.records import ScoredExample, Segment
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


def num_layers_of(model: Any) -> int:
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else None
    return int((config or model.config).num_hidden_layers)


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


def _decoder(model: Any) -> Any:
    """The transformer body (embeddings + blocks + final norm) without the LM head."""
    if hasattr(model, "layers"):
        return model
    body = getattr(model, "model", None)
    if body is not None and hasattr(body, "layers"):
        return body
    if hasattr(model, "get_decoder"):
        body = model.get_decoder()
        if hasattr(body, "layers"):
            return body
    raise ConfigError(f"cannot find the decoder layers of {type(model).__name__}")


def _pool(hidden: Any, mask: Any, pooling: str) -> Any:
    import torch

    if pooling == "last":
        # clone: a view would keep the whole [batch, time, hidden] tensor alive
        return (
            hidden[:, -1, :].float().clone()
        )  # left padding: the last column is every row's last token
    keep = mask.bool().unsqueeze(-1)
    # where() rather than multiply: fully masked padding rows can hold NaN in some attention paths
    total = torch.where(keep, hidden.float(), torch.zeros((), dtype=torch.float32)).sum(1)
    return total / keep.sum(1).clamp(min=1)


def _entropy_of_last(model: Any, last_hidden: Any) -> Any:
    import torch

    head = model.get_output_embeddings()
    if head is None:
        raise ConfigError("the next-token entropy needs a model with an LM head")
    logits = head(last_hidden[:, -1, :]).float()  # one position only, not the whole prompt
    cap = getattr(model.config.get_text_config(), "final_logit_softcapping", None)
    if cap:
        logits = torch.tanh(logits / cap) * cap
    logp = torch.log_softmax(logits, dim=-1)
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
    import torch

    body = _decoder(model)
    blocks = body.layers
    n_layers = num_layers_of(model)
    need = sorted(set(layers))
    deepest = n_layers if entropy else max(need)
    captured: dict[int, Any] = {}
    handles = []
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)

    def pre_hook(_module: Any, args: tuple, kwargs: dict) -> None:
        hidden = args[0] if args else kwargs["hidden_states"]
        captured[0] = _pool(hidden, attention_mask, pooling)
        if deepest == 0:
            raise _EarlyExit

    def make_hook(index: int):
        def hook(_module: Any, _args: Any, output: Any) -> None:
            hidden = output[0] if isinstance(output, tuple | list) else output
            if index in need:
                captured[index] = _pool(hidden, attention_mask, pooling)
            if index == deepest:
                raise _EarlyExit

        return hook

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
                output = body(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    position_ids=position_ids,
                    use_cache=False,
                )
            except _EarlyExit:
                output = None
            ent = None
            if output is not None:
                last = output.last_hidden_state
                if n_layers in need:
                    captured[n_layers] = _pool(last, attention_mask, pooling)
                if entropy:
                    ent = _entropy_of_last(model, last)
    finally:
        for handle in handles:
            handle.remove()
    missing = [i for i in need if i not in captured]
    if missing:
        raise RuntimeError(f"layers {missing} were not captured (unexpected model structure)")
    return captured, ent


def _pad_left(batch: Sequence[Sequence[int]], pad_id: int) -> tuple[Any, Any]:
    import torch

    width = max(len(ids) for ids in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, ids in enumerate(batch):
        if ids:
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            mask[row, width - len(ids) :] = 1
    return input_ids, mask


def _segments_of(items: Sequence[Segment | ScoredExample]) -> list[Segment]:
    return [item.segment if isinstance(item, ScoredExample) else item for item in items]


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
) -> Features:
    """Batched prefill features for ``segments`` (cached on disk by model, prompt and data)."""
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
    meta = {
        "format": FORMAT_VERSION,
        "model": identity,
        "dtype": dtype,
        "template": template.name,
        "template_fingerprint": template.fingerprint(),
        "layers": wanted,
        "num_layers": n_layers,
        "pooling": pooling,
        "entropy": entropy,
        "count": len(segs),
    }
    path: Path | None = None
    if cache and identity:
        key = cache_key(identity, dtype, template, wanted, pooling, entropy, ids, prompts)
        path = cache_dir("features") / f"{key}.npz"
        if path.exists():
            try:
                cached = load_features(path)
            except InputError as exc:  # a damaged cache entry is recomputed, not fatal
                log.warning("ignoring unreadable feature cache %s: %s", path, exc)
            else:
                if cached.segment_ids == ids:
                    cached.from_cache = True
                    log.info("features for %d segments loaded from cache %s", len(ids), path)
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
    # Longest first: similar lengths share a batch (little padding), and memory peaks early.
    order = sorted(range(len(segs)), key=lambda i: -len(encoded[i]))
    device = next(model.parameters()).device
    bar = _bar(len(segs), progress)
    try:
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            input_ids, mask = _pad_left([encoded[i] for i in rows], pad_id)
            pooled, ent = prefill_batch(
                model, input_ids.to(device), mask.to(device), wanted, pooling, entropy=entropy
            )
            index = np.asarray(rows)
            for layer, values in pooled.items():
                out[layer][index] = values.to(torch.float32).cpu().numpy()
            if ent_out is not None and ent is not None:
                ent_out[index] = ent.cpu().numpy()
            if bar is not None:
                bar.update(len(rows))
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
