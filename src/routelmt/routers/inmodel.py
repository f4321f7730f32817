"""In-model routers: read the small translator's own prefill (docs/method.md section 2).

``routelmt`` fits a linear (ridge) head on the hidden state of the last prompt token to the gain
g = q_large - q_small; ``routelmt-q`` fits q_small instead and routes low predicted quality
first (the paper's ablation); ``entropy`` routes by the small model's next-token entropy at the
end of the prompt. All three share one ``FeatureSource`` per (model, template, pooling), so a
whole evaluation runs the prefill once per segment.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from routelmt.errors import ConfigError, InputError
from routelmt.heads import DEFAULT_ALPHAS, RidgeHead
from routelmt.records import ScoredExample, Segment, segment_of
from routelmt.routers.artifacts import (
    check_trained_on,
    read_artifact_config,
    write_artifact,
)
from routelmt.routers.base import ROUTERS, Router
from routelmt.routers.provenance import read_training_sources, training_sources
from routelmt.storage import stable_hash

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
DEFAULT_MODEL = "gemma3-270m"
CHUNK = 500  # segments per feature pass (and per cache file)


class FeatureSource:
    """Prefill features (every layer + next-token entropy) for any segments, memoised by id.

    The tokenizer loads on first use, the weights only when features are not in the disk cache
    (``features.compute_features``'); features are kept in memory once read or computed.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        template: str | None = None,
        pooling: str = "last",
        *,
        dtype: str = "float32",
        batch_size: int = 8,
    ) -> None:
        self.model_spec = model
        self.template_name = template
        self.pooling = pooling
        self.dtype = dtype
        self.batch_size = batch_size
        self._head: tuple[Any, Any, Any] | None = None
        self._weights: Any = None
        self._rows: dict[str, int] = {}
        self._layers: dict[int, list[np.ndarray]] = {}
        self._entropy: list[np.ndarray] = []

    def _header(self) -> tuple[Any, Any, Any]:
        """(tokenizer, info, template): what identity, layers and the feature cache need; the
        weights load only when features must be computed (``_model``)."""
        if self._head is None:
            from routelmt.backends.hf import cached_model_header
            from routelmt.prompts import resolve_template

            tokenizer, info = cached_model_header(self.model_spec, self.dtype)
            self._head = (tokenizer, info, resolve_template(self.template_name, tokenizer))
        return self._head

    def _model(self) -> Any:
        if self._weights is None:
            from routelmt.backends.hf import cached_causal_lm

            self._weights = cached_causal_lm(self.model_spec, self.dtype)[0]
        return self._weights

    @property
    def identity(self) -> str:
        return self._header()[1].identity

    @property
    def num_layers(self) -> int:
        return int(self._header()[1].num_layers)

    @property
    def template(self) -> Any:
        return self._header()[2]

    def describe(self) -> dict[str, Any]:
        """What a router artifact must match to be valid with this source."""
        template = self.template
        return {
            "model": self.identity,
            "model_spec": self.model_spec,
            "template": template.name,
            "template_fingerprint": template.fingerprint(),
            "pooling": self.pooling,
            "dtype": self.dtype,
        }

    def ensure(self, items: Sequence[Segment | ScoredExample], *, progress: bool = True) -> None:
        """Compute features for the items not seen yet, in one batched pass."""
        from routelmt.features import cached_features, compute_features

        missing: list[Segment] = []
        seen: set[str] = set()
        for item in items:
            segment = segment_of(item)
            if segment.id not in self._rows and segment.id not in seen:
                missing.append(segment)
                seen.add(segment.id)
        if not missing:
            return
        tokenizer, info, template = self._header()
        options = {"layers": "all", "pooling": self.pooling, "entropy": True}
        # Chunks are cached on disk one by one, so an interrupted run resumes where it stopped.
        for start in range(0, len(missing), CHUNK):
            chunk = missing[start : start + CHUNK]
            feats = cached_features(
                info.identity, info.dtype, template, chunk, tokenizer, info.num_layers, **options
            )
            if feats is None:
                feats = compute_features(
                    self._model(),
                    tokenizer,
                    template,
                    chunk,
                    batch_size=self.batch_size,
                    progress=progress,
                    **options,  # type: ignore[arg-type]
                )
            offset = len(self._rows)
            for i, segment in enumerate(chunk):
                self._rows[segment.id] = offset + i
            for layer, values in feats.layers.items():
                self._layers.setdefault(layer, []).append(values)
            assert feats.entropy is not None
            self._entropy.append(feats.entropy)

    def _index(self, items: Sequence[Segment | ScoredExample]) -> np.ndarray:
        self.ensure(items)
        return np.asarray([self._rows[segment_of(item).id] for item in items], dtype=np.int64)

    def layer(self, items: Sequence[Segment | ScoredExample], layer: int) -> np.ndarray:
        """[N, hidden] features of one layer, rows aligned with ``items``."""
        index = self._index(items)
        if layer not in self._layers:
            raise ConfigError(
                f"layer {layer} out of range: the model has layers 0..{self.num_layers}"
            )
        stacked = self._layers[layer]
        if len(stacked) > 1:
            self._layers[layer] = stacked = [np.concatenate(stacked)]
        return stacked[0][index]

    def entropy(self, items: Sequence[Segment | ScoredExample]) -> np.ndarray:
        index = self._index(items)
        if len(self._entropy) > 1:
            self._entropy = [np.concatenate(self._entropy)]
        return self._entropy[0][index]


