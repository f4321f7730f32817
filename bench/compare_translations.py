"""Two small-model paths' translations of the same segments, side by side: corpus chrF against
the references per direction, the paired difference with a bootstrap interval, identical
outputs, and chrF of one against the other.

    python bench/compare_translations.py RUN_A RUN_B [--small-a SLUG] [--small-b SLUG]
                                         [--n-boot 1000] [--seed 0]

RUN_A / RUN_B are ``routelmt bench`` output folders (RUN_A's ``data/segments.jsonl`` must hold
every segment of RUN_B's; a smaller RUN_B, e.g. ``data.limit``, is compared on its own); the
translations read are ``translate/<slug>/translations.jsonl``, where ``<slug>`` is the only
non-replay system there unless given. The quality criterion of the fast
small-model path: a reduced-precision or llama.cpp path within 0.5 chrF of the fp32 path.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

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
    parser.add_argument("--failures", action="store_true", help="count catastrophic outputs")
    parser.add_argument(
        "--no-language-check", action="store_true", help="failures without lingua's check"
    )
    parser.add_argument("--hybrid", metavar="LARGE", help="hybrid chrF with this large system")
    parser.add_argument("--router", default="routelmt-2stage")
    parser.add_argument("--budget", type=float, default=0.3)
    args = parser.parse_args()
    segments = read_records(args.run_a / "data" / "segments.jsonl", Segment)
    in_b = {s.id for s in read_records(args.run_b / "data" / "segments.jsonl", Segment)}
    if len(in_b) < len(segments):  # a smaller run (data.limit) is compared on what it holds
        segments = [s for s in segments if s.id in in_b]
    if not segments or len(segments) != len(in_b):
        raise SystemExit("run B holds segments that run A does not: compare the other way round")
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
    if args.failures:
        print_failures(segments, a, b, directions, not args.no_language_check)
    if args.hybrid:
        runs = ((args.run_a, slug_a), (args.run_b, slug_b))
        print_hybrid(segments, runs, directions, args.hybrid, args.router, args.budget)


def hybrid_of(run: Path, small: str, large: str, router: str, segments, budget: float):
    """Per-segment hybrid chrF: the large system's where the run's router sends it (the top
    ``budget`` of each direction by its out-of-fold scores), else the small model's."""
    from routelmt.budget.allocation import allocate_top_p
    from routelmt.evaluation.run_arrays import load_run

    arrays = load_run(run, small, large)
    q_small = dict(zip((s.id for s in arrays.segments), arrays.q_small, strict=True))
    q_large = dict(zip((s.id for s in arrays.segments), arrays.q_large, strict=True))
    routed = json.loads((run / "routers" / large / router / "scores.json").read_text("utf-8"))
    by_id = dict(zip(routed["ids"], routed["scores"], strict=True))
    out = np.zeros(len(segments))
    for direction in sorted({s.direction for s in segments}):
        rows = [i for i, s in enumerate(segments) if s.direction == direction]
        mask = allocate_top_p(np.asarray([by_id[segments[i].id] for i in rows], float), budget)
        for i, large_goes in zip(rows, mask, strict=True):
            sid = segments[i].id
            out[i] = q_large[sid] if large_goes else q_small[sid]
    return out


def print_hybrid(segments, runs, directions, large: str, router: str, budget: float) -> None:
    from routelmt.evaluation.bootstrap import mean_interval

    h_a, h_b = (hybrid_of(run, slug, large, router, segments, budget) for run, slug in runs)
    groups = np.asarray([s.group for s in segments])
    print(f"\nhybrid chrF at p = {budget}, large {large}, each run's own {router} scores")
    print(f"{'direction':<10}{'n':>6}{'A':>9}{'B':>9}{'B - A':>8}{'95% interval':>20}")
    for name in [*directions, "all"]:
        rows = [i for i, s in enumerate(segments) if name in ("all", s.direction)]
        diff = h_b[rows] - h_a[rows]
        low, high = mean_interval(diff, groups[rows])
        print(
            f"{name:<10}{len(rows):>6}{h_a[rows].mean():>9.2f}{h_b[rows].mean():>9.2f}"
            f"{diff.mean():>+8.2f}{f'[{low:+.2f}, {high:+.2f}]':>20}"
        )


def print_failures(
    segments: list[Segment], a: list[str], b: list[str], directions, language_check: bool
) -> None:
    """Catastrophic outputs per direction, A and B, and the segments failing on one side only."""
    from routelmt.prompts import get_template
    from routelmt.repair import failure_of

    templates = [get_template("fewshot")]

    def fails(texts: list[str]) -> list[bool]:
        return [
            failure_of(s, t, templates, language_check=language_check) is not None
            for s, t in zip(segments, texts, strict=True)
        ]

    fail_a, fail_b = fails(a), fails(b)
    kinds = "empty, echo, copy" + (", wrong language" if language_check else "")
    print(f"\ncatastrophic outputs ({kinds})")
    print(f"{'direction':<10}{'n':>6}{'A':>14}{'B':>14}{'A only':>9}{'B only':>9}")
    for name in [*directions, "all"]:
        rows = [i for i, s in enumerate(segments) if name in ("all", s.direction)]
        na, nb = sum(fail_a[i] for i in rows), sum(fail_b[i] for i in rows)
        only_a = sum(fail_a[i] and not fail_b[i] for i in rows)
        only_b = sum(fail_b[i] and not fail_a[i] for i in rows)
        share = f"{na} ({100 * na / len(rows):.1f}%)", f"{nb} ({100 * nb / len(rows):.1f}%)"
        print(f"{name:<10}{len(rows):>6}{share[0]:>14}{share[1]:>14}{only_a:>9}{only_b:>9}")


if __name__ == "__main__":
    main()
