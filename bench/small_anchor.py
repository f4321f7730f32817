"""The small model's out-tokens/s against plain llama-cpp-python, side by side in one run.

    python bench/small_anchor.py [--n 32] [--pair en-es] [--threads 1,2] [--repeats 3]
                                 [--output-languages de,es,zh] [--json FILE]

On the first N WMT24 segments of a direction, with the project's prompt (the same token ids),
GGUF, greedy decoding, newline stop and length limit, at each thread count:

- ``anchor``: plain llama-cpp-python (``Llama.create_completion``), one request at a time, with
  its own prompt-prefix reuse: what a user would write without this project;
- ``llamacpp``: the project's backend (continuous batch, shared few-shot prefix);
- ``llamacpp, cut head``: the same with ``output_languages`` (the output head cut to the tokens
  the target languages write; prompts still prefilled from the full vocabulary).

Out-tokens are counted with the model's tokenizer on each output, so every path is counted the
same way. Each path's corpus chrF against the references, and the cut head's paired difference
against the full head and the anchor (bootstrap interval over segments); identical outputs
against the anchor. Seconds are the median of ``--repeats`` passes; the paths run one after the
other at each thread count, so a load drift hits them alike. ``--coverage RUN`` prints instead
how many of a bench run's full-head outputs use a token that a cut head of each size lacks.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from routelmt.records import Segment


def anchor_translate(
    gguf: Path, prompts: list[list[int]], limits: list[int], threads: int, repeats: int
):
    """Plain llama-cpp-python, one request at a time (greedy, stop at a newline); the median
    seconds of ``repeats`` passes."""
    import llama_cpp

    llm = llama_cpp.Llama(
        model_path=str(gguf),
        n_ctx=4096,
        n_threads=threads,
        n_threads_batch=threads,
        verbose=False,
    )
    times = []
    for _ in range(repeats):
        outputs = []
        start = time.perf_counter()
        for prompt, limit in zip(prompts, limits, strict=True):
            out = llm.create_completion(prompt, max_tokens=limit, temperature=0.0, stop=["\n"])
            outputs.append(out["choices"][0]["text"].strip())
        times.append(time.perf_counter() - start)
    del llm
    return outputs, statistics.median(times)


def project_translate(segments: list[Segment], threads: int, languages: str | None, repeats: int):
    from routelmt.backends.llamacpp import LlamaCppTranslator

    translator = LlamaCppTranslator(
        "gemma3-270m", threads=threads, repair=None, output_languages=languages
    )
    generator = translator._build()  # load outside the timed part, as for the anchor
    generator.translate(segments[:1])  # the direction's shared prefix, as the anchor's warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        outputs = generator.translate(segments)
        times.append(time.perf_counter() - start)
    return outputs, statistics.median(times), generator


def side_by_side(args, segments: list[Segment], threads: int) -> list[dict]:
    """The three paths at one thread count: a row each, the cut head's with its intervals."""
    from routelmt.metrics.sacre import corpus_chrf, corpus_chrf_difference_interval
    from routelmt.models import gguf_path
    from routelmt.prompts import encode_prompts

    references = [s.reference or "" for s in segments]
    outputs, seconds, gen = project_translate(segments, threads, None, args.repeats)
    prompts = encode_prompts(gen.template, segments, gen.tokenizer)
    limits = [gen.limit_for(s) for s in segments]
    tokenizer = gen.tokenizer
    del gen
    runs = {"llamacpp": (outputs, seconds)}
    runs["anchor"] = anchor_translate(
        gguf_path("gemma3-270m"), prompts, limits, threads, args.repeats
    )
    cut_out, cut_s, gen = project_translate(segments, threads, args.output_languages, args.repeats)
    runs["llamacpp, cut head"] = (cut_out, cut_s)
    kept = gen.n_vocab
    del gen
    rows = []
    for name in ("anchor", "llamacpp", "llamacpp, cut head"):
        texts, secs = runs[name]
        tokens = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
        rows.append(
            {
                "path": name,
                "threads": threads,
                "seconds": round(secs, 2),
                "out_tokens": tokens,
                "tokens_per_s": round(tokens / secs, 1),
                "chrf": round(corpus_chrf(texts, references), 2),
                "same_as_anchor": sum(a == b for a, b in zip(texts, runs["anchor"][0])),
            }
        )
    for name in ("anchor", "llamacpp"):  # cut head minus each, on the same resamples
        low, high = corpus_chrf_difference_interval(
            runs[name][0], cut_out, references, n_boot=args.n_boot
        )
        rows[-1][f"chrf_minus_{name}"] = [round(low, 2), round(high, 2)]
    rows[-1]["kept_tokens"] = kept
    return rows


