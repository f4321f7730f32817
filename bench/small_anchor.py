"""The small model's out-tokens/s against plain llama-cpp-python, side by side in one run.

    python bench/small_anchor.py [--n 32] [--pair en-es] [--threads 1,2] [--repeats 3]
                                 [--heads cut,screen] [--output-languages de,es,zh] [--json FILE]

On the first N WMT24 segments of a direction, with the project's prompt (the same token ids),
GGUF, greedy decoding, newline stop and length limit, at each thread count:

- ``anchor``: plain llama-cpp-python (``Llama.create_completion``), one request at a time, with
  its own prompt-prefix reuse: what a user would write without this project;
- ``llamacpp``: the project's backend (continuous batch, shared few-shot prefix);
- ``llamacpp, cut head`` (``--heads cut``): the same with ``output_languages`` (the output head
  cut to the tokens the target languages write; prompts still prefilled from the full
  vocabulary);
- ``llamacpp, screened head`` (``--heads screen``): the same with ``head_screen`` (a Q4_0 copy
  of the head scores every token, the few it cannot rule out are re-checked exactly).

Out-tokens are counted with the model's tokenizer on each output, so every path is counted the
same way. Each path's corpus chrF against the references, and each other head's paired
difference against the full head and the anchor (bootstrap interval over segments); identical
outputs against the anchor and the full head. Seconds are the median of ``--repeats`` passes;
the paths run one after the other at each thread count, so a load drift hits them alike.
``--coverage RUN`` prints instead how many of a bench run's full-head outputs use a token that
a cut head of each size lacks;
``--screen-errors PAIR`` how far (in standard deviations) the screened head's error reaches over
the whole vocabulary, on rows sampled while translating a direction (choose the screen's ``z``
on a direction you do not report).
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


def project_translate(segments: list[Segment], threads: int, options: dict, repeats: int):
    from routelmt.backends.llamacpp import LlamaCppTranslator

    translator = LlamaCppTranslator("gemma3-270m", threads=threads, repair=None, **options)
    generator = translator._build()  # load outside the timed part, as for the anchor
    generator.translate(segments[:1])  # the direction's shared prefix, as the anchor's warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        outputs = generator.translate(segments)
        times.append(time.perf_counter() - start)
    return outputs, statistics.median(times), generator


def head_options(args) -> dict[str, dict]:
    """The other heads to time beside the full one (``--heads``), with their backend options."""
    known = {
        "cut": ("llamacpp, cut head", {"output_languages": args.output_languages}),
        "screen": ("llamacpp, screened head", {"head_screen": True}),
    }
    wanted = [h for h in args.heads.split(",") if h]
    unknown = sorted(set(wanted) - set(known))
    if unknown:
        raise SystemExit(f"--heads: unknown {', '.join(unknown)} (known: {', '.join(known)})")
    return dict(known[h] for h in wanted)


def side_by_side(args, segments: list[Segment], threads: int) -> list[dict]:
    """Every path at one thread count: a row each, the other heads' with their intervals."""
    from routelmt.metrics.sacre import corpus_chrf, corpus_chrf_difference_interval
    from routelmt.models import gguf_path
    from routelmt.prompts import encode_prompts

    references = [s.reference or "" for s in segments]
    outputs, seconds, gen = project_translate(segments, threads, {}, args.repeats)
    prompts = encode_prompts(gen.template, segments, gen.tokenizer)
    limits = [gen.limit_for(s) for s in segments]
    tokenizer = gen.tokenizer
    del gen
    runs = {"llamacpp": (outputs, seconds)}
    runs["anchor"] = anchor_translate(
        gguf_path("gemma3-270m"), prompts, limits, threads, args.repeats
    )
    others = head_options(args)
    extra: dict[str, dict] = {}
    for name, options in others.items():
        texts, secs, gen = project_translate(segments, threads, options, args.repeats)
        runs[name] = (texts, secs)
        extra[name] = {"kept_tokens": gen.n_vocab}
        if gen.screen is not None:
            checked = gen.screen.tokens_checked / max(gen.screen.rows_checked, 1)
            extra[name]["rechecked_per_row"] = round(checked, 1)
        del gen
    rows = []
    for name, (texts, secs) in runs.items():
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
                "same_as_full_head": sum(a == b for a, b in zip(texts, runs["llamacpp"][0])),
                **extra.get(name, {}),
            }
        )
        for base in ("anchor", "llamacpp") if name in others else ():  # on the same resamples
            low, high = corpus_chrf_difference_interval(
                runs[base][0], texts, references, n_boot=args.n_boot
            )
            rows[-1][f"chrf_minus_{base}"] = [round(low, 2), round(high, 2)]
    return rows


