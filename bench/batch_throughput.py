"""What routing costs a batch: ``routelmt translate --small --large --budget`` against
``routelmt translate --backend SMALL`` on the segments it leaves small plus the large calls it
makes, each a fresh CLI process timed from start to exit (imports and model load included on
both sides).

The large model is a recorded WMT24 system (a lookup: its calls cost no time here), so the
difference is the routing: the router's scoring (for a two-stage router, the stage-1 prefill
and the stage-2 output features), the plan, and the ledger's fsync per large answer.

Wall seconds, and CPU seconds of each process (user + system: on shared cores the steadier
measure of the work, since the wall time then depends on the other jobs).

    python bench/batch_throughput.py --router length -n 48
    python bench/batch_throughput.py --router shipped:routelmt-2stage -n 48
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from routelmt.datasets.wmt import WMTDataset
from routelmt.records import write_records


def cli(*words: str) -> tuple[float, float, dict]:
    """Wall and CPU seconds (user + system) of one ``routelmt`` process, and the JSON it
    printed. On shared cores the CPU seconds are the steadier measure of the work done."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "routelmt.cli", "-q", *words],
        capture_output=True,
        text=True,
        check=False,
        env=os.environ,
    )
    seconds = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        raise SystemExit(f"routelmt {' '.join(words)} failed:\n{done.stderr}")
    return seconds, cpu, json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", default="en-es,en-de")
    parser.add_argument("-n", type=int, default=48, help="segments per pair (the first N)")
    parser.add_argument("--small", default="hf:gemma3-270m")
    parser.add_argument("--large", default="GPT-4")
    parser.add_argument("--router", default="length")
    parser.add_argument("--budget", type=float, default=0.3)
    parser.add_argument("-o", "--output", type=Path, default=Path("runs/owndata/throughput"))
    args = parser.parse_args()
    out = args.output
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    dataset = WMTDataset()
    pairs = args.pairs.split(",")
    segments = [s for p in pairs for s in dataset.segments(p, reference=None)[: args.n]]
    write_records(out / "segments.jsonl", segments)
    common = ["--pairs", args.pairs]
    batch_s, batch_cpu, summary = cli(
        "translate", "-i", str(out / "segments.jsonl"), "--small", args.small,
        "--large", args.large, "--router", args.router, "--budget", str(args.budget),
        "-o", str(out / "hybrid.jsonl"), *common,
    )  # fmt: skip
    plan = json.loads(Path(summary["plan"]).read_text(encoding="utf-8"))
    routed = {i for i, t in zip(plan["ids"], plan["tiers"], strict=True) if t > 0}
    small_ids = (
        {s.id for s in segments} if summary["two_stage"] else {s.id for s in segments} - routed
    )
    write_records(out / "small.jsonl", [s for s in segments if s.id in small_ids])
    write_records(out / "large.jsonl", [s for s in segments if s.id in routed])
    small_s, small_cpu, _ = cli(
        "translate", "-i", str(out / "small.jsonl"), "--backend", args.small,
        "-o", str(out / "small-alone.jsonl"),
    )  # fmt: skip
    large_s, large_cpu, _ = cli(
        "translate", "-i", str(out / "large.jsonl"), "--backend", args.large,
        "-o", str(out / "large-alone.jsonl"), *common,
    )  # fmt: skip
    row = {
        "router": args.router,
        "segments": len(segments),
        "large_calls": len(routed),
        "small_translations": len(small_ids),
        "batch_wall_s": round(batch_s, 2),
        "small_alone_wall_s": round(small_s, 2),
        "large_alone_wall_s": round(large_s, 2),
        "wall_ratio": round(batch_s / (small_s + large_s), 3),
        "batch_cpu_s": round(batch_cpu, 2),
        "small_alone_cpu_s": round(small_cpu, 2),
        "large_alone_cpu_s": round(large_cpu, 2),
        "cpu_ratio": round(batch_cpu / (small_cpu + large_cpu), 3),
        "batch_steps_s": summary["seconds"],
    }
    print(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
