"""The router interface: a score per request, higher = more worth sending to the large model.

``Router`` is what every router implements (``score``; ``prepare`` and ``fit`` where they have
work to do). What only some routers can do is declared here too, as capabilities: small
Protocols that the places choosing a router check with ``isinstance`` (through ``require`` or
``capabilities``), so a router gains a serving path by implementing the methods, and a router
that lacks one is refused with a message naming what is missing, where it is chosen:

- ``FeatureRouter``: ``layer`` and ``score_features`` (scores the small model's own prefill
  features: the service's shared-prefill path, and the quality-predict guard's free path);
- ``SecondStageRouter``: ``score_stage2`` (a second look after the small decode; its stage 1
  is ``score``, or ``score_features`` on the shared prefill): the service gives it a second
  pacer, the batch path scores every small translation with it (``stages`` says 1 or 2);
- ``SharedQERouter``: ``qe`` and ``qe_metric`` (the QE scorer it reads, which the
  quality-hypo guard reuses instead of loading a second one);
- ``SavableRouter`` (``save``) and ``LoadableRouter`` (a ``load`` classmethod): a trained
  artifact (``routelmt train`` writes it, ``router: {path: ...}`` serves it).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from routelmt.errors import ConfigError
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


@runtime_checkable
class FeatureRouter(Protocol):
    """Scores precomputed prefill features of the small model (one forward pass serves both
    routing and translation). ``layer``: the hidden layer it reads (None: the model's default)."""

    layer: int | None

    def score_features(self, features: np.ndarray) -> np.ndarray:
        """One score per feature row; higher = more worth sending to the large model."""
        ...


@runtime_checkable
class SecondStageRouter(Protocol):
    """Decides twice: on the request (stage 1: its ``score``, or ``score_features`` on the
    shared prefill) and again on the small model's own translation (stage 2). Only stage 2 is
    asked for here: it is what every two-stage path calls beyond a one-stage router's methods."""

    def score_stage2(
        self, segments: Sequence[Segment], texts: Sequence[str], stage1: np.ndarray
    ) -> np.ndarray:
        """The stage-2 score of the small translations ``texts`` given their stage-1 scores."""
        ...


@runtime_checkable
class SharedQERouter(Protocol):
    """Reads a reference-free QE scorer (``qe``: its registered name) that it builds once; a
    quality-hypo guard naming the same scorer reuses it (one sentence encoder loaded)."""

    qe: Any
    qe_options: dict[str, Any]  # keyword options the scorer is built with from its name

    def qe_metric(self) -> Any:
        """The QE scorer, built once."""
        ...


@runtime_checkable
class SavableRouter(Protocol):
    """A trained router that writes its artifact folder (``router.json`` + its state)."""

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the artifact into ``directory``; returns it."""
        ...


@runtime_checkable
class LoadableRouter(Protocol):
    """A router class that reads its artifact folder back (``load`` is a classmethod)."""

    def load(self, directory: str | os.PathLike[str]) -> Router:
        """The router saved in ``directory``."""
        ...


#: capability name -> (the Protocol, what it is for); the names ``capabilities`` returns
CAPABILITIES: dict[str, tuple[type, str]] = {
    "score_features": (FeatureRouter, "the shared prefill (score_features and layer)"),
    "second_stage": (SecondStageRouter, "a second look at the small translation (score_stage2)"),
    "shared_qe": (SharedQERouter, "a QE scorer to share (qe and qe_metric)"),
    "save": (SavableRouter, "saving a trained artifact (save)"),
    "load": (LoadableRouter, "loading a trained artifact (a load classmethod)"),
}


def capabilities(router: Router | type[Router]) -> frozenset[str]:
    """The declared capabilities a router has (given a class: only ``save`` and ``load`` can
    show, the others need the instance's attributes)."""
    return frozenset(name for name, (proto, _) in CAPABILITIES.items() if isinstance(router, proto))


def stages(router: Any) -> int:
    """How many routing stages ``router`` declares: 2 for a ``SecondStageRouter`` (the budget
    plan gives it two pacers), else 1."""
    return 2 if isinstance(router, SecondStageRouter) else 1


def require(router: Router | type[Router], capability: str, purpose: str) -> None:
    """A ConfigError naming the router and the missing capability unless it has it."""
    if capability not in capabilities(router):
        klass = router if isinstance(router, type) else type(router)
        name = getattr(router, "name", klass.__name__)
        raise ConfigError(
            f"router '{name}' cannot be used for {purpose}: it does not implement "
            f"{CAPABILITIES[capability][1]} (routers.base.{CAPABILITIES[capability][0].__name__})"
        )


ROUTERS: Registry[Router] = Registry(
    "router", package="routelmt.routers", entry_point_group="routelmt.routers"
)


def get_router(name: str, **kwargs: object) -> Router:
    """Create a registered router by name."""
    return ROUTERS.create(name, **kwargs)
