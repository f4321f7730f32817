"""Shared inputs of the router ablations: prefill signals, translations, qualities, gains.

Used by ``bench/router_ablation.py`` (prefill router, issue 10) and
``bench/two_stage_ablation.py`` (decode-then-route, issue 16). Qualities of recorded systems
and of the small model's translations are scored once with the project's metric and cached
next to the prefill file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from routelmt.datasets.wmt import WMTDataset
from routelmt.labels import score_pairs
from routelmt.metrics.base import get_metric
from routelmt.storage import atomic_open, stable_hash

STRONG = ("GPT-4", "Claude-3.5", "Gemini-1.5-Pro", "Llama3-70B", "Mistral-Large", "Aya23")


@dataclass
class AblationData:
    """Row-aligned arrays for every segment of the chosen directions."""

    ids: np.ndarray
    directions: np.ndarray
    groups: np.ndarray
    sources: list[str]
    small_texts: list[str]
    q_small: np.ndarray
    q: dict[str, np.ndarray]  # recorded system -> sentence quality
    prefill: dict[str, np.ndarray] = field(default_factory=dict)

    def gain(self, large: str) -> np.ndarray:
        return self.q[large] - self.q_small

    def mask(self, direction: str) -> np.ndarray:
        return self.directions == direction


def _read_translations(paths: list[Path]) -> dict[str, str]:
    out: dict[str, str] = {}
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                row = json.loads(line)
                out.setdefault(row["segment_id"], row["text"])
    return out


def load(
    prefill_path: Path,
    small: str,
    systems: tuple[str, ...] = STRONG,
    metric_name: str = "chrf",
) -> AblationData:
    """``small``: comma-separated translations.jsonl files of the live small model, or
    ``replay:SYSTEM`` for a recorded system (the decoupled setting)."""
    with np.load(prefill_path) as data:
        prefill = {k: data[k] for k in data.files}
    ids = prefill.pop("ids").astype(str)
    directions = prefill.pop("directions").astype(str)
    groups = prefill.pop("groups").astype(str)
    dataset = WMTDataset()
    pairs = list(dict.fromkeys(directions))
    segments = {s.id: s for pair in pairs for s in dataset.segments(pair)}
    segs = [segments[i] for i in ids]
    metric = get_metric(metric_name)
    cache = prefill_path.parent / "quality-cache"
    cache.mkdir(parents=True, exist_ok=True)

    def quality(name: str, texts: list[str]) -> np.ndarray:
        key = stable_hash(metric.signature(), list(ids), texts, length=16)
        path = cache / f"{name.replace(':', '_').replace('/', '_')}-{key}.npy"
        if path.exists():
            return np.load(path)
        values = np.asarray(score_pairs(metric, segs, texts), dtype=np.float64)
        with atomic_open(path, "wb") as handle:
            np.save(handle, values)
        return values

    q = {}
    for system in systems:
        outputs = {}
        for pair in pairs:
            outputs |= dataset.system_outputs(pair, system)
        q[system] = quality(system, [outputs[i] for i in ids])
    if small.startswith("replay:"):
        name = small.removeprefix("replay:")
        outputs = {}
        for pair in pairs:
            outputs |= dataset.system_outputs(pair, name)
        small_texts = [outputs[i] for i in ids]
    else:
        found = _read_translations([Path(p) for p in small.split(",")])
        missing = [i for i in ids if i not in found]
        if missing:
            raise SystemExit(
                f"{len(missing)} segments have no small translation, e.g. {missing[0]}"
            )
        small_texts = [found[i] for i in ids]
    q_small = quality("small", small_texts)
    return AblationData(
        ids=ids,
        directions=directions,
        groups=groups,
        sources=[s.source for s in segs],
        small_texts=small_texts,
        q_small=q_small,
        q=q,
        prefill=prefill,
    )
