"""Ray, side by side in one run: the batch translation stage and the budget actor.

    python bench/ray_scaling.py [--n 24] [--pair en-es] [--batch-size 4] [--max-new-tokens 24]
                                [--decisions 2000] [--json out.json]

1. The translation stage (``translate_resumable``, the code ``routelmt bench`` runs) on N real
   WMT24 segments with Gemma-3-270M live: the local path (this process, torch's default
   threads, as ``routelmt bench`` without ``--ray``) vs Ray Data with 1 and with 2
   single-thread workers on a local Ray instance that this script starts (``ray.init`` with
   the machine's CPUs); the local path with one thread too. Wall seconds include starting the
   workers and loading the model in each (what a run pays); segments/s = N / wall; the first
   batch's seconds (start-up); the rate after it; and whether every output equals the local
   path's.
2. The budget's decision latency, one request per call and a batch of 16 per call: the local
   ``Pacer``, the SQLite store (``SQLitePacer``, one host), and the budget actor
   (``RayPacer``, a Ray call to one actor): median and 95th percentile per call.

Timings on a shared machine vary with its load; the 1-minute load average is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from routelmt.backends.resolve import make_translator
from routelmt.budget import BudgetSpec, Pacer
from routelmt.datasets.wmt import WMTDataset
from routelmt.executors import make_executor, translate_batches
from routelmt.resumable import translate_resumable
from routelmt.storage import default_wmt_root


def translate_run(settings, segments, out: Path, args) -> dict:
    """One run of the stage; ``local_threads`` sets torch's threads for the local path."""
    import torch

    def factory():
        return make_translator("hf:gemma3-270m", max_new_tokens=args.max_new_tokens)

    threads = torch.get_num_threads()
    if settings.get("local_threads"):
        torch.set_num_threads(settings["local_threads"])
    executor = make_executor({k: v for k, v in settings.items() if k != "local_threads"})
    first: list[float] = []
    try:
        translator = factory()
        runner = translate_batches(executor, factory)
        if runner is None:  # the local path: time its first batch the same way

            def runner(batches):
                for batch in batches:
                    yield translator.translate(batch), None

        def timed_runner(batches):
            for item in runner(batches):
                if not first:
                    first.append(time.perf_counter() - start)
                yield item

        start = time.perf_counter()
        done = translate_resumable(
            translator, segments, out, batch_size=args.batch_size, run_batches=timed_runner
        )
        wall = time.perf_counter() - start
        translator.close()
    finally:
        executor.close()  # leaves the Ray instance this script started running
        torch.set_num_threads(threads)
    rest = len(segments) - args.batch_size
    return {
        "wall_s": round(wall, 2),
        "first_batch_s": round(first[0], 2),
        "segments_per_s": round(len(segments) / wall, 3),
        # after the first batch is back: workers started and models loaded
        "after_first_per_s": round(rest / (wall - first[0]), 3) if wall > first[0] else None,
        "texts": done.texts,
    }


def stage_table(args, segments, tmp: Path) -> list[dict]:
    import torch

    runs = [
        (f"local, {torch.get_num_threads()} threads (bench default)", {"kind": "local"}),
        ("local, 1 thread", {"kind": "local", "local_threads": 1}),
        ("Ray, 1 worker x 1 thread", {"kind": "ray", "workers": 1, "threads": 1}),
        ("Ray, 2 workers x 1 thread", {"kind": "ray", "workers": 2, "threads": 1}),
    ]
    rows = []
    reference = None
    for i, (label, settings) in enumerate(runs):
        run = translate_run(settings, segments, tmp / f"run{i}.jsonl", args)
        texts = run.pop("texts")
        reference = reference if reference is not None else texts
        rows.append({"path": label, **run, "same_outputs": texts == reference})
        print(f"  {label}: {run['wall_s']:.1f} s", file=sys.stderr, flush=True)
    base = rows[0]["segments_per_s"]
    for row in rows:
        row["vs_local"] = round(row["segments_per_s"] / base, 2)
    return rows


def latencies(fn, calls: int) -> dict[str, float]:
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    times.sort()
    return {
        "median_us": round(statistics.median(times) * 1e6, 1),
        "p95_us": round(times[int(0.95 * (len(times) - 1))] * 1e6, 1),
    }


def budget_table(args, tmp: Path) -> list[dict]:
    from routelmt.serve.ray_budget import RayPacer
    from routelmt.serve.shared_pacer import SQLitePacer

    spec = BudgetSpec(share=0.3, hard_cap=1e9)
    rng = np.random.default_rng(0)
    pacers = [
        ("local Pacer", Pacer(spec, warmup=10)),
        ("SQLite store", SQLitePacer(spec, tmp / "budget.sqlite", warmup=10)),
        ("Ray budget actor", RayPacer(spec, "bench-budget", warmup=10)),
    ]
    rows = []
    for label, pacer in pacers:
        one = latencies(lambda p=pacer: p.decide(float(rng.normal())), args.decisions)
        batch = latencies(
            lambda p=pacer: p.decide_many(rng.normal(size=16).tolist()), args.decisions // 16
        )
        rows.append(
            {
                "pacer": label,
                "one_median_us": one["median_us"],
                "one_p95_us": one["p95_us"],
                "batch16_median_us": batch["median_us"],
                "batch16_p95_us": batch["p95_us"],
            }
        )
    base = rows[0]["one_median_us"]
    for row in rows:
        row["one_vs_local"] = round(row["one_median_us"] / base, 1)
    return rows


def table(rows: list[dict]) -> str:
    keys = list(rows[0])
    widths = {k: max(len(k), *(len(str(r[k])) for r in rows)) for k in keys}
    lines = ["  ".join(k.ljust(widths[k]) for k in keys)]
    lines += ["  ".join(str(r[k]).ljust(widths[k]) for k in keys) for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--pair", default="en-es")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--decisions", type=int, default=2000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import ray

    # a new local instance of our own ("local"), not a cluster that `ray start` left on this host
    ray.init(address="local", include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    segments = WMTDataset(default_wmt_root()).segments(args.pair)[: args.n]
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        stage = stage_table(args, segments, tmp)
        budget = budget_table(args, tmp)
    ray.shutdown()
    cpus = os.cpu_count()
    print(f"machine: {cpus} CPUs, 1-minute load average at the start {load:.2f}")
    print(
        f"\n1. translation stage: {args.n} {args.pair} segments, Gemma-3-270M live, "
        f"batch {args.batch_size}, at most {args.max_new_tokens} new tokens"
    )
    print(table(stage))
    print(f"\n2. budget decisions: {args.decisions} single calls, {args.decisions // 16} of 16")
    print(table(budget))
    if args.json:
        args.json.write_text(json.dumps({"stage": stage, "budget": budget, "load": load}))


if __name__ == "__main__":
    main()
