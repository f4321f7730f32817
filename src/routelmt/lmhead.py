"""Greedy next-token choice through the LM head, at the cost of reading it in bfloat16.

The output head of a small multilingual LM is most of its weights (Gemma-3-270M: 262144 x 640,
about half of every decode step in fp32), and decoding on a CPU is bound by reading weights.
Greedy decoding only needs the arg-max, so ``exact`` (the default) screens every token with a
bfloat16 copy of the head (half the bytes, and the CPU's bf16 dot-product instructions) and
rescores in fp32 only the tokens that could still be the maximum given a bound on the bf16
error (typically 1-10 of 262144): the chosen token is the fp32 head's arg-max, not an
approximation of it. ``bfloat16`` and ``int8`` (torch's dynamically quantised int8 linear)
take the reduced-precision arg-max directly; they are options, with their quality effect
measured in ``bench/small_throughput.py``. ``full`` is the plain head at the model's dtype.

Only bias-free linear heads are handled (every causal LM we embed); a final logit soft-cap
(tanh) is monotonic and cannot change an arg-max, so it is skipped.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

from routelmt.errors import ConfigError

log = logging.getLogger(__name__)

HEADS: tuple[str, ...] = ("exact", "full", "bfloat16", "int8")
# bf16 keeps 8 significant bits: rounding x and w costs at most 2^-8 |x|.|w| (plus the bf16
# rounding of the result, 2^-9 of its size); a margin covers the fp32 sums on both sides.
BF16_REL = 2.0**-8
SAFETY = 1.1
ABS_SLACK = 1e-2  # logits units: near-ties this close are rescored too
MAX_CANDIDATES = 4096  # beyond this (a flat distribution) the full head row is cheaper


def _quantized_ops_available() -> bool:
    try:
        import torch

        engines = set(torch.backends.quantized.supported_engines)
        return hasattr(torch.ops.quantized, "linear_dynamic") and bool(engines & {"x86", "fbgemm"})
    except Exception:  # pragma: no cover - a torch build without quantized kernels
        return False


class GreedyHead:
    """Arg-max over the vocabulary of ``hidden @ W.T`` for a bias-free head weight ``W``.

    ``mode``: ``exact`` (bf16 screen + rescoring at the weight's dtype: the full arg-max),
    ``full``, ``bfloat16`` (a bf16 copy's arg-max) or ``int8`` (the int8 arg-max).
    """

    def __init__(self, weight: Any, mode: str = "exact") -> None:
        import torch

        if mode not in HEADS:
            raise ConfigError(f"unknown head '{mode}'; expected one of {', '.join(HEADS)}")
        if mode == "int8" and not _quantized_ops_available():
            log.warning("no int8 kernels in this torch build; the LM head stays at full precision")
            mode = "full"
        self.mode = mode
        self.weight = weight.detach()
        self.screened = 0  # tokens rescored in fp32 (exact mode), for the bench
        self.steps = 0
        self.fallbacks = 0
        if mode == "exact" and self.weight.dtype in (torch.bfloat16, torch.float16):
            mode = self.mode = "full"  # the model itself is half precision: nothing to screen
        if mode == "int8":
            w = self.weight.float()
            scale = (w.abs().amax(1) / 127.0).clamp(min=1e-12)
            with warnings.catch_warnings():  # quantized tensors are deprecated, not yet gone
                warnings.simplefilter("ignore")
                q = torch.quantize_per_channel(
                    w, scale.double(), torch.zeros(w.shape[0], dtype=torch.long), 0, torch.qint8
                )
                self._packed = torch.ops.quantized.linear_prepack(q, None)
        elif mode in ("bfloat16", "exact"):
            self._bf16 = self.weight.to(torch.bfloat16)
            self._row_norm = float(self.weight.float().norm(dim=1).max())

    def logits(self, hidden: Any) -> Any:
        """Full logits (B, V) at this head's precision (``exact``: the fp32 ones)."""
        import torch

        if self.mode == "int8":
            return torch.ops.quantized.linear_dynamic(hidden.float(), self._packed, True)
        if self.mode == "bfloat16":
            return torch.nn.functional.linear(hidden.to(torch.bfloat16), self._bf16).float()
        return torch.nn.functional.linear(hidden.to(self.weight.dtype), self.weight)

    def argmax(self, hidden: Any) -> Any:
        """Greedy token ids (B,) for last hidden states (B, H)."""
        import torch

        if self.mode != "exact":
            return self.logits(hidden).argmax(-1)
        native = hidden.to(self.weight.dtype)
        approx = torch.nn.functional.linear(hidden.to(torch.bfloat16), self._bf16)
        best = approx.max(-1).values.float()
        bound = (
            BF16_REL * hidden.float().norm(dim=-1) * self._row_norm + BF16_REL * best.abs()
        ) * SAFETY + ABS_SLACK  # (B,) the largest error of any token's bf16 logit
        floor = best - 2 * bound  # a token below this cannot beat the best one in fp32
        floor = floor - (floor.abs() * 2.0**-7)  # the comparison rounds it to bf16
        out = torch.empty(hidden.shape[0], dtype=torch.long)
        self.steps += 1
        for row in range(hidden.shape[0]):
            candidates = torch.nonzero(approx[row] >= floor[row]).flatten()
            if candidates.numel() > MAX_CANDIDATES:
                self.fallbacks += 1
                out[row] = torch.nn.functional.linear(native[row], self.weight).argmax()
                continue
            self.screened += int(candidates.numel())
            exact = self.weight.index_select(0, candidates) @ native[row]
            out[row] = candidates[exact.argmax()]
        return out
