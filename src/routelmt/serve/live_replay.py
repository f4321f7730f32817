"""Replay a labelled stream through the service's decision path, and compare it with offline.

Offline, a router's quality is its top-k: rank a whole test set by score, send the best k to
the large model. The service decides one request at a time, on pacers that have seen only the
past. This module measures what that costs, with nothing else changed:

- the small and large translations are replayed (``ReplayTranslator``), so every decision lands
  on a segment whose labels (the small and large quality against the reference) are exact;
- the router's scores are replayed too (``RecordedScores``: the out-of-fold stage-1 and
  stage-2 scores a ``routelmt bench`` run stored), so the score the service sees is the one the
  offline evaluation ranked;
- the decisions are the real ones: ``HybridTranslator.stage_small`` (stage 1, one micro-batch of
  ``concurrency`` requests, as the service's batcher takes them) and ``HybridTranslator.review``
  (stage 2, in the order the small decodes finish: shortest output first), on the pacers that
  ``serve.service.make_pacers`` builds from a serve config's ``budget`` section.

Per arrival order (a seeded shuffle) the routed set gives k and the online HC; the offline top-k
of the same stage-2 scores, source length and the oracle are taken at the same k on every
bootstrap resample (``evaluation.bootstrap``, ``evaluation.ranking``), so the differences are
paired. Warm-up overspend: the share of the first ``head`` requests routed large minus the target.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from routelmt.backends.replay import ReplayTranslator
from routelmt.budget.score_distribution import StageDistributions
from routelmt.errors import ConfigError, InputError
from routelmt.evaluation.bootstrap import group_index, group_weights, summarise
from routelmt.evaluation.evaluate import headroom_closed
from routelmt.evaluation.ranking import OrderedWeights, descending_order, tie_keys
from routelmt.hybrid import HybridTranslator, SecondStage
from routelmt.records import ScoredExample, Segment
from routelmt.routers.base import Router

log = logging.getLogger(__name__)

STAGES = ("stage1", "stage2")


@dataclass
class LabelledStream:
    """One direction's segments with both systems' outputs, labels and the router's scores."""

    direction: str
    segments: list[Segment]
    small_texts: list[str]
    large_texts: list[str]
    q_small: np.ndarray
    q_large: np.ndarray
    stage1: np.ndarray  # the router's prefill (stage-1) scores
    stage2: np.ndarray  # the router's final (stage-2) scores: what offline ranks

    def __post_init__(self) -> None:
        n = len(self.segments)
        sizes = {len(self.small_texts), len(self.large_texts), *map(len, self.arrays())}
        if sizes != {n} or n < 2:
            raise InputError(f"{self.direction}: every column needs the same length >= 2")
        for name, values in zip(("q_small", "q_large", *STAGES), self.arrays(), strict=True):
            if not np.all(np.isfinite(values)):
                raise InputError(f"{self.direction}: {name} holds a non-finite value")

    def arrays(self) -> list[np.ndarray]:
        return [self.q_small, self.q_large, self.stage1, self.stage2]

    @property
    def gains(self) -> np.ndarray:
        return self.q_large - self.q_small


class RecordedScores(Router):
    """The router's recorded scores served as a two-stage router, looked up by segment id.

    ``score_stage2`` refuses a small translation other than the recorded one: the replay is
    exact or it fails, never silently scored on another text.
    """

    name = "recorded-scores"

    def __init__(self, streams: Sequence[LabelledStream]) -> None:
        self._stage1: dict[str, float] = {}
        self._stage2: dict[str, tuple[str, float]] = {}
        for st in streams:
            for i, seg in enumerate(st.segments):
                self._stage1[seg.id] = float(st.stage1[i])
                self._stage2[seg.id] = (st.small_texts[i], float(st.stage2[i]))

    def score(self, batch: Sequence[Segment | ScoredExample]) -> np.ndarray:
        return np.asarray([self._stage1[_id(s)] for s in batch], dtype=float)

    def score_stage2(
        self, segments: Sequence[Segment], texts: Sequence[str], stage1: np.ndarray
    ) -> np.ndarray:
        out = []
        for seg, text in zip(segments, texts, strict=True):
            recorded, value = self._stage2[seg.id]
            if text != recorded:
                raise InputError(f"segment {seg.id}: the replayed small translation differs")
            out.append(value)
        return np.asarray(out, dtype=float)


