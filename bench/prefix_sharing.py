"""Shared-prefix prefill vs whole-prompt prefill: same features, fewer tokens.

python bench/prefix_sharing.py --n 12     # 12 en-es + 12 en-de WMT24 segments, Gemma-3-270M
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from routelmt.backends.hf import cached_causal_lm
from routelmt.datasets.wmt import WMTDataset
from routelmt.features import compute_features
from routelmt.prompts import resolve_template


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=12, help="segments per pair")
    parser.add_argument("--model", default="gemma3-270m")
    args = parser.parse_args()
    dataset = WMTDataset()
    segments = dataset.segments("en-es")[: args.n] + dataset.segments("en-de")[: args.n]
    model, tokenizer, _ = cached_causal_lm(args.model)
    template = resolve_template(None, tokenizer)
    print(f"{len(segments)} segments, {args.model}, all layers, entropy on")
    print(f"{'pooling':<8}{'whole s':>9}{'shared s':>10}{'speed-up':>10}{'max rel diff':>14}")
    for pooling in ("last", "mean"):
        timings, outputs = [], []
        for shared in (False, True):
            started = time.perf_counter()
            outputs.append(
                compute_features(
                    model, tokenizer, template, segments, layers="all", pooling=pooling,
                    entropy=True, cache=False, progress=False, shared_prefix=shared,
                )
            )  # fmt: skip
            timings.append(time.perf_counter() - started)
        whole, shared_feats = outputs
        worst = max(
            float(np.abs(whole.layers[k] - shared_feats.layers[k]).max())
            / (float(np.abs(whole.layers[k]).max()) + 1e-9)
            for k in whole.layers
        )
        print(
            f"{pooling:<8}{timings[0]:>9.1f}{timings[1]:>10.1f}"
            f"{timings[0] / timings[1]:>9.2f}x{worst:>14.1e}"
        )


if __name__ == "__main__":
    main()
