"""The router interface: a score per request, higher = more worth sending to the large model."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from routelmt.records import ScoredExample, Segment
from routelmt.registry import Registry


class Router(ABC):
    """Scores requests for routing.

    ``trainable`` routers are fitted on labelled examples (``fit``) before ``score``;
    oracles read the labels of the very examples they score and exist only for evaluation.
    """

    name: str
    trainable: bool = False
    oracle: bool = False
    #: reads the small translator's own model (an in-model router): the bench gives it the
    #: live small model (``model``) unless its router_args name one
    reads_small_model: bool = False

    def prepare(self, batch: Sequence[Segment | ScoredExample]) -> None:  # noqa: B027
        """Optional: precompute what ``fit``/``score`` will need for these items in one pass
        (e.g. model features), so cross-validation folds do not recompute them."""

    def fit(self, train: Sequence[ScoredExample]) -> Router:
        """Learn from labelled examples; untrained routers return themselves."""
        return self

    @abstractmethod
    def score(self, batch: Sequence[Segment | ScoredExample]) -> np.ndarray:
        """One float per item; higher means a larger expected gain from the large model."""


ROUTERS: Registry[Router] = Registry(
    "router", package="routelmt.routers", entry_point_group="routelmt.routers"
)


def get_router(name: str, **kwargs: object) -> Router:
    """Create a registered router by name."""
    return ROUTERS.create(name, **kwargs)
