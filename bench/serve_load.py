"""Load test of `routelmt serve` on loopback: batching on vs off, side by side.

    python bench/serve_load.py [--requests 2000] [--clients 32] [--time-limit 60]
                               [--runs "batching on,batching off,legacy"]

Two server processes: the front (the service under test) and, as its large model, a second
instance of our own service reached through the OpenAI-compatible backend. The small model is a
synthetic cost model (a forward pass costs ``--fwd-ms`` plus ``--per-seg-ms`` per segment, as a
sleep that releases the GIL), so the numbers measure the serving path, not a model; with the
live model, pass ``--small hf:gemma3-270m`` (and ``--router-path`` for a trained in-model
router; fewer ``--requests`` on a CPU). Prints one table. ``--fairness`` adds a one-word request
alone and one sent while a 64-text request runs, with how many decode steps of the running batch
it waited beyond its time alone. ``--wmt en-es`` sends the first sentence (8-30 words) of each
WMT24 paragraph of that pair instead of the six sentences; with ``--small`` the table adds the
service's mean decode step (the wait for the model lock included) and the small translations'
mean length in tokens (the GGUF's own tokenizer); ``bench/llama_step_profile.py
--first-sentences`` times the same texts' prefill and decode steps alone, from which the two
cores' ceiling follows (docs/benchmarks.md section 8d).

Runs (``--runs``): ``batching on`` (the default service: with a live model, routing right
after the prefill and continuous decoding), ``batching off`` (one segment per forward), and
``legacy`` (the service as it was: micro-batches that route and decode together, and with a
live model the plain decoding path, ``prefix_cache: false, head: full``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx


def _make_synthetic(name: str, fwd_ms: float, per_seg_ms: float, reverse: bool):
    from routelmt.backends.base import Translator

    class Synthetic(Translator):
        def __init__(self) -> None:
            self.name = name

        def translate(self, segments: Sequence) -> list[str]:
            time.sleep((fwd_ms + per_seg_ms * len(segments)) / 1000.0)
            return [s.source[::-1] if reverse else s.source.upper() for s in segments]

    return Synthetic()


def run_server(args: argparse.Namespace) -> None:
    """Child process: one service on --port (front or back)."""
    from routelmt.serve.app import create_app
    from routelmt.serve.config import load_config
    from routelmt.serve.runner import bind, serve_forever
    from routelmt.serve.service import build_service

    if args.role == "back":
        small = _make_synthetic("large-sim", args.large_ms, 0.0, reverse=True)
        overrides = {
            # the stand-in large model routes nothing (the front asks for "small"): a router
            # that reads a model would load Gemma here and take the front's cores
            "router": {"name": "length"},
            "server": {
                "log_path": None,
                "directions": None,
                "max_batch_size": 64,
                "allow_policy_override": True,  # the front asks for model "small"
            },
        }
        service = build_service(load_config(None, overrides), small=small, large=small)
    else:
        small = None
        if not args.small:
            small = _make_synthetic("small-sim", args.fwd_ms, args.per_seg_ms, reverse=False)
        router = {"path": args.router_path} if args.router_path else {"name": args.router}
        overrides = {
            "small": args.small or "unused",
            "large": f"openai:http://127.0.0.1:{args.back_port}/v1#small",
            "large_options": {"timeout": 10.0, "concurrency": 64},
            "router": router,
            "budget": {"share": args.share},
            "server": {
                "log_path": args.log,
                "batching": not args.no_batching,
                "max_batch_size": 16,
                "max_wait_ms": 5.0,
            },
        }
        if args.small_options:
            overrides["small_options"] = json.loads(args.small_options)
        if args.fairness:
            overrides["server"]["allow_policy_override"] = True
        if args.legacy:
            overrides["server"]["continuous"] = False
            overrides["server"]["max_prefill_chars"] = None  # micro-batches as they were
            if args.legacy_small:  # "today" on another backend (the transformers plain path)
                overrides["small"] = args.legacy_small
            if overrides["small"].startswith("hf:"):
                overrides["small_options"] = {"prefix_cache": False, "head": "full"}
        service = build_service(load_config(None, overrides), small=small)
    serve_forever(create_app(service), bind("127.0.0.1", args.port), log_level="warning")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(extra: list[str]) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    cmd = [sys.executable, __file__, "--serve", "--port", str(port), *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600  # a live model loads slowly on a busy machine
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"server {cmd} did not start")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


SENTENCES = [
    "The weather is nice today.",
    "Please send the report before Friday, and copy the whole team on the email.",
    "Thanks!",
    "The committee postponed its decision on the new budget until the next quarterly meeting.",
    "Where is the station?",
    "Our results suggest that the effect is robust across all the languages we tested.",
]


def wmt_first_sentences(pair: str, root: str | None) -> list[str]:
    """The first sentence of each WMT24 source paragraph of ``pair`` with 8-30 words."""
    from routelmt.datasets.wmt import WMTDataset, first_sentences

    return first_sentences([s.source for s in WMTDataset(root).segments(pair)])


def mean_tokens(texts: list[str], small: str) -> float:
    """Mean length of ``texts`` in tokens of the small model's GGUF (its own tokenizer)."""
    from routelmt.llama_engine import import_llama_cpp
    from routelmt.models import gguf_path

    lc = import_llama_cpp()
    vocab = lc.Llama(str(gguf_path(small.split(":", 1)[1])), vocab_only=True, verbose=False)
    return statistics.mean(len(vocab.tokenize(t.encode(), add_bos=False)) for t in texts)


