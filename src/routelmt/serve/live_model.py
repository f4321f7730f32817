"""The live-replay bench with the small model live: what the service serves, labelled afterwards.

``serve.live_replay`` holds the small translations and the scores fixed, so its labels are the
bench's. Live, the service decodes the small translation itself (llama.cpp's batched greedy
decoding can change it with what else is in the batch) and its router scores that translation,
so neither the label nor the score is the bench's any more. This module measures what remains:

- the service is the real one (``serve.service.build_service`` on a serve config: the small
  model named by ``LivePlan.small`` running live, the router artifact ``LivePlan.router`` scoring
  live, the pacers from the ``budget`` section, ``server.batching`` as the variant sets it); only
  the large model is replayed from the bench run's recorded translations;
- every small translation that reaches the second look is recorded with the score the
  service's own router gave it (``StageTwoRecorder``: the router, delegated to, unchanged);
- afterwards each served small translation is scored against the run's reference with the run's
  metric: gain_i = q(large_i) - q(served small_i). A segment sent large right after the prefill
  (``stage1_share`` > 0) was never decoded: its label stays the bench's, and it is counted.

Per direction, over the arrival orders: the realised share; online HC of the service's
escalations on the served labels; the top-k of the service's own stage-2 scores at the same k on
the same labels (online - own: the pacer's loss); source length at that k (same labels); the
top-k of the bench's out-of-fold stage-2 scores on the bench's labels (what offline promised);
how many served small translations differ from the bench's. Intervals are over the same group
resamples; "online - offline" compares two label sets (served vs bench): its pairing is by
resample, not by label.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from routelmt.errors import ConfigError, InputError
from routelmt.evaluation.bootstrap import group_index, group_weights
from routelmt.evaluation.evaluate import headroom_closed
from routelmt.evaluation.ranking import OrderedWeights, descending_order, tie_keys
from routelmt.records import Segment
from routelmt.serve.live_replay import (
    LabelledStream,
    arrival_order,
    drive_clients,
    format_cell,
    order_table,
    variant_items,
)

log = logging.getLogger(__name__)

ROWS = ("online", "own", "offline", "length")  # the HC rows of a live table
DIFFS = (("online", "own"), ("online", "length"), ("online", "offline"))


# -- variants: budget keys and server keys ----------------------------------------------------


@dataclass
class LiveVariant:
    """One setting of the service: its whole ``budget`` section, and the ``server`` keys it
    changes (the rest of the server section is the serve config's)."""

    budget: dict[str, Any]
    server: dict[str, Any] = field(default_factory=dict)


def parse_live_variant(
    text: str, budget: Mapping[str, Any], server: Mapping[str, Any]
) -> tuple[str, LiveVariant]:
    """``NAME:key=value,...`` where a key is ``budget.KEY``, ``server.KEY`` or a bare key of
    either section (``batching=false`` is ``server.batching=false``: one request at a time,
    batch-invariant decoding); an unknown or ambiguous key is an error naming it."""
    name, items = variant_items(text)
    sections: dict[str, Mapping[str, Any]] = {"budget": budget, "server": server}
    out = LiveVariant(dict(budget))
    for key, value in items:
        where, dot, bare = key.partition(".")
        if dot:
            if where not in sections or bare not in sections[where]:
                raise ConfigError(f"variant {name}: unknown key {key!r:.40}")
        else:
            bare, found = key, [s for s, keys in sections.items() if key in keys]
            if len(found) != 1:
                what = "ambiguous" if found else "unknown"
                raise ConfigError(
                    f"variant {name}: {what} key {key!r:.40} (budget.KEY, server.KEY)"
                )
            where = found[0]
        (out.budget if where == "budget" else out.server)[bare] = value
    return name, out


# -- one order through the live service -------------------------------------------------------


class StageTwoRecorder:
    """The service's router at its second look, delegated to unchanged, keeping each small
    translation it scored and the score: what the service served and ranked, by segment id.
    The service calls it from several threads."""

    def __init__(self, router: Any) -> None:
        self.router = router
        self.texts: dict[str, str] = {}
        self.scores: dict[str, float] = {}
        self._lock = threading.Lock()

    def score_stage2(
        self, segments: Sequence[Segment], texts: Sequence[str], stage1: np.ndarray
    ) -> np.ndarray:
        scores = self.router.score_stage2(segments, texts, stage1)
        with self._lock:
            for seg, text, value in zip(segments, texts, np.asarray(scores, dtype=float)):
                self.texts[seg.id] = text
                self.scores[seg.id] = float(value)
        return scores

    def __getattr__(self, name: str) -> Any:
        return getattr(self.router, name)


@dataclass
class ServedOrder:
    """One arrival order as the service served it (arrays by position in ``order``)."""

    order: np.ndarray  # segment indices, in arrival order
    large: np.ndarray  # routed above the small model
    stage: np.ndarray  # the stage that sent it large (0: kept small)
    texts: dict[str, str]  # the small translations the service decoded, by segment id
    scores: dict[str, float]  # its own stage-2 score of each sent segment (see ``own_scores``)
    seconds: float  # serving time (the service built and its models loaded before)


ServiceFactory = Callable[..., Any]


def serve_order(
    config: dict[str, Any],
    stream: LabelledStream,
    order: np.ndarray,
    concurrency: int,
    make_service: ServiceFactory | None = None,
) -> ServedOrder:
    """A fresh service from ``config`` (its large model the run's recorded translations) serves
    ``order`` to ``concurrency`` closed-loop clients; ``make_service(config, large=...)``
    defaults to ``build_service``."""
    from routelmt.backends.replay import ReplayTranslator

    if make_service is None:
        from routelmt.serve.service import build_service as make_service
    large = ReplayTranslator(
        "large", {s.id: t for s, t in zip(stream.segments, stream.large_texts, strict=True)}
    )
    service = make_service(config, large=large)
    try:
        second = service.hybrid.second_stage
        if second is None:
            raise ConfigError("the live replay needs a two-stage router (one with score_stage2)")
        recorder = StageTwoRecorder(second.router)
        second.router = recorder
        # a client sends text, never the reference
        segments = [dataclasses.replace(stream.segments[i], reference=None) for i in order]
        t0 = time.perf_counter()
        results = drive_clients(service, segments, concurrency)
        seconds = time.perf_counter() - t0
    finally:
        service.close()
    texts, scores = own_scores(segments, results, recorder)
    return ServedOrder(
        order=np.asarray(order, dtype=int),
        large=np.asarray([r.tier != "small" for r in results], dtype=bool),
        stage=np.asarray([r.stage if r.tier != "small" else 0 for r in results], dtype=np.int8),
        texts=texts,
        scores=scores,
        seconds=seconds,
    )


def own_scores(
    segments: Sequence[Segment], results: Sequence[Any], recorder: StageTwoRecorder
) -> tuple[dict[str, str], dict[str, float]]:
    """Each sent segment's decoded small translation (the one stage 2 scored, or the one served
    small without a second look) and its place in the service's own ranking: its stage-2 score
    (-inf for a NaN, as the pacer treats it), +inf when sent large before any decode, -inf when
    kept small without a stage-2 score."""
    texts = dict(recorder.texts)
    scores: dict[str, float] = {}
    for seg, r in zip(segments, results, strict=True):
        if r.tier == "small" and texts.setdefault(seg.id, r.translation) != r.translation:
            raise InputError(f"segment {seg.id}: served a small text stage 2 never scored")
        value = recorder.scores.get(seg.id)
        if value is None:
            scores[seg.id] = -np.inf if r.tier == "small" else np.inf
        else:
            scores[seg.id] = value if np.isfinite(value) else -np.inf
    return texts, scores


# -- labels on what was served ----------------------------------------------------------------


@dataclass
class ServedLabels:
    """One order's labels on what the service served, over the whole stream (unsent segments
    keep the bench's values; their weight is zero)."""

    sent: np.ndarray  # bool: in this order
    routed: np.ndarray  # bool: sent large
    gains: np.ndarray  # q(large) - q(served small)
    scores: np.ndarray  # the service's own ranking score (``own_scores``)
    decoded: int  # sent segments whose small translation the service decoded
    differ: int  # of those, how many differ from the bench's small translation
    label_check: float  # the largest |q - bench q| over served texts equal to the bench's


def label_order(stream: LabelledStream, served: ServedOrder, metric: Any) -> ServedLabels:
    """Score each served small translation against the reference with ``metric`` (the run's)."""
    from routelmt.labels import score_pairs

    n = len(stream.segments)
    sent = np.zeros(n, dtype=bool)
    sent[served.order] = True
    routed = np.zeros(n, dtype=bool)
    routed[served.order] = served.large
    ids = [s.id for s in stream.segments]
    decoded = [i for i in served.order if ids[i] in served.texts]
    q = stream.q_small.copy()
    texts = [served.texts[ids[i]] for i in decoded]
    if decoded:
        q[decoded] = score_pairs(metric, [stream.segments[i] for i in decoded], texts)
    same = [i for i, t in zip(decoded, texts, strict=True) if t == stream.small_texts[i]]
    scores = np.zeros(n)  # unsent: weight zero
    scores[served.order] = [served.scores[ids[i]] for i in served.order]
    return ServedLabels(
        sent=sent,
        routed=routed,
        gains=stream.q_large - q,
        scores=scores,
        decoded=len(decoded),
        differ=len(decoded) - len(same),
        label_check=float(np.max(np.abs(q[same] - stream.q_small[same]), initial=0.0)),
    )


# -- the comparison ---------------------------------------------------------------------------


def _topk_hc(
    w: np.ndarray, g: np.ndarray, k: np.ndarray, keys: np.ndarray, rankings: Mapping[str, Any]
) -> dict[str, np.ndarray]:
    """Per weighted row, HC on labels ``g`` of each ranking's top-k (an index order) or of a
    routed set (a bool mask), at k, against the oracle's top-k on ``g``."""
    wf = w.astype(float)
    mean_g = (wf @ g) / wf.sum(axis=1)
    out = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        best = OrderedWeights(descending_order(g, keys), w).topk_sums(g, k[:, None])[:, 0] / k
        for name, ranking in rankings.items():
            if ranking.dtype == bool:
                got = (wf @ (g * ranking)) / k
            else:
                got = OrderedWeights(ranking, w).topk_sums(g, k[:, None])[:, 0] / k
            out[name] = headroom_closed(got, mean_g, best)
    return out


def compare_live(
    stream: LabelledStream, orders: Sequence[ServedLabels], *, n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Per order at its own k (the routed set's size on each resample): online HC, the top-k of
    the service's own scores and of source length on the served labels, and the top-k of the
    bench's out-of-fold scores on the bench's labels; the mean over orders with its interval
    (the same group resamples throughout), the paired differences, each order's point."""
    n = len(stream.segments)
    keys = tie_keys(n, seed)
    lengths = np.asarray([len(s.source) for s in stream.segments], dtype=float)
    by_length = descending_order(lengths, keys)
    promised = descending_order(stream.stage2, keys)
    index, n_groups = group_index([s.group for s in stream.segments])
    rng = np.random.default_rng(seed)
    w = np.vstack([np.ones((1, n), dtype=np.int64), group_weights(index, n_groups, n_boot, rng)])
    per_order = []
    for lab in orders:
        w_o = w * lab.sent.astype(np.int64)
        k = np.rint(w_o.astype(float) @ lab.routed.astype(float)).astype(np.int64)
        own = descending_order(lab.scores, keys)
        served = {"online": lab.routed, "own": own, "length": by_length}
        got = _topk_hc(w_o, lab.gains, k, keys, served)
        got |= _topk_hc(w_o, stream.gains, k, keys, {"offline": promised})
        per_order.append(got)
    with warnings.catch_warnings():  # a resample with k = 0 has no HC: NaN, left out
        warnings.simplefilter("ignore", RuntimeWarning)
        return order_table(per_order, ROWS, DIFFS)


# -- a direction, the variants, the table -----------------------------------------------------


@dataclass
class LivePlan:
    """What the live bench runs: the service's small model and router, the arrival orders, the
    bootstrap; ``config`` a serve config file under the bench's settings (None: the embedded)."""

    small: str = "llamacpp:gemma3-270m"
    router: str = "shipped:routelmt-2stage"
    small_options: dict[str, Any] = field(default_factory=dict)
    config: str | None = None
    orders: int = 5
    concurrency: int = 8
    arrival: str = "shuffled"
    limit: int | None = None
    head: int = 100
    n_boot: int = 1000
    seed: int = 0
    make_service: ServiceFactory | None = None  # tests: a service over fakes


def live_config(plan: LivePlan, variant: LiveVariant) -> dict[str, Any]:
    """The serve config the service is built from: the plan's small model and router, the
    variant's budget and server keys, no decision log."""
    from routelmt.serve.config import load_config

    overrides = {
        "small": plan.small,
        "small_options": dict(plan.small_options),
        "router": {"path": plan.router},
        "budget": dict(variant.budget),
        "server": {"log_path": None, **variant.server},
    }
    return load_config(plan.config, overrides)


def router_overlap(plan: LivePlan, segments: Sequence[Segment]) -> dict[str, Any] | None:
    """How many of the served segments the live router was trained on (its scores on them are
    in-sample, so its own top-k is optimistic); None when the artifact cannot say."""
    from routelmt.routers.provenance import training_overlap

    try:
        found = training_overlap(plan.router, segments)
    except (ConfigError, InputError, OSError) as exc:
        log.warning("router %s: training overlap unknown (%s)", plan.router, exc)
        return None
    log.info("%s", found.message())
    return found.to_dict() if found.recorded else None


def live_stream(
    stream: LabelledStream, plan: LivePlan, variant: LiveVariant, metric: Any
) -> dict[str, Any]:
    """Every arrival order of one direction through a fresh live service; the table's row."""
    config = live_config(plan, variant)
    share = float(variant.budget["share"])
    labels, heads, shares, stage1, seconds = [], [], [], [], []
    for o in range(plan.orders):
        order = arrival_order(stream, np.random.default_rng([plan.seed, o]), plan.arrival)
        order = order[: plan.limit]
        served = serve_order(config, stream, order, plan.concurrency, plan.make_service)
        labels.append(label_order(stream, served, metric))
        heads.append(float(served.large[: plan.head].mean()) - share)
        shares.append(float(served.large.mean()))
        stage1.append(int((served.stage == 1).sum()))
        seconds.append(served.seconds)
        log.info("%s order %d: %d requests in %.0f s", stream.direction, o, len(order), seconds[-1])
    out = compare_live(stream, labels, n_boot=plan.n_boot, seed=plan.seed)
    sent = np.any([lab.sent for lab in labels], axis=0)
    out |= {
        "direction": stream.direction,
        "n": int(labels[0].sent.sum()),
        "concurrency": plan.concurrency,
        "arrival": plan.arrival,
        "batching": bool(config["server"]["batching"]),
        "realised_share": float(np.mean(shares)),
        "head_overspend": {"mean": float(np.mean(heads)), "max": float(np.max(heads))},
        "stage1_sent": float(np.mean(stage1)),  # sent large before any decode (bench labels)
        "decoded": float(np.mean([lab.decoded for lab in labels])),
        "differ": float(np.mean([lab.differ for lab in labels])),
        "label_check": float(max(lab.label_check for lab in labels)),
        "seconds_per_order": float(np.mean(seconds)),
        "router_overlap": router_overlap(plan, [stream.segments[i] for i in np.flatnonzero(sent)]),
    }
    return out


def run_live_variants(
    streams: Mapping[str, LabelledStream],
    variants: Mapping[str, LiveVariant],
    metric: Any,
    *,
    concurrency: Sequence[int] = (8,),
    arrivals: Sequence[str] = ("shuffled",),
    **plan: Any,
) -> list[dict[str, Any]]:
    """One row per (variant, direction, arrival, concurrency)."""
    rows = []
    for name, variant in variants.items():
        for direction, stream in streams.items():
            for arrival in arrivals:
                for c in concurrency:
                    settings = LivePlan(concurrency=c, arrival=arrival, **plan)
                    got = live_stream(stream, settings, variant, metric)
                    rows.append({"variant": name, **got})
                    log.info(
                        "%s %s %s c=%d: online %s, own %s",
                        name,
                        direction,
                        arrival,
                        c,
                        got["online"]["value"],
                        got["own"]["value"],
                    )
    return rows


def bench_metric(run: str | Path, large: str, small: str | None = None) -> Any:
    """The metric the bench run scored with (its ``score/<small>/stage.json`` settings);
    chrF, logged, for a run that does not record it."""
    from routelmt.metrics.base import get_metric
    from routelmt.serve.live_replay import find_small
    from routelmt.storage import read_json

    run = Path(run)
    path = run / "score" / (small or find_small(run, large)) / "stage.json"
    settings = read_json(path).get("settings") if path.is_file() else None
    if not isinstance(settings, dict) or "metric" not in settings:
        log.warning("%s records no metric: labelling with chrf", path)
        return get_metric("chrf")
    return get_metric(settings["metric"], **dict(settings.get("args") or {}))


def format_live_rows(rows: Sequence[Mapping[str, Any]]) -> str:
    """A markdown table: online HC on the served labels against the service's own scores'
    top-k, length (same labels) and the bench's offline top-k (its labels), at the same k."""
    head = (
        "| variant | direction | arrival | clients | batching | share | online HC | own scores, "
        "same k | offline (bench OOF, bench labels), same k | length, same k | online - own | "
        "online - length | online - offline | served small differ from bench | first 100 "
        "overspend (mean / max) | s per order |"
    )
    lines = [head, "|" + "---|" * 16]
    for r in rows:
        over = r["head_overspend"]
        lines.append(
            f"| {r['variant']} | {r['direction']} | {r['arrival']} | {r['concurrency']} | "
            f"{'on' if r['batching'] else 'off'} | {r['realised_share']:.3f} | "
            + " | ".join(format_cell(r[name]) for name in ROWS)
            + " | "
            + " | ".join(format_cell(r[f"{a}-{b}"], True) for a, b in DIFFS)
            + f" | {r['differ']:.1f} / {r['decoded']:.1f} | "
            f"{100 * over['mean']:+.1f} / {100 * over['max']:+.1f} | "
            f"{r['seconds_per_order']:.0f} |"
        )
    return "\n".join(lines)
