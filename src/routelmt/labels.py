"""Gain labels: translate with both systems, score both against the reference, store the gain."""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from routelmt.backends.base import Translator
from routelmt.datasets.wmt import WMTDataset
from routelmt.errors import ConfigError, InputError
from routelmt.languages import target_language
from routelmt.metrics.base import Metric, get_metric
from routelmt.progress import bar
from routelmt.records import ScoredExample, Segment, read_records, write_records
from routelmt.storage import cache_dir, stable_hash

log = logging.getLogger(__name__)

LABELS_FORMAT = 1  # bump when the labelled-record layout changes, to invalidate caches


def translate_all(
    translator: Translator, segments: Sequence[Segment], batch_size: int = 32
) -> list[str]:
    """Translate in batches with a progress bar over segments (not batches); the output list is
    aligned with ``segments``."""
    outputs: list[str] = []
    with bar(desc=f"translate {translator.name}", total=len(segments), unit="seg") as pbar:
        for start in range(0, len(segments), batch_size):
            batch = segments[start : start + batch_size]
            texts = translator.translate(batch)
            if len(texts) != len(batch):
                raise InputError(
                    f"backend {translator.name} returned {len(texts)} outputs "
                    f"for {len(batch)} segments"
                )
            outputs.extend(texts)
            pbar.update(len(batch))
    return outputs


def score_pairs(
    metric: Metric, segments: Sequence[Segment], hypotheses: Sequence[str]
) -> list[float]:
    """Sentence scores, one metric call per target language so tokenisation stays per language."""
    by_target: dict[str, list[int]] = defaultdict(list)
    for index, segment in enumerate(segments):
        if metric.needs_reference and segment.reference is None:
            raise InputError(
                f"segment '{segment.id}' has no reference; metric needs one", field="reference"
            )
        by_target[target_language(segment.direction)].append(index)
    scores = [0.0] * len(segments)
    for target, indices in by_target.items():
        values = metric.sentence_scores(
            [hypotheses[i] for i in indices],
            [segments[i].reference or "" for i in indices] if metric.needs_reference else None,
            [target] * len(indices),
            sources=[segments[i].source for i in indices],
        )
        for i, value in zip(indices, values):
            scores[i] = float(value)
    return scores


def build_labels(
    segments: Sequence[Segment],
    small: Translator,
    large: Translator,
    metric: Metric,
    *,
    batch_size: int = 32,
) -> list[ScoredExample]:
    """The labelled examples the routers learn from and are evaluated on."""
    if not segments:
        raise InputError("empty test set: no segments to label")
    small_texts = translate_all(small, segments, batch_size)
    large_texts = translate_all(large, segments, batch_size)
    q_small = score_pairs(metric, segments, small_texts)
    q_large = score_pairs(metric, segments, large_texts)
    signature = metric.signature()
    log.info("labelled %d segments with %s", len(segments), signature)
    return [
        ScoredExample(
            segment=segment,
            small_system=small.name,
            large_system=large.name,
            small_text=st,
            large_text=lt,
            metric=signature,
            q_small=qs,
            q_large=ql,
        )
        for segment, st, lt, qs, ql in zip(segments, small_texts, large_texts, q_small, q_large)
    ]


def read_labels(path: str | os.PathLike[str]) -> list[ScoredExample]:
    """Labelled examples from JSONL; empty files are an error (nothing to evaluate)."""
    return read_records(path, ScoredExample)


def _resolve_pairs(dataset: WMTDataset, pairs: str | Sequence[str]) -> list[str]:
    known = dataset.pairs()
    if isinstance(pairs, str):
        pairs = known if pairs == "all" else [p.strip() for p in pairs.split(",") if p.strip()]
    if not pairs:
        raise ConfigError(f"no pairs selected; known: {', '.join(known)}")
    for pair in pairs:
        if pair not in known:
            raise ConfigError(f"unknown pair '{pair}' in {dataset.name}; known: {', '.join(known)}")
    return list(pairs)


def wmt_labels(
    *,
    pairs: str | Sequence[str] = "en-es",
    small: str = "Phi-3-Medium",
    large: str = "GPT-4",
    metric: str = "chrf",
    metric_args: dict[str, Any] | None = None,
    root: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    use_cache: bool = True,
) -> list[ScoredExample]:
    """Gain labels for WMT pairs, cached under ``cache_dir("labels")`` by every input setting."""
    from routelmt.backends.resolve import make_translator

    if limit is not None and limit <= 0:
        raise ConfigError(f"--limit must be positive, got {limit}")
    dataset = WMTDataset(root)
    chosen = _resolve_pairs(dataset, pairs)
    fingerprint = [str(getattr(dataset, "root", "")), chosen, small, large, metric]
    fingerprint += [metric_args or {}, limit, LABELS_FORMAT]
    for pair in chosen:  # recorded outputs may be edited in place: key on their stat
        for system in (small, large):
            path = Path(getattr(dataset, "txt", "")) / "system-outputs" / pair / f"{system}.txt"
            if path.is_file():
                stat = path.stat()
                fingerprint.append([pair, system, stat.st_size, stat.st_mtime_ns])
    cached = cache_dir("labels") / f"{stable_hash(fingerprint)}.jsonl"
    if use_cache and cached.is_file():
        log.info("labels from cache %s", cached)
        return read_labels(cached)

    segments: list[Segment] = []
    for pair in chosen:
        pair_segments = dataset.segments(pair)
        segments.extend(pair_segments[:limit] if limit else pair_segments)
    small_tr = make_translator(small, dataset=dataset, pairs=chosen)
    large_tr = make_translator(large, dataset=dataset, pairs=chosen)
    examples = build_labels(segments, small_tr, large_tr, get_metric(metric, **(metric_args or {})))
    if use_cache:
        write_records(cached, examples)
    return examples
