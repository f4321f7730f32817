"""``routelmt train --init``: a trained router refit on new labels (``routelmt.adaptation``).

One adapter per adaptable router class, keyed by its registered name (``ADAPTERS``). The new
router keeps the init's small model, prompt, layer, pooling, QE scorer and standardisations;
its heads are refit toward the init's weights; its training-sources record is the union of the
init's and the new labels' (so overlap checks still see both); ``adapted`` in its
``router.json`` names the init and what the cross-validation chose.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from routelmt.adaptation import DEFAULT_STRENGTHS, adapt_head, adapt_two_stage_heads
from routelmt.errors import ConfigError, InputError
from routelmt.records import ScoredExample
from routelmt.routers.base import Router
from routelmt.routers.inmodel import RouteLMTRouter, _targets
from routelmt.routers.provenance import training_sources
from routelmt.routers.two_stage import TwoStageHeads, TwoStageRouter
from routelmt.storage import stable_hash

Adapter = Callable[..., Router]
ADAPTERS: dict[str, Adapter] = {}


def adapter(*names: str) -> Callable[[Adapter], Adapter]:
    def register(fn: Adapter) -> Adapter:
        for name in names:
            ADAPTERS[name] = fn
        return fn

    return register


def merge_sources(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """The union of two training-sources records (directions merged per source hash)."""
    if old is None:
        return new
    sources = {k: set(v) for k, v in old["sources"].items()}
    for key, dirs in new["sources"].items():
        sources.setdefault(key, set()).update(dirs)
    merged = dict(new)
    merged["n_examples"] = int(old.get("n_examples") or 0) + int(new["n_examples"])
    merged["sources"] = {k: sorted(v) for k, v in sorted(sources.items())}
    return merged


def _record(init: Router, init_name: str, train: Sequence[ScoredExample], **heads: Any) -> dict:
    stage1 = getattr(init, "stage1", init)
    sources = getattr(init, "train_sources", None) or {}
    return {
        "init": init_name,
        "init_router": init.name,
        "init_training_data_hash": getattr(stage1, "train_hash", None),
        "init_n_train": sources.get("n_examples"),
        "init_metric": getattr(stage1, "metric", None),
        "n_new": len(train),
        "metric": train[0].metric,
        "heads": {name: head.prior_ for name, head in heads.items()},
    }


def _probe_like(init: RouteLMTRouter, head: Any, train: Sequence[ScoredExample]) -> RouteLMTRouter:
    """A router of ``init``'s class on ``init``'s features and layer, with ``head``."""
    if init.head is None or init.layer is None:
        raise ConfigError(f"the init router '{init.name}' is not trained")
    router = type(init)(layer=init.layer, pooling=init.source.pooling, source=init.source)
    router.head, router.layer, router.metric = head, init.layer, train[0].metric
    y = _targets(train, init.target)
    router.train_hash = stable_hash([(ex.id, round(float(v), 6)) for ex, v in zip(train, y)])
    router.train_sources = merge_sources(init.train_sources, training_sources(train))
    return router


def _groups(train: Sequence[ScoredExample]) -> np.ndarray:
    return np.asarray([ex.segment.group for ex in train])


@adapter("routelmt", "routelmt-q")
def adapt_probe(
    init: RouteLMTRouter,
    train: Sequence[ScoredExample],
    *,
    init_name: str = "",
    strengths: Sequence[float] = DEFAULT_STRENGTHS,
    scratch: bool = True,
    rescale: bool = True,
) -> RouteLMTRouter:
    """The prefill probe's ridge head refit toward the init's (same layer)."""
    if init.head is None or init.layer is None:
        raise ConfigError(f"the init router '{init.name}' is not trained")
    X = init.source.layer(train, init.layer)
    y = _targets(train, init.target)
    head = adapt_head(
        init.head, X, y, _groups(train), strengths=strengths, scratch=scratch, rescale=rescale
    )
    router = _probe_like(init, head, train)
    router.adapted = _record(init, init_name, train, probe=head)
    return router


@adapter("routelmt-2stage")
def adapt_two_stage(
    init: TwoStageRouter,
    train: Sequence[ScoredExample],
    *,
    init_name: str = "",
    strengths: Sequence[float] = DEFAULT_STRENGTHS,
    scratch: bool = True,
    rescale: bool = True,
) -> TwoStageRouter:
    """Both heads of the two-stage router refit toward the init's (``adapt_two_stage_heads``)."""
    probe = init.stage1
    if init.head is None or init.center is None or init.scale is None or probe.head is None:
        raise ConfigError(f"the init router '{init.name}' is not trained")
    assert probe.layer is not None
    segments = [ex.segment for ex in train]
    rest = init.stage2_inputs(segments, [ex.small_text for ex in train], np.zeros(len(train)))
    heads = adapt_two_stage_heads(
        TwoStageHeads(probe.layer, probe.head, init.head, init.center, init.scale),
        probe.source.layer(train, probe.layer),
        rest[:, 1:],
        np.asarray([ex.gain for ex in train]),
        _groups(train),
        inner_folds=init.inner_folds,
        seed=init.seed,
        strengths=strengths,
        scratch=scratch,
        rescale=rescale,
    )
    router = TwoStageRouter(
        qe=init.qe,
        inner_folds=init.inner_folds,
        seed=init.seed,
        stage1_router=_probe_like(probe, heads.stage1, train),
    )
    router._qe_metric = init._qe_metric  # the scorer already built, not a second encoder
    router.head, router.center, router.scale = heads.stage2, heads.center, heads.scale
    router.train_sources = router.stage1.train_sources
    router.adapted = _record(init, init_name, train, stage1=heads.stage1, stage2=heads.stage2)
    return router


def adapt_router(
    init: Router,
    train: Sequence[ScoredExample],
    *,
    init_name: str = "",
    strengths: Sequence[float] = DEFAULT_STRENGTHS,
    scratch: bool = True,
    rescale: bool = True,
) -> Router:
    """A new router: ``init`` refit toward its own weights on ``train`` (the user's labels);
    a router without an adapter is a ConfigError (train it from scratch)."""
    if not train or not all(isinstance(ex, ScoredExample) for ex in train):
        raise InputError("adapting a router needs labelled examples")
    fn = ADAPTERS.get(init.name)
    if fn is None:
        raise ConfigError(
            f"router '{init.name}' cannot be adapted (adaptable: {', '.join(sorted(ADAPTERS))}); "
            "train it from scratch without --init"
        )
    options = {"strengths": strengths, "scratch": scratch, "rescale": rescale}
    return fn(init, train, init_name=init_name, **options)
