"""Small-model translation throughput, shared prefill, and what routing adds per request.

    python bench/small_throughput.py [--n 8] [--pair en-es] [--model gemma3-270m]
                                     [--batch-size 8] [--max-new-tokens 128] [--layer 9]
                                     [--threads T] [--json out.json]
                                     [--paths plain,fast,int8] [--threads-list 1,2]
                                     [--llamacpp auto|off] [--compare-only]
                                     [--quality-n 200 --quality-only]

On N real WMT24 segments (evenly spaced over the pair's segments of at most --max-words
words), in one process, with one loaded model:

0. the decoding paths side by side (``--paths``, at each of ``--threads-list``), one-by-one
   and batched: prompt tokens/s (all prompt tokens / prefill seconds), generated tokens/s
   (generated tokens / decode seconds), segments/s (wall clock), the outputs equal to the fp32
   reference (``plain`` one-by-one at the first thread count), and the largest relative
   difference of the router features (``prefill`` at --layer against ``compute_features``
   without prefix sharing). Paths: ``plain`` = today's (every prompt in full, fp32 head),
   ``fast`` = the default (cached few-shot prefix, fp32 arg-max through the int8 head),
   ``int8`` / ``bf16-head`` = fast with the int8 / bf16 head's own arg-max, ``bf16`` = fast
   on a bfloat16 copy of the model, ``llamacpp`` = the ``llamacpp`` backend (llama.cpp on
   the same GGUF file, the same token ids, stop rule and cap; the shared few-shot prefix's KV
   cells copied into every sequence; batched = one multi-sequence decode per step), and
   ``llamacpp-noprefix`` = the same with every prompt prefilled in full. Ratios against
   ``plain`` at the same threads and mode. ``--quality-n M`` translates M segments with
   ``fast`` (the fp32 reference) and each reduced-precision or llama.cpp path and prints
   corpus chrF against the references and against ``fast``'s outputs.

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


# ---- 0. decoding paths side by side ------------------------------------------------------
PATHS = {
    "plain": {"prefix_cache": False, "head": "full"},
    "fast": {},
    "int8": {"head": "int8"},
    "bf16-head": {"head": "bfloat16"},
    "bf16": {"dtype": "bfloat16"},
}
REDUCED = ("int8", "bf16-head", "bf16")


def hf_path(name: str, args, model, tokenizer, models: dict) -> HFTranslator:
    options = dict(PATHS[name])
    if options.pop("dtype", None):
        if "bf16" not in models:
            models["bf16"] = load_causal_lm(args.model, dtype="bfloat16")[:2]
        model, tokenizer = models["bf16"]
    return HFTranslator(
        args.model, model=model, tokenizer=tokenizer, batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens, name=name, **options,
    )  # fmt: skip


def run_hf(tr: HFTranslator, segments: list[Segment], batched: bool) -> dict:
    """One pass: outputs, token counts, prefill/decode seconds and wall seconds."""
    groups = [segments] if batched else [[s] for s in segments]
    outputs: list[str] = []
    totals = {"prompt": 0, "reused": 0, "generated": 0, "prefill_s": 0.0, "decode_s": 0.0}
    start = time.perf_counter()
    for group in groups:
        outputs.extend(tr.translate(group))
        st = tr.last_stats
        totals["prompt"] += st.prompt_tokens
        totals["reused"] += st.reused_prompt_tokens
        totals["generated"] += st.generated_tokens
        totals["prefill_s"] += st.prefill_s
        totals["decode_s"] += st.decode_s
    totals["wall_s"] = time.perf_counter() - start
    return {"outputs": outputs, **totals}


LLAMA_PATHS = {"llamacpp": {}, "llamacpp-noprefix": {"prefix_cache": False}}


def llama_path(name: str, args):
    """llama.cpp on the same GGUF file through the project's ``llamacpp`` backend: the same
    template, token ids, stop rule and cap; batched = one multi-sequence decode per step."""
    from routelmt.backends.llamacpp import LlamaCppTranslator

    return LlamaCppTranslator(
        args.model, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens,
        threads=1, name=name, **LLAMA_PATHS[name],
    )  # fmt: skip


def llama_available() -> bool:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return True


def feature_diff(tr: HFTranslator, reference: np.ndarray, segments, layer: int) -> float:
    state = tr.prefill(segments, layer=layer)
    return float(np.abs(state.features - reference).max() / np.abs(reference).max())


def compare_paths(args, model, tokenizer, segments: list[Segment]) -> dict:
    n = len(segments)
    names = [p for p in args.paths.split(",") if p]
    unknown = [p for p in names if p not in PATHS and p not in LLAMA_PATHS]
    if unknown:
        raise SystemExit(f"unknown --paths {unknown}; known: {', '.join([*PATHS, *LLAMA_PATHS])}")
    if "plain" not in names:
        names.insert(0, "plain")
    if args.llamacpp == "off":
        names = [p for p in names if p not in LLAMA_PATHS]
    elif not llama_available():
        print("   llama.cpp: llama-cpp-python is not installed (pip install 'routelmt[llamacpp]')")
        names = [p for p in names if p not in LLAMA_PATHS]
    thread_counts = [int(t) for t in args.threads_list.split(",")]
    models: dict = {}
    translators = {
        p: hf_path(p, args, model, tokenizer, models) if p in PATHS else llama_path(p, args)
        for p in names
    }
    reference_features = compute_features(
        model, tokenizer, translators["plain"].template, segments, layers=[args.layer],
        batch_size=args.batch_size, progress=False, cache=False, shared_prefix=False,
    ).layers[args.layer]  # fmt: skip
    rows: list[dict] = []
    reference: list[str] | None = None
    for threads in thread_counts:
        torch.set_num_threads(threads)
        for name, tr in translators.items():
            if name in LLAMA_PATHS:
                tr.generator.set_threads(threads)
        for mode in ("one-by-one", "batched"):
            runs: dict[str, dict] = {}
            for name, tr in translators.items():
                tr.translate(segments[:1])  # warm-up: first-call allocations, prefix cache
                runs[name] = run_hf(tr, segments, batched=mode == "batched")
            if reference is None:
                reference = runs["plain"]["outputs"]
            base = runs["plain"]
            for name, r in runs.items():
                rows.append(
                    {
                        "path": name, "threads": threads, "mode": mode,
                        "prompt_tok_s": r["prompt"] / max(r["prefill_s"], 1e-9),
                        "gen_tok_s": r["generated"] / max(r["decode_s"], 1e-9),
                        "seg_s": n / r["wall_s"],
                        "wall_s": r["wall_s"],
                        "prompt_tokens": r["prompt"], "reused_tokens": r["reused"],
                        "generated_tokens": r["generated"],
                        "same_as_reference": sum(
                            a == b for a, b in zip(r["outputs"], reference, strict=True)
                        ),
                        "gen_ratio": (r["generated"] / r["decode_s"])
                        / (base["generated"] / base["decode_s"]),
                        "seg_ratio": base["wall_s"] / r["wall_s"],
                    }
                )  # fmt: skip
    features = {
        name: feature_diff(tr, reference_features, segments, args.layer)
        for name, tr in translators.items()
    }
    print(
        f"\n0. paths side by side (N = {n}; reference = plain one-by-one at {thread_counts[0]} "
        f"thread(s); ratios against plain at the same threads and mode)"
    )
    print(
        "   path             thr  mode         prompt tok/s  gen tok/s  seg/s   seconds  "
        "x plain gen  x plain seg/s  same as ref  feature rel diff"
    )
    for r in rows:
        feat = features.get(r["path"])
        print(
            f"   {r['path']:<16} {r['threads']:>3}  {r['mode']:<11} {r['prompt_tok_s']:>12.0f} "
            f"{r['gen_tok_s']:>10.1f} {r['seg_s']:>6.3f} {r['wall_s']:>9.1f} "
            f"{r['gen_ratio']:>11.2f}x {r['seg_ratio']:>12.2f}x  {r['same_as_reference']:>5}/{n}"
            f"     {'-' if feat is None else f'{feat:.1e}'}"
        )
    head = translators.get("fast")
    if head is not None and head.generator.head.steps:
        h = head.generator.head
        print(
            f"   fast head: {h.screened / max(h.steps, 1):.1f} tokens rescored in fp32 per step "
            f"(of {h.weight.shape[0]}), {h.fallbacks} rows fell back to the full head"
        )
    reused = [r for r in rows if r["path"] == "fast"]
    if reused:
        r = reused[0]
        print(
            f"   fast prefill reads {r['reused_tokens']}/{r['prompt_tokens']} prompt tokens "
            f"({r['reused_tokens'] / max(r['prompt_tokens'], 1):.0%}) from the cached prefix"
        )
    return {"rows": rows, "feature_rel_diff": features}


def quality(args, model, tokenizer, dataset) -> dict:
    """Corpus chrF of ``fast`` (the fp32 reference) and each reduced-precision path."""
    import sacrebleu

    segments = pick_segments(dataset, args.pair, args.quality_n, args.max_words)
    names = ["fast"] + [p for p in args.paths.split(",") if p in REDUCED]
    if args.llamacpp != "off" and llama_available():
        names += [p for p in args.paths.split(",") if p in LLAMA_PATHS]
    models: dict = {}
    refs = [s.reference or "" for s in segments]
    results: dict[str, dict] = {}
    print(f"\nquality on {len(segments)} {args.pair} segments (batched, batch {args.batch_size})")
    for name in names:
        if name in LLAMA_PATHS:
            tr = llama_path(name, args)
            tr.generator.set_threads(torch.get_num_threads())
        else:
            tr = hf_path(name, args, model, tokenizer, models)
        outputs, seconds = timed(tr.translate, segments)
        score = sacrebleu.corpus_chrf(outputs, [refs]).score
        results[name] = {"chrf": score, "seconds": seconds, "outputs": outputs}
        same = sum(a == b for a, b in zip(outputs, results["fast"]["outputs"], strict=True))
        agree = sacrebleu.corpus_chrf(outputs, [results["fast"]["outputs"]]).score
        print(
            f"   {name:<18} chrF {score:6.2f}  (vs fast {score - results['fast']['chrf']:+.2f}); "
            f"same output as fast {same}/{len(segments)}; chrF against fast's output "
            f"{agree:.1f}; {seconds:.0f} s"
        )
    return {k: {"chrf": v["chrf"], "seconds": v["seconds"]} for k, v in results.items()}


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
    parser.add_argument("--paths", default="plain,fast,llamacpp", help="part 0 (empty: skip)")
    parser.add_argument("--threads-list", default="1,2", help="part 0 thread counts")
    parser.add_argument("--llamacpp", choices=("auto", "off"), default="auto")
    parser.add_argument("--compare-only", action="store_true", help="only part 0")
    parser.add_argument("--quality-n", type=int, default=0, help="chrF on this many segments")
    parser.add_argument("--quality-only", action="store_true", help="only the chrF run")
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
    result: dict = {"n": n, "pair": args.pair, "load_avg_start": os.getloadavg()[0]}
    if args.quality_n:
        result["quality"] = quality(args, model, tokenizer, dataset)
    if args.paths and not args.quality_only:
        result["compare"] = compare_paths(args, model, tokenizer, segments)
        threads = set_cpu_threads(args.threads)
    if args.compare_only or args.quality_only:
        result["load_avg_end"] = os.getloadavg()[0]
        print(f"\nload avg {os.getloadavg()[0]:.1f} at the end")
        if args.json:
            args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
        return 0
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
        **result,
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