def _id(item: Segment | ScoredExample) -> str:
    return item.id if isinstance(item, Segment) else item.segment.id


def build_hybrid(
    streams: Sequence[LabelledStream],
    budget: Mapping[str, Any],
    distributions: StageDistributions | None,
) -> HybridTranslator:
    """The service's hybrid translator over replayed translations and recorded scores, its
    pacers built by the service's own ``make_pacers`` from ``budget`` (a serve config section)."""
    from routelmt.serve.service import make_pacers

    router = RecordedScores(streams)
    small = {s.id: t for st in streams for s, t in zip(st.segments, st.small_texts, strict=True)}
    large = {s.id: t for st in streams for s, t in zip(st.segments, st.large_texts, strict=True)}
    pacer, pacer2 = make_pacers(dict(budget), router, distributions)
    return HybridTranslator(
        ReplayTranslator("small", small),
        ReplayTranslator("large", large),
        router,
        pacer,
        second_stage=None if pacer2 is None else SecondStage(router, pacer2),
        shared_prefill=False,
    )


def replay_order(hybrid: HybridTranslator, segments: Sequence[Segment], concurrency: int) -> dict:
    """Send ``segments`` in this order, ``concurrency`` at a time; per position: routed large,
    the stage that decided."""
    if concurrency < 1:
        raise ConfigError(f"concurrency must be >= 1, got {concurrency}")
    large = np.zeros(len(segments), dtype=bool)
    stage = np.zeros(len(segments), dtype=np.int8)
    for start in range(0, len(segments), concurrency):
        routed = hybrid.stage_small(segments[start : start + concurrency])
        # decodes end shortest output first; each one's second look comes as it ends
        ends = sorted(range(len(routed)), key=lambda j: (len(routed[j].translation or ""), j))
        for j in ends:
            hybrid.review([routed[j]])
        for j, r in enumerate(routed):
            large[start + j] = r.goes_large
            stage[start + j] = r.stage if r.goes_large else 0
    return {"large": large, "stage": stage}


def drive_clients(service: Any, segments: Sequence[Segment], concurrency: int) -> list[Any]:
    """``concurrency`` closed-loop clients sending ``segments`` through ``service`` (a
    ``TranslationService``), one segment per request, each client taking the next segment when
    its answer came; the ``HybridResult`` of each segment, by position."""
    import asyncio

    if concurrency < 1:
        raise ConfigError(f"concurrency must be >= 1, got {concurrency}")
    results: list[Any] = [None] * len(segments)
    todo = iter(range(len(segments)))

    async def client(name: str) -> None:
        for i in todo:
            (results[i],) = await service.translate(
                [segments[i]], "auto", request_id=f"{name}-{i}", endpoint="replay"
            )

    async def run() -> None:
        await asyncio.gather(*(client(f"c{c}") for c in range(concurrency)))

    asyncio.run(run())
    return results


def replay_service(
    hybrid: HybridTranslator, segments: Sequence[Segment], concurrency: int
) -> dict[str, np.ndarray]:
    """The same stream through ``TranslationService`` itself: ``concurrency`` closed-loop clients
    each sending one segment per request, the service's micro-batcher taking them (up to
    ``concurrency`` per batch), its second look and its large calls. Which request a batch holds
    depends on thread timing, so two runs of one order may differ slightly."""
    from routelmt.serve.service import TranslationService

    service = TranslationService(
        hybrid, log_path=None, max_batch_size=concurrency, directions=None, max_items=1
    )
    try:
        results = drive_clients(service, segments, concurrency)
    finally:
        service.close()
    large = np.asarray([r.tier != "small" for r in results], dtype=bool)
    stage = np.asarray([r.stage if r.tier != "small" else 0 for r in results], dtype=np.int8)
    return {"large": large, "stage": stage}


