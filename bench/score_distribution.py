"""Write the score distribution a router artifact ships (``score_distribution.json``).

The quantiles of the out-of-fold scores a ``routelmt bench`` run stored for the router's recipe
(stage 1: the prefill probe's; stage 2: the two-stage router's), per direction and pooled. The
service's pacer starts from the quantile for its budget instead of a blind warm-up, and
``/health`` reports how far its threshold is from it. Logic: ``routelmt.serve.live_replay``.

    python bench/score_distribution.py --run runs/in-model --large GPT-4 \
        --into src/routelmt/routers/shipped/routelmt-2stage [--stages stage1,stage2]
"""

from __future__ import annotations

import argparse
import shlex
import sys

from routelmt.errors import RouteLMTError
from routelmt.serve.live_replay import distributions_of, load_bench_run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True, help="a routelmt bench output folder")
    ap.add_argument("--large", default="GPT-4", help="the large system's folder name")
    ap.add_argument("--small", default=None, help="the small system's folder (default: found)")
    ap.add_argument("--router", default="routelmt-2stage", help="the final (stage-2) router")
    ap.add_argument("--stage1-router", default="routelmt", help="the prefill router")
    ap.add_argument("--stages", default="stage1,stage2", help="stage1 alone: a one-stage router")
    ap.add_argument("--into", required=True, help="the router artifact's folder")
    args = ap.parse_args(argv)
    try:
        streams = load_bench_run(
            args.run,
            args.large,
            router=args.router,
            stage1_router=args.stage1_router,
            small=args.small,
        )
        command = "python bench/score_distribution.py " + shlex.join(argv or sys.argv[1:])
        dists = distributions_of(streams, args.stages.split(","), source=command)
        path = dists.write(args.into)
    except (RouteLMTError, ValueError, OSError) as exc:
        print(f"score_distribution: error: {exc}", file=sys.stderr)
        return 2
    for stage, by in dists.stages.items():
        for direction, dist in by.items():
            print(
                f"{stage} {direction}: n {dist.n}, q10 {dist.quantile(0.1):.2f}, "
                f"q50 {dist.quantile(0.5):.2f}, q70 {dist.quantile(0.7):.2f}, "
                f"q90 {dist.quantile(0.9):.2f}"
            )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