async def load(
    url: str, n: int, clients: int, limit_s: float, texts: list[str], target: str
) -> dict:
    latencies: list[float] = []
    route_ms: list[float] = []
    total_ms: list[float] = []
    large_rows: list[tuple[float, float, float]] = []  # (client s, server total, large call)
    tiers = {"small": 0, "large": 0}
    fallbacks = 0
    errors = 0
    small_texts: list[str] = []
    counter = iter(range(n))
    deadline = time.monotonic() + limit_s

    async def client(c: httpx.AsyncClient) -> None:
        nonlocal errors, fallbacks
        for i in counter:
            if time.monotonic() > deadline:
                return
            body = {"text": texts[i % len(texts)] + f" ({i})", "target_lang": target}
            t0 = time.perf_counter()
            try:
                r = await c.post(url + "/v1/translate", json=body)
                data = r.json()
                ok = r.status_code == 200
            except Exception:
                ok = False
            latencies.append(time.perf_counter() - t0)
            if not ok:
                errors += 1
                continue
            tiers[data["tier"]] += 1
            if data["tier"] == "small":
                small_texts.append(data["translation"])
            fallbacks += bool(data["fallback"])
            timings = data["timings_ms"]
            route_ms.append(timings["route"])
            total_ms.append(timings["total"])
            if data["tier"] == "large" and "large" in timings:
                large_rows.append((latencies[-1] * 1000, timings["total"], timings["large"]))

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(timeout=600, limits=limits) as c:
        # one request first, not counted: what a service loads on its first request (the QE
        # scorer's language models: about 10 s here) is not the steady state measured
        warm = {"text": texts[0] + " (warm-up)", "target_lang": target}
        assert (await c.post(url + "/v1/translate", json=warm)).status_code == 200
        deadline = time.monotonic() + limit_s
        t0 = time.perf_counter()
        await asyncio.gather(*(client(c) for _ in range(clients)))
    wall = time.perf_counter() - t0
    health = httpx.get(url + "/health", timeout=5).json()
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 2 else [float("nan")] * 99
    done = len(latencies)
    large_overhead = [client - large for client, _total, large in large_rows]
    return {
        "large_p50_ms": statistics.median([r[0] for r in large_rows]) if large_rows else 0.0,
        "large_call_p50_ms": statistics.median([r[2] for r in large_rows]) if large_rows else 0.0,
        "large_minus_call_p50_ms": statistics.median(large_overhead) if large_rows else 0.0,
        "route_p50_ms": statistics.median(route_ms) if route_ms else float("nan"),
        "requests": done,
        "wall_s": wall,
        "throughput": done / wall,
        "p50_ms": q[49] * 1000,
        "p95_ms": q[94] * 1000,
        "p99_ms": q[98] * 1000,
        "errors": errors,
        "fallbacks": fallbacks,
        "large_share": tiers["large"] / max(done - errors, 1),
        "server_p50_ms": statistics.median(total_ms) if total_ms else float("nan"),
        "route_ms": statistics.mean(route_ms) if route_ms else float("nan"),
        "route_share": sum(route_ms) / max(sum(total_ms), 1e-9),
        "mean_batch": health["batching"]["items"] / max(health["batching"]["batches"], 1),
        "decode_step_ms": health["batching"].get("decode_step_ms_mean") or float("nan"),
        "_small_texts": small_texts,
    }


