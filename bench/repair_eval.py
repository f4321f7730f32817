"""Repair before escalating, measured on a finished in-model bench run (per direction).

    python bench/repair_eval.py --run runs/in-model --out runs/small/repair \
        [--repair zeroshot,fewshot-alt] [--large GPT-4] [--threads 2] [--two-stage]

The run's small translations (few-shot prompt) are checked with ``routelmt.repair`` (copy of
the source, echo of a prompt example, wrong language, empty). Only the flagged segments are
decoded again, once per ``--repair`` template, with the llamacpp backend (the run's engine;
resumable: each finished decode is appended to ``<out>/<template>.jsonl`` and skipped on a
rerun). A repaired text replaces the first one only when it passes the checks (as in the
backends). Then, per direction and template:

- the failure rate before and after, and the repair's cost (segments and tokens re-decoded,
  seconds, as a share of the first decode's tokens);
- hybrid chrF at each budget (top ``round(p N)`` of the direction by the router's score go to
  the large system, its recorded WMT24 output), with repair vs without, and the paired
  difference with a 95% interval (group bootstrap over source segments, routing held fixed),
  for: length, the quality oracle (-q_small, on each version of the small output), the gain
  oracle, and with ``--two-stage`` the ``routelmt-2stage`` router trained out of fold (5-fold
  by source group, as the bench) on each version of the small output and its labels (stage 1 on
  the fp32 prefill features of the feature cache; the shipped artifact was trained on these very
  segments, so it is not used here).

Sentence chrF against the run's references (metric ``chrf``, as the bench) is computed here for
the small texts (both versions) and the large system's recorded outputs, so a run whose
translation stage is still going can be measured on the segments it has finished (``--decode-only``
re-decodes those and stops). Writes ``<out>/report.json`` and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np

from routelmt.budget.allocation import allocate_top_p
from routelmt.evaluation.bootstrap import mean_interval
from routelmt.metrics.base import get_metric
from routelmt.prompts import get_template
from routelmt.records import Segment, Translation, read_records
from routelmt.repair import failure_of

log = logging.getLogger("repair_eval")


def load_run(run: Path, large: str, data_root: Path) -> tuple[list[Segment], dict, np.ndarray]:
    """The run's segments that its small model has translated so far (a run still going is
    fine), their small texts, and the recorded large system's chrF on every segment."""
    from routelmt.backends.replay import ReplayTranslator
    from routelmt.datasets.wmt import WMTDataset

    segments = read_records(run / "data" / "segments.jsonl", Segment)
    systems = sorted(p.name for p in (run / "translate").iterdir() if p.is_dir())
    small = next(s for s in systems if s.startswith(("hf-", "llamacpp-")))
    rows = read_records(run / "translate" / small / "translations.jsonl", Translation)
    texts = {t.segment_id: t.text for t in rows}
    done = [s for s in segments if s.id in texts]
    pairs = sorted({s.direction for s in done})
    replay = ReplayTranslator(large, dataset=WMTDataset(data_root), pairs=pairs)
    q_large = chrf(done, replay.translate(done))
    return done, texts, dict(zip([s.id for s in done], q_large, strict=True))


def redecode(segments: list[Segment], template: str, path: Path, threads: int) -> dict[str, dict]:
    """Each segment decoded with ``template`` (llamacpp, no repair of its own), appended to
    ``path`` as it finishes; segments already there are not decoded again."""
    done: dict[str, dict] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                done[row["id"]] = row
    todo = [s for s in segments if s.id not in done]
    if not todo:
        return done
    from routelmt.backends.llamacpp import LlamaCppTranslator

    tr = LlamaCppTranslator("gemma3-270m", template=template, threads=threads, repair="off")
    tokenizer = tr.generator.tokenizer
    started = time.perf_counter()
    with open(path, "a", encoding="utf-8") as handle:
        for i, text in tr.translate_iter(todo):
            tokens = len(tokenizer(text, add_special_tokens=False)["input_ids"])
            row = {"id": todo[i].id, "text": text, "tokens": tokens}
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            handle.flush()
            done[row["id"]] = row
    stats = tr.last_stats
    meta = {"segments": len(todo), "seconds": time.perf_counter() - started}
    meta |= {"generated_tokens": stats.generated_tokens, "threads": threads}
    meta["load"] = os.getloadavg()[0]
    with open(path.with_suffix(".meta.jsonl"), "a", encoding="utf-8") as handle:
        handle.write(json.dumps(meta) + "\n")
    log.info("%s: %d decoded in %.0f s", template, len(todo), meta["seconds"])
    return done


def chrf(segments: list[Segment], texts: list[str]) -> np.ndarray:
    """Sentence chrF against each segment's reference, as the bench scores (metric ``chrf``)."""
    metric = get_metric("chrf")
    targets = [s.direction.split("-")[1] for s in segments]
    refs = [s.reference or "" for s in segments]
    return np.asarray(
        metric.sentence_scores(texts, refs, targets, sources=[s.source for s in segments]), float
    )


