"""Decode-then-route: the prefill router first, a second look at the small translation after.

Stage 1 is the in-model prefill router (``routelmt``): free, before any decoding, so a request
it is sure about goes to the large model without a wasted small decode. Stage 2 runs after the
small model has translated: a ridge head over the stage-1 score, the reference-free features of
the output (``routelmt.output_features``: QE, language check, length ratio, repetition, copy) and
the source length, with their squares and pairwise products. The stage-2 head is trained on
*inner out-of-fold* stage-1 scores, so it learns how much to trust stage 1 on data stage 1 has
not seen.

``score`` (offline evaluation, ``routelmt evaluate``/``bench``) reads the small translation from
each ``ScoredExample``; the service calls ``score_stage1`` on the prefill features and
``score_stage2`` on its own decodes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from routelmt.errors import ConfigError, InputError
from routelmt.heads import DEFAULT_ALPHAS, RidgeHead
from routelmt.output_features import OUTPUT_FEATURES, output_features
from routelmt.records import ScoredExample, Segment, segment_of
from routelmt.routers.artifacts import (
    read_artifact_config,
    write_artifact,
)
from routelmt.routers.base import ROUTERS, Router
from routelmt.routers.inmodel import RouteLMTRouter, choose_probe_head
from routelmt.routers.provenance import read_training_sources, training_sources
from routelmt.splits import fold_ids

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
STAGE1_DIR = "stage1"
STAGE2_DIR = "stage2"
STAGE2_INPUTS: tuple[str, ...] = ("stage1", *OUTPUT_FEATURES, "log_source_chars")


def quadratic(Z: np.ndarray) -> np.ndarray:
    """Inputs, their squares and pairwise products: a copy (QE 0, copy rate 1) or a wrong
    language matters more for a long source, which a linear head cannot express."""
    n = Z.shape[1]
    pairs = [Z[:, i] * Z[:, j] for i in range(n) for j in range(i, n)]
    return np.column_stack([Z, *pairs])


@dataclass
class TwoStageHeads:
    """The two heads of ``routelmt-2stage`` on plain arrays: what benchmarks refit many times
    (without a model or a QE pass per fit) and what ``routelmt.adaptation`` refits."""

    layer: int
    stage1: RidgeHead
    stage2: RidgeHead
    center: np.ndarray
    scale: np.ndarray

    def stage2_matrix(self, stage1: np.ndarray, rest: np.ndarray) -> np.ndarray:
        """The stage-2 head's inputs: stage-1 score beside ``rest`` (the output features and
        the log source length, ``STAGE2_INPUTS[1:]``), standardised, with products."""
        X = np.column_stack([np.asarray(stage1, dtype=np.float64), rest])
        return quadratic((X - self.center) / self.scale)

    def score(self, layer_features: np.ndarray, rest: np.ndarray) -> np.ndarray:
        """Stage-2 scores from the stage-1 layer's features and the other stage-2 inputs."""
        return self.stage2.predict(self.stage2_matrix(self.stage1.predict(layer_features), rest))


def fit_two_stage_heads(
    layers: Mapping[int, np.ndarray],
    rest: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    *,
    inner_folds: int = 5,
    seed: int = 0,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    cv_folds: int = 5,
    probe_seed: int = 0,
) -> TwoStageHeads:
    """``TwoStageRouter.fit`` on arrays: ``layers`` maps each candidate prefill layer to its
    feature rows; the stage-2 head learns from inner out-of-fold stage-1 scores."""
    groups = np.asarray(groups)
    folds = min(inner_folds, len(np.unique(groups)))
    if folds < 2:
        raise InputError("routelmt-2stage: needs at least 2 source groups to train")
    inner = fold_ids(groups, folds, seed)

    def probe(rows: np.ndarray) -> tuple[int, RidgeHead]:
        chosen = {k: (lambda X=X: X[rows]) for k, X in layers.items()}
        layer, head, _ = choose_probe_head(
            chosen, y[rows], groups[rows], alphas, cv_folds=cv_folds, seed=probe_seed
        )
        return layer, head

    oof = np.zeros(len(y))
    for f in range(folds):
        layer, head = probe(np.flatnonzero(inner != f))
        oof[inner == f] = head.predict(layers[layer][inner == f])
    layer, stage1 = probe(np.arange(len(y)))
    X = np.column_stack([oof, rest])
    center, scale = X.mean(0), X.std(0) + 1e-9
    stage2 = RidgeHead().fit(quadratic((X - center) / scale), y, groups)
    return TwoStageHeads(layer, stage1, stage2, center, scale)


