"""The score distribution a router ships with: where the pacer's threshold should start.

A pacer that knows nothing of its router's scores must watch traffic before it can set a
threshold, and while it watches it decides on the few scores seen so far (the blind warm-up that
sends too many early requests large). A trained router knows roughly what its scores look like on
unseen data: its out-of-fold scores. ``ScoreDistribution`` keeps their quantiles (101 levels,
0 %..100 %) per routing stage and per direction where known, in a small JSON file beside the
router's weights (``score_distribution.json``). The pacer starts from the quantile for its budget
and keeps adapting online; the service reports how far its recent threshold is from it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from routelmt.errors import ConfigError

__all__ = ["DISTRIBUTION_FILE", "LEVELS", "ScoreDistribution", "StageDistributions"]

DISTRIBUTION_FILE = "score_distribution.json"
FORMAT = 1
LEVELS = 101  # quantiles at 0 %, 1 %, ..., 100 %
POOLED = "all"


@dataclass(frozen=True)
class ScoreDistribution:
    """Quantiles of a router's scores at levels 0, 1/100, ..., 1 (non-decreasing)."""

    quantiles: tuple[float, ...]
    n: int = 0  # how many scores they summarise

    def __post_init__(self) -> None:
        q = self.quantiles
        if len(q) != LEVELS or not all(isinstance(v, float) and math.isfinite(v) for v in q):
            raise ConfigError(f"a score distribution needs {LEVELS} finite quantiles")
        if any(b < a for a, b in zip(q, q[1:])):
            raise ConfigError("score distribution quantiles must be non-decreasing")

    @classmethod
    def from_scores(cls, scores: Sequence[float] | np.ndarray) -> ScoreDistribution:
        arr = np.asarray(scores, dtype=float).ravel()
        arr = arr[np.isfinite(arr)]
        if arr.size < 2:
            raise ConfigError("a score distribution needs at least 2 finite scores")
        levels = np.linspace(0.0, 1.0, LEVELS)
        return cls(tuple(float(v) for v in np.quantile(arr, levels)), int(arr.size))

    def quantile(self, level: float) -> float:
        """The score below which ``level`` of scores fall (linear between stored levels)."""
        if not 0.0 <= level <= 1.0:
            raise ConfigError(f"quantile level must be in [0, 1], got {level}")
        return float(np.interp(level, np.linspace(0.0, 1.0, LEVELS), self.quantiles))

    def threshold_for(self, share: float) -> float:
        """The threshold that sends ``share`` of these scores large: the (1 - share) quantile."""
        return self.quantile(1.0 - share)

    def sample(self, count: int = LEVELS) -> list[float]:
        """``count`` evenly spaced quantiles (at (j + 0.5) / count) as pseudo-scores: a pacer's
        window seeded with them starts warm, and weighs them as ``count`` scores."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ConfigError(f"count must be a positive integer, got {count!r}")
        return [self.quantile((j + 0.5) / count) for j in range(count)]

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "quantiles": [round(v, 6) for v in self.quantiles]}

    @classmethod
    def from_dict(cls, data: Any, where: str = "score distribution") -> ScoreDistribution:
        if not isinstance(data, Mapping) or not isinstance(data.get("quantiles"), list):
            raise ConfigError(f"{where}: expected {{n, quantiles: [{LEVELS} numbers]}}")
        values = data["quantiles"]
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            raise ConfigError(f"{where}: quantiles must be numbers")
        n = data.get("n", 0)
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ConfigError(f"{where}: n must be an integer >= 0")
        return cls(tuple(float(v) for v in values), n)


@dataclass
class StageDistributions:
    """Per routing stage (``stage1``, ``stage2``), per direction and pooled (``all``)."""

    stages: dict[str, dict[str, ScoreDistribution]] = field(default_factory=dict)
    source: str = ""  # how they were computed (the command, the run)

    def get(self, stage: str, direction: str | None = None) -> ScoreDistribution | None:
        """The direction's distribution when known, else the pooled one, else None."""
        by_direction = self.stages.get(stage, {})
        if direction is not None and direction in by_direction:
            return by_direction[direction]
        return by_direction.get(POOLED)

    @classmethod
    def from_scores(
        cls, scores: Mapping[str, Mapping[str, Sequence[float]]], source: str = ""
    ) -> StageDistributions:
        """``scores[stage][direction]``: each direction's own, and all of a stage pooled."""
        stages: dict[str, dict[str, ScoreDistribution]] = {}
        for stage, by_direction in scores.items():
            out = {d: ScoreDistribution.from_scores(v) for d, v in sorted(by_direction.items())}
            pooled = np.concatenate([np.asarray(v, dtype=float) for v in by_direction.values()])
            out[POOLED] = ScoreDistribution.from_scores(pooled)
            stages[stage] = out
        return cls(stages, source)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "levels": "0, 0.01, ..., 1",
            "source": self.source,
            "stages": {
                stage: {d: dist.to_dict() for d, dist in by.items()}
                for stage, by in self.stages.items()
            },
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = DISTRIBUTION_FILE) -> StageDistributions:
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise ConfigError(f"{where}: not a score distribution of format {FORMAT}")
        stages = data.get("stages")
        if not isinstance(stages, Mapping):
            raise ConfigError(f"{where}: 'stages' must map stage -> direction -> quantiles")
        out: dict[str, dict[str, ScoreDistribution]] = {}
        for stage, by in stages.items():
            if not isinstance(by, Mapping):
                raise ConfigError(f"{where}: stage '{stage}' must map direction -> quantiles")
            out[str(stage)] = {
                str(d): ScoreDistribution.from_dict(v, f"{where}: {stage}/{d}")
                for d, v in by.items()
            }
        return cls(out, str(data.get("source", "")))

    def write(self, directory: str | Path) -> Path:
        from routelmt.storage import write_json

        path = Path(directory) / DISTRIBUTION_FILE
        write_json(path, self.to_dict())
        return path

    @classmethod
    def read(cls, directory: str | Path) -> StageDistributions | None:
        """The artifact's distributions, or None when it ships none."""
        path = Path(directory) / DISTRIBUTION_FILE
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: unreadable score distribution ({exc})") from None
        return cls.from_dict(data, str(path))