_SOURCES: dict[tuple[str, str | None, str, str], FeatureSource] = {}


def feature_source(
    model: str = DEFAULT_MODEL,
    template: str | None = None,
    pooling: str = "last",
    dtype: str = "float32",
) -> FeatureSource:
    """One shared source per setting, so several routers and CV folds reuse one prefill."""
    key = (model, template, pooling, dtype)
    if key not in _SOURCES:
        _SOURCES[key] = FeatureSource(model, template, pooling, dtype=dtype)
    return _SOURCES[key]


def choose_probe_head(
    layers: Mapping[int, Callable[[], np.ndarray]],
    y: np.ndarray,
    groups: np.ndarray,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    *,
    cv_folds: int = 5,
    seed: int = 0,
) -> tuple[int, RidgeHead, dict[int, float]]:
    """The probe's layer and ridge head: one grouped-CV ridge per candidate layer (``layers``
    maps a layer to a function giving its feature rows), the lowest CV error wins. Shared by
    the router and by array-level benchmarks, so both choose alike."""
    best: tuple[float, int, RidgeHead] | None = None
    cv_mse: dict[int, float] = {}
    for layer, features in layers.items():
        head = RidgeHead().fit(features(), y, groups, alphas, n_folds=cv_folds, seed=seed)
        mse = min(head.cv_mse_) if head.cv_mse_ else float("nan")
        cv_mse[layer] = mse
        if best is None or mse < best[0]:
            best = (mse, layer, head)
    if best is None:
        raise ConfigError("no candidate layer to fit the probe on")
    return best[1], best[2], cv_mse


def _targets(examples: Sequence[ScoredExample], target: str) -> np.ndarray:
    if target == "gain":
        return np.asarray([ex.gain for ex in examples], dtype=np.float64)
    return np.asarray([ex.q_small for ex in examples], dtype=np.float64)