@ROUTERS.register
class TwoStageRouter(Router):
    """``routelmt-2stage``: prefill router, then a head over it and the small output's features.

    ``stage1`` holds the prefill router's settings (``layer``, ``model``, ...); ``inner_folds``
    is the number of grouped folds that give the stage-2 head out-of-fold stage-1 scores.
    """

    name = "routelmt-2stage"
    trainable = True

    def __init__(
        self,
        *,
        qe: str = "qe-embed",
        inner_folds: int = 5,
        seed: int = 0,
        model: str | None = None,
        template: str | None = None,
        layer: int | str | None = None,
        stage1: dict[str, Any] | None = None,
        stage1_router: RouteLMTRouter | None = None,
    ) -> None:
        if inner_folds < 2:
            raise ConfigError(f"inner_folds must be at least 2, got {inner_folds}")
        self.qe = qe
        self.inner_folds = int(inner_folds)
        self.seed = int(seed)
        # stage 1's settings: ``stage1`` in Python; model/template/layer from the CLI
        flat = {"model": model, "template": template, "layer": layer}
        self.stage1_args = {**(stage1 or {}), **{k: v for k, v in flat.items() if v is not None}}
        self.stage1 = stage1_router or RouteLMTRouter(**self.stage1_args)
        self.head: RidgeHead | None = None
        self.center: np.ndarray | None = None  # stage-2 input mean and scale (training rows)
        self.scale: np.ndarray | None = None
        self.train_sources: dict[str, Any] | None = None
        self.qe_seconds = 0.0
        self._qe_metric: tuple[Any, Any] | None = None  # (setting, metric): built once
        #: options of the QE scorer when it is built from its name (the service: no disk cache)
        self.qe_options: dict[str, Any] = {}
        #: set by ``routelmt.adaptation``: which artifact the heads were refit from, and how
        self.adapted: dict[str, Any] | None = None

    # -- inputs ---------------------------------------------------------------------------
    def stage2_inputs(
        self, segments: Sequence[Segment], texts: Sequence[str], stage1: np.ndarray
    ) -> np.ndarray:
        feats = output_features(segments, texts, self.qe_metric())
        self.qe_seconds += feats.seconds
        length = np.log1p([len(s.source) for s in segments])
        return np.column_stack([np.asarray(stage1, dtype=np.float64), feats.matrix, length])

    def qe_metric(self) -> Any:
        """The QE scorer, built once: the service calls stage 2 on every request, and building
        ``qe-embed`` loads a sentence encoder."""
        from routelmt.metrics.base import Metric, get_metric

        if isinstance(self.qe, Metric):
            return self.qe
        if self._qe_metric is None or self._qe_metric[0] != self.qe:
            self._qe_metric = (self.qe, get_metric(str(self.qe), **self.qe_options))
        return self._qe_metric[1]

    def prepare(self, batch: Sequence[Segment | ScoredExample]) -> None:
        self.stage1.prepare(batch)

    # -- training -------------------------------------------------------------------------
    def fit(self, train: Sequence[ScoredExample]) -> TwoStageRouter:
        if not train or not all(isinstance(ex, ScoredExample) for ex in train):
            raise InputError(f"{self.name}: needs labelled examples with the small translation")
        groups = np.asarray([ex.segment.group for ex in train])
        folds = min(self.inner_folds, len(np.unique(groups)))
        if folds < 2:
            raise InputError(f"{self.name}: needs at least 2 source groups to train")
        inner = fold_ids(groups, folds, self.seed)
        oof = np.zeros(len(train))
        for f in range(folds):
            part = [ex for ex, k in zip(train, inner, strict=True) if k != f]
            held = [ex for ex, k in zip(train, inner, strict=True) if k == f]
            oof[inner == f] = RouteLMTRouter(**self.stage1_args).fit(part).score(held)
        self.stage1 = RouteLMTRouter(**self.stage1_args).fit(train)
        X = self.stage2_inputs([ex.segment for ex in train], [ex.small_text for ex in train], oof)
        self.train_sources = training_sources(train)
        self.center, self.scale = X.mean(0), X.std(0) + 1e-9
        y = np.asarray([ex.gain for ex in train])
        self.head = RidgeHead().fit(quadratic((X - self.center) / self.scale), y, groups)
        log.info(
            "%s: stage-2 head on %d examples, alpha %g", self.name, len(train), self.head.alpha_
        )
        return self

    # -- scoring --------------------------------------------------------------------------
    def score_stage1(self, batch: Sequence[Segment | ScoredExample]) -> np.ndarray:
        return self.stage1.score(batch)

    def score_features(self, features: np.ndarray) -> np.ndarray:
        """Stage 1 from the serving prefill's features (no second forward): with ``layer`` this
        makes the router a ``hybrid.FeatureRouter`` for the shared prefill."""
        return self.stage1.score_features(features)

    def score_stage2(
        self, segments: Sequence[Segment], texts: Sequence[str], stage1: np.ndarray
    ) -> np.ndarray:
        if self.head is None or self.center is None or self.scale is None:
            raise ConfigError(f"router '{self.name}' is not trained; call fit() or load() first")
        X = self.stage2_inputs(segments, texts, stage1)
        return self.head.predict(quadratic((X - self.center) / self.scale))

    def score(self, batch: Sequence[Segment | ScoredExample]) -> np.ndarray:
        """Labelled examples (offline evaluation): the stage-2 score of their small translation.
        Plain segments (a request before any decoding): the stage-1 score."""
        if all(isinstance(item, Segment) for item in batch):
            return self.score_stage1(batch)
        if not all(isinstance(item, ScoredExample) for item in batch):
            raise InputError(
                f"{self.name}: give segments (stage 1) or labelled examples with the small "
                "translation (stage 2), not a mix"
            )
        segments = [segment_of(item) for item in batch]
        texts = [item.small_text for item in batch]  # type: ignore[union-attr]
        return self.score_stage2(segments, texts, self.score_stage1(batch))

    # -- artifact -------------------------------------------------------------------------
    @property
    def layer(self) -> int | None:
        """The prefill layer stage 1 reads (the service captures it during its prefill)."""
        return self.stage1.layer

    def config(self) -> dict[str, Any]:
        return {
            "router": self.name,
            "format_version": FORMAT_VERSION,
            "qe": self.qe,
            "inner_folds": self.inner_folds,
            "seed": self.seed,
            "stage2_inputs": list(STAGE2_INPUTS),
            "stage2_head": "ridge on standardised inputs, their squares and pairwise products",
            "center": None if self.center is None else [float(v) for v in self.center],
            "scale": None if self.scale is None else [float(v) for v in self.scale],
            **({"adapted": self.adapted} if self.adapted is not None else {}),
        }

    def save(self, directory: str | os.PathLike[str]) -> Path:
        head = self.head

        def write_stages(directory: Path) -> None:
            assert head is not None
            self.stage1.save(directory / STAGE1_DIR)
            head.save(directory / STAGE2_DIR)

        return write_artifact(self, directory, trained=head is not None, write_state=write_stages)

    @classmethod
    def load(cls, directory: str | os.PathLike[str], *, source: Any = None) -> TwoStageRouter:
        """Load an artifact; stage 1 refuses a model or template other than its own."""
        directory, config, where = read_artifact_config(
            directory,
            valid=lambda c: c.get("format_version") == FORMAT_VERSION,
            what="RouteLMT two-stage router",
        )
        if list(config.get("stage2_inputs", [])) != list(STAGE2_INPUTS):
            raise InputError(
                "this two-stage artifact was trained on other stage-2 inputs; retrain it",
                path=where,
            )
        router = cls(
            qe=config["qe"],
            inner_folds=config["inner_folds"],
            seed=config["seed"],
            stage1_router=RouteLMTRouter.load(directory / STAGE1_DIR, source=source),
        )
        router.head = RidgeHead.load(directory / STAGE2_DIR)
        router.center = np.asarray(config["center"], dtype=np.float64)
        router.scale = np.asarray(config["scale"], dtype=np.float64)
        router.train_sources = read_training_sources(directory)
        router.adapted = config.get("adapted")
        return router
