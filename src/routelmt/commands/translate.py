"""``routelmt translate``: translate a file of segments with any backend, resumable per segment;
with ``--large``, a hybrid batch under an exact budget (``routelmt.batch``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from routelmt.commands._common import _coerce, parse_kv, parse_router_args
from routelmt.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "translate",
        help="translate a file with one backend, or small + large under a budget (resumable)",
        description="Translate segments with any backend (a live model, a recorded WMT system, "
        "an endpoint) into Translation records (segment_id, system, text). The output is "
        "appended one batch at a time: rerun the same command after an interruption and only "
        "the segments not yet in the output are translated. With --small, --large and "
        "--budget (or --cost-budget): score every segment with the router, send exactly "
        "floor(pN + 0.5) of them to the large model, the rest to the small one; the plan is "
        "written before any large call and a rerun resumes it without paying a call twice.",
    )
    parser.add_argument(
        "-i", "--input", type=Path, required=True, help="segments: .jsonl records, .tsv or .txt"
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        help="translations JSONL (default: <input stem>.<backend>.jsonl beside the input)",
    )
    parser.add_argument(
        "--backend",
        metavar="SPEC",
        help="one backend for every segment, e.g. hf:gemma3-270m, GPT-4 (a recorded WMT24 "
        "system), openai:URL#model",
    )
    parser.add_argument(
        "--backend-arg",
        action="append",
        metavar="KEY=VALUE",
        help="backend option (repeatable; the small backend in a hybrid run)",
    )
    parser.add_argument(
        "--direction", help="direction for rows that carry none, e.g. en-es (required for .txt)"
    )
    parser.add_argument("--batch-size", type=int, default=16, help="segments per backend call")
    parser.add_argument(
        "--wmt-root", type=Path, help="replay: WMT system-outputs folder (default: WMT24)"
    )
    parser.add_argument("--pairs", help="replay: comma-separated pairs to load (default: all)")
    add_hybrid_args(parser)
    return parser


def add_hybrid_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("hybrid batch (small + large under a budget)")
    group.add_argument("--small", metavar="SPEC", help="the small backend (with --large)")
    group.add_argument(
        "--large",
        action="append",
        metavar="SPEC",
        help="a large backend: openai:URL#model, a recorded system, a JSONL of translations; "
        "repeat for more tiers (then --cost-budget)",
    )
    group.add_argument(
        "--router",
        default=None,
        help="a router folder from `routelmt train`, shipped:NAME, or a model-free router "
        "(length, random); default shipped:routelmt-2stage",
    )
    group.add_argument(
        "--router-arg", action="append", metavar="KEY=VALUE", help="model-free router option"
    )
    budget = group.add_mutually_exclusive_group()
    budget.add_argument("--budget", type=float, help="share of segments sent large, in (0, 1)")
    budget.add_argument(
        "--cost-budget", type=float, help="the most the large calls may cost (unit of --large-cost)"
    )
    group.add_argument(
        "--large-cost",
        type=float,
        action="append",
        help="cost per large call, one per --large (default 1: cost = calls)",
    )
    group.add_argument(
        "--gain-scale",
        type=float,
        action="append",
        help="per --large: the share of the predicted gain it delivers (default 1)",
    )
    group.add_argument(
        "--small-cost", type=float, default=0.0, help="cost per small translation (estimate only)"
    )
    group.add_argument(
        "--per-direction", action="store_true", help="apply the share per direction, not pooled"
    )
    group.add_argument(
        "--tie-seed",
        type=int,
        default=0,
        help="equal scores at the k-th place are ordered by a seeded permutation (the bench "
        "evaluator's rule); its seed",
    )
    group.add_argument(
        "--dry-run", action="store_true", help="plan and print it; call no large model"
    )
    group.add_argument(
        "--large-arg", action="append", metavar="KEY=VALUE", help="large backend option"
    )
    group.add_argument(
        "--large-concurrency", type=int, default=4, help="large calls in flight at once"
    )
    group.add_argument(
        "--retry-failed", action="store_true", help="ask again the large calls that failed before"
    )
    group.add_argument(
        "--work-dir", type=Path, help="plan, ledger and small outputs (default: <output>.work)"
    )


def run(args: argparse.Namespace) -> int:
    hybrid = args.large or args.small or args.budget is not None or args.cost_budget is not None
    if hybrid:
        return run_hybrid(args)
    if args.backend is None:
        raise ConfigError("give --backend SPEC, or --small, --large and --budget for a hybrid run")
    from routelmt.backends.resolve import make_translator, slug
    from routelmt.datasets.plain import load_segments
    from routelmt.resumable import translate_resumable
    from routelmt.storage import check_output_path

    segments = load_segments(args.input, direction=args.direction)
    options = {
        key: _coerce(value) for key, value in parse_kv(args.backend_arg, "--backend-arg").items()
    }
    dataset = None
    if args.wmt_root is not None:
        from routelmt.datasets.wmt import WMTDataset

        dataset = WMTDataset(args.wmt_root)
    pairs = [p.strip() for p in args.pairs.split(",") if p.strip()] if args.pairs else None
    output = args.output or args.input.with_name(f"{args.input.stem}.{slug(args.backend)}.jsonl")
    check_output_path(output)
    translator = make_translator(args.backend, dataset=dataset, pairs=pairs, **options)
    try:
        result = translate_resumable(translator, segments, output, batch_size=args.batch_size)
    finally:
        translator.close()
    summary = {
        "output": str(output),
        "system": translator.name,
        "segments": len(segments),
        "reused": result.reused,
        "translated": result.translated,
        "seconds": round(result.seconds, 3),
        "segments_per_s": _round(result.segments_per_second),
        "tokens_per_s": _round(result.tokens_per_second),
    }
    print(json.dumps(summary, indent=2))
    return 0


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _options(items: list[str] | None, flag: str) -> dict[str, object]:
    return {key: _coerce(value) for key, value in parse_kv(items, flag).items()}


def _per_tier(values: list[float] | None, n: int, flag: str, default: float) -> list[float]:
    if not values:
        return [default] * n
    if len(values) != n:
        raise ConfigError(f"{flag}: give one value per --large ({n}), got {len(values)}")
    return values


def run_hybrid(args: argparse.Namespace) -> int:
    """``routelmt translate --small S --large L --budget P``: thin over ``batch.run_batch``."""
    from routelmt.batch import BatchBudget, BatchJob, Tier, run_batch
    from routelmt.batch.router import DEFAULT_ROUTER
    from routelmt.datasets.plain import load_segments

    if args.backend is not None:
        raise ConfigError("--backend is for one backend; a hybrid run takes --small and --large")
    if not args.small or not args.large:
        raise ConfigError("a hybrid run needs --small SPEC and --large SPEC")
    if args.budget is None and args.cost_budget is None:
        raise ConfigError("a hybrid run needs --budget P (a share in (0, 1)) or --cost-budget C")
    budget = BatchBudget(
        share=args.budget,
        cost=args.cost_budget,
        per_direction=args.per_direction,
        small_cost=args.small_cost,
        tie_seed=args.tie_seed,
    )
    n = len(args.large)
    costs = _per_tier(args.large_cost, n, "--large-cost", 1.0)
    scales = _per_tier(args.gain_scale, n, "--gain-scale", 1.0)
    names = ["large"] if n == 1 else [f"large{j + 1}" for j in range(n)]
    tiers = [Tier(*row) for row in zip(names, args.large, costs, scales, strict=True)]
    router = args.router or DEFAULT_ROUTER
    router_args = parse_router_args(args.router_arg, default_router=router).get(router, {})
    segments = load_segments(args.input, direction=args.direction)
    dataset = None
    if args.wmt_root is not None:
        from routelmt.datasets.wmt import WMTDataset

        dataset = WMTDataset(args.wmt_root)
    job = BatchJob(
        segments=segments,
        small=args.small,
        tiers=tiers,
        router=router,
        budget=budget,
        output=args.output or args.input.with_name(f"{args.input.stem}.hybrid.jsonl"),
        work_dir=args.work_dir,
        small_options=_options(args.backend_arg, "--backend-arg"),
        large_options=_options(args.large_arg, "--large-arg"),
        router_args=router_args,
        batch_size=args.batch_size,
        large_concurrency=args.large_concurrency,
        retry_failed=args.retry_failed,
        dataset=dataset,
        pairs=[p.strip() for p in args.pairs.split(",") if p.strip()] if args.pairs else None,
    )
    print(json.dumps(run_batch(job, dry_run=args.dry_run), indent=2))
    return 0
