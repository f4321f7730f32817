"""Does the small model's translation of a request depend on what else is in its batch?

Greedy decoding on llama.cpp batches several sequences per forward pass; the floating-point sums
change with the batch's composition, so near-tied tokens can flip. This translates the same
segments three ways with the ``llamacpp`` backend: (1) one batch of all of them, (2) the same
segments in another batch composition (each placed among different neighbours: reversed order,
half the rows), (3) one at a time (``max_rows=1``: what ``routelmt serve --no-batching`` decodes),
twice; it prints how many outputs agree between each pair, and the seconds each way took (the
cost of batch-invariant decoding).

    python bench/batch_invariance.py [--pair en-es] [-n 24] [--pick spread] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import time

from routelmt.errors import RouteLMTError


def run(segments: list, **options: object) -> tuple[list[str], float]:
    from routelmt.backends.llamacpp import LlamaCppTranslator

    translator = LlamaCppTranslator("gemma3-270m", **options)
    try:
        translator.translate(segments[:1])  # load and warm the model outside the timing
        t0 = time.perf_counter()
        texts = translator.translate(segments)
        return texts, time.perf_counter() - t0
    finally:
        translator.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pair", default="en-es")
    ap.add_argument("-n", type=int, default=24, help="segments")
    ap.add_argument(
        "--pick",
        choices=("shortest", "spread"),
        default="spread",
        help="shortest sources, or spread evenly over the file among sources under 300 chars",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data", default=None, help="the WMT folder (default: the usual one)")
    args = ap.parse_args(argv)
    try:
        from routelmt.datasets.wmt import WMTDataset

        pool = WMTDataset(args.data).segments(args.pair)
        if args.pick == "shortest":
            segments = sorted(pool, key=lambda s: len(s.source))[: args.n]
        else:
            short = [s for s in pool if len(s.source) < 300]
            segments = short[:: max(1, len(short) // args.n)][: args.n]
        rows = len(segments)
        batched, t_batch = run(segments, batch_size=rows, max_rows=rows, threads=args.threads)
        half = max(1, rows // 2)
        mixed, t_mixed = run(segments[::-1], batch_size=half, max_rows=half, threads=args.threads)
        mixed = mixed[::-1]
        alone, t_alone = run(segments, batch_size=1, max_rows=1, threads=args.threads)
        again, _ = run(segments, batch_size=1, max_rows=1, threads=args.threads)
    except (RouteLMTError, OSError, ImportError) as exc:
        print(f"batch_invariance: error: {exc}", file=sys.stderr)
        return 2

    def same(a: list[str], b: list[str]) -> str:
        return f"{sum(x == y for x, y in zip(a, b, strict=True))}/{rows}"

    print(f"{rows} {args.pair} segments ({args.pick}), greedy, {args.threads} threads")
    print(f"batched ({rows} rows) vs another batch composition: {same(batched, mixed)} identical")
    print(f"batched vs one at a time: {same(batched, alone)} identical")
    print(f"one at a time, run twice: {same(alone, again)} identical")
    print(f"seconds: batched {t_batch:.1f}, other batch {t_mixed:.1f}, one at a time {t_alone:.1f}")
    print(f"cost of one at a time: {t_alone / t_batch:.2f}x the batched time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