def routed_mask(scores: np.ndarray, p: float) -> np.ndarray:
    """The library's top-p allocation: exactly floor(pN + 0.5) large, ties by its seeded rule."""
    return allocate_top_p(scores, p)


def hybrid_rows(
    segs: list[Segment], q0: np.ndarray, q1: np.ndarray, ql: np.ndarray, routers: dict, budgets
) -> list[dict]:
    """Hybrid chrF without (q0) and with repair (q1) for each router and budget; ``routers``
    maps a name to (scores without repair, scores with repair)."""
    groups = [s.group for s in segs]
    rows = []
    for name, (s0, s1) in routers.items():
        for p in budgets:
            m0, m1 = routed_mask(s0, p), routed_mask(s1, p)
            h0 = np.where(m0, ql, q0)
            h1 = np.where(m1, ql, q1)
            lo, hi = mean_interval(h1 - h0, groups)
            rows.append(
                {
                    "router": name,
                    "p": p,
                    "without": float(h0.mean()),
                    "with": float(h1.mean()),
                    "diff": float((h1 - h0).mean()),
                    "ci": [lo, hi],
                }
            )
    return rows


def two_stage_oof(
    segs: list[Segment], texts: list[str], q_small: np.ndarray, q_large: np.ndarray
) -> np.ndarray:
    """Out-of-fold ``routelmt-2stage`` scores (5-fold by source group over every direction, as
    the bench), trained and scored on this version of the small output and its labels; stage 1
    reads the fp32 prefill features of the feature cache."""
    from routelmt.crossval import router_scores
    from routelmt.records import ScoredExample

    examples = [
        ScoredExample(
            segment=s, small_system="small", large_system="large", small_text=t,
            large_text="", metric="chrf", q_small=float(a), q_large=float(b),
        )
        for s, t, a, b in zip(segs, texts, q_small, q_large, strict=True)
    ]  # fmt: skip
    scores, _ = router_scores(["routelmt-2stage"], examples, folds=5, seed=0)
    return np.asarray(scores["routelmt-2stage"], float)


def evaluate_direction(d: str, data: dict, args: argparse.Namespace, redone: dict) -> dict:
    """Failure rates, cost and hybrid chrF rows of one direction for one repair template."""
    segs, texts0, q0, ql, templates, first_tokens = (
        data[k] for k in ("segs", "texts", "q_small", "q_large", "templates", "tokens")
    )
    fails0 = [failure_of(s, t, templates) for s, t in zip(segs, texts0, strict=True)]
    texts1 = list(texts0)
    cost_tokens = 0
    for i, f in enumerate(fails0):
        if f is None:
            continue
        row = redone.get(segs[i].id)
        if row is None:
            continue
        cost_tokens += row["tokens"]
        if failure_of(segs[i], row["text"], templates) is None:
            texts1[i] = row["text"]
    fails1 = [failure_of(s, t, templates) for s, t in zip(segs, texts1, strict=True)]
    changed = [i for i in range(len(segs)) if texts1[i] != texts0[i]]
    q1 = q0.copy()
    if changed:
        q1[changed] = chrf([segs[i] for i in changed], [texts1[i] for i in changed])
    lengths = np.asarray([len(s.source) for s in segs], float)
    routers = {
        "length": (lengths, lengths),
        "quality-oracle": (-q0, -q1),
        "gain-oracle": (ql - q0, ql - q1),
    }
    if data.get("two_stage") is not None:
        routers["routelmt-2stage (5-fold)"] = data["two_stage"]
    flagged = sum(f is not None for f in fails0)
    return {
        "direction": d,
        "n": len(segs),
        "failures_before": dict(Counter(f for f in fails0 if f)),
        "failures_after": dict(Counter(f for f in fails1 if f)),
        "failure_rate_before": flagged / len(segs),
        "failure_rate_after": sum(f is not None for f in fails1) / len(segs),
        "redecoded": flagged,
        "replaced": len(changed),
        "redecode_tokens": cost_tokens,
        "first_decode_tokens": first_tokens,
        "small_chrf": [float(q0.mean()), float(q1.mean())],
        "hybrid": hybrid_rows(segs, q0, q1, ql, routers, args.budgets),
    }


