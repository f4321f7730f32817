"""``routelmt report RUN_DIR``: a run's results as one self-contained HTML file."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "report",
        help="write a run's results as one HTML file that opens offline",
        description="Read the metrics.json of a run (a `routelmt bench` output folder, with one "
        "RUN_DIR/report/<large>/metrics.json per large system, or a `routelmt evaluate` output "
        "folder with RUN_DIR/metrics.json) and write one self-contained HTML file: "
        "quality-budget curves as inline SVG (a router keeps its colour in every chart, bands "
        "are the 95%% bootstrap intervals), HC@p per direction, and the paired differences "
        "against the baselines. No script, no external file: it opens offline.",
    )
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the run's output folder")
    parser.add_argument(
        "-o", "--output", type=Path, help="the HTML file to write (default: RUN_DIR/report.html)"
    )
    return parser


def run(args: argparse.Namespace) -> int:
    from routelmt.evaluation.html_report import write_html_report

    path = write_html_report(args.run_dir, args.output)
    print(path)
    return 0
