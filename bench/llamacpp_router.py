"""Re-validate the in-model router on llama.cpp's prefill features.

    python bench/llamacpp_router.py --run runs/in-model-3pairs [--layer 9] [--threads 1]
                                    [--limit N] [--json out.json]

The ``llamacpp`` backend gives the router its features from its own prefill (the hidden state
of the last prompt token at ``--layer``, captured in llama.cpp's forward pass over the Q4_K_M
weights); the shipped routers were trained on the transformers path's fp32 prefill of the same
prompts. On the labelled segments of a finished ``routelmt bench`` run (its small translations,
qualities and gains are kept, so only the features differ), this prints:

- how far llama.cpp's features are from the fp32 ones (max and median relative difference per
  row, and the cosine), and how long each prefill took;
- HC@0.3 per direction, their mean and pooled, for the ridge probe at ``--layer`` trained
  out-of-fold (5-fold by source group, the bench's folds) on each set of features, against each
  large system of the run, with the paired difference to length and between the two.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from routelmt.crossval import router_scores
from routelmt.evaluation import compare_routers
from routelmt.records import ScoredExample, Segment, Translation, read_records
from routelmt.routers import get_router
from routelmt.routers.inmodel import RouteLMTRouter, feature_source


class ArraySource:
    """Precomputed features (one layer) as a ``FeatureSource`` for the probe."""

    def __init__(self, ids: list[str], values: np.ndarray, layer: int, num_layers: int) -> None:
        self.rows = {i: k for k, i in enumerate(ids)}
        self.values = values
        self.the_layer = layer
        self.num_layers = num_layers

    def ensure(self, items, *, progress: bool = True) -> None:
        return None

    def layer(self, items, layer: int) -> np.ndarray:
        assert layer == self.the_layer, layer
        return self.values[[self.rows[(getattr(x, "segment", x)).id] for x in items]]


def load_examples(run: Path) -> dict[str, list[ScoredExample]]:
    segments = read_records(run / "data" / "segments.jsonl", Segment)
    systems = sorted(p.name for p in (run / "translate").iterdir() if p.is_dir())
    small = next(s for s in systems if s.startswith(("hf-", "llamacpp-")))

    def texts(system: str) -> dict[str, Translation]:
        rows = read_records(run / "translate" / system / "translations.jsonl", Translation)
        return {t.segment_id: t for t in rows}

    def quality(system: str) -> dict[str, float]:
        with open(run / "score" / system / "scores.jsonl", encoding="utf-8") as handle:
            return {r["segment_id"]: float(r["q"]) for r in map(json.loads, handle)}

    s_text, s_q = texts(small), quality(small)
    out: dict[str, list[ScoredExample]] = {}
    for large in (s for s in systems if s != small):
        l_text, l_q = texts(large), quality(large)
        out[large] = [
            ScoredExample(
                segment=seg,
                small_system=s_text[seg.id].system,
                large_system=l_text[seg.id].system,
                small_text=s_text[seg.id].text,
                large_text=l_text[seg.id].text,
                metric="chrf",
                q_small=s_q[seg.id],
                q_large=l_q[seg.id],
            )
            for seg in segments
        ]
    return out


def llama_features(segments: list[Segment], layer: int, threads: int, chunk: int) -> np.ndarray:
    from routelmt.backends.llamacpp import LlamaCppTranslator

    tr = LlamaCppTranslator("gemma3-270m", threads=threads, max_rows=max(64, chunk))
    out = []
    for first in range(0, len(segments), chunk):
        state = tr.prefill(segments[first : first + chunk], layer=layer)
        out.append(state.features.copy())
        del state  # frees its sequences
    return np.concatenate(out)


def hc_table(result: dict, names: list[str]) -> list[str]:
    lines = []
    dirs = result["directions"]
    header = f"   {'router':<20} {'mean':>6} " + " ".join(f"{d:>7}" for d in dirs) + "  pooled"
    lines.append(header)
    for name in names:
        mean = result["mean"]["routers"][name]["budgets"]["0.3"]["hc"]["value"]
        cells = [result["per_direction"][d]["routers"][name]["budgets"]["0.3"]["hc"]["value"]
                 for d in dirs]  # fmt: skip
        pooled = result["pooled"]["routers"][name]["budgets"]["0.3"]["hc"]["value"]
        row = " ".join(f"{c:7.1f}" for c in cells)
        lines.append(f"   {name:<20} {mean:6.1f} {row}  {pooled:6.1f}")
    return lines


def paired_line(result: dict, base: str, name: str) -> str:
    cell = result["mean"]["paired"][base][name]["budgets"]["0.3"]["hc"]
    lo, hi = cell["ci_low"], cell["ci_high"]
    dirs = result["directions"]
    per = " ".join(
        f"{result['per_direction'][d]['paired'][base][name]['budgets']['0.3']['hc']['value']:+7.1f}"
        for d in dirs
    )
    return (
        f"   {name} - {base}: mean {cell['value']:+.1f} [{lo:+.1f}, {hi:+.1f}]"
        f"{' *' if cell.get('beats') else ''}; per direction {per}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished routelmt bench run")
    parser.add_argument("--layer", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--chunk", type=int, default=32, help="prompts per llama.cpp prefill")
    parser.add_argument("--limit", type=int, default=0, help="first N segments (0: all)")
    parser.add_argument("--every", type=int, default=1, help="every K-th segment (all pairs)")
    parser.add_argument("--cache", type=Path, default=None, help="keep llama.cpp's features here")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    by_large = load_examples(args.run)
    every = [ex.segment for ex in next(iter(by_large.values()))]
    if args.limit or args.every > 1:
        by_large = {k: v[: args.limit or None : args.every] for k, v in by_large.items()}
    first = next(iter(by_large.values()))
    segments = [ex.segment for ex in first]
    ids = [s.id for s in segments]
    print(
        f"{len(segments)} segments from {args.run}; layer {args.layer}; "
        f"load avg {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    hf_source = feature_source("gemma3-270m")
    t0 = time.perf_counter()
    # the run's own segment list, in its order: the feature cache holds it in those chunks
    hf_source.ensure(every)
    hf = hf_source.layer(segments, args.layer).astype(np.float32)
    hf_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    if args.cache is not None and args.cache.exists():
        ll = np.load(args.cache)
    else:
        ll = llama_features(segments, args.layer, args.threads, args.chunk)
        if args.cache is not None:
            np.save(args.cache, ll)
    ll_s = time.perf_counter() - t0
    rel = np.abs(ll - hf).max(1) / np.abs(hf).max(1)
    cos = (ll * hf).sum(1) / (np.linalg.norm(ll, axis=1) * np.linalg.norm(hf, axis=1))
    print(
        f"features: fp32 (transformers, from the feature cache when present) {hf_s:.0f} s; "
        f"llama.cpp prefill {ll_s:.0f} s ({len(segments) / ll_s:.1f} segments/s, "
        f"{args.threads} thread(s))"
    )
    print(
        f"   relative difference per row (max |diff| / max |fp32|): max {rel.max():.3f}, "
        f"median {np.median(rel):.3f}; cosine min {cos.min():.4f}, median {np.median(cos):.5f}"
    )
    num_layers = hf_source.num_layers
    sources = {
        "routelmt-fp32": ArraySource(ids, hf, args.layer, num_layers),
        "routelmt-llamacpp": ArraySource(ids, ll, args.layer, num_layers),
    }
    out: dict = {"n": len(segments), "layer": args.layer, "feature_rel_max": float(rel.max())}
    for large, examples in by_large.items():
        factories = {
            name: (lambda src=src: RouteLMTRouter(layer=args.layer, source=src))
            for name, src in sources.items()
        }
        factories["length"] = lambda: get_router("length")
        scores, _ = router_scores(factories, examples, folds=5, seed=0)
        result = compare_routers(
            scores, examples=examples, budgets=[0.3], baselines=["length", "routelmt-fp32"]
        )
        print(f"\nlarge = {large}: HC@0.3 (%), mean over directions, each direction, pooled")
        print("\n".join(hc_table(result, ["length", "routelmt-fp32", "routelmt-llamacpp"])))
        print(paired_line(result, "length", "routelmt-fp32"))
        print(paired_line(result, "length", "routelmt-llamacpp"))
        print(paired_line(result, "routelmt-fp32", "routelmt-llamacpp"))
        out[large] = result
    print(f"\nload avg {os.getloadavg()[0]:.1f} at the end")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=float), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
