"""Adapt a trained router to a user's own labels: ridge toward the init's weights.

A shipped artifact stores its heads' weights, not its training data, so "retrain on the union"
is not possible from the artifact alone. What is refit instead, for every ridge head of the
router (the prefill probe; for ``routelmt-2stage`` also the stage-2 head), is

    w = argmin_w  sum_i (y_i - z_i . w - b)^2 + lam * ||w - w0||^2

where z_i are the new examples' features standardised with the *init's* mean and scale (so w0,
the init's weights, means the same thing), b is a free intercept refit on the new labels, and
lam is the prior's strength. lam = inf keeps w0 (only the intercept moves, so the ranking is the
init's); lam -> 0 is least squares on the new labels alone. Candidates centred at zero (a plain
ridge on the same inputs: "from scratch") compete too. The strength (and centre) is chosen by
grouped k-fold cross-validation on the new labels only (mean squared error), so a user's test
data never tunes it. The layer, the standardisations, the stage-2 input set and the QE scorer
are the init's and are not refit; the stage-2 head learns from inner out-of-fold scores of the
adapted stage 1, as in training from scratch.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from routelmt.errors import ConfigError, InputError
from routelmt.heads import RidgeHead, _as_matrix, _ridge_path
from routelmt.routers.two_stage import TwoStageHeads
from routelmt.splits import fold_ids

log = logging.getLogger(__name__)

#: prior strengths tried by cross-validation; inf keeps the init's weights
DEFAULT_STRENGTHS: tuple[float, ...] = (*(float(a) for a in np.logspace(-2, 6, 17)), math.inf)
RULE = (
    "ridge toward the init's weights: argmin ||y - Zw - b||^2 + lam ||w - w0||^2, Z standardised "
    "with the init's mean/scale, b refit; lam (inf = keep w0) and the centre (init or zero) "
    "chosen by grouped CV on the new labels"
)


def _paths(
    Z: np.ndarray, y: np.ndarray, center: np.ndarray, strengths: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients (S, d) and intercepts (S,) of the ridge toward ``center`` for each strength."""
    r = y - Z @ center
    z_mean, r_mean = Z.mean(axis=0), float(r.mean())
    finite = [s for s in strengths if math.isfinite(s)]
    deltas = np.zeros((len(strengths), Z.shape[1]))
    if finite:
        path = _ridge_path(Z - z_mean, r - r_mean, finite)
        deltas[[i for i, s in enumerate(strengths) if math.isfinite(s)]] = path
    coefs = center[None, :] + deltas
    intercepts = r_mean - deltas @ z_mean
    return coefs, intercepts


def _candidates(prior: RidgeHead, scratch: bool) -> list[tuple[str, np.ndarray]]:
    assert prior.coef_ is not None
    centers = [("init", prior.coef_.astype(np.float64))]
    if scratch:
        centers.append(("zero", np.zeros_like(centers[0][1])))
    return centers


def _cv_errors(
    Z: np.ndarray,
    y: np.ndarray,
    folds: np.ndarray,
    centers: list[tuple[str, np.ndarray]],
    strengths: Sequence[float],
) -> np.ndarray:
    """Mean squared CV error, shape (centres, strengths)."""
    errors = np.zeros((len(centers), len(strengths)))
    for f in np.unique(folds):
        test, train = folds == f, folds != f
        for c, (_, center) in enumerate(centers):
            coefs, intercepts = _paths(Z[train], y[train], center, strengths)
            pred = Z[test] @ coefs.T + intercepts[None, :]
            errors[c] += ((pred - y[test, None]) ** 2).sum(axis=0)
    return errors / len(y)