def print_report(template: str, results: list[dict]) -> None:
    print(f"\n## repair = {template}")
    print("| direction | failures before | after | re-decoded | replaced | extra tokens |")
    print("|---|---|---|---|---|---|")
    for r in results:
        share = r["redecode_tokens"] / max(r["first_decode_tokens"], 1)
        print(
            f"| {r['direction']} | {100 * r['failure_rate_before']:.1f}% "
            f"{r['failures_before']} | {100 * r['failure_rate_after']:.1f}% "
            f"{r['failures_after']} | {r['redecoded']} | {r['replaced']} | "
            f"{r['redecode_tokens']} (+{100 * share:.1f}%) |"
        )
    print("\n| direction | router | p | hybrid chrF without | with | with - without [95%] |")
    print("|---|---|---|---|---|---|")
    for r in results:
        for h in r["hybrid"]:
            star = " *" if h["ci"][0] > 0 else ""
            print(
                f"| {r['direction']} | {h['router']} | {h['p']} | {h['without']:.2f} | "
                f"{h['with']:.2f} | {h['diff']:+.2f} [{h['ci'][0]:+.2f}, {h['ci'][1]:+.2f}]"
                f"{star} |"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished routelmt bench run")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--repair", default="zeroshot,fewshot-alt")
    parser.add_argument("--large", default="GPT-4")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/wmt24"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budgets", default="0.1,0.3,0.5")
    parser.add_argument("--two-stage", action="store_true")
    parser.add_argument("--decode-only", action="store_true", help="re-decode, report nothing")
    parser.add_argument(
        "--no-decode", action="store_true", help="report on the segments re-decoded so far"
    )
    args = parser.parse_args()
    args.budgets = [float(x) for x in args.budgets.split(",")]
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    segs, texts, q_large = load_run(args.run, args.large, args.data)
    q_small = dict(zip([s.id for s in segs], chrf(segs, [texts[s.id] for s in segs]), strict=True))
    print(f"{len(segs)} segments from {args.run}; load avg {os.getloadavg()[0]:.1f}")
    first = get_template("fewshot")
    report: dict = {"run": str(args.run), "large": args.large, "templates": {}}
    every = segs
    for name in args.repair.split(","):
        segs = every
        templates = [first, get_template(name)]
        flagged = [s for s in segs if failure_of(s, texts[s.id], templates) is not None]
        print(f"{name}: {len(flagged)} of {len(segs)} flagged")
        if args.no_decode:  # only the segments whose repair is known (none pending)
            redone = redecode([], name, args.out / f"{name}.jsonl", args.threads)
            pending = {s.id for s in flagged} - set(redone)
            segs = [s for s in segs if s.id not in pending]
            print(f"{name}: {len(pending)} flagged without a re-decode yet left out")
        else:
            redone = redecode(flagged, name, args.out / f"{name}.jsonl", args.threads)
        if args.decode_only:
            continue
        results = []
        tokens = first_decode_tokens(args.run, {s.id for s in segs})
        two_stage = two_stage_both(segs, texts, q_small, q_large, templates, redone, args)
        for d in sorted({s.direction for s in segs}):
            ds = [s for s in segs if s.direction == d]
            data = {
                "segs": ds,
                "texts": [texts[s.id] for s in ds],
                "q_small": np.asarray([q_small[s.id] for s in ds]),
                "q_large": np.asarray([q_large[s.id] for s in ds]),
                "templates": templates,
                "tokens": tokens.get(d, 0),
            }
            if two_stage is not None:
                mask = np.asarray([s.direction == d for s in segs])
                data["two_stage"] = (two_stage[0][mask], two_stage[1][mask])
            results.append(evaluate_direction(d, data, args, redone))
        print_report(name, results)
        report["templates"][name] = results
    (args.out / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(f"\nload avg {os.getloadavg()[0]:.1f} at the end")
    return 0


def repaired_texts(segs: list[Segment], texts: dict, templates: list, redone: dict) -> list[str]:
    """Each segment's text after repair: the re-decode where the first failed and it passes."""
    out = []
    for s in segs:
        text, row = texts[s.id], redone.get(s.id)
        failed = row is not None and failure_of(s, text, templates) is not None
        if failed and failure_of(s, row["text"], templates) is None:
            text = row["text"]
        out.append(text)
    return out


def two_stage_both(segs, texts, q_small, q_large, templates, redone, args) -> tuple | None:
    """Out-of-fold two-stage scores without and with repair (None without ``--two-stage``)."""
    if not args.two_stage:
        return None
    t0 = [texts[s.id] for s in segs]
    t1 = repaired_texts(segs, texts, templates, redone)
    q0 = np.asarray([q_small[s.id] for s in segs])
    ql = np.asarray([q_large[s.id] for s in segs])
    changed = [i for i in range(len(segs)) if t1[i] != t0[i]]
    q1 = q0.copy()
    if changed:
        q1[changed] = chrf([segs[i] for i in changed], [t1[i] for i in changed])
    return two_stage_oof(segs, t0, q0, ql), two_stage_oof(segs, t1, q1, ql)


def first_decode_tokens(run: Path, ids: set[str]) -> dict[str, int]:
    """Tokens the run's small model generated per direction on the segments ``ids`` (its
    tokenizer on its outputs)."""
    from transformers import AutoTokenizer

    from routelmt.models import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(
        resolve_model("gemma3-270m").folder, local_files_only=True
    )
    segs = {s.id: s for s in read_records(run / "data" / "segments.jsonl", Segment)}
    systems = sorted(p.name for p in (run / "translate").iterdir() if p.is_dir())
    small = next(s for s in systems if s.startswith(("hf-", "llamacpp-")))
    out: Counter = Counter()
    for t in read_records(run / "translate" / small / "translations.jsonl", Translation):
        if t.segment_id not in ids:
            continue
        out[segs[t.segment_id].direction] += len(
            tokenizer(t.text, add_special_tokens=False)["input_ids"]
        )
    return dict(out)


if __name__ == "__main__":
    raise SystemExit(main())