def _order_hc(
    w: np.ndarray, g: np.ndarray, routed: np.ndarray, rankings: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Per weighted row: HC of the routed set (online) and of each ranking's top-k at the same
    k (the routed set's weighted size), against the oracle's top-k."""
    wf = w.astype(float)
    m = np.asarray(routed, dtype=float)
    k = np.rint(wf @ m).astype(np.int64)
    mean_g = (wf @ g) / wf.sum(axis=1)
    out = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        best = OrderedWeights(rankings["oracle"], w).topk_sums(g, k[:, None])[:, 0] / k
        out["online"] = headroom_closed((wf @ (g * m)) / k, mean_g, best)
        for name in ("offline", "length"):
            got = OrderedWeights(rankings[name], w).topk_sums(g, k[:, None])[:, 0] / k
            out[name] = headroom_closed(got, mean_g, best)
    return out


def compare_online_offline(
    stream: LabelledStream,
    routed: Sequence[np.ndarray],
    *,
    served: Sequence[np.ndarray] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Online HC (the routed sets, one per arrival order, by segment index) against the offline
    top-k of the stage-2 scores and of source length at each order's own k, paired on the same
    group-bootstrap resamples; the mean over orders with its interval, and each order's point.
    ``served`` (one mask per order): the segments that order sent (a stream shorter than the
    set); offline, length and the oracle then rank those alone."""
    g = stream.gains
    n = g.size
    keys = tie_keys(n, seed)
    lengths = np.asarray([len(s.source) for s in stream.segments], dtype=float)
    rankings = {
        "oracle": descending_order(g, keys),
        "offline": descending_order(stream.stage2, keys),
        "length": descending_order(lengths, keys),
    }
    index, n_groups = group_index([s.group for s in stream.segments])
    rng = np.random.default_rng(seed)
    w = np.vstack([np.ones((1, n), dtype=np.int64), group_weights(index, n_groups, n_boot, rng)])
    per_order = []
    for o, mask in enumerate(routed):
        w_o = w if served is None else w * np.asarray(served[o], dtype=np.int64)
        per_order.append(_order_hc(w_o, g, mask, rankings))
    return order_table(
        per_order, ("online", "offline", "length"), (("online", "offline"), ("online", "length"))
    )


def order_table(
    per_order: Sequence[Mapping[str, np.ndarray]],
    names: Sequence[str],
    diffs: Sequence[tuple[str, str]],
) -> dict[str, Any]:
    """Each row and paired difference averaged over the orders, resample by resample (row 0 is
    the full sample), with its interval; and each order's full-sample values."""
    table: dict[str, Any] = {}
    for name in names:
        rows = np.nanmean([o[name] for o in per_order], axis=0)
        table[name] = summarise(rows[0], rows[1:])
    for a, b in diffs:
        rows = np.nanmean([o[a] - o[b] for o in per_order], axis=0)
        table[f"{a}-{b}"] = summarise(rows[0], rows[1:])
    table["orders"] = [{k: float(v[0]) for k, v in o.items()} for o in per_order]
    return table


@dataclass
class ReplayPlan:
    """What one bench cell replays: the budget section, orders, concurrency, bootstrap."""

    budget: dict[str, Any]
    orders: int = 5
    concurrency: int = 1
    head: int = 100  # the first requests whose share is the warm-up overspend
    arrival: str = "shuffled"  # or "documents": whole documents in a shuffled order
    limit: int | None = None  # send only the first ``limit`` requests of each order
    path: str = "hybrid"  # or "service": through TranslationService and its batcher
    n_boot: int = 1000
    seed: int = 0


ARRIVALS = ("shuffled", "documents")


def arrival_order(stream: LabelledStream, rng: np.random.Generator, arrival: str) -> np.ndarray:
    """``shuffled``: segments in a random order (exchangeable traffic); ``documents``: whole
    documents one after another in a random order, each in its own order (clients that send a
    document's paragraphs together: the scores drift with the document)."""
    n = len(stream.segments)
    if arrival == "shuffled":
        return rng.permutation(n)
    if arrival != "documents":
        raise ConfigError(f"arrival must be one of {', '.join(ARRIVALS)}, got {arrival!r:.40}")
    docs: dict[str, list[int]] = {}
    for i, seg in enumerate(stream.segments):
        docs.setdefault(seg.doc_id or seg.group, []).append(i)
    blocks = list(docs.values())
    return np.asarray([i for b in rng.permutation(len(blocks)) for i in blocks[b]], dtype=int)


def replay_stream(
    stream: LabelledStream, plan: ReplayPlan, distributions: StageDistributions | None
) -> dict[str, Any]:
    """Every arrival order of one direction through a fresh service decision path."""
    share = float(plan.budget["share"])
    routed, served, heads, shares, stage1 = [], [], [], [], []
    for o in range(plan.orders):
        order = arrival_order(stream, np.random.default_rng([plan.seed, o]), plan.arrival)
        order = order[: plan.limit]
        hybrid = build_hybrid([stream], plan.budget, distributions)
        replay = replay_service if plan.path == "service" else replay_order
        got = replay(hybrid, [stream.segments[i] for i in order], plan.concurrency)
        mask = np.zeros(len(stream.segments), dtype=bool)
        mask[order] = got["large"]
        routed.append(mask)
        sent = np.zeros(len(stream.segments), dtype=bool)
        sent[order] = True
        served.append(sent)
        heads.append(float(got["large"][: plan.head].mean()) - share)
        shares.append(float(got["large"].mean()))
        stage1.append(float((got["stage"] == 1).sum() / max(got["large"].sum(), 1)))
    out = compare_online_offline(stream, routed, served=served, n_boot=plan.n_boot, seed=plan.seed)
    out |= {
        "direction": stream.direction,
        "n": int(served[0].sum()),
        "concurrency": plan.concurrency,
        "arrival": plan.arrival,
        "path": plan.path,
        "realised_share": float(np.mean(shares)),
        "head_overspend": {"mean": float(np.mean(heads)), "max": float(np.max(heads))},
        "stage1_part": float(np.mean(stage1)),
    }
    return out


def leave_direction_out(
    streams: Mapping[str, LabelledStream], direction: str
) -> StageDistributions | None:
    """Score distributions from every other direction's scores (the prior a service has on a
    direction its router's artifact does not cover); None with no other direction."""
    others = [st for d, st in streams.items() if d != direction]
    if not others:
        return None
    scores = {stage: {st.direction: getattr(st, stage) for st in others} for stage in STAGES}
    return StageDistributions.from_scores(scores, f"out-of-fold scores of {len(others)} others")


# -- a routelmt bench run as the labelled stream ----------------------------------------------


def _scores_json(path: Path) -> dict[str, float]:
    from routelmt.storage import read_json

    data = read_json(path)
    if not isinstance(data, dict) or "ids" not in data or "scores" not in data:
        raise InputError("expected {ids, scores}", path=str(path))
    return dict(zip(data["ids"], map(float, data["scores"]), strict=True))


def _qualities(path: Path) -> dict[str, float]:
    import json

    with path.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return {r["segment_id"]: float(r["q"]) for r in rows}


def _texts(path: Path) -> dict[str, str]:
    from routelmt.records import Translation, read_records

    return {t.segment_id: t.text for t in read_records(path, Translation)}


def find_small(run: Path, large: str) -> str:
    """The small system's folder in ``run/translate``: the one that is not a large system's."""
    folders = sorted(p.name for p in (run / "translate").iterdir() if p.is_dir())
    larges = {p.name for p in (run / "routers").iterdir() if p.is_dir()} | {large}
    small = [f for f in folders if f not in larges]
    if len(small) != 1:
        raise InputError(f"cannot tell the small system among {folders}; name it", path=str(run))
    return small[0]


def load_bench_run(
    run: str | Path,
    large: str = "GPT-4",
    *,
    router: str = "routelmt-2stage",
    stage1_router: str = "routelmt",
    small: str | None = None,
    pairs: Sequence[str] | None = None,
) -> dict[str, LabelledStream]:
    """The labelled streams of a ``routelmt bench`` output folder, one per direction: its
    segments, small and large translations and scores, and the out-of-fold scores of
    ``stage1_router`` (the prefill probe) and ``router`` (the final, stage-2 score)."""
    from routelmt.records import read_records

    run = Path(run)
    if not (run / "data" / "segments.jsonl").is_file():
        raise InputError(
            "not a routelmt bench output folder (no data/segments.jsonl)", path=str(run)
        )
    small = small or find_small(run, large)
    segments = read_records(run / "data" / "segments.jsonl", Segment)
    cols = {
        "small_texts": _texts(run / "translate" / small / "translations.jsonl"),
        "large_texts": _texts(run / "translate" / large / "translations.jsonl"),
        "q_small": _qualities(run / "score" / small / "scores.jsonl"),
        "q_large": _qualities(run / "score" / large / "scores.jsonl"),
        "stage1": _scores_json(run / "routers" / large / stage1_router / "scores.json"),
        "stage2": _scores_json(run / "routers" / large / router / "scores.json"),
    }
    out: dict[str, LabelledStream] = {}
    for direction in sorted({s.direction for s in segments}):
        if pairs is not None and direction not in pairs:
            continue
        segs = [s for s in segments if s.direction == direction]
        values = {name: [col[s.id] for s in segs] for name, col in cols.items()}
        arrays = {k: np.asarray(v, dtype=float) for k, v in values.items() if "texts" not in k}
        out[direction] = LabelledStream(
            direction, segs, values["small_texts"], values["large_texts"], **arrays
        )
    return out


# -- the bench: variants x directions x concurrency ------------------------------------------


def parse_value(raw: str) -> Any:
    """A variant's value: a number, true/false, null/none, or else the word itself."""
    value: Any = raw.strip()
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "none"):
        return None
    with contextlib.suppress(ValueError):  # a word stays a word
        value = float(value) if "." in value or "e" in lowered else int(value)
    return value


def variant_items(text: str) -> tuple[str, list[tuple[str, Any]]]:
    """``NAME:key=value,key=value`` as its name and its (key, value) pairs, in order."""
    name, _, body = text.partition(":")
    if not name or not body:
        raise ConfigError(f"variant {text!r:.60}: expected NAME:key=value,...")
    items = []
    for item in body.split(","):
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"variant {name}: expected key=value, got {item.strip()!r:.40}")
        items.append((key.strip(), parse_value(raw)))
    return name, items