def adapt_head(
    prior: RidgeHead,
    X: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray | Sequence[Any],
    *,
    strengths: Sequence[float] = DEFAULT_STRENGTHS,
    scratch: bool = True,
    n_folds: int = 5,
    seed: int = 0,
) -> RidgeHead:
    """A new head refit on (X, y) toward ``prior``'s weights (see the module docstring).

    One strength skips the cross-validation. The choice and its CV errors are recorded in the
    head's ``prior_`` (saved in ``head.json``).
    """
    if not prior.fitted or prior.mean_ is None or prior.scale_ is None:
        raise ConfigError("the init head is not fitted")
    X = _as_matrix(X)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if X.shape[1] != prior.n_features:
        raise InputError(f"the init head reads {prior.n_features} features, got {X.shape[1]}")
    if len(y) != len(X) or len(X) < 2 or not np.all(np.isfinite(y)):
        raise InputError(f"need at least 2 finite labels, one per row; got {len(y)} for {len(X)}")
    strengths = [float(s) for s in strengths]
    if not strengths or any(not s > 0 for s in strengths):
        raise ConfigError(f"prior strengths must be positive (inf = keep), got {strengths}")
    Z = (X - prior.mean_) / prior.scale_
    centers = _candidates(prior, scratch)
    record: dict[str, Any] = {"rule": RULE, "n": len(y)}
    if len(strengths) == 1 and len(centers) == 1:
        c, s = 0, 0
    else:
        groups_arr = np.asarray(groups)
        k = min(int(n_folds), len(np.unique(groups_arr)))
        if k < 2:
            raise InputError("choosing the prior strength needs at least 2 source groups")
        errors = _cv_errors(Z, y, fold_ids(groups_arr, k, seed), centers, strengths)
        c, s = np.unravel_index(int(np.argmin(errors)), errors.shape)
        record["cv_folds"] = k
        record["cv_mse"] = {name: errors[i].tolist() for i, (name, _) in enumerate(centers)}
        record["cv_mse_keep"] = float(errors[0, -1]) if math.isinf(strengths[-1]) else None
    coefs, intercepts = _paths(Z, y, centers[c][1], [strengths[s]])
    head = RidgeHead()
    head.mean_, head.scale_ = prior.mean_.copy(), prior.scale_.copy()
    head.coef_, head.intercept_ = coefs[0], float(intercepts[0])
    head.alpha_ = strengths[s] if math.isfinite(strengths[s]) else None
    head.alphas_, head.n_train_, head.seed_ = [], len(y), seed
    chosen = "keep" if math.isinf(strengths[s]) else strengths[s]
    record |= {"center": centers[c][0], "strength": chosen}
    record["strengths"] = ["keep" if math.isinf(v) else v for v in strengths]
    head.prior_ = record
    log.debug("adapt: n=%d centre %s strength %s", len(y), centers[c][0], chosen)
    return head


def adapt_two_stage_heads(
    init: TwoStageHeads,
    layer_features: np.ndarray,
    rest: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray | Sequence[Any],
    *,
    inner_folds: int = 5,
    seed: int = 0,
    strengths: Sequence[float] = DEFAULT_STRENGTHS,
    scratch: bool = True,
) -> TwoStageHeads:
    """Both heads of a two-stage router refit toward ``init``'s: stage 1 on the init's layer;
    stage 2 on inner out-of-fold scores of the adapted stage 1 (so it learns how far to trust
    stage 1 on rows stage 1 did not see), standardised with the init's centre and scale."""
    groups = np.asarray(groups)
    y = np.asarray(y, dtype=np.float64)
    folds = min(int(inner_folds), len(np.unique(groups)))
    if folds < 2 or len(np.unique(groups)) < 3:
        raise InputError("adapting a two-stage router needs labels from at least 3 sources")
    inner = fold_ids(groups, folds, seed)
    options = {"strengths": strengths, "scratch": scratch}
    oof = np.zeros(len(y))
    for f in range(folds):
        part = inner != f
        head = adapt_head(init.stage1, layer_features[part], y[part], groups[part], **options)
        oof[~part] = head.predict(layer_features[~part])
    stage1 = adapt_head(init.stage1, layer_features, y, groups, **options)
    Q = init.stage2_matrix(oof, rest)
    stage2 = adapt_head(init.stage2, Q, y, groups, **options)
    return TwoStageHeads(init.layer, stage1, stage2, init.center.copy(), init.scale.copy())
