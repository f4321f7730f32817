"""``routelmt calibrate``: fit the streaming threshold tau_p on held-out router scores."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from routelmt import __version__
from routelmt.budget.calibration import calibrate_threshold, read_scores, realised_share
from routelmt.storage import write_json

log = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "calibrate",
        help="fit the routing threshold for a budget share on held-out scores",
        description=(
            "Fit tau_p so that the share of held-out scores >= tau_p is as close to the budget "
            "as possible. Scores: the scores.jsonl that `routelmt evaluate` writes (one column "
            "per router: pick one with --router), or JSONL lines "
            '{"id": ..., "score": ...}, or a JSON array of such objects.'
        ),
    )
    parser.add_argument("-i", "--input", required=True, help="held-out scores (JSONL or JSON)")
    parser.add_argument(
        "-b", "--budget", required=True, type=float, help="share of requests for the large model"
    )
    parser.add_argument(
        "-r",
        "--router",
        help="the column to read, e.g. routelmt or length (default: 'score'); "
        "for the scores.jsonl of `routelmt evaluate`",
    )
    parser.add_argument("--test", help="optional scores of other traffic to report the share on")
    parser.add_argument(
        "-o", "--output", help="write the calibration JSON here (default: print it to stdout)"
    )
    return parser


def run(args: argparse.Namespace) -> int:
    column = args.router or "score"
    _, scores = read_scores(args.input, column)
    calibration = calibrate_threshold(scores, args.budget)
    out = calibration.to_dict()
    out["input"] = str(args.input)
    out["column"] = column
    out["signature"] = f"routelmt-calibrate|rule:score>=threshold|ties:round-half-up|v{__version__}"
    if args.test:
        _, test_scores = read_scores(args.test, column)
        share = realised_share(test_scores, calibration.threshold)
        out["test"] = {"input": str(args.test), "n": int(test_scores.size), "realised_share": share}
        if abs(share - calibration.p) > 0.02:
            log.warning(
                "the threshold routes %.1f%% of the test scores, not %.1f%%: traffic differs "
                "from the calibration set; use the online pacer to hold the budget",
                100 * share,
                100 * calibration.p,
            )
    log.info(
        "threshold %.6g routes %d of %d calibration scores (%.2f%%, budget %.2f%%)",
        calibration.threshold,
        calibration.routed,
        calibration.n,
        100 * calibration.realised_share,
        100 * calibration.p,
    )
    if args.output:
        write_json(args.output, out)
    else:
        json.dump(out, sys.stdout, indent=2)
        sys.stdout.write("\n")
    return 0
