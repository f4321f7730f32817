"""Gain labels for a user's own segments (``routelmt data -i my.jsonl``): a stratified sample,
both live models, resumable per segment, and a label with or without references.

Two steps so a caller can show the cost before anything is paid: ``plan_labels`` samples,
builds and checks both backends and counts the large calls still to make (a rerun counts only
those not yet stored); ``run_labels`` translates (each model's outputs fsynced per batch in the
work folder, resumed per segment) and scores.

Labels (``label``):

- ``reference``: ``metric`` (chrF by default) of each output against the segment's reference;
- ``pseudo-reference``: the large output as the reference: q_large = metric(large, large),
  q_small = metric(small, large). It measures how far the small output is from the large one;
  the default without references, because a router trained on it routed as well as one trained
  on reference labels (95-108% of its HC@0.3 on each in-model direction, docs/benchmarks.md
  section 15), where QE labels reached 31-60%;
- any registered metric that needs no reference (``qe-embed``, ``cometkiwi`` where installed):
  a quality estimate of each output from the source alone.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from routelmt.backends.base import Translator
from routelmt.backends.preflight import check_covers, check_reachable
from routelmt.backends.resolve import check_spec, make_translator, slug
from routelmt.errors import ConfigError, InputError
from routelmt.labels import score_pairs
from routelmt.metrics.base import METRICS, get_metric
from routelmt.records import ScoredExample, Segment
from routelmt.resumable import read_partial_translations, translate_resumable

log = logging.getLogger(__name__)

REFERENCE = "reference"
PSEUDO_REFERENCE = "pseudo-reference"
DEFAULT_FREE_LABEL = PSEUDO_REFERENCE
#: other names of the same two labels (qe-gain: the gain is QE(large) - QE(small))
ALIASES = {"qe-gain": "qe-embed", "pseudo-ref": PSEUDO_REFERENCE}


def stratified_sample(segments: Sequence[Segment], n: int, seed: int = 0) -> list[Segment]:
    """``n`` segments spread over the directions in proportion to their counts (largest
    remainder, at least one per direction when n allows), drawn at random within each
    direction with ``seed``; returned in input order."""
    if n < 1:
        raise ConfigError(f"--sample must be at least 1, got {n}")
    if n >= len(segments):
        return list(segments)
    by_direction: dict[str, list[int]] = {}
    for i, segment in enumerate(segments):
        by_direction.setdefault(segment.direction, []).append(i)
    names = list(by_direction)
    sizes = np.array([len(by_direction[d]) for d in names], dtype=float)
    exact = n * sizes / sizes.sum()
    take = np.floor(exact).astype(int)
    if n >= len(names):
        take = np.maximum(take, 1)
    for j in np.argsort(-(exact - np.floor(exact)), kind="stable"):
        if take.sum() >= n:
            break
        take[j] += 1
    while take.sum() > n:  # the at-least-one rule overshot: trim the largest
        take[int(np.argmax(take))] -= 1
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for name, count in zip(names, take):
        rows = by_direction[name]
        chosen.extend(rng.choice(rows, size=min(int(count), len(rows)), replace=False).tolist())
    return [segments[i] for i in sorted(chosen)]


def default_label(segments: Sequence[Segment]) -> str:
    """The reference metric when every segment has a reference, else a reference-free one."""
    return REFERENCE if all(s.reference for s in segments) else DEFAULT_FREE_LABEL


def check_label(label: str, segments: Sequence[Segment]) -> None:
    if label in (REFERENCE, PSEUDO_REFERENCE):
        if label == REFERENCE:
            missing = [s.id for s in segments if not s.reference]
            if missing:
                raise InputError(
                    f"--label reference needs a reference for every segment; {len(missing)} have "
                    f"none (first: {missing[0]}); use --label {PSEUDO_REFERENCE} or a "
                    "reference-free metric (qe-embed)",
                    field="reference",
                )
        return
    if label not in METRICS:
        raise ConfigError(
            f"--label: '{label}' is not {REFERENCE}, {PSEUDO_REFERENCE} or a registered metric "
            f"({', '.join(METRICS.names())})"
        )
    if getattr(METRICS.get(label), "needs_reference", True):
        raise ConfigError(f"--label {label} needs references; give --label {REFERENCE} instead")


@dataclass
class LabelPlan:
    """What ``run_labels`` will do, known before any call: the sample, both backends, and the
    large calls still to make."""

    segments: list[Segment]
    small: Translator
    large: Translator
    label: str
    metric: str
    metric_args: dict[str, Any]
    work: Path
    large_calls_new: int
    large_calls_done: int
    large_cost_per_call: float = 1.0
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def estimated_cost(self) -> float:
        return self.large_calls_new * self.large_cost_per_call

    def close(self) -> None:
        self.small.close()
        self.large.close()


def plan_labels(
    segments: Sequence[Segment],
    *,
    small: str,
    large: str,
    work: str | os.PathLike[str],
    label: str | None = None,
    metric: str = "chrf",
    metric_args: dict[str, Any] | None = None,
    sample: int | None = None,
    seed: int = 0,
    max_large_calls: int | None = None,
    large_cost: float = 1.0,
    small_options: dict[str, Any] | None = None,
    large_options: dict[str, Any] | None = None,
) -> LabelPlan:
    """Sample, check and count; nothing is translated and nothing written."""
    chosen = stratified_sample(segments, sample, seed) if sample is not None else list(segments)
    label = ALIASES.get(label or "", label) or default_label(chosen)
    check_label(label, chosen)
    get_metric(metric, **(metric_args or {}))  # a bad metric fails before any call
    check_spec(small, "--small")
    check_spec(large, "--large")
    small_tr = make_translator(small, **(small_options or {}))
    large_tr = make_translator(large, **(large_options or {}))
    check_covers(small_tr, chosen, "--small")
    check_covers(large_tr, chosen, "--large")
    check_reachable(small_tr, "small")
    check_reachable(large_tr, "large")
    work = Path(work)
    held = {t.segment_id for t in read_partial_translations(store_path(work, "large", large_tr))}
    new = sum(s.id not in held for s in chosen)
    if max_large_calls is not None and new > max_large_calls:
        raise ConfigError(
            f"labelling needs {new} more large calls, over --max-large-calls {max_large_calls}; "
            "lower --sample or raise the cap"
        )
    return LabelPlan(
        chosen, small_tr, large_tr, label, metric, dict(metric_args or {}), work, new,
        len(chosen) - new, large_cost,
    )  # fmt: skip


def store_path(work: Path, role: str, translator: Translator) -> Path:
    """Where one model's translations of the sample are kept (appended, resumable)."""
    return work / f"{role}-{slug(translator.name)}.jsonl"


