"""The router of a batch run: loaded by name or artifact, checked against the small backend, and
scored in one or two stages."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from routelmt.backends.base import BACKENDS
from routelmt.backends.resolve import parse_spec
from routelmt.budget.allocation import as_scores
from routelmt.errors import ConfigError
from routelmt.records import Segment
from routelmt.routers.base import Router, stages
from routelmt.storage import file_hash, stable_hash

log = logging.getLogger(__name__)

DEFAULT_ROUTER = "shipped:routelmt-2stage"


def is_artifact(location: str) -> bool:
    return location.startswith("shipped:") or Path(location).is_dir()


def load_batch_router(location: str, args: dict[str, Any] | None = None) -> Router:
    """A router by registered name (model-free ones) or a trained artifact (folder or
    ``shipped:NAME``); a trainable name without an artifact or an oracle is a ConfigError."""
    from routelmt.routers.artifacts import load_router
    from routelmt.routers.base import ROUTERS, get_router

    args = dict(args or {})
    if is_artifact(location):
        if args:
            raise ConfigError("--router-arg sets a router named by name, not a trained artifact")
        return load_router(location)
    if location not in ROUTERS:
        raise ConfigError(
            f"--router: '{location}' is neither a router name ({', '.join(ROUTERS.names())}) "
            "nor a router folder (from `routelmt train`) nor shipped:NAME"
        )
    klass = ROUTERS.get(location)
    if klass.oracle:
        raise ConfigError(f"router '{location}' reads the true qualities: evaluation only")
    if klass.trainable:
        raise ConfigError(
            f"router '{location}' must be trained first: give its folder from `routelmt train`, "
            f"or a shipped one (e.g. {DEFAULT_ROUTER})"
        )
    return get_router(location, **args)


def router_identity(location: str, args: dict[str, Any] | None) -> str:
    """What distinguishes this router in a plan's fingerprint: an artifact's ``router.json``."""
    if is_artifact(location):
        from routelmt.routers.artifacts import ROUTER_CONFIG, resolve_artifact

        return file_hash(resolve_artifact(location) / ROUTER_CONFIG)
    return stable_hash(location, sorted((args or {}).items()))


def two_stage(router: Router) -> bool:
    """Scores a second time after the small model has translated (``SecondStageRouter``)."""
    return stages(router) == 2


def hidden_state_model(location: str, router: Router | None = None) -> str | None:
    """The small model whose hidden states the router reads, or None for one that reads none;
    an artifact's is read from its ``router.json`` (or its stage 1's) without loading it."""
    if is_artifact(location):
        from routelmt.routers.artifacts import ROUTER_CONFIG, resolve_artifact
        from routelmt.storage import read_json

        directory = resolve_artifact(location)
        for config_path in (directory / ROUTER_CONFIG, directory / "stage1" / ROUTER_CONFIG):
            config = read_json(config_path) if config_path.is_file() else None
            if isinstance(config, dict) and config.get("model_spec"):
                return str(config["model_spec"])
        return None
    inner = getattr(router, "stage1", router)
    if not getattr(inner, "reads_small_model", False):
        return None
    return str(getattr(getattr(inner, "source", None), "model_spec", "") or "") or "its model"


def check_router_fits(location: str, router: Router | None, small: str) -> None:
    """An in-model router needs the very model it was trained on as the small backend; an
    endpoint hides its hidden states, so it needs a router that reads none. Checked before an
    artifact is loaded (loading an in-model router loads its model)."""
    model = hidden_state_model(location, router)
    if model is None:
        return
    spec = parse_spec(small)
    if spec.recorded:
        log.warning(
            "router %s reads %s's hidden states; the small translations are recorded (%s): "
            "they should be %s's own",
            location, model, small, model,
        )  # fmt: skip
        return
    if not getattr(BACKENDS.get(spec.kind), "model_for_routers", False):
        raise ConfigError(
            f"router '{location}' reads the hidden states of {model}, which the small backend "
            f"'{small}' does not expose; use a router that reads none (length, random, an "
            "external-encoder router) or an in-process small model (hf:, llamacpp:)"
        )
    if spec.argument != model:
        raise ConfigError(
            f"router '{location}' was trained on {model} but the small model is "
            f"'{spec.argument}'; train a router for it (`routelmt train`)"
        )


def score_segments(
    router: Router,
    segments: Sequence[Segment],
    small_texts: Callable[[], list[str]],
) -> tuple[np.ndarray, np.ndarray | None]:
    """``(final scores, stage-1 scores or None)``; a two-stage router asks ``small_texts``
    for the small translation of every segment before its second score."""
    if not two_stage(router):
        return as_scores(router.score(list(segments)), "router scores"), None
    # stage 1 is the router's ``score`` of plain segments (routers.base.SecondStageRouter)
    stage1 = as_scores(router.score(list(segments)), "stage-1 scores")
    texts = small_texts()
    final = router.score_stage2(list(segments), texts, stage1)  # type: ignore[attr-defined]
    return as_scores(final, "stage-2 scores"), stage1
