"""A ridge-regression head shared by every learned router (external encoders, in-model probe).

Closed form on standardised features, with the penalty chosen by grouped k-fold cross-validation
on the training data only, so a router never peeks at its test set and the same source segment
(shared by several directions) never sits on both sides of a CV split.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from routelmt.errors import ConfigError, InputError
from routelmt.splits import fold_ids
from routelmt.storage import atomic_open, read_json, read_safetensors, write_json

logger = logging.getLogger(__name__)

HEAD_FORMAT_VERSION = 1
DEFAULT_ALPHAS: tuple[float, ...] = tuple(float(a) for a in np.logspace(-2, 5, 15))
WEIGHTS_FILE = "head.safetensors"
CONFIG_FILE = "head.json"


def _standardise_stats(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    scale[scale < 1e-12] = 1.0  # constant columns carry no signal; avoid dividing by zero
    return mean, scale


def _ridge_path(Xs: np.ndarray, yc: np.ndarray, alphas: Sequence[float]) -> np.ndarray:
    """Coefficients for every alpha at once from one decomposition.

    An eigendecomposition of the smaller Gram matrix (d x d for tall data, n x n for wide) is
    several times faster than a thin SVD of X and gives the same ridge solutions.
    """
    alphas_arr = np.asarray(alphas, dtype=np.float64)
    n, d = Xs.shape
    if n > d:
        eigvals, V = np.linalg.eigh(Xs.T @ Xs)
        eigvals = np.clip(eigvals, 0.0, None)
        vty = V.T @ (Xs.T @ yc)
        factors = 1.0 / (eigvals[None, :] + alphas_arr[:, None])  # (n_alphas, d)
        return (factors * vty[None, :]) @ V.T
    # Wide data: the same solution from the n x n kernel, w = X^T (X X^T + a I)^-1 y.
    eigvals, U = np.linalg.eigh(Xs @ Xs.T)
    eigvals = np.clip(eigvals, 0.0, None)
    uty = U.T @ yc
    factors = 1.0 / (eigvals[None, :] + alphas_arr[:, None])  # (n_alphas, n)
    return ((factors * uty[None, :]) @ U.T) @ Xs  # (n_alphas, n_features)


def _as_matrix(X: np.ndarray, what: str = "X") -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise InputError(f"{what} must be a 2-D (samples x features) array, got shape {X.shape}")
    if not np.all(np.isfinite(X)):
        raise InputError(f"{what} contains NaN or infinite values")
    return X


class RidgeHead:
    """Standardise, then closed-form ridge; alpha by grouped k-fold CV (mean squared error)."""

    def __init__(self) -> None:
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None
        self.coef_: np.ndarray | None = None
        self.intercept_: float = 0.0
        self.alpha_: float | None = None
        self.alphas_: list[float] = []
        self.cv_mse_: list[float] = []
        self.n_folds_: int = 0
        self.n_train_: int = 0
        self.seed_: int = 0
        #: set by ``routelmt.adaptation``: the warm-start prior this head was refit toward
        self.prior_: dict[str, Any] | None = None

    @property
    def fitted(self) -> bool:
        return self.coef_ is not None

    @property
    def n_features(self) -> int:
        if self.coef_ is None:
            raise ConfigError("the ridge head is not fitted yet")
        return int(self.coef_.shape[0])

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        groups: np.ndarray | Sequence[Any] | None = None,
        alphas: Sequence[float] = DEFAULT_ALPHAS,
        *,
        n_folds: int = 5,
        seed: int = 0,
    ) -> RidgeHead:
        """Fit on (X, y). ``groups`` (e.g. ``Segment.group``) keep a source in one CV fold.

        With one alpha no CV is run. With fewer distinct groups than ``n_folds`` the fold count
        shrinks to the number of groups (at least 2 are needed to choose among several alphas).
        """
        X = _as_matrix(X)
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        if len(y) != len(X):
            raise InputError(f"X has {len(X)} rows but y has {len(y)} values")
        if len(X) < 2:
            raise InputError(f"need at least 2 training examples, got {len(X)}")
        if not np.all(np.isfinite(y)):
            raise InputError("y contains NaN or infinite values")
        alphas = [float(a) for a in alphas]
        if not alphas or any(a <= 0 for a in alphas):
            raise ConfigError(f"alphas must be a non-empty list of positive numbers, got {alphas}")
        groups_arr = np.arange(len(X)) if groups is None else np.asarray(groups)
        if len(groups_arr) != len(X):
            raise InputError(f"X has {len(X)} rows but groups has {len(groups_arr)} values")

        cv_mse: list[float] = []
        folds_used = 0
        if len(alphas) == 1:
            best = alphas[0]
        else:
            n_groups = len(np.unique(groups_arr))
            folds_used = min(int(n_folds), n_groups)
            if folds_used < 2:
                raise InputError(
                    f"cannot choose alpha by cross-validation with {n_groups} distinct group(s); "
                    "give more training groups or a single alpha"
                )
            folds = fold_ids(groups_arr, folds_used, seed)
            sq_err = np.zeros(len(alphas))
            for fold in range(folds_used):
                test = folds == fold
                train = ~test
                mean, scale = _standardise_stats(X[train])
                y_mean = y[train].mean()
                W = _ridge_path((X[train] - mean) / scale, y[train] - y_mean, alphas)
                pred = ((X[test] - mean) / scale) @ W.T + y_mean  # (n_test, n_alphas)
                sq_err += ((pred - y[test, None]) ** 2).sum(axis=0)
            cv_mse = (sq_err / len(y)).tolist()
            best = alphas[int(np.argmin(sq_err))]
            if best in (alphas[0], alphas[-1]) and len(alphas) > 2:
                logger.info("ridge: chosen alpha %g is at the edge of the grid", best)

        mean, scale = _standardise_stats(X)
        y_mean = float(y.mean())
        self.coef_ = _ridge_path((X - mean) / scale, y - y_mean, [best])[0]
        self.mean_, self.scale_, self.intercept_ = mean, scale, y_mean
        self.alpha_, self.alphas_, self.cv_mse_ = best, alphas, cv_mse
        self.n_folds_, self.n_train_, self.seed_ = folds_used, len(X), seed
        logger.debug("ridge: n=%d d=%d alpha=%g", len(X), X.shape[1], best)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        if self.coef_ is None or self.mean_ is None or self.scale_ is None:
            raise ConfigError("the ridge head is not fitted yet; call fit() or load() first")
        X = _as_matrix(X)
        if X.shape[1] != self.coef_.shape[0]:
            raise InputError(
                f"expected {self.coef_.shape[0]} features (as in training), got {X.shape[1]}"
            )
        return ((X - self.mean_) / self.scale_) @ self.coef_ + self.intercept_

    def config(self) -> dict[str, Any]:
        return {
            "type": "ridge",
            "format_version": HEAD_FORMAT_VERSION,
            "n_features": self.n_features,
            "alpha": self.alpha_,
            "alphas": self.alphas_,
            "cv_mse": self.cv_mse_,
            "cv_folds": self.n_folds_,
            "cv_seed": self.seed_,
            "n_train": self.n_train_,
            "intercept": self.intercept_,
            **({"prior": self.prior_} if self.prior_ is not None else {}),
        }

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``head.safetensors`` (float64 weights) and ``head.json`` into ``directory``."""
        from safetensors.numpy import save

        if self.coef_ is None or self.mean_ is None or self.scale_ is None:
            raise ConfigError("cannot save an unfitted ridge head")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {
            "coef": np.ascontiguousarray(self.coef_),
            "mean": np.ascontiguousarray(self.mean_),
            "scale": np.ascontiguousarray(self.scale_),
            "intercept": np.array([self.intercept_], dtype=np.float64),
        }
        with atomic_open(directory / WEIGHTS_FILE, "wb") as handle:
            handle.write(save(tensors))
        write_json(directory / CONFIG_FILE, self.config())
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> RidgeHead:
        directory = Path(directory)
        config = read_json(directory / CONFIG_FILE)
        if not isinstance(config, dict) or config.get("type") != "ridge":
            raise InputError("not a ridge head config (expected type 'ridge')", path=str(directory))
        if config.get("format_version") != HEAD_FORMAT_VERSION:
            raise InputError(
                f"unsupported head format_version {config.get('format_version')!r}; "
                f"this routelmt reads version {HEAD_FORMAT_VERSION}",
                path=str(directory / CONFIG_FILE),
            )
        weights_path = directory / WEIGHTS_FILE
        tensors = read_safetensors(weights_path)
        missing = {"coef", "mean", "scale", "intercept"} - set(tensors)
        if missing:
            raise InputError(f"missing tensors {sorted(missing)}", path=str(weights_path))
        head = cls()
        head.coef_ = tensors["coef"].astype(np.float64)
        head.mean_ = tensors["mean"].astype(np.float64)
        head.scale_ = tensors["scale"].astype(np.float64)
        head.intercept_ = float(tensors["intercept"][0])
        if not (len(head.coef_) == len(head.mean_) == len(head.scale_) == config["n_features"]):
            raise InputError("tensor shapes disagree with n_features", path=str(weights_path))
        head.alpha_ = config.get("alpha")
        head.alphas_ = list(config.get("alphas") or [])
        head.cv_mse_ = list(config.get("cv_mse") or [])
        head.n_folds_ = int(config.get("cv_folds") or 0)
        head.seed_ = int(config.get("cv_seed") or 0)
        head.n_train_ = int(config.get("n_train") or 0)
        head.prior_ = config.get("prior")
        return head
