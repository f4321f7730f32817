"""The context every bench stage reads and extends: a run's settings, its data and what the
stages so far produced. Its own module so that the stage modules (``pipeline.bench``,
``pipeline.guards``) both import it and neither imports the other back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from routelmt.backends.base import Translator
from routelmt.executors import Executor
from routelmt.pipeline.stages import StageRunner
from routelmt.records import ScoredExample, Segment


@dataclass
class Bench:
    """One run: its settings and data, and what the stages so far produced, keyed by spec."""

    config: dict[str, Any]
    output: Path
    dataset: Any
    pairs: list[str]
    make: Callable[..., Translator]
    executor: Executor
    runner: StageRunner
    segments: list[Segment] = field(default_factory=list)
    texts: dict[str, list[str]] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)  # spec -> the system name it records
    qualities: dict[str, list[float]] = field(default_factory=dict)
    signature: dict[str, str] = field(default_factory=dict)  # spec -> metric signature
    _metric: Any = None

    @property
    def evaluation(self) -> dict[str, Any]:
        return self.config["evaluation"]

    def metric(self) -> Any:
        """The configured metric, built once and only if a score stage runs."""
        if self._metric is None:
            from routelmt.metrics.base import get_metric

            self._metric = get_metric(
                self.config["metric"]["name"], **self.config["metric"]["args"]
            )
        return self._metric

    def options(self, label: str) -> dict[str, Any]:
        return self.config["small_options"] if label == "small" else self.config["large_options"]

    def examples_for(self, large: str) -> list[ScoredExample]:
        """The labelled examples of the small system against ``large``."""
        small = self.config["small"]
        return [
            ScoredExample(
                segment=segment,
                small_system=self.names[small],
                large_system=self.names[large],
                small_text=self.texts[small][i],
                large_text=self.texts[large][i],
                metric=self.signature[small],
                q_small=self.qualities[small][i],
                q_large=self.qualities[large][i],
            )
            for i, segment in enumerate(self.segments)
        ]