def run_labels(plan: LabelPlan, *, batch_size: int = 8) -> list[ScoredExample]:
    """Translate the sample with both models (resumable) and label it."""
    segments = plan.segments
    texts = {}
    for role, translator in (("small", plan.small), ("large", plan.large)):
        path = store_path(plan.work, role, translator)
        done = translate_resumable(translator, segments, path, batch_size=batch_size)
        texts[role] = done.texts
    q_small, q_large, signature = score_outputs(plan, texts["small"], texts["large"])
    return [
        ScoredExample(
            segment=segment,
            small_system=plan.small.name,
            large_system=plan.large.name,
            small_text=st,
            large_text=lt,
            metric=signature,
            q_small=qs,
            q_large=ql,
        )
        for segment, st, lt, qs, ql in zip(
            segments, texts["small"], texts["large"], q_small, q_large, strict=True
        )
    ]


def score_outputs(
    plan: LabelPlan, small: list[str], large: list[str]
) -> tuple[list[float], list[float], str]:
    """(q_small, q_large, the label's signature) under the plan's label."""
    segments = plan.segments
    if plan.label == REFERENCE:
        metric = get_metric(plan.metric, **plan.metric_args)
        return (
            score_pairs(metric, segments, small),
            score_pairs(metric, segments, large),
            (metric.signature()),
        )
    if plan.label == PSEUDO_REFERENCE:
        metric = get_metric(plan.metric, **plan.metric_args)
        pseudo = [dataclasses.replace(s, reference=t) for s, t in zip(segments, large)]
        q_small = score_pairs(metric, pseudo, small)
        q_large = score_pairs(metric, pseudo, large)
        return q_small, q_large, f"{PSEUDO_REFERENCE}:{metric.signature()}"
    metric = get_metric(plan.label)
    return (
        score_pairs(metric, segments, small),
        score_pairs(metric, segments, large),
        (metric.signature()),
    )
