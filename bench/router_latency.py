"""What each router costs a request in the service: the default two-stage router against the
prefill probe and length, side by side in one process.

    python bench/router_latency.py [--n 12] [--pair en-es]
        [--routers "shipped:routelmt-2stage,shipped:routelmt,length"]

One ``TranslationService`` per router (the real serving path without HTTP: routing micro-batch,
continuous decoder, stage-2 review, large call), all sharing one live Gemma-3-270M; the large
model is the recorded GPT-4 (WMT24 segments, so it answers at once: what is timed is the small
side and the routing). Requests are sent one at a time, the routers taking turns on each segment
so that the machine's load falls on all of them alike. Prints, per router and per outcome (stayed
small, sent large at stage 1, sent large at stage 2), the per-request latency and its parts (the
``timings_ms`` of each answer), and the load average before and after. The pacers start cold
(the service's warm-up), so the share sent large over a short run is not the budget's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import Any


def _services(routers: list[str], small: Any) -> dict[str, Any]:
    from routelmt.serve.config import load_config
    from routelmt.serve.service import build_service

    out = {}
    for name in routers:
        router = {"path": name} if name.startswith("shipped:") or "/" in name else {"name": name}
        overrides = {
            "router": router,
            "server": {"log_path": None, "directions": None, "batching": True},
        }
        out[name] = build_service(load_config(None, overrides), small=small)
    return out


async def _one(service: Any, segment: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    (result,) = await service.translate(
        [segment], "auto", request_id=service.new_request_id(), endpoint="translate"
    )
    return time.perf_counter() - t0, result


def _outcome(result: Any) -> str:
    if result.tier != "large":
        return "stayed small"
    return "large at stage 2" if result.stage == 2 else "large at stage 1"


def _rows(name: str, rows: list[tuple[float, Any]]) -> list[str]:
    """One line per outcome: how many, latency p50 and mean, and the mean of each part."""
    out = []
    total = [t * 1000 for t, _ in rows]
    out.append(f"{name:26s} {'all':17s} {len(rows):3d} {statistics.median(total):8.0f}")
    for outcome in ("stayed small", "large at stage 1", "large at stage 2"):
        group = [(t, r) for t, r in rows if _outcome(r) == outcome]
        if not group:
            continue
        ms = [t * 1000 for t, _ in group]
        part = {
            key: statistics.mean(r.timings.get(key, 0.0) * 1000 for _, r in group)
            for key in ("route", "small", "stage2")
        }
        out.append(
            f"{'':26s} {outcome:17s} {len(group):3d} {statistics.median(ms):8.0f}"
            f" {statistics.mean(ms):8.0f} {part['route']:7.1f} {part['small']:8.0f}"
            f" {part['stage2']:7.0f}"
        )
    return out


async def run(args: argparse.Namespace) -> None:
    from routelmt.backends.hf import HFTranslator
    from routelmt.datasets.wmt import WMTDataset

    segments = WMTDataset().segments(args.pair, reference=None)[: args.n]
    small = HFTranslator("gemma3-270m")
    services = _services([r.strip() for r in args.routers.split(",") if r.strip()], small)
    for service in services.values():  # load the model, the QE encoder, ...: not timed
        await _one(service, segments[0])
    load0 = os.getloadavg()
    results: dict[str, list[tuple[float, Any]]] = {name: [] for name in services}
    for segment in segments:
        for name, service in services.items():
            results[name].append(await _one(service, segment))
    load1 = os.getloadavg()
    print(f"{args.n} {args.pair} segments, one request at a time, live Gemma-3-270M (hf)")
    print(f"load average before {load0[0]:.1f}, after {load1[0]:.1f}")
    print("(ms; small: the small model's prefill and decode; route: the router and the pacer")
    print(" after the prefill; stage2: the QE pass and the second look)")
    header = f"{'router':26s} {'requests':17s} {'n':>3s} {'p50':>8s} {'mean':>8s} {'route':>7s}"
    print(header + f" {'small':>8s} {'stage2':>7s}")
    for name, rows in results.items():
        print("\n".join(_rows(name, rows)))
    for service in services.values():
        service.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=12, help="segments (requests per router)")
    parser.add_argument("--pair", default="en-es")
    parser.add_argument("--routers", default="shipped:routelmt-2stage,shipped:routelmt,length")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
