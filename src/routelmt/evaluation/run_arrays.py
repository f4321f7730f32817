"""The arrays of a ``routelmt bench`` run that the adaptation benches read (read-only).

From the run folder: segments, the small model's and a recorded large system's translations and
their reference scores. From the feature cache (``$ROUTELMT_CACHE/features``, written by the
run's in-model routers): prefill features per layer, computed here only for segments missing
there. The reference-free stage-2 inputs of the small translations are computed once and cached
under ``--cache``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from routelmt.evaluation.learning_curve import ProbeHead
from routelmt.features import load_features
from routelmt.heads import RidgeHead
from routelmt.records import Segment, read_records
from routelmt.routers.artifacts import resolve_artifact
from routelmt.routers.two_stage import TwoStageHeads
from routelmt.storage import atomic_open, cache_dir, stable_hash

log = logging.getLogger(__name__)


@dataclass
class RunArrays:
    segments: list[Segment]
    small_texts: list[str]
    large_texts: list[str]
    q_small: np.ndarray
    q_large: np.ndarray

    @property
    def directions(self) -> np.ndarray:
        return np.asarray([s.direction for s in self.segments])

    @property
    def groups(self) -> np.ndarray:
        return np.asarray([s.group for s in self.segments])


def _texts(path: Path) -> dict[str, str]:
    with open(path, encoding="utf-8") as handle:
        return {row["segment_id"]: row["text"] for row in map(json.loads, handle)}


def _scores(path: Path) -> dict[str, float]:
    with open(path, encoding="utf-8") as handle:
        return {row["segment_id"]: float(row["q"]) for row in map(json.loads, handle)}


def load_run(run: Path, small: str, large: str = "GPT-4", per_direction: int | None = None):
    """``small``/``large``: folder names under ``translate/`` and ``score/`` (e.g.
    ``llamacpp-gemma3-270m``, ``GPT-4``); only segments with every value are kept."""
    segments = read_records(run / "data" / "segments.jsonl", Segment)
    st = _texts(run / "translate" / small / "translations.jsonl")
    lt = _texts(run / "translate" / large / "translations.jsonl")
    qs, ql = (
        _scores(run / "score" / small / "scores.jsonl"),
        _scores(run / "score" / large / "scores.jsonl"),
    )
    kept = [s for s in segments if s.id in st and s.id in lt and s.id in qs and s.id in ql]
    if per_direction:  # the first N of each direction
        seen: dict[str, int] = {}
        first = []
        for s in kept:
            seen[s.direction] = seen.get(s.direction, 0) + 1
            if seen[s.direction] <= per_direction:
                first.append(s)
        kept = first
    log.info("%d of %d segments have every value", len(kept), len(segments))
    return RunArrays(
        segments=kept,
        small_texts=[st[s.id] for s in kept],
        large_texts=[lt[s.id] for s in kept],
        q_small=np.asarray([qs[s.id] for s in kept]),
        q_large=np.asarray([ql[s.id] for s in kept]),
    )


def cached_ids(model: str, layers: list[int], fingerprint: str | None = None) -> set[str]:
    """Segment ids whose prefill features of every one of ``layers`` are in the cache."""
    out: set[str] = set()
    for path in sorted(cache_dir("features").glob("*.npz")):
        feats = load_features(path)
        meta = feats.meta
        if not str(meta.get("model", "")).startswith(model + "@") or meta.get("pooling") != "last":
            continue
        if fingerprint and meta.get("template_fingerprint") != fingerprint:
            continue
        if all(k in feats.layers for k in layers):
            out.update(feats.segment_ids)
    return out


def keep_only(arrays: RunArrays, ids: set[str]) -> tuple[RunArrays, list[int]]:
    """The rows of ``arrays`` whose segment id is in ``ids``, and their indices."""
    rows = [i for i, s in enumerate(arrays.segments) if s.id in ids]
    log.info("keeping the %d of %d segments with cached features", len(rows), len(arrays.segments))
    kept = RunArrays(
        segments=[arrays.segments[i] for i in rows],
        small_texts=[arrays.small_texts[i] for i in rows],
        large_texts=[arrays.large_texts[i] for i in rows],
        q_small=arrays.q_small[rows],
        q_large=arrays.q_large[rows],
    )
    return kept, rows


def prefill_layers(
    segments: list[Segment], model: str, layers: list[int] | None, fingerprint: str | None = None
) -> dict[int, np.ndarray]:
    """Features of ``layers`` (None: every layer) from the cache of ``model``'s prefill (last
    token pooling; ``fingerprint``: the prompt template's, when given); missing rows computed."""
    wanted = {s.id: i for i, s in enumerate(segments)}
    found: dict[int, np.ndarray] = {}
    have = np.zeros(len(segments), dtype=bool)
    for path in sorted(cache_dir("features").glob("*.npz")):
        feats = load_features(path)
        meta = feats.meta
        if not str(meta.get("model", "")).startswith(model + "@") or meta.get("pooling") != "last":
            continue
        if fingerprint and meta.get("template_fingerprint") != fingerprint:
            continue
        use = layers if layers is not None else sorted(k for k in feats.layers if k > 0)
        if any(k not in feats.layers for k in use):
            continue
        for row, sid in enumerate(feats.segment_ids):
            i = wanted.get(sid)
            if i is None or have[i]:
                continue
            for k in use:
                found.setdefault(
                    k, np.zeros((len(segments), feats.layers[k].shape[1]), np.float32)
                )[i] = feats.layers[k][row]
            have[i] = True
    missing = [segments[i] for i in np.flatnonzero(~have)]
    log.info("prefill features: %d cached, %d to compute", int(have.sum()), len(missing))
    if missing:
        from routelmt.routers.inmodel import feature_source

        source = feature_source(model)
        use = layers if layers is not None else list(range(1, source.num_layers + 1))
        index = np.flatnonzero(~have)
        for k in use:
            values = source.layer(missing, k)
            found.setdefault(k, np.zeros((len(segments), values.shape[1]), np.float32))[index] = (
                values
            )
    return found


def stage2_rest(arrays: RunArrays, cache: Path) -> np.ndarray:
    """``STAGE2_INPUTS[1:]`` of every small translation: the output features (qe-embed, ...)
    and the log source length; cached by segment ids and texts."""
    from routelmt.output_features import output_features

    key = stable_hash([s.id for s in arrays.segments], arrays.small_texts, length=16)
    path = cache / f"stage2-rest-{key}.npy"
    if path.exists():
        return np.load(path)
    feats = output_features(arrays.segments, arrays.small_texts)
    length = np.log1p([len(s.source) for s in arrays.segments])
    rest = np.column_stack([feats.matrix, length])
    cache.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as handle:
        np.save(handle, rest)
    return rest


def shipped_heads(name: str = "routelmt-2stage") -> tuple[TwoStageHeads | ProbeHead, str]:
    """A shipped router's heads (two-stage, or the probe ``routelmt``; no model load) and its
    prompt fingerprint."""
    root = resolve_artifact(f"shipped:{name}")
    if name == "routelmt":
        probe = json.loads((root / "router.json").read_text())
        return ProbeHead(int(probe["layer"]), RidgeHead.load(root)), probe["template_fingerprint"]
    config = json.loads((root / "router.json").read_text())
    stage1 = json.loads((root / "stage1" / "router.json").read_text())
    heads = TwoStageHeads(
        int(stage1["layer"]),
        RidgeHead.load(root / "stage1"),
        RidgeHead.load(root / "stage2"),
        np.asarray(config["center"]),
        np.asarray(config["scale"]),
    )
    return heads, stage1["template_fingerprint"]
