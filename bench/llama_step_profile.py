"""Where a decode step of the llamacpp backend goes: measured, not guessed.

    python bench/llama_step_profile.py [--n 32] [--threads 2] [--rows 1,8,16] [--steps 24]
                                       [--output-languages de,es,zh] [--head-screen]

On the first N WMT24 en-es segments of at most 40 words, with the project's prompt and GGUF:

1. ``LlamaGenerator.translate`` (the backend's continuous batch, repair off) under cProfile:
   the seconds in ``llama_decode`` (prefills and decode steps), in the arg-max over the
   vocabulary's logits (``_choose``: numpy's arg-max over llama.cpp's logits, or the screened
   head's re-check), in the
   stop-string check (``has_stop``: the tokenizer's decode of the row so far), in the prompts'
   tokenisation, and the rest (Python bookkeeping);
2. single decode steps of R rows (R in --rows; R prompts prefilled, then --steps steps each),
   alternately with logits for every row and with none: llama.cpp computes the output head only
   for the rows that ask for logits, so the difference is the head's share of a step (the
   262,144-token head of Gemma-3).

Prints a table and the load average; ``--json`` writes the numbers.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import statistics
import time
from pathlib import Path

from routelmt.records import Segment

BUCKETS = {
    "llama_decode (prefills and steps)": ("_decode",),
    "arg-max over the logits": ("_choose",),
    "stop check (tokenizer decode)": ("has_stop",),
    "prompt tokenisation": ("encode_prompts",),
}


def load_segments(n: int, data: Path | None, first: bool = False) -> list[Segment]:
    """The first N en-es segments of at most 40 words, or (``first``) the first sentences of
    8-30 words that ``bench/serve_load.py --wmt en-es`` sends."""
    from routelmt.datasets.wmt import WMTDataset, first_sentences

    pool = WMTDataset(data).segments("en-es", reference=None)
    if first:
        texts = first_sentences([s.source for s in pool])[:n]
        return [Segment(id=f"first-{i}", direction="en-es", source=t) for i, t in enumerate(texts)]
    return [s for s in pool if len(s.source.split()) <= 40][:n]


def prefill_times(gen, segments: list[Segment], rows: int, layer: int, repeats: int = 3) -> dict:
    """Median seconds of one routing prefill of ``rows`` prompts (the router's layer captured,
    as the service does), and the prompt tokens it computed past the shared prefix."""
    times, fresh = [], 0
    for _ in range(repeats):
        state = gen.prefill(segments[:rows], layer=layer)
        times.append(state.prefill_s)
        fresh = int(sum(state.positions[:rows])) - int(state.reused_tokens)
        del state  # its finalizer gives the sequences back, as in step_times
    return {"rows": rows, "seconds": statistics.median(times), "new_tokens": fresh}


def profile_translate(gen, segments: list[Segment]) -> dict:
    """cProfile of one ``translate``: cumulative seconds per bucket, and the whole."""
    profiler = cProfile.Profile()
    t0 = time.perf_counter()
    profiler.enable()
    gen.translate(segments)
    profiler.disable()
    wall = time.perf_counter() - t0
    stats = pstats.Stats(profiler)
    out = {"wall_s": wall, "generated_tokens": gen.last_stats.generated_tokens}
    for bucket, names in BUCKETS.items():
        out[bucket] = sum(
            row[3]  # cumulative time
            for (_, _, func), row in stats.stats.items()  # type: ignore[attr-defined]
            if func in names
        )
    out["other"] = wall - sum(out[b] for b in BUCKETS)
    return out


def step_times(gen, segments: list[Segment], rows: int, steps: int) -> dict:
    """Mean seconds of a decode step of ``rows`` rows with logits for all and for none."""
    state = gen.prefill(segments[:rows], layer=None)
    seqs, pos = state.seqs[:rows], list(state.positions[:rows])
    tokens = state.first_tokens[:rows]
    timed: dict[bool, list[float]] = {True: [], False: []}
    with gen.lock:
        for t in range(steps):
            logits = t % 2 == 0
            items = [(tok, p + t, seq, logits) for tok, p, seq in zip(tokens, pos, seqs)]
            t0 = time.perf_counter()
            captured = gen._decode(items)
            if logits:
                gen._choose(range(rows), captured)
            timed[logits].append(time.perf_counter() - t0)
    del state
    full, body = statistics.median(timed[True]), statistics.median(timed[False])
    return {"rows": rows, "with_logits_s": full, "no_logits_s": body, "head_share": 1 - body / full}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rows", default="1,8,16")
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--first-sentences", action="store_true",
        help="first sentences of 8-30 words (serve_load's --wmt load) instead of paragraphs",
    )  # fmt: skip
    parser.add_argument("--prefill-rows", default="1,16", help="part 3: prompts per prefill")
    parser.add_argument("--layer", type=int, default=11, help="part 3: the layer captured")
    parser.add_argument(
        "--output-languages", default=None, help="the backend's cut output head (e.g. de,es,zh)"
    )
    parser.add_argument("--head-screen", action="store_true", help="the screened output head")
    args = parser.parse_args()
    from routelmt.backends.llamacpp import LlamaCppTranslator

    segments = load_segments(args.n, args.data, args.first_sentences)
    tr = LlamaCppTranslator(
        "gemma3-270m",
        threads=args.threads,
        batch_size=args.batch_size,
        repair="off",
        output_languages=args.output_languages,
        head_screen=args.head_screen,
    )
    gen = tr.generator
    gen.translate(segments[:4])  # warm-up: the direction's prefix is cached, pages are in
    print(
        f"{len(segments)} en-es segments, {args.threads} threads, batch {args.batch_size}, "
        f"output head {gen.n_vocab} tokens; "
        f"load avg {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    prof = profile_translate(gen, segments)
    print(
        f"\n1. translate under cProfile: {prof['wall_s']:.1f} s, "
        f"{prof['generated_tokens']} tokens ({prof['generated_tokens'] / prof['wall_s']:.1f}/s)"
    )
    print("| part | seconds | share |\n|---|---|---|")
    for part in [*BUCKETS, "other"]:
        print(f"| {part} | {prof[part]:.2f} | {100 * prof[part] / prof['wall_s']:.1f}% |")
    steps = [step_times(gen, segments, int(r), args.steps) for r in args.rows.split(",")]
    print("\n2. one decode step (median), with logits for every row vs none")
    print("| rows | with logits (ms) | no logits (ms) | output head + arg-max share |")
    print("|---|---|---|---|")
    for s in steps:
        print(
            f"| {s['rows']} | {1000 * s['with_logits_s']:.1f} | {1000 * s['no_logits_s']:.1f} "
            f"| {100 * s['head_share']:.0f}% |"
        )
    prefills = [
        prefill_times(gen, segments, int(r), args.layer) for r in args.prefill_rows.split(",")
    ]
    print(f"\n3. one routing prefill (median of 3), layer {args.layer} captured")
    print("| prompts | seconds | new tokens (past the shared prefix) | ms a new token |")
    print("|---|---|---|---|")
    for p in prefills:
        per = 1000 * p["seconds"] / max(p["new_tokens"], 1)
        print(f"| {p['rows']} | {p['seconds']:.3f} | {p['new_tokens']} | {per:.1f} |")
    print(f"\nload avg {os.getloadavg()[0]:.1f} at the end")
    if args.json:
        out = {"profile": prof, "steps": steps, "prefills": prefills}
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