@ROUTERS.register
class RouteLMTRouter(Router):
    """RouteLMT probe: frozen small model, ridge head on one layer's prefill state.

    ``layer="auto"`` picks the layer (and the ridge penalty) by grouped cross-validation inside
    the training data only; an int fixes it. ``target="q_small"`` gives RouteLMT-Q, whose score
    is the negated predicted small-model quality (worse translations go to the large model).
    """

    name = "routelmt"
    reads_small_model = True
    trainable = True
    target = "gain"

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        template: str | None = None,
        layer: int | str = "auto",
        pooling: str = "last",
        *,
        alphas: Sequence[float] = DEFAULT_ALPHAS,
        cv_folds: int = 5,
        seed: int = 0,
        dtype: str = "float32",
        source: FeatureSource | None = None,
    ) -> None:
        if pooling not in ("last", "mean"):
            raise ConfigError(f"unknown pooling '{pooling}'; expected last or mean")
        if isinstance(layer, str) and layer != "auto":
            try:
                layer = int(layer)
            except ValueError:
                raise ConfigError(f"layer must be an integer or 'auto', got '{layer}'") from None
        self.source = source or feature_source(model, template, pooling, dtype)
        self.layer_setting = layer
        self.alphas = tuple(float(a) for a in alphas)
        self.cv_folds = int(cv_folds)
        self.seed = int(seed)
        self.head: RidgeHead | None = None
        self.layer: int | None = None
        self.layer_cv_mse: dict[int, float] = {}
        self.train_hash: str | None = None
        self.train_sources: dict[str, Any] | None = None
        self.metric: str | None = None
        #: set by ``routelmt.adaptation``: which artifact this head was refit from, and how
        self.adapted: dict[str, Any] | None = None

    def _candidate_layers(self) -> list[int]:
        n = self.source.num_layers
        if self.layer_setting == "auto":
            return list(range(1, n + 1))
        layer = int(self.layer_setting)
        resolved = layer if layer >= 0 else n + 1 + layer
        if not 0 <= resolved <= n:
            raise ConfigError(f"layer {layer} out of range: the model has layers 0..{n}")
        return [resolved]

    def prepare(self, batch: Sequence[Segment | ScoredExample]) -> None:
        self.source.ensure(batch)

    def fit(self, train: Sequence[ScoredExample]) -> RouteLMTRouter:
        if not train:
            raise InputError(f"{self.name}: no training examples")
        y = _targets(train, self.target)
        groups = np.asarray([ex.segment.group for ex in train])
        self.layer, self.head, self.layer_cv_mse = choose_probe_head(
            {
                layer: functools.partial(self.source.layer, train, layer)
                for layer in self._candidate_layers()
            },
            y,
            groups,
            self.alphas,
            cv_folds=self.cv_folds,
            seed=self.seed,
        )
        self.train_hash = stable_hash([(ex.id, round(float(v), 6)) for ex, v in zip(train, y)])
        self.metric = train[0].metric
        self.train_sources = training_sources(train)
        log.info("%s: layer %d, alpha %g (n=%d)", self.name, self.layer, self.head.alpha_, len(y))
        return self

    def predict(self, batch: Sequence[Segment | ScoredExample]) -> np.ndarray:
        """The head's raw prediction (gain, or small-model quality for RouteLMT-Q)."""
        if self.head is None or self.layer is None:
            raise ConfigError(f"router '{self.name}' is not trained; call fit() or load() first")
        return self.head.predict(self.source.layer(batch, self.layer))

    def score_features(self, features: np.ndarray) -> np.ndarray:
        """Scores from already computed features of ``self.layer`` (the serving fast path)."""
        if self.head is None:
            raise ConfigError(f"router '{self.name}' is not trained; call fit() or load() first")
        predicted = self.head.predict(features)
        return predicted if self.target == "gain" else -predicted

    def score(self, batch: Sequence[Segment | ScoredExample]) -> np.ndarray:
        predicted = self.predict(batch)
        return predicted if self.target == "gain" else -predicted

    def config(self) -> dict[str, Any]:
        return {
            "router": self.name,
            "format_version": FORMAT_VERSION,
            "mode": "probe",
            "target": self.target,
            "layer": self.layer,
            "layer_setting": self.layer_setting,
            "layer_cv_mse": {str(k): v for k, v in self.layer_cv_mse.items()},
            "metric": self.metric,
            "training_data_hash": self.train_hash,
            **self.source.describe(),
            **({"adapted": self.adapted} if self.adapted is not None else {}),
        }

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """``router.json`` (model, template, layer, pooling, metric, data hash) + the head."""
        head = self.head
        return write_artifact(
            self, directory, trained=head is not None, write_state=lambda d: head.save(d)
        )

    @classmethod
    def load(
        cls, directory: str | os.PathLike[str], *, source: FeatureSource | None = None
    ) -> RouteLMTRouter:
        """Load an artifact; refuses a model or prompt template other than the trained one."""
        directory, config, where = read_artifact_config(
            directory,
            valid=lambda c: c.get("format_version") == FORMAT_VERSION,
            what="RouteLMT in-model router",
        )
        if config.get("router") != cls.name:
            raise InputError(
                f"this is a '{config.get('router')}' router, not '{cls.name}'", path=where
            )
        router = cls(
            model=config["model_spec"],
            template=config["template"],
            layer=config["layer"],
            pooling=config["pooling"],
            dtype=config.get("dtype", "float32"),
            source=source,
        )
        check_trained_on(directory, config, router.source.describe())
        router.head = RidgeHead.load(directory)
        router.layer = int(config["layer"])
        router.metric = config.get("metric")
        router.train_hash = config.get("training_data_hash")
        router.train_sources = read_training_sources(directory)
        router.layer_cv_mse = {int(k): v for k, v in config.get("layer_cv_mse", {}).items()}
        router.adapted = config.get("adapted")
        return router


@ROUTERS.register
class RouteLMTQualityRouter(RouteLMTRouter):
    """RouteLMT-Q: the same probe trained on q_small (the paper's ablation)."""

    name = "routelmt-q"
    target = "q_small"


@ROUTERS.register
class EntropyRouter(Router):
    """The small model's next-token entropy at the end of the prompt: uncertain goes to L."""

    name = "entropy"
    reads_small_model = True

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        template: str | None = None,
        dtype: str = "float32",
        source: FeatureSource | None = None,
    ) -> None:
        self.source = source or feature_source(model, template, "last", dtype)

    def prepare(self, batch: Sequence[Segment | ScoredExample]) -> None:
        self.source.ensure(batch)

    def score(self, batch: Sequence[Segment | ScoredExample]) -> np.ndarray:
        return self.source.entropy(batch).astype(np.float64)
