"""Small-model translation throughput, shared prefill, and what routing adds per request.

    python bench/small_throughput.py [--n 8] [--pair en-es] [--model gemma3-270m]
                                     [--batch-size 8] [--max-new-tokens 128] [--layer 9]
                                     [--threads T] [--json out.json]

On N real WMT24 segments (evenly spaced over the pair's segments of at most --max-words
words), in one process, with one loaded model and the same threads:

1. throughput batched (--batch-size) vs one-by-one: segments/s, generated tokens/s;
2. the hybrid small-model path with a separate routing prefill (feature extraction, then
   ``translate``, which prefills again) vs the shared prefill (``prefill`` then
   ``generate_from``): prefill and decode seconds, the prefill avoided per segment (the
   second prefill), identical outputs;
3. the share of a small-model request that routing adds: the in-model router head
   (``RouteLMTRouter.score_features`` on one feature row; a ridge probe fitted on these N
   segments' real chrF gains against --large, only to have a head of the right size) vs the
   whole small-model request (batched and one-by-one).

Timings on a shared machine vary with its load; the 1-minute load average is printed. On a
busy machine use ``--threads 1``: two torch threads fighting other processes for two cores
were 4-5x slower than one in our runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from routelmt.backends.hf import HFTranslator, load_causal_lm, set_cpu_threads
from routelmt.datasets.wmt import WMTDataset
from routelmt.features import compute_features
from routelmt.heads import RidgeHead
from routelmt.records import Segment
from routelmt.routers.inmodel import RouteLMTRouter
from routelmt.storage import default_wmt_root


def pick_segments(dataset: WMTDataset, pair: str, n: int, max_words: int) -> list[Segment]:
    pool = [
        s
        for s in dataset.segments(pair)
        if len(s.source.split()) <= max_words and "\n" not in s.source.strip()
    ]
    step = max(1, len(pool) // n)
    return pool[::step][:n]


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def chrf(hypothesis: str, reference: str) -> float:
    import sacrebleu

    return float(sacrebleu.sentence_chrf(hypothesis, [reference]).score)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=8, help="segments (default 8)")
    parser.add_argument("--pair", default="en-es")
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--data", type=Path, default=None, help="WMT24 root (default: shared)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--max-words", type=int, default=40)
    parser.add_argument("--layer", type=int, default=9, help="router layer (features)")
    parser.add_argument("--large", default="GPT-4", help="recorded system for the probe labels")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each prefill")
    parser.add_argument("--json", type=Path, default=None, help="write the numbers here")
    args = parser.parse_args()

    threads = set_cpu_threads(args.threads)
    model, tokenizer, info = load_causal_lm(args.model)
    threads = set_cpu_threads(args.threads)
    dataset = WMTDataset(args.data or default_wmt_root())
    segments = pick_segments(dataset, args.pair, args.n, args.max_words)
    n = len(segments)
    words = [len(s.source.split()) for s in segments]
    print(
        f"N = {n} {args.pair} segments ({min(words)}-{max(words)} words, mean "
        f"{statistics.mean(words):.1f}); model {info.identity}; {threads} threads; "
        f"batch {args.batch_size}; max_new_tokens {args.max_new_tokens}; "
        f"load avg {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    tr = HFTranslator(
        args.model,
        model=model,
        tokenizer=tokenizer,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
    )
    tr.translate(segments[:1])  # warm-up (first-call allocations)

    # 1. batched vs one-by-one -------------------------------------------------------------
    batched, batched_s = timed(tr.translate, segments)
    b_stats = tr.last_stats
    single: list[str] = []
    single_times: list[float] = []
    single_tokens = 0
    for segment in segments:
        out, seconds = timed(tr.translate, [segment])
        single.extend(out)
        single_times.append(seconds)
        single_tokens += tr.last_stats.generated_tokens
    single_s = sum(single_times)
    same = sum(a == b for a, b in zip(batched, single, strict=True))
    print("\n1. throughput            segments/s   gen tokens/s   seconds   gen tokens")
    print(
        f"   batched (batch {args.batch_size:<3d})  {n / batched_s:10.3f}   "
        f"{b_stats.generated_tokens / batched_s:12.1f}   {batched_s:7.1f}   "
        f"{b_stats.generated_tokens:10d}"
    )
    print(
        f"   one-by-one           {n / single_s:10.3f}   {single_tokens / single_s:12.1f}   "
        f"{single_s:7.1f}   {single_tokens:10d}"
    )
    print(
        f"   batched / one-by-one segments/s: {single_s / batched_s:.2f}x; "
        f"identical outputs: {same}/{n}"
    )

    # 2. shared prefill vs separate routing prefill + translate ----------------------------
    # The shared path skips the routing prefill (features.py stops at the router's layer);
    # decoding is the same work on both paths. Prefills are short and the machine is shared:
    # each is timed --repeats times and the fastest run is used.
    def features_once():
        return compute_features(
            model, tokenizer, tr.template, segments, layers=[args.layer],
            batch_size=args.batch_size, progress=False, cache=False,
        )  # fmt: skip

    feature_runs, prefill_runs = [], []
    for _ in range(args.repeats):
        feats, seconds = timed(features_once)
        feature_runs.append(seconds)
        state, seconds = timed(tr.prefill, segments, layer=args.layer)
        prefill_runs.append(seconds)
    feature_s, prefill_s = min(feature_runs), min(prefill_runs)
    shared, generate_s = timed(tr.generate_from, state, list(range(n)))
    same_shared = sum(a == b for a, b in zip(shared, batched, strict=True))
    feature_diff = float(np.abs(state.features - feats.layers[args.layer]).max())
    feature_rel = feature_diff / float(np.abs(feats.layers[args.layer]).max())
    separate_s = feature_s + batched_s
    shared_s = prefill_s + generate_s
    print(f"\n2. hybrid small path (prefills: fastest of {args.repeats})    seconds   per segment")
    print(f"   routing prefill (features, layer {args.layer}, early exit)  {feature_s:8.2f}   "
          f"{feature_s / n:.3f}")  # fmt: skip
    print(f"   shared prefill (all layers + KV cache + features) {prefill_s:8.2f}   "
          f"{prefill_s / n:.3f}")  # fmt: skip
    print(f"   translate() prefill, in part 1 (one run)           {b_stats.prefill_s:8.2f}   "
          f"{b_stats.prefill_s / n:.3f}")  # fmt: skip
    print(f"   separate: routing prefill + translate()            {separate_s:8.2f}   "
          f"{separate_s / n:.3f}")  # fmt: skip
    print(f"   shared:   prefill + generate_from ({generate_s:.2f})      {shared_s:8.2f}   "
          f"{shared_s / n:.3f}")  # fmt: skip
    avoided = feature_s / n
    print(
        f"   prefill avoided: {avoided:.3f} s/segment = {avoided / (separate_s / n):.1%} of a "
        f"separate small request (batched); identical outputs: {same_shared}/{n}; "
        f"feature max |diff| {feature_diff:.2e} ({feature_rel:.1e} of the largest value)"
    )

    # 3. the router head's share of a small-model request ----------------------------------
    large = dataset.system_outputs(args.pair, args.large)
    gains = np.asarray(
        [
            chrf(large.get(s.id, ""), s.reference or "") - chrf(text, s.reference or "")
            for s, text in zip(segments, batched, strict=True)
        ]
    )
    router = RouteLMTRouter(args.model, layer=args.layer)
    router.layer = args.layer
    router.head = RidgeHead().fit(
        feats.layers[args.layer], gains, [s.group for s in segments], n_folds=min(5, n)
    )
    row = state.features[:1]
    router.score_features(row)
    reps = 2000
    start = time.perf_counter()
    for _ in range(reps):
        router.score_features(row)
    head_s = (time.perf_counter() - start) / reps
    per_batched = batched_s / n
    per_single = statistics.median(single_times)
    print("\n3. routing share          seconds        head / request")
    print(f"   router head (1 row)     {head_s:.2e}")
    print(f"   request, batched        {per_batched:.3e}   {head_s / per_batched:.2e}")
    print(f"   request, one-by-one     {per_single:.3e}   {head_s / per_single:.2e}")
    print(
        f"   (the features themselves come from the shared prefill: no extra model work; "
        f"a separate routing prefill would add {feature_s / n / per_batched:.1%} per batched "
        "request)"
    )
    result = {
        "n": n,
        "pair": args.pair,
        "model": info.identity,
        "threads": threads,
        "torch_threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "max_new_tokens": args.max_new_tokens,
        "load_avg": os.getloadavg()[0],
        "batched": {**b_stats.to_dict(), "wall_s": batched_s},
        "one_by_one": {"wall_s": single_s, "generated_tokens": single_tokens},
        "identical_batched_single": same,
        "separate_s": separate_s,
        "shared_s": shared_s,
        "feature_s": feature_s,
        "prefill_s": prefill_s,
        "generate_from_s": generate_s,
        "identical_shared": same_shared,
        "prefill_avoided_per_segment_s": avoided,
        "feature_runs_s": feature_runs,
        "prefill_runs_s": prefill_runs,
        "head_s": head_s,
        "request_batched_s": per_batched,
        "request_single_s": per_single,
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
