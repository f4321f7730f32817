"""Two small-model paths' translations of the same segments, side by side: corpus chrF against
the references per direction, the paired difference with a bootstrap interval, identical
outputs, and chrF of one against the other.

    python bench/compare_translations.py RUN_A RUN_B [--small-a SLUG] [--small-b SLUG]
                                         [--n-boot 1000] [--seed 0]

RUN_A / RUN_B are ``routelmt bench`` output folders (their ``data/segments.jsonl`` must hold the
same segments); the translations read are ``translate/<slug>/translations.jsonl``, where
``<slug>`` is the only non-replay system there unless given. The quality criterion of the fast
small-model path: a reduced-precision or llama.cpp path within 0.5 chrF of the fp32 path.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from routelmt.metrics.sacre import corpus_chrf, corpus_chrf_difference_interval
from routelmt.records import Segment, Translation, read_records


def small_slug(run: Path, given: str | None) -> str:
    if given:
        return given
    candidates = [
        d.name
        for d in (run / "translate").iterdir()
        if d.is_dir() and (d.name.startswith("hf-") or d.name.startswith("llamacpp-"))
    ]
    if len(candidates) != 1:
        raise SystemExit(f"{run}: pick the small system with --small-a/--small-b: {candidates}")
    return candidates[0]


def texts(run: Path, slug: str, ids: list[str]) -> list[str]:
    path = run / "translate" / slug / "translations.jsonl"
    by_id = {t.segment_id: t.text for t in read_records(path, Translation)}
    missing = [i for i in ids if i not in by_id]
    if missing:
        raise SystemExit(f"{path}: {len(missing)} segments missing ({missing[0]})")
    return [by_id[i] for i in ids]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    parser.add_argument("--small-a")
    parser.add_argument("--small-b")
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    segments = read_records(args.run_a / "data" / "segments.jsonl", Segment)
    other = read_records(args.run_b / "data" / "segments.jsonl", Segment)
    if [s.id for s in segments] != [s.id for s in other]:
        raise SystemExit("the two runs hold different segments")
    ids = [s.id for s in segments]
    slug_a, slug_b = small_slug(args.run_a, args.small_a), small_slug(args.run_b, args.small_b)
    a, b = texts(args.run_a, slug_a, ids), texts(args.run_b, slug_b, ids)
    refs = [s.reference or "" for s in segments]
    directions = sorted({s.direction for s in segments})
    print(f"A = {args.run_a}/{slug_a}, B = {args.run_b}/{slug_b}; corpus chrF vs the references")
    header = f"{'direction':<10}{'n':>6}{'chrF A':>9}{'chrF B':>9}{'B - A':>8}"
    print(header + f"{'95% interval':>20}{'identical':>12}{'chrF B vs A':>13}")
    for name in [*directions, "all"]:
        rows = [i for i, s in enumerate(segments) if name in ("all", s.direction)]
        ra, rb, rr = [a[i] for i in rows], [b[i] for i in rows], [refs[i] for i in rows]
        score_a, score_b = corpus_chrf(ra, rr), corpus_chrf(rb, rr)
        low, high = corpus_chrf_difference_interval(ra, rb, rr, args.n_boot, args.seed)
        same = sum(x == y for x, y in zip(ra, rb))
        print(
            f"{name:<10}{len(rows):>6}{score_a:>9.2f}{score_b:>9.2f}{score_b - score_a:>+8.2f}"
            f"{f'[{low:+.2f}, {high:+.2f}]':>20}{f'{same}/{len(rows)}':>12}"
            f"{corpus_chrf(rb, ra):>13.1f}"
        )


if __name__ == "__main__":
    main()
