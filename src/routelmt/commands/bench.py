"""``routelmt bench``: every stage from one YAML config, cached by inputs and resumable."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from routelmt.commands._common import add_help_config


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "bench",
        help="run the whole benchmark from a YAML config (cached, resumable)",
        description="Run data -> translate -> score -> routers (k-fold) -> evaluate -> report "
        "from YAML configs. Each stage writes <output>/<stage>/ with a stage.json; a rerun "
        "skips finished stages whose inputs are unchanged and resumes an interrupted "
        "translation per segment. Precedence, lowest first: built-in defaults, CONFIG, each "
        "--config in order, each --set in order, then --full and --output.",
    )
    parser.add_argument(
        "config",
        type=Path,
        help="YAML config, or a shipped one by name: default, in-model, paper-table",
    )
    parser.add_argument(
        "--config",
        dest="more_configs",
        action="append",
        type=Path,
        default=[],
        metavar="FILE",
        help="another YAML file merged over the previous ones (repeatable)",
    )
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one setting, e.g. data.limit=50 or routers=[random,length] (repeatable)",
    )
    parser.add_argument("-o", "--output", type=Path, help="output folder (default: runs/<name>)")
    parser.add_argument("--full", action="store_true", help="every segment: no per-pair limit")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_help_config(
        parser, "routelmt.pipeline.config:BenchSettings", "ROUTELMT_BENCH__DATA__LIMIT=50"
    )
    parser.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="translate on a Ray cluster (pip install 'routelmt[ray]'): ADDRESS is 'auto' for "
        "the cluster started on this host by `ray start`, host:port for another; none: Ray's "
        "default ($RAY_ADDRESS, else a cluster on this host, else a new local instance). "
        "Workers: --set executor.workers=N",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    from routelmt.evaluation.guards import format_guard_table
    from routelmt.evaluation.report import summary, summary_table
    from routelmt.pipeline import load_bench_config, run_bench

    config = load_bench_config(
        [args.config, *args.more_configs], args.sets, full=args.full, output=args.output
    )
    if args.ray is not None:  # over the config's executor: key
        config["executor"] |= {"kind": "ray", "address": args.ray or None}
    result = run_bench(config)
    if args.json:
        summary = {
            "output": str(result.output),
            "seconds": round(result.seconds, 3),
            "stages": [
                {"stage": r.name, "status": r.status, "seconds": round(r.seconds, 3)}
                for r in result.stages
            ],
            "results": {large: summary(res) for large, res in result.results.items()},
            "guards": {
                large: {k: v for k, v in table.items() if k != "thresholds"}
                for large, table in result.guards.items()
            },
        }
        print(json.dumps(summary, indent=2))
        return 0
    width = max(len(r.name) for r in result.stages)
    print(f"{'stage':<{width}}  {'status':<7}{'seconds':>9}")
    for record in result.stages:
        print(f"{record.name:<{width}}  {record.status:<7}{record.seconds:>9.1f}")
    ran = sum(r.status == "ran" for r in result.stages)
    print(f"{len(result.stages)} stages, {ran} ran, total {result.seconds:.1f}s")
    for large, res in result.results.items():
        print(f"\nsmall = {config['small']}, large = {large}")
        print(summary_table(res))
        if large in result.reports:
            print(f"report: {result.reports[large]}")
        if large in result.guards:
            table = result.guards[large]
            print(
                f"\nguards at p = {table['p']} per direction on {table['gain_router']}'s "
                f"ranking (severe loss: gain < -{table['severe_delta']:g}):"
            )
            print(format_guard_table(table))
    print(f"\nconfig: {Path(result.output) / 'report' / 'config.yaml'}")
    return 0
