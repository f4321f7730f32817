"""The copy guard's run length, chosen on a direction the docs do not report.

    python bench/copy_guard.py [--pair en-uk] [--n 200] [--guards 0,3,4,6] [--json FILE]

Translates the first N WMT24 segments of ``--pair`` with the llamacpp backend (the screened
head, repair off) once per run length in ``--guards`` (0 = no guard), and prints per run length:
corpus chrF against the references, its paired difference to no guard (bootstrap interval over
segments), the catastrophic outputs by kind (``repair.failure_of``: empty, echo, copy, wrong
language) and the out-tokens/s. The run length to ship is the one chosen here; the given
directions then measure it once (docs/benchmarks.md section 17f).
"""

from __future__ import annotations

import argparse
import collections
import json
import time
from pathlib import Path


def translate(segments, guard: int, threads: int | None) -> tuple[list[str], float, int]:
    """Outputs, seconds and out-tokens of one pass with run length ``guard``."""
    from routelmt.backends.llamacpp import LlamaCppTranslator

    translator = LlamaCppTranslator(
        "gemma3-270m", repair=None, head_screen=True, copy_guard=guard, threads=threads
    )
    generator = translator._build()
    start = time.perf_counter()
    texts = generator.translate(segments)
    return texts, time.perf_counter() - start, generator.last_stats.generated_tokens


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pair", default="en-uk")
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--guards", default="0,3,4,6")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--data", type=Path, default=None, help="WMT24 root (default: shared)")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from routelmt.datasets.wmt import WMTDataset
    from routelmt.metrics.sacre import corpus_chrf, corpus_chrf_difference_interval
    from routelmt.prompts import get_template
    from routelmt.repair import failure_of

    segments = WMTDataset(args.data).segments(args.pair)[: args.n]
    references = [s.reference or "" for s in segments]
    templates = [get_template("fewshot")]
    guards = [int(g) for g in args.guards.split(",")]
    runs = {g: translate(segments, g, args.threads) for g in guards}
    base = runs[guards[0]][0]
    rows = []
    print(f"{args.n} {args.pair} segments; against run length {guards[0]}")
    print("| run length | chrF | minus first [95%] | failures | by kind | out-tokens/s |")
    print("|---|---|---|---|---|---|")
    for guard, (texts, seconds, tokens) in runs.items():
        kinds = collections.Counter(
            failure_of(s, t, templates) for s, t in zip(segments, texts, strict=True)
        )
        failed = sum(n for kind, n in kinds.items() if kind is not None)
        low, high = corpus_chrf_difference_interval(base, texts, references, n_boot=args.n_boot)
        row = {
            "guard": guard,
            "chrf": round(corpus_chrf(texts, references), 2),
            "minus_first": [round(low, 2), round(high, 2)],
            "failures": failed,
            "kinds": {k: n for k, n in sorted(kinds.items(), key=str) if k is not None},
            "tokens_per_s": round(tokens / seconds, 1),
        }
        rows.append(row)
        by_kind = ", ".join(f"{k} {n}" for k, n in row["kinds"].items())
        print(
            f"| {guard} | {row['chrf']} | [{low:+.2f}, {high:+.2f}] | {failed} "
            f"({100 * failed / len(texts):.1f}%) | {by_kind} | {row['tokens_per_s']} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
