"""Plumbing shared by everything that runs the in-process LM (features, generation, the LoRA
router): the decoder body without the LM head, layer count, left padding, pooling, and the
token prefix that a batch of prompts shares."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from routelmt.errors import ConfigError


def num_layers_of(model: Any) -> int:
    """Decoder blocks of a (possibly multimodal) model: its text config's ``num_hidden_layers``."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else None
    return int((config or model.config).num_hidden_layers)


def decoder_body(model: Any) -> Any:
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


def pool(hidden: Any, mask: Any, pooling: str) -> Any:
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


def common_prefix_length(rows: Sequence[Sequence[int]]) -> int:
    """Length of the token prefix that every row shares, leaving each row at least one token."""
    first = rows[0]
    length = min(len(row) for row in rows) - 1
    for row in rows[1:]:
        limit = min(length, len(row))
        i = 0
        while i < limit and row[i] == first[i]:
            i += 1
        length = i
        if length == 0:
            break
    return max(length, 0)


def pad_left(batch: Sequence[Sequence[int]], pad_id: int) -> tuple[Any, Any]:
    """``(input_ids, attention_mask)`` with each row right-aligned, so every row's last token
    sits in the last column (where ``pool(..., "last")`` and decoding read it)."""
    import torch

    width = max(len(ids) for ids in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, ids in enumerate(batch):
        if ids:
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            mask[row, width - len(ids) :] = 1
    return input_ids, mask