def print_table(rows: list[dict], n: int) -> None:
    anchor = {r["threads"]: r["tokens_per_s"] for r in rows if r["path"] == "anchor"}
    columns = "path threads seconds out-tokens out-tokens/s vs-anchor chrF same-as-anchor"
    print("| " + " | ".join(c.replace("-", " ") for c in columns.split()) + " |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = r["tokens_per_s"] / anchor[r["threads"]]
        print(
            f"| {r['path']} | {r['threads']} | {r['seconds']} | {r['out_tokens']} | "
            f"{r['tokens_per_s']} | {ratio:.2f}x | {r['chrf']} | {r['same_as_anchor']}/{n} |"
        )
    for r in rows:
        if r["path"] == "llamacpp, cut head":
            print(
                f"cut head ({r['kept_tokens']} tokens kept), {r['threads']} thread(s): chrF "
                f"minus anchor interval {r['chrf_minus_anchor']}, "
                f"minus full head {r['chrf_minus_llamacpp']}"
            )


def coverage(run: Path, languages: str, sizes: str) -> None:
    """How often the full head's own outputs in a bench run use a token a cut head lacks, for
    each ``words:english_words`` size: what the cut can cost, before decoding anything."""
    import gguf

    from routelmt.backends.llamacpp import LlamaCppTranslator
    from routelmt.models import gguf_path
    from routelmt.output_vocab import output_token_ids, parse_languages
    from routelmt.records import Segment, Translation, read_records

    _, tokenizer, _ = LlamaCppTranslator("gemma3-270m")._load_parts()
    reader = gguf.GGUFReader(str(gguf_path("gemma3-270m")))
    pieces = reader.fields["tokenizer.ggml.tokens"].contents()
    types = reader.fields["tokenizer.ggml.token_type"].contents()
    segments = read_records(run / "data" / "segments.jsonl", Segment)
    path = run / "translate" / "llamacpp-gemma3-270m" / "translations.jsonl"
    texts = {t.segment_id: t.text for t in read_records(path, Translation)}
    ids = {s.id: tokenizer(texts[s.id], add_special_tokens=False)["input_ids"] for s in segments}
    print(f"\n{run}: the full head's outputs against cut heads ({languages})")
    print("| words | English words | kept tokens | direction | outputs with a cut token |")
    print("|---|---|---|---|---|")
    for size in sizes.split(","):
        words, english = (int(v) for v in size.split(":"))
        keep = set(
            output_token_ids(
                tokenizer, pieces, types, parse_languages(languages), words=words,
                english_words=english,
            ).tolist()
        )  # fmt: skip
        for direction in sorted({s.direction for s in segments}):
            rows = [ids[s.id] for s in segments if s.direction == direction]
            hit = sum(any(i not in keep for i in r) for r in rows)
            cut = sum(i not in keep for r in rows for i in r)
            total = sum(len(r) for r in rows)
            print(
                f"| {words} | {english} | {len(keep)} | {direction} | {hit}/{len(rows)} "
                f"({100 * cut / total:.2f}% of tokens) |"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--pair", default="en-es")
    parser.add_argument("--data", type=Path, default=None, help="WMT24 root (default: shared)")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--output-languages", default="de,es,zh")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes (median)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--coverage", type=Path, help="a bench run: only the coverage table")
    parser.add_argument("--coverage-sizes", default="20000:5000,50000:20000,200000:50000")
    args = parser.parse_args()
    if args.coverage:
        coverage(args.coverage, args.output_languages, args.coverage_sizes)
        return 0

    from routelmt.datasets.wmt import WMTDataset

    segments = WMTDataset(args.data).segments(args.pair)[: args.n]
    rows: list[dict] = []
    for threads in [int(t) for t in args.threads.split(",")]:
        rows += side_by_side(args, segments, threads)
    print(f"{args.n} {args.pair} segments; load average {os.getloadavg()[0]:.1f} at the end")
    print_table(rows, args.n)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
