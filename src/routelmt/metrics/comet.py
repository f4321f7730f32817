"""COMET, CometKiwi and XCOMET (Unbabel) as an optional extra: ``pip install 'routelmt[comet]'``.

The package and the checkpoint are both loaded on first use, so listing or configuring metrics
never needs them. Checkpoints are never downloaded (several are gated, and scoring runs
offline): a hub id must already be in the local Hugging Face cache, or ``checkpoint`` must be a
local ``model.ckpt`` path. Scores are on COMET's own scale (roughly 0-1), not 0-100.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from routelmt.errors import MissingDependencyError
from routelmt.metrics.base import METRICS, Metric

logger = logging.getLogger(__name__)

_OFFLINE_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


@contextmanager
def _offline() -> Iterator[None]:
    """Forbid Hugging Face downloads while COMET resolves and loads a checkpoint."""
    saved = {key: os.environ.get(key) for key in _OFFLINE_ENV}
    os.environ.update({key: "1" for key in _OFFLINE_ENV})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _comet_version() -> str:
    try:
        return metadata.version("unbabel-comet")
    except metadata.PackageNotFoundError:
        return "not-installed"


def _looks_like_path(checkpoint: str) -> bool:
    return checkpoint.endswith(".ckpt") or checkpoint.startswith((".", "~", os.sep))


@METRICS.register
class Comet(Metric):
    """Reference-based COMET (default ``Unbabel/wmt22-comet-da``); needs sources too."""

    name = "comet"
    needs_reference = True
    needs_sources = True
    default_checkpoint = "Unbabel/wmt22-comet-da"

    def __init__(
        self,
        checkpoint: str | None = None,
        batch_size: int = 16,
        gpus: int | None = None,
    ) -> None:
        self.checkpoint = str(checkpoint or self.default_checkpoint)
        self.batch_size = int(batch_size)
        # None: one GPU when torch sees one, else CPU (decided at load time, not import time).
        self.gpus = None if gpus is None else int(gpus)
        self._model: Any = None

    def _import_comet(self) -> Any:
        try:
            with _offline():
                return importlib.import_module("comet")
        except ImportError as exc:
            raise MissingDependencyError(
                f"metric '{self.name}' needs the unbabel-comet package, which is not "
                f"installed ({exc}): pip install 'routelmt[comet]' "
                "(or pip install unbabel-comet)"
            ) from exc

    def _missing_checkpoint(self, why: str) -> MissingDependencyError:
        return MissingDependencyError(
            f"metric '{self.name}' cannot load the COMET checkpoint '{self.checkpoint}': {why}. "
            "routelmt never downloads checkpoints: the hub id must already be in the local "
            "Hugging Face cache ($HF_HOME, default ~/.cache/huggingface; fetch it elsewhere with "
            f"`huggingface-cli download {self.checkpoint}`, accepting its licence first if it is "
            "gated), or give a local path with --metric-arg checkpoint=/path/to/model.ckpt"
        )

    def _resolve(self, comet: Any) -> str:
        """Checkpoint file for ``self.checkpoint``, from disk or the local HF cache only."""
        if _looks_like_path(self.checkpoint) or Path(self.checkpoint).exists():
            path = Path(self.checkpoint).expanduser()
            if path.is_dir():  # a snapshot folder as the hub lays it out
                path = path / "checkpoints" / "model.ckpt"
            if not path.is_file():
                raise self._missing_checkpoint(f"no such file {path}")
            return str(path)
        kwargs = {}
        if "local_files_only" in inspect.signature(comet.download_model).parameters:
            kwargs["local_files_only"] = True
        try:
            with _offline():
                return str(comet.download_model(self.checkpoint, **kwargs))
        except Exception as exc:  # comet turns every hub failure into KeyError
            raise self._missing_checkpoint(f"not found offline ({exc})") from exc

    def _load(self) -> Any:
        if self._model is None:
            comet = self._import_comet()
            path = self._resolve(comet)
            kwargs = {}
            if "local_files_only" in inspect.signature(comet.load_from_checkpoint).parameters:
                kwargs["local_files_only"] = True
            try:
                with _offline():
                    self._model = comet.load_from_checkpoint(path, **kwargs)
            except Exception as exc:
                raise self._missing_checkpoint(
                    f"loading {path} failed ({type(exc).__name__}: {exc}); its encoder "
                    "(e.g. xlm-roberta-large) must be in the local cache too"
                ) from exc
            logger.info("loaded COMET checkpoint %s from %s", self.checkpoint, path)
        return self._model

    def _gpus(self) -> int:
        if self.gpus is not None:
            return self.gpus
        try:
            import torch

            return 1 if torch.cuda.is_available() else 0
        except ImportError:
            return 0

    def _score(
        self,
        hypotheses: Sequence[str],
        references: Sequence[str] | None,
        target_languages: list[str],
        sources: Sequence[str] | None,
    ) -> np.ndarray:
        if len(hypotheses) == 0:
            return np.zeros(0, dtype=np.float64)
        assert sources is not None
        model = self._load()
        data: list[dict[str, str]] = []
        for i, (src, mt) in enumerate(zip(sources, hypotheses, strict=True)):
            item = {"src": src, "mt": mt}
            if self.needs_reference and references is not None:
                item["ref"] = references[i]
            data.append(item)
        out = model.predict(data, batch_size=self.batch_size, gpus=self._gpus(), progress_bar=False)
        scores = out.scores if hasattr(out, "scores") else out[0]
        return np.asarray(scores, dtype=np.float64)

    def signature(self) -> str:
        nrefs = 1 if self.needs_reference else 0
        return f"{self.name}|model:{self.checkpoint}|nrefs:{nrefs}|version:{_comet_version()}"


@METRICS.register
class CometKiwi(Comet):
    """Reference-free quality estimation (source + hypothesis), for routing guards."""

    name = "cometkiwi"
    needs_reference = False
    default_checkpoint = "Unbabel/wmt22-cometkiwi-da"


@METRICS.register
class XComet(Comet):
    """XCOMET-XXL, the metric the RouteLMT paper labels gains with (large: a GPU is advised)."""

    name = "xcomet"
    default_checkpoint = "Unbabel/XCOMET-XXL"
