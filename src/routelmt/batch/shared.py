"""Decode-then-route on one prefill: with a two-stage router and an in-process small model, the
prefill that starts each batch's decoding also gives stage 1 its features (as the service does,
``hybrid.SharedPrefillSmall``), so the batch pays no second forward pass for routing.

Both outputs are stored as each batch finishes (fsynced): the small translations in the same
store ``translate_resumable`` reads, the stage-1 scores in their own ledger. A segment missing
either is done again on a rerun.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from routelmt.backends.base import Translator
from routelmt.batch.ledger import read_ledger
from routelmt.batch.router import two_stage
from routelmt.hybrid import SharedPrefillSmall
from routelmt.records import Segment
from routelmt.resumable import read_partial_translations, source_hash
from routelmt.routers.base import Router


def shares_prefill(small: Translator, router: Router) -> bool:
    """A two-stage router whose stage 1 reads a layer the small model's prefill returns."""
    return (
        two_stage(router)
        and isinstance(small, SharedPrefillSmall)
        and callable(getattr(router, "score_features", None))
        and isinstance(getattr(router, "layer", None), int)
    )


def translate_with_stage1(
    small: Translator,
    router: Router,
    segments: Sequence[Segment],
    texts_path: Path,
    scores_path: Path,
    batch_size: int,
) -> tuple[list[str], np.ndarray]:
    """Small translations and stage-1 scores of ``segments`` (in order), one prefill each."""
    texts = {t.segment_id: t.text for t in read_partial_translations(texts_path)}
    scores = {sid: float(r["score"]) for sid, r in read_ledger(scores_path).items()}
    todo = [s for s in segments if s.id not in texts or s.id not in scores]
    texts_path.parent.mkdir(parents=True, exist_ok=True)
    with open(texts_path, "a", encoding="utf-8") as out, open(scores_path, "a") as ledger:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            state = small.prefill(batch, layer=router.layer)  # type: ignore[attr-defined]
            stage1 = router.score_features(np.asarray(state.features))  # type: ignore[attr-defined]
            decoded = small.generate_from(state, list(range(len(batch))))  # type: ignore[attr-defined]
            for segment, text, score in zip(batch, decoded, stage1, strict=True):
                if segment.id not in texts:
                    _write(out, {"segment_id": segment.id, "system": small.name, "text": text,
                                 "source_hash": source_hash(segment)})  # fmt: skip
                    texts[segment.id] = text
                _write(ledger, {"segment_id": segment.id, "score": float(score)})
                scores[segment.id] = float(score)
            _sync(out)
            _sync(ledger)
    return [texts[s.id] for s in segments], np.array([scores[s.id] for s in segments])


def _write(handle: Any, record: dict[str, Any]) -> None:
    handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def _sync(handle: Any) -> None:
    handle.flush()
    os.fsync(handle.fileno())
