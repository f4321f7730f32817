"""What a trained router saw: hashes of its training sources, stored beside the artifact, so that
an evaluation can tell when its test set overlaps the training data (optimistic scores).

The record holds, per distinct source text, a short hash and the directions it was trained in.
Only hashes are stored (no text), 16 hex digits of SHA-256 of the stripped, NFC-normalised
source: about 30 bytes per training source.
"""

from __future__ import annotations

import hashlib
import os
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from routelmt.errors import InputError
from routelmt.records import ScoredExample, Segment, segment_of
from routelmt.storage import read_json, write_json

TRAINING_SOURCES = "training_sources.json"
FORMAT = 1
HASH_RULE = "sha256 of the stripped, NFC-normalised source text; first 16 hex digits"


def source_fingerprint(text: str) -> str:
    """The hash under which a source text is recorded."""
    normal = unicodedata.normalize("NFC", text.strip())
    return hashlib.sha256(normal.encode("utf-8")).hexdigest()[:16]


def training_sources(examples: Sequence[Segment | ScoredExample]) -> dict[str, Any]:
    """The record of a training set: each source's hash with the directions it was seen in."""
    seen: dict[str, set[str]] = {}
    for item in examples:
        segment = segment_of(item)
        seen.setdefault(source_fingerprint(segment.source), set()).add(segment.direction)
    return {
        "format": FORMAT,
        "hash": HASH_RULE,
        "n_examples": len(examples),
        "sources": {key: sorted(dirs) for key, dirs in sorted(seen.items())},
    }


def write_training_sources(directory: str | os.PathLike[str], record: dict[str, Any] | None):
    """Store the record beside an artifact; without one, remove a stale record left there."""
    path = Path(directory) / TRAINING_SOURCES
    if record is not None:
        write_json(path, record)
    else:
        path.unlink(missing_ok=True)


def read_training_sources(directory: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The stored record, or None for an artifact saved before records existed."""
    path = Path(directory) / TRAINING_SOURCES
    if not path.is_file():
        return None
    record = read_json(path)
    sources = record.get("sources") if isinstance(record, dict) else None
    if not isinstance(sources, dict) or record.get("format") != FORMAT:
        raise InputError(
            f"not a training-sources record (expected format {FORMAT} with 'sources')",
            path=str(path),
        )
    return record


@dataclass
class Overlap:
    """How much of an evaluation set a router artifact was trained on.

    ``recorded`` is False for an artifact without a record (nothing can be said).
    ``same_source``: evaluation segments whose source text was among the training sources (in
    any direction); ``same_example``: those whose source was trained in the same direction.
    """

    artifact: str
    recorded: bool
    n_eval: int
    same_source: int = 0
    same_example: int = 0
    n_train: int | None = None
    directions: dict[str, int] = field(default_factory=dict)

    @property
    def any(self) -> bool:
        return self.same_source > 0

    def message(self) -> str:
        """One line for the log."""
        if not self.recorded:
            return (
                f"router artifact {self.artifact} records no training sources (saved by an "
                "older routelmt); overlap with the evaluation set cannot be checked"
            )
        if not self.any:
            return (
                f"router artifact {self.artifact}: none of the {self.n_eval} evaluation "
                "segments shares its source with the training data"
            )
        per = ", ".join(f"{d} {c}" for d, c in sorted(self.directions.items()))
        return (
            f"router artifact {self.artifact} was trained on data that overlaps the evaluation "
            f"set: {self.same_source} of {self.n_eval} segments share their source text with "
            f"its training data ({self.same_example} in the same direction; by direction: "
            f"{per}); its scores on them are optimistic"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "recorded": self.recorded,
            "n_eval": self.n_eval,
            "same_source": self.same_source,
            "same_example": self.same_example,
            "n_train": self.n_train,
            "by_direction": dict(sorted(self.directions.items())),
        }


def training_overlap(
    directory: str | os.PathLike[str], examples: Sequence[Segment | ScoredExample]
) -> Overlap:
    """Compare an evaluation set with the training sources recorded in an artifact (a folder,
    or ``shipped:NAME``: the record ships beside the artifact inside the package)."""
    from routelmt.routers.locations import resolve_artifact

    record = read_training_sources(resolve_artifact(directory))
    if record is None:
        return Overlap(str(directory), recorded=False, n_eval=len(examples))
    sources: dict[str, list[str]] = record["sources"]
    out = Overlap(
        str(directory), recorded=True, n_eval=len(examples), n_train=record.get("n_examples")
    )
    for item in examples:
        segment = segment_of(item)
        trained_in = sources.get(source_fingerprint(segment.source))
        if trained_in is None:
            continue
        out.same_source += 1
        out.same_example += segment.direction in trained_in
        out.directions[segment.direction] = out.directions.get(segment.direction, 0) + 1
    return out
