"""Budget drift on shifting traffic: a static calibrated threshold vs the online pacer.

Stream: the six WMT24 en-xx pairs (997 real segments each), every (pair, segment) twice, ordered
by domain (social, literary, news, speech) and shuffled within each domain, so the score
distribution shifts after the middle of the stream. The first 20% of the stream is the held-out
calibration traffic (what a deployment sees on day one); both policies then serve the other
80%. The static threshold is fitted once on that 20% (``calibrate_threshold``); the pacer starts
from the same threshold and history and adapts. A second static row is calibrated on a random
20% of the whole stream (it has seen every domain, but not their order).

Scores come from a pluggable score source (``SCORE_SOURCES``, or ``--scores-file`` with JSONL
``{"id": "<pair>:<line>", "score": ...}`` lines, e.g. the learned router's), default the source
length in characters. Quality: sentence chrF (sacrebleu defaults) of GPT-4 (large) and
Phi-3-Medium (small) against the reference; gain = chrF(large) - chrF(small).

    python bench/budget_drift.py [--data ../shared/data/wmt24] [-o OUT_DIR]

Prints a table; writes nothing unless ``-o`` is given (then a JSON of the numbers there).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sacrebleu.metrics.chrf import CHRF

from routelmt.budget import (
    BudgetSpec,
    Pacer,
    allocate_top_p,
    budget_count,
    calibrate_threshold,
    read_scores,
)
from routelmt.storage import default_wmt_root

PAIRS = ("en-es", "en-de", "en-zh", "en-uk", "en-hi", "en-is")
DOMAIN_ORDER = ("social", "literary", "news", "speech")
LARGE, SMALL = "GPT-4", "Phi-3-Medium"
BUDGETS = (0.1, 0.3, 0.5)
WINDOW = 1000


@dataclass(frozen=True)
class Request:
    pair: str
    line: int  # 0-based segment index after the canary line
    source: str
    domain: str

    @property
    def id(self) -> str:
        return f"{self.pair}:{self.line}"


def _lines(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines or not lines[0].startswith("CANARY") and "canary" not in lines[0].lower():
        raise SystemExit(f"{path}: expected the canary on line 1")
    return lines[1:]


def load_pair(root: Path, pair: str) -> dict[str, list[str]]:
    txt = root / "txt"
    out = {
        "source": _lines(txt / "sources" / f"{pair}.txt"),
        "reference": _lines(txt / "references" / f"{pair}.refA.txt"),
        "large": _lines(txt / "system-outputs" / pair / f"{LARGE}.txt"),
        "small": _lines(txt / "system-outputs" / pair / f"{SMALL}.txt"),
        "domain": [x.split("\t")[0] for x in _lines(txt / "documents" / f"{pair}.docs")],
    }
    n = len(out["source"])
    bad = [k for k, v in out.items() if len(v) != n]
    if bad:
        raise SystemExit(f"{pair}: files not line-aligned with the source: {bad}")
    return out


def build_stream(data: dict[str, dict[str, list[str]]], repeats: int, seed: int) -> list[Request]:
    rng = np.random.default_rng(seed)
    stream: list[Request] = []
    for domain in DOMAIN_ORDER:
        block = [
            Request(pair, i, d["source"][i], domain)
            for _ in range(repeats)
            for pair, d in data.items()
            for i in range(len(d["source"]))
            if d["domain"][i] == domain
        ]
        stream += [block[j] for j in rng.permutation(len(block))]
    return stream


# -- score sources: stream -> one score per request (higher = more worth the large model) ------
def length_scores(stream: list[Request]) -> np.ndarray:
    return np.array([len(r.source) for r in stream], dtype=float)


SCORE_SOURCES: dict[str, Callable[[list[Request]], np.ndarray]] = {"length": length_scores}


def file_scores(path: str) -> Callable[[list[Request]], np.ndarray]:
    ids, values = read_scores(path)
    by_id = dict(zip(ids, values.tolist()))

    def source(stream: list[Request]) -> np.ndarray:
        missing = [r.id for r in stream if r.id not in by_id]
        if missing:
            raise SystemExit(f"{path}: no score for {len(missing)} ids, e.g. {missing[0]!r}")
        return np.array([by_id[r.id] for r in stream], dtype=float)

    return source


def chrf_table(data: dict[str, dict[str, list[str]]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    chrf = CHRF()  # sacrebleu.sentence_chrf's defaults, one object reused
    out = {}
    for pair, d in data.items():
        q = {
            side: np.array(
                [chrf.sentence_score(h, [r]).score for h, r in zip(d[side], d["reference"])]
            )
            for side in ("small", "large")
        }
        out[pair] = (q["small"], q["large"])
    return out


def window_dev(routed: np.ndarray, p: float) -> float:
    """Max |share - p| over every sliding window of WINDOW consecutive requests."""
    c = np.concatenate(([0.0], np.cumsum(routed, dtype=float)))
    shares = (c[WINDOW:] - c[:-WINDOW]) / WINDOW
    return float(np.abs(shares - p).max())


def plot_windows(traces: dict[float, dict[str, np.ndarray]], path: Path, shift: int) -> None:
    """Realised large-model share over sliding windows of WINDOW requests, per budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(traces), figsize=(5 * len(traces), 3.8), sharey=True)
    kernel = np.ones(WINDOW) / WINDOW
    for ax, (p, policies) in zip(np.atleast_1d(axes), traces.items()):
        for name in ("static, first 20%", "pacer", "offline top-p"):
            share = np.convolve(policies[name].astype(float), kernel, mode="valid")
            ax.plot(np.arange(share.size) + WINDOW, 100 * share, label=name, lw=1.2)
        ax.axhline(100 * p, color="black", ls="--", lw=0.8, label="target share p")
        ax.axvline(shift, color="grey", ls=":", lw=0.8, label="first domain shift")
        ax.set_title(f"budget p = {p:g}")
        ax.set_xlabel("request (evaluated stream)")
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel(f"large-model share, last {WINDOW} requests (%)")
    # one legend below the panels: inside a panel it covered the traces
    handles, labels = np.atleast_1d(axes)[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="WMT24 folder (default: $ROUTELMT_DATA or ../shared)")
    parser.add_argument("--score-source", default="length", choices=sorted(SCORE_SOURCES))
    parser.add_argument("--scores-file", help="JSONL of {id: '<pair>:<line>', score} instead")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--calib-share", type=float, default=0.2)
    parser.add_argument("--gain", type=float, default=0.2, help="pacer gain")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--out-dir", help="also write budget_drift.json here")
    args = parser.parse_args(argv)

    t0 = time.time()
    root = Path(args.data) if args.data else default_wmt_root()
    if root is None:
        raise SystemExit("WMT24 data not found: pass --data or set $ROUTELMT_DATA")
    data = {pair: load_pair(root, pair) for pair in PAIRS}
    stream = build_stream(data, args.repeats, args.seed)
    score_fn = (
        file_scores(args.scores_file) if args.scores_file else SCORE_SOURCES[args.score_source]
    )
    scores = score_fn(stream)
    quality = chrf_table(data)
    q_small = np.array([quality[r.pair][0][r.line] for r in stream])
    q_large = np.array([quality[r.pair][1][r.line] for r in stream])
    gain = q_large - q_small

    n = len(stream)
    n_cal = budget_count(n, args.calib_share)
    cal_scores, ev = scores[:n_cal], slice(n_cal, n)
    ev_scores, ev_gain, ev_small = scores[ev], gain[ev], q_small[ev]
    rand_idx = np.random.default_rng(args.seed + 1).choice(n, n_cal, replace=False)
    shift_at = next(i for i, r in enumerate(stream) if r.domain != DOMAIN_ORDER[0])
    print(
        f"stream: {n} requests ({len(PAIRS)} pairs x 997 x {args.repeats}), domains in order "
        f"{' > '.join(DOMAIN_ORDER)} (first shift at request {shift_at}); score source: "
        f"{args.scores_file or args.score_source}"
    )
    print(
        f"calibration: first {n_cal} requests (all {stream[0].domain}); evaluated on the other "
        f"{n - n_cal}; gain = chrF({LARGE}) - chrF({SMALL}): mean {gain.mean():.2f}, "
        f"small-only {ev_small.mean():.2f}, large-only {(ev_small + ev_gain).mean():.2f}"
    )

    rows = []
    traces: dict[float, dict[str, np.ndarray]] = {}
    for p in BUDGETS:
        static = calibrate_threshold(cal_scores, p)
        static_rand = calibrate_threshold(scores[rand_idx], p)
        pacer = Pacer(
            BudgetSpec(share=p, window=WINDOW),
            initial_threshold=static.threshold,
            history=cal_scores,
            gain=args.gain,
        )
        t = time.perf_counter()
        paced = np.array([pacer.decide(s).large for s in ev_scores])
        us = (time.perf_counter() - t) / ev_scores.size * 1e6
        policies = {
            "static, first 20%": ev_scores >= static.threshold,
            "static, random 20%": ev_scores >= static_rand.threshold,
            "pacer": paced,
            "offline top-p": allocate_top_p(ev_scores, p),
        }
        traces[p] = policies
        for name, routed in policies.items():
            share = float(routed.mean())
            rows.append(
                {
                    "p": p,
                    "policy": name,
                    "share": share,
                    "overall_dev": abs(share - p),
                    "window_dev": window_dev(routed, p),
                    "mean_delta": float(ev_gain[routed].mean()) if routed.any() else 0.0,
                    "hybrid": float((ev_small + routed * ev_gain).mean()),
                    "calib_share": {
                        "static, first 20%": static.realised_share,
                        "static, random 20%": static_rand.realised_share,
                    }.get(name),
                    "us_per_decision": us if name == "pacer" else None,
                }
            )

    header = (
        f"{'p':>4}  {'policy':<19} {'share':>6} {'|share-p|':>9} {'max win |.-p|':>13} "
        f"{'MeanDelta':>9} {'hybrid chrF':>11}"
    )
    print()
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['p']:>4.1f}  {r['policy']:<19} {100 * r['share']:>5.1f}% "
            f"{100 * r['overall_dev']:>7.2f}pt {100 * r['window_dev']:>11.2f}pt "
            f"{r['mean_delta']:>9.2f} {r['hybrid']:>11.2f}"
        )
        if r["policy"] == "offline top-p":
            print()
    pacer_rows = [r for r in rows if r["policy"] == "pacer"]
    ok = all(r["overall_dev"] <= 0.01 and r["window_dev"] <= 0.03 for r in pacer_rows)
    print(
        f"pacer within 1pt overall and 3pt in every window of {WINDOW}: "
        f"{'yes' if ok else 'NO'}; {pacer_rows[0]['us_per_decision']:.1f} us per decision; "
        f"windows are all {n - n_cal - WINDOW + 1} sliding windows; shares and quality over the "
        f"{n - n_cal} evaluated requests; offline top-p routes exactly floor(p*N+0.5) by the "
        f"same scores, knowing the whole stream; total {time.time() - t0:.0f}s"
    )
    if args.out_dir:
        out = Path(args.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "budget_drift.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
        plot_windows(traces, out / "budget_drift.png", shift=shift_at - n_cal)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