def print_table(rows: list[dict], n: int) -> None:
    anchor = {r["threads"]: r["tokens_per_s"] for r in rows if r["path"] == "anchor"}
    columns = (
        "path threads seconds out-tokens out-tokens/s vs-anchor chrF same-as-anchor "
        "same-as-full-head"
    )
    print("| " + " | ".join(c.replace("-", " ") for c in columns.split()) + " |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = r["tokens_per_s"] / anchor[r["threads"]]
        print(
            f"| {r['path']} | {r['threads']} | {r['seconds']} | {r['out_tokens']} | "
            f"{r['tokens_per_s']} | {ratio:.2f}x | {r['chrf']} | {r['same_as_anchor']}/{n} | "
            f"{r['same_as_full_head']}/{n} |"
        )
    for r in rows:
        if "chrf_minus_anchor" in r:
            what = f"{r['kept_tokens']} tokens kept"
            if "rechecked_per_row" in r:
                what += f", {r['rechecked_per_row']} tokens re-checked a row"
            print(
                f"{r['path']} ({what}), {r['threads']} thread(s): chrF minus anchor interval "
                f"{r['chrf_minus_anchor']}, minus full head {r['chrf_minus_llamacpp']}"
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


def screen_error_sample(pair: str, n: int, every: int, data: Path | None) -> None:
    """Translate ``n`` segments of ``pair`` with the screened head; at every ``every``-th
    decode step, the largest screen error over all tokens of each row, in sigma."""
    import numpy as np

    from routelmt.backends.llamacpp import LlamaCppTranslator
    from routelmt.datasets.wmt import WMTDataset
    from routelmt.screened_head import screen_errors

    gen = LlamaCppTranslator("gemma3-270m", repair=None, head_screen=True)._build()
    screen, choose, seen = gen.screen, gen.screen.choose, []

    def recording(logits, hidden):
        if len(seen) % every == 0:
            seen.append(screen_errors(screen, np.array(logits), hidden))
        else:
            seen.append(None)
        return choose(logits, hidden)

    screen.choose = recording
    gen.translate(WMTDataset(data).segments(pair, reference=None)[:n])
    z = np.concatenate([s for s in seen if s is not None])
    print(
        f"{pair}, {n} segments: {len(z)} rows sampled from {len(seen)} steps; the largest "
        f"screen error over the vocabulary, in sigma: median {np.median(z):.2f}, "
        f"99th percentile {np.percentile(z, 99):.2f}, max {z.max():.2f} (z = {screen.z}); "
        f"{screen.tokens_checked / max(screen.rows_checked, 1):.1f} tokens re-checked a row"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--pair", default="en-es")
    parser.add_argument("--data", type=Path, default=None, help="WMT24 root (default: shared)")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--heads", default="cut,screen", help="other heads to time: cut,screen")
    parser.add_argument("--output-languages", default="de,es,zh", help="the cut head's")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes (median)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--coverage", type=Path, help="a bench run: only the coverage table")
    parser.add_argument("--coverage-sizes", default="20000:5000,50000:20000,200000:50000")
    parser.add_argument("--screen-errors", metavar="PAIR", help="only the screen error sample")
    parser.add_argument("--every", type=int, default=10, help="--screen-errors: sampled steps")
    args = parser.parse_args()
    if args.screen_errors:
        screen_error_sample(args.screen_errors, args.n, args.every, args.data)
        return 0
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
