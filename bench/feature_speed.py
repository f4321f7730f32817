"""Prefill feature extraction vs a plain full forward, side by side on real WMT24 segments.

    python bench/feature_speed.py [--n 50] [--pair en-es] [--model gemma3-270m] [--batch-size 8]

Both paths see the same prompts, the same length-sorted left-padded batches and the same
threads; the plain path is ``model(**batch, output_hidden_states=True)`` (LM head on every
position, every hidden state kept), the extractor skips the LM head and pools inside hooks. A
single middle layer (early exit) is timed too. Prints seconds per segment and the ratios.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from routelmt.backends.hf import load_causal_lm
from routelmt.features import compute_features
from routelmt.lm import pad_left
from routelmt.prompts import encode_prompts, resolve_template
from routelmt.records import Segment
from routelmt.storage import default_wmt_root


def load_segments(root: Path, pair: str, n: int) -> list[Segment]:
    lines = (root / "txt" / "sources" / f"{pair}.txt").read_text(encoding="utf-8").splitlines()
    return [
        Segment(id=f"{pair}-{i}", direction=pair, source=lines[i])
        for i in range(1, n + 1)  # line 0 is the canary
    ]


def plain_forward(model, tokenizer, template, segments, batch_size: int) -> dict[int, np.ndarray]:
    encoded = encode_prompts(template, segments, tokenizer)
    order = sorted(range(len(segments)), key=lambda i: -len(encoded[i]))
    out: dict[int, np.ndarray] = {}
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        input_ids, mask = pad_left([encoded[i] for i in rows], tokenizer.pad_token_id)
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            result = model(
                input_ids=input_ids,
                attention_mask=mask,
                position_ids=position_ids,
                output_hidden_states=True,
                use_cache=False,
            )
        for layer, states in enumerate(result.hidden_states):
            if layer not in out:
                out[layer] = np.zeros((len(segments), states.shape[-1]), dtype=np.float32)
            out[layer][np.asarray(rows)] = states[:, -1].float().numpy()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--pair", default="en-es")
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--template", default="auto")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--wmt-root", type=Path, default=None)
    args = parser.parse_args()

    root = args.wmt_root or default_wmt_root()
    if root is None:
        raise SystemExit("WMT24 data not found: pass --wmt-root")
    segments = load_segments(root, args.pair, args.n)
    model, tokenizer, info = load_causal_lm(args.model)
    template = resolve_template(args.template, tokenizer)
    tokens = sum(len(ids) for ids in encode_prompts(template, segments, tokenizer))
    print(f"model {info.identity} ({info.num_layers} layers), template {template.name}, "
          f"{len(segments)} {args.pair} segments, {tokens} prompt tokens, "
          f"batch {args.batch_size}, {torch.get_num_threads()} threads")  # fmt: skip

    # Warm-up on two segments so neither side pays first-call costs.
    plain_forward(model, tokenizer, template, segments[:2], 2)
    kwargs = dict(layers="all", pooling="last", batch_size=args.batch_size, progress=False)
    compute_features(model, tokenizer, template, segments[:2], cache=False, **kwargs)

    timings: dict[str, float] = {}
    start = time.perf_counter()
    plain = plain_forward(model, tokenizer, template, segments, args.batch_size)
    timings["plain full forward (LM head, all hidden states)"] = time.perf_counter() - start
    start = time.perf_counter()
    ours = compute_features(model, tokenizer, template, segments, cache=False, **kwargs).layers
    timings["extractor, all layers, last token"] = time.perf_counter() - start
    middle = info.num_layers // 2
    kwargs["layers"] = [middle]
    start = time.perf_counter()
    compute_features(model, tokenizer, template, segments, cache=False, **kwargs)
    timings[f"extractor, layer {middle} only (early exit)"] = time.perf_counter() - start

    diff = max(float(np.abs(plain[k] - ours[k]).max()) for k in ours)
    scale = max(float(np.abs(plain[k]).max()) for k in ours)
    base = timings["plain full forward (LM head, all hidden states)"]
    print(f"{'path':<50} {'s/segment':>10} {'speed-up':>9}")
    for name, seconds in timings.items():
        print(f"{name:<50} {seconds / len(segments):>10.4f} {base / seconds:>8.2f}x")
    print(f"max |plain - extractor| over all layers: {diff:.2e} (max |value| {scale:.1f})")


if __name__ == "__main__":
    main()
