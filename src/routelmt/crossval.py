"""Scores for every router on a labelled set: trainable routers out-of-fold (k-fold by source
group, or leave-one-direction-out; either way no source is both trained on and scored), the
others directly."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from routelmt.errors import ConfigError
from routelmt.records import ScoredExample
from routelmt.routers.base import Router, get_router
from routelmt.splits import CV_SCHEMES, cv_splits

log = logging.getLogger(__name__)

RouterFactory = Callable[[], Router]

MIN_TRAIN_GROUPS = 3
"""Source groups a trainable router needs to be scored out-of-fold: each training side then
holds at least two groups, which its own grouped CV (layer, penalty) needs."""


def n_groups(examples: Sequence[ScoredExample]) -> int:
    return len({ex.segment.group for ex in examples})


def too_few_groups(router: Router, examples: Sequence[ScoredExample]) -> str | None:
    """Why ``router`` cannot be trained out-of-fold on ``examples`` (None when it can)."""
    groups = n_groups(examples)
    if router.trainable and groups < MIN_TRAIN_GROUPS:
        return (
            f"{groups} source group(s) are too few to train it out-of-fold "
            f"(it needs {MIN_TRAIN_GROUPS}); use more segments"
        )
    return None


def out_of_fold_scores(
    factory: RouterFactory,
    examples: Sequence[ScoredExample],
    *,
    folds: int = 5,
    seed: int = 0,
    cv: str = "kfold",
) -> np.ndarray:
    """Each example scored by a router fitted on data that does not hold its source group:
    the other folds (``cv="kfold"``) or the other directions (``cv="lodo"``).

    With fewer source groups than ``folds`` (a quick run on a few segments) every group is its
    own fold."""
    scores = np.full(len(examples), np.nan)
    groups = n_groups(examples)
    if groups < folds:
        log.warning("%d source groups: %d folds instead of %d", groups, max(groups, 2), folds)
        folds = max(groups, 2)
    for train_idx, test_idx in cv_splits(examples, cv, k=folds, seed=seed):
        router = factory().fit([examples[i] for i in train_idx])
        scores[test_idx] = router.score([examples[i] for i in test_idx])
    return scores


def router_scores(
    routers: Sequence[str] | Mapping[str, RouterFactory],
    examples: Sequence[ScoredExample],
    *,
    folds: int = 5,
    seed: int = 0,
    router_args: Mapping[str, Mapping[str, Any]] | None = None,
    cv: str = "kfold",
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Scores per router name, and the seconds each took (training included).

    A trainable router that ``too_few_groups`` rules out is left out, with a warning.
    ``cv`` is how trainable routers are kept off their test data: ``kfold`` by source group,
    or ``lodo`` (leave one direction out, see ``splits.group_lodo``).
    """
    if isinstance(routers, Mapping):
        factories = dict(routers)
    else:
        args = router_args or {}
        factories = {
            name: (lambda name=name: get_router(name, **dict(args.get(name, {}))))
            for name in routers
        }
    if folds < 2:
        raise ConfigError(f"--folds must be at least 2 for cross-validation, got {folds}")
    if cv not in CV_SCHEMES:
        raise ConfigError(f"unknown cross-validation '{cv}'; known: {', '.join(CV_SCHEMES)}")
    if cv == "lodo":
        # fail early (e.g. only one direction), with the fold count out_of_fold_scores uses
        cv_splits(examples, cv, k=max(2, min(folds, n_groups(examples))), seed=seed)
    scores: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    for name, factory in factories.items():
        started = time.perf_counter()
        probe = factory()
        reason = too_few_groups(probe, examples)
        if reason is not None:
            log.warning("router %s left out: %s", name, reason)
            continue
        probe.prepare(examples)
        if probe.trainable:
            scores[name] = out_of_fold_scores(factory, examples, folds=folds, seed=seed, cv=cv)
        else:
            scores[name] = np.asarray(probe.score(examples), dtype=float)
        seconds[name] = time.perf_counter() - started
        log.debug("router %s scored %d examples in %.1fs", name, len(examples), seconds[name])
    return scores, seconds