LONG = (
    "The committee postponed its decision on the new budget until the next quarterly meeting, "
    "because several members asked for more time to study the figures that the finance "
    "department had presented only the day before, and the chair agreed that a hurried vote "
    "would not serve anyone well."
)


async def fairness(url: str, delay_s: float = 2.0) -> dict:
    """A one-word request alone; then one sent ``delay_s`` after a 64-text request started
    (whether that one was still running when the word came back is reported).

    Both forced small (the decoding queue is what is measured), the 64 texts long sentences
    (within the request limits), each numbered so no cache can help."""
    word = {"text": "Thanks!", "target_lang": "de", "policy": "small"}
    big = {"texts": [f"{LONG} ({i})" for i in range(64)], "target_lang": "de", "policy": "small"}
    async with httpx.AsyncClient(timeout=1800) as c:
        t0 = time.perf_counter()
        r = await c.post(url + "/v1/translate", json=word)
        alone = (time.perf_counter() - t0) * 1000
        assert r.status_code == 200, r.text

        async def timed(body: dict) -> float:
            t = time.perf_counter()
            got = await c.post(url + "/v1/translate", json=body)
            assert got.status_code == 200, got.text
            return (time.perf_counter() - t) * 1000

        big_task = asyncio.create_task(timed(big))
        started = time.perf_counter()
        await asyncio.sleep(delay_s)
        during = await timed(word)
        before = (time.perf_counter() - started) * 1000 - during
        # the 64-text request is not waited for (minutes on a CPU): the server stops with it
        still_running = not big_task.done()
        health = (await c.get(url + "/health")).json()["batching"]
        big_task.cancel()
    step_ms = health.get("decode_step_ms_mean") or float("nan")
    return {
        "one_word_alone_ms": alone,
        "one_word_during_ms": during,
        "big_started_before_ms": before,
        "big_still_running": float(still_running),
        "decode_step_ms": step_ms,
        # how much longer than alone, in decode steps of the running batch
        "extra_in_steps": (during - alone) / step_ms,
    }