def parse_variant(text: str, base: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """``NAME:key=value,key=value`` over the serve config's ``budget`` section (numbers, true,
    false, words); an unknown key is an error naming it."""
    name, items = variant_items(text)
    out = dict(base)
    for key, value in items:
        if key not in base:
            raise ConfigError(f"variant {name}: unknown budget key {key!r:.40}")
        out[key] = value
    return name, out


def priors_for(
    streams: Mapping[str, LabelledStream], direction: str, source: str
) -> StageDistributions | None:
    """``other-directions`` (leave this direction out), ``artifact:LOCATION`` (a router
    artifact's shipped file), or ``none``."""
    if source == "none":
        return None
    if source == "other-directions":
        return leave_direction_out(streams, direction)
    if source.startswith("artifact:"):
        from routelmt.routers.artifacts import resolve_artifact

        found = StageDistributions.read(resolve_artifact(source.removeprefix("artifact:")))
        if found is None:
            raise ConfigError(f"{source}: the artifact ships no score distribution")
        return found
    raise ConfigError(f"prior {source!r:.60}: expected other-directions, artifact:PATH or none")


def run_variants(
    streams: Mapping[str, LabelledStream],
    variants: Mapping[str, Mapping[str, Any]],
    *,
    concurrency: Sequence[int] = (1, 8),
    arrivals: Sequence[str] = ("shuffled",),
    prior: str = "other-directions",
    **plan: Any,
) -> list[dict[str, Any]]:
    """One row per (variant, direction, arrival, concurrency)."""
    rows = []
    for name, budget in variants.items():
        for direction, stream in streams.items():
            dists = priors_for(streams, direction, prior) if budget.get("prior", True) else None
            for arrival in arrivals:
                for c in concurrency:
                    settings = ReplayPlan(dict(budget), concurrency=c, arrival=arrival, **plan)
                    got = replay_stream(stream, settings, dists)
                    rows.append({"variant": name, **got})
                    log.info(
                        "%s %s %s c=%d: %.1f", name, direction, arrival, c, got["online"]["value"]
                    )
    return rows


def format_cell(s: Mapping[str, Any], signed: bool = False) -> str:
    if s["value"] is None:
        return "n/a"
    fmt = "{:+.1f}" if signed else "{:.1f}"
    star = "*" if signed and s["ci_low"] is not None and s["ci_low"] > 0 else ""
    if s["ci_low"] is None:
        return fmt.format(s["value"])
    return f"{fmt.format(s['value'])} [{fmt.format(s['ci_low'])}, {fmt.format(s['ci_high'])}]{star}"


def format_rows(rows: Sequence[Mapping[str, Any]]) -> str:
    """A markdown table: HC@share online vs offline and length at the same k, paired."""
    head = (
        "| variant | direction | arrival | clients | share | online HC | offline HC, same k | "
        "length HC, same k | online - offline | online - length | first 100 overspend "
        "(mean / max) |"
    )
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        over = r["head_overspend"]
        lines.append(
            f"| {r['variant']} | {r['direction']} | {r['arrival']} | {r['concurrency']} | "
            f"{r['realised_share']:.3f} | {format_cell(r['online'])} | "
            f"{format_cell(r['offline'])} | {format_cell(r['length'])} | "
            f"{format_cell(r['online-offline'], True)} | "
            f"{format_cell(r['online-length'], True)} | "
            f"{100 * over['mean']:+.1f} / {100 * over['max']:+.1f} |"
        )
    return "\n".join(lines)


def summarise_variants(rows: Sequence[Mapping[str, Any]]) -> str:
    """One line a variant over its rows: online - offline (mean, worst), the largest first-100
    overspend (mean over orders, and in any one order), the smallest lower bound of online -
    length, and the range of realised shares; what the pacer's defaults are chosen on
    (docs/benchmarks.md section 14f)."""
    lines = []
    for name in dict.fromkeys(r["variant"] for r in rows):
        mine = [r for r in rows if r["variant"] == name]
        gaps = [r["online-offline"]["value"] for r in mine]
        over = [r["head_overspend"] for r in mine]
        shares = [r["realised_share"] for r in mine]
        lines.append(
            f"{name}: online - offline mean {np.mean(gaps):+.2f}, worst {min(gaps):+.2f}; "
            f"first 100 overspend largest mean {100 * max(o['mean'] for o in over):+.1f}, "
            f"any order {100 * max(o['max'] for o in over):+.1f}; online - length lower bound "
            f"smallest {min(r['online-length']['ci_low'] for r in mine):+.1f}; "
            f"share {min(shares):.3f}-{max(shares):.3f} ({len(mine)} rows)"
        )
    return "\n".join(lines)


def distributions_of(
    streams: Mapping[str, LabelledStream], stages: Sequence[str] = STAGES, source: str = ""
) -> StageDistributions:
    """The score distributions a router artifact ships: each stage's out-of-fold scores, per
    direction and pooled (``stage1`` alone for a one-stage router)."""
    unknown = sorted(set(stages) - set(STAGES))
    if unknown or not stages:
        raise ConfigError(f"stages must be among {', '.join(STAGES)}, got {list(stages)}")
    scores = {stage: {d: getattr(st, stage) for d, st in streams.items()} for stage in stages}
    return StageDistributions.from_scores(scores, source)


# -- a model-free stream from recorded systems ------------------------------------------------


def _oof_ridge(X: np.ndarray, y: np.ndarray, groups: Sequence[str], seed: int) -> np.ndarray:
    """Out-of-fold predictions of a ridge head (5 grouped folds)."""
    from routelmt.heads import RidgeHead
    from routelmt.splits import fold_ids

    folds = fold_ids(groups, 5, seed)
    out = np.zeros(len(y))
    g = np.asarray(groups)
    for f in range(5):
        train = folds != f
        head = RidgeHead().fit(X[train], y[train], g[train])
        out[~train] = head.predict(X[~train])
    return out


def recorded_streams(
    pairs: Sequence[str],
    small: str,
    large: str,
    pseudo: str,
    *,
    data: Any = None,
    seed: int = 0,
) -> dict[str, LabelledStream]:
    """Streams that need no model: recorded WMT systems as the small and large translators,
    chrF labels against the reference, and out-of-fold ridge scores (stage 1: the source's
    length and digit share; stage 2: those plus the small output's length ratio, its chrF
    against the source (a copy) and against a third recorded system ``pseudo`` (a QE stand-in)).
    For developing and tuning the decision path on directions the reported figures do not use."""
    from routelmt.datasets.wmt import WMTDataset
    from routelmt.labels import score_pairs
    from routelmt.metrics.base import get_metric

    dataset = data if isinstance(data, WMTDataset) else WMTDataset(data)
    chrf = get_metric("chrf")
    out: dict[str, LabelledStream] = {}
    for pair in pairs:
        segs = dataset.segments(pair)
        texts = {s: dataset.system_outputs(pair, s) for s in (small, large, pseudo)}
        col = {s: [texts[s][seg.id] for seg in segs] for s in texts}
        q_small = np.asarray(score_pairs(chrf, segs, col[small]))
        q_large = np.asarray(score_pairs(chrf, segs, col[large]))
        vs_pseudo = [
            Segment(s.id, s.direction, s.source, reference=t)
            for s, t in zip(segs, col[pseudo], strict=True)
        ]
        vs_source = [Segment(s.id, s.direction, s.source, reference=s.source) for s in segs]
        length = np.log1p([len(s.source) for s in segs])
        digits = [sum(c.isdigit() for c in s.source) / (len(s.source) + 1) for s in segs]
        ratio = np.log(
            [(len(t) + 1) / (len(s.source) + 1) for s, t in zip(segs, col[small], strict=True)]
        )
        x1 = np.column_stack([length, length**2, digits])
        x2 = np.column_stack(
            [
                x1,
                score_pairs(chrf, vs_pseudo, col[small]),
                score_pairs(chrf, vs_source, col[small]),
                ratio,
                np.abs(ratio),
            ]
        )
        groups = [s.group for s in segs]
        gain = q_large - q_small
        out[pair] = LabelledStream(
            pair,
            segs,
            col[small],
            col[large],
            q_small,
            q_large,
            _oof_ridge(x1, gain, groups, seed),
            _oof_ridge(x2, gain, groups, seed),
        )
    return out
