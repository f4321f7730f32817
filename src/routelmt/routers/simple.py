"""Model-free routers: the baselines and oracles of docs/method.md section 3."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from routelmt.errors import ConfigError, InputError
from routelmt.records import ScoredExample, Segment, segment_of
from routelmt.routers.base import ROUTERS, Router


@ROUTERS.register
class RandomRouter(Router):
    """Uniform scores in [0, 1) from a hash of (seed, segment id).

    A segment's score depends only on the seed and its id, never on the batch it arrives in or
    its position, so streaming and batch runs route it the same way.
    """

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"router 'random': seed must be an integer, got {seed!r}")
        self.seed = seed

    def score(self, batch: Sequence[Segment | ScoredExample]) -> np.ndarray:
        out = np.empty(len(batch), dtype=float)
        for i, item in enumerate(batch):
            digest = hashlib.blake2b(
                f"{self.seed}\x00{segment_of(item).id}".encode(), digest_size=8
            )
            out[i] = int.from_bytes(digest.digest(), "big") / 2.0**64
        return out


@ROUTERS.register
class LengthRouter(Router):
    """Longer sources go to the large model.

    Length is counted in characters by default: words are meaningless for sources written
    without spaces (Chinese, Japanese, Thai), and a router serves every direction.
    ``unit="words"`` counts whitespace-separated tokens instead.
    """

    name = "length"

    def __init__(self, unit: str = "chars") -> None:
        if unit not in ("chars", "words"):
            raise ConfigError(f"router 'length': unit must be 'chars' or 'words', got {unit!r}")
        self.unit = unit

    def score(self, batch: Sequence[Segment | ScoredExample]) -> np.ndarray:
        if self.unit == "words":
            return np.array([len(segment_of(x).source.split()) for x in batch], dtype=float)
        return np.array([len(segment_of(x).source) for x in batch], dtype=float)


def _require_labels(router: str, batch: Sequence[Segment | ScoredExample]) -> None:
    for i, item in enumerate(batch):
        if not isinstance(item, ScoredExample):
            raise InputError(
                f"router '{router}' is an oracle: it reads the true qualities, so it needs scored "
                f"examples (q_small, q_large), but item {i} is a plain {type(item).__name__}; "
                "oracles exist only for evaluation"
            )


@ROUTERS.register
class GainOracleRouter(Router):
    """The true gain q_large - q_small: the upper bound of any router."""

    name = "gain-oracle"
    oracle = True

    def score(self, batch: Sequence[Segment | ScoredExample]) -> np.ndarray:
        _require_labels(self.name, batch)
        return np.array([x.gain for x in batch], dtype=float)  # type: ignore[union-attr]


@ROUTERS.register
class QualityOracleRouter(Router):
    """The true -q_small: knowing that the small model is bad is not knowing the gain."""

    name = "quality-oracle"
    oracle = True

    def score(self, batch: Sequence[Segment | ScoredExample]) -> np.ndarray:
        _require_labels(self.name, batch)
        return -np.array([x.q_small for x in batch], dtype=float)  # type: ignore[union-attr]