def microbench_routing(n: int = 5000) -> float:
    """Router score + pacer decision per request, in-process, microseconds."""
    from routelmt.budget import BudgetSpec, Pacer
    from routelmt.records import Segment
    from routelmt.routers import get_router

    router = get_router("length")
    pacer = Pacer(BudgetSpec(share=0.3))
    segs = [Segment(id=str(i), direction="en-de", source=SENTENCES[i % 6]) for i in range(n)]
    t0 = time.perf_counter()
    for s in segs:
        pacer.decide(float(router.score([s])[0]))
    return (time.perf_counter() - t0) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds per run")
    parser.add_argument("--share", type=float, default=0.3)
    parser.add_argument("--fwd-ms", type=float, default=40.0, help="small model: ms per forward")
    parser.add_argument("--per-seg-ms", type=float, default=2.0, help="small: ms per segment")
    parser.add_argument("--large-ms", type=float, default=30.0, help="large model latency")
    parser.add_argument("--small", help="a real small backend for the front (e.g. hf:gemma3-270m)")
    parser.add_argument("--router", default="length", help="router name (default length)")
    parser.add_argument("--router-path", help="a trained router artifact folder instead")
    parser.add_argument("--small-options", help="JSON small_options for a real small backend")
    parser.add_argument(
        "--legacy-small",
        help="the small backend of the legacy run (default --small), e.g. hf:gemma3-270m to "
        "compare today's service with a llamacpp front",
    )
    parser.add_argument(
        "--fairness", action="store_true",
        help="after each load run: a one-word request alone, then while a 64-text one runs",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--wmt", metavar="PAIR",
        help="send the first sentences (8-30 words) of this WMT24 pair's paragraphs",
    )  # fmt: skip
    # child-process mode
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--role", default="front", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--back-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--no-batching", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--legacy", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--runs", default="batching on,batching off", help="comma list: batching on/off, legacy"
    )
    parser.add_argument("--log", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        run_server(args)
        return

    import tempfile

    common = ["--fwd-ms", str(args.fwd_ms), "--per-seg-ms", str(args.per_seg_ms)]
    common += ["--large-ms", str(args.large_ms), "--share", str(args.share)]
    common += ["--router", args.router]
    common += ["--small", args.small] if args.small else []
    common += ["--router-path", args.router_path] if args.router_path else []
    common += ["--small-options", args.small_options] if args.small_options else []
    common += ["--legacy-small", args.legacy_small] if args.legacy_small else []
    common += ["--fairness"] if args.fairness else []
    texts, target = (
        (SENTENCES, "de")
        if not args.wmt
        else (wmt_first_sentences(args.wmt, None), args.wmt.split("-")[1])
    )
    back, back_url = _spawn(["--role", "back", *common])
    back_port = back_url.rsplit(":", 1)[1]
    rows = {}
    try:
        flags = {"batching on": [], "batching off": ["--no-batching"], "legacy": ["--legacy"]}
        for label in [r.strip() for r in args.runs.split(",") if r.strip()]:
            if label not in flags:
                raise SystemExit(f"unknown run {label!r}; known: {', '.join(flags)}")
            flag = flags[label]
            with tempfile.TemporaryDirectory() as tmp:
                log = str(Path(tmp) / "decisions.jsonl")
                extra = ["--role", "front", "--back-port", back_port, "--log", log, *common]
                front, url = _spawn(extra + flag)
                try:
                    rows[label] = asyncio.run(
                        load(url, args.requests, args.clients, args.time_limit, texts, target)
                    )
                    small_texts = rows[label].pop("_small_texts")
                    if args.small and args.small.startswith("llamacpp:") and small_texts:
                        rows[label]["small_tokens_mean"] = mean_tokens(small_texts, args.small)
                    rows[label]["log_lines"] = Path(log).read_bytes().count(b"\n")
                    if args.fairness:
                        rows[label].update(asyncio.run(fairness(url)))
                finally:
                    _stop(front)
    finally:
        _stop(back)
    micro = microbench_routing()

    keys = [
        ("requests", "{:.0f}"),
        ("wall_s", "{:.1f}"),
        ("throughput", "{:.1f}"),
        ("p50_ms", "{:.1f}"),
        ("p95_ms", "{:.1f}"),
        ("p99_ms", "{:.1f}"),
        ("server_p50_ms", "{:.1f}"),
        ("errors", "{:.0f}"),
        ("fallbacks", "{:.0f}"),
        ("large_share", "{:.3f}"),
        ("route_ms", "{:.3f}"),
        ("route_share", "{:.4f}"),
        ("mean_batch", "{:.2f}"),
        ("decode_step_ms", "{:.1f}"),
        ("small_tokens_mean", "{:.1f}"),
        ("log_lines", "{:.0f}"),
        ("route_p50_ms", "{:.1f}"),
        ("large_p50_ms", "{:.1f}"),
        ("large_call_p50_ms", "{:.1f}"),
        ("large_minus_call_p50_ms", "{:.1f}"),
    ]
    if args.fairness:
        keys += [
            ("one_word_alone_ms", "{:.0f}"),
            ("one_word_during_ms", "{:.0f}"),
            ("big_started_before_ms", "{:.0f}"),
            ("big_still_running", "{:.0f}"),
            ("extra_in_steps", "{:.1f}"),
        ]
    labels = list(rows)
    small_desc = args.small or f"synthetic {args.fwd_ms} ms/forward + {args.per_seg_ms} ms/segment"
    print(
        f"serve load: {args.clients} clients, target large share {args.share}, "
        f"small {small_desc}, large {args.large_ms} ms, router {args.router_path or args.router}"
    )
    print(f"{'metric':<14}" + "".join(f"{lab:>16}" for lab in labels))
    for key, fmt in keys:
        cells = [fmt.format(rows[lab].get(key, float("nan"))) for lab in labels]
        print(f"{key:<14}" + "".join(f"{c:>16}" for c in cells))
    for other in [lab for lab in labels if lab != "batching on"]:
        if "batching on" in rows:
            ratio = rows["batching on"]["throughput"] / rows[other]["throughput"]
            p50 = rows[other]["p50_ms"] / rows["batching on"]["p50_ms"]
            print(f"batching on vs {other}: throughput {ratio:.2f}x, p50 {p50:.2f}x lower")
    print(f"router (length) + pacer in-process: {micro:.1f} us/request")
    if args.json:
        args.json.write_text(json.dumps({"runs": rows, "routing_us": micro}, indent=2))


if __name__ == "__main__":
    main()
