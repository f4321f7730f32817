"""Adapt a trained router to a user's own labels: ridge toward the init's weights.

A shipped artifact stores its heads' weights, not its training data, so "retrain on the union"
is not possible from the artifact alone. What is refit instead, for every ridge head of the
router (the prefill probe; for ``routelmt-2stage`` also the stage-2 head), is

    w = argmin_w  sum_i (y_i - z_i . w - b)^2 + lam * ||w - c * w0||^2

where z_i are the new examples' features standardised with the *init's* mean and scale (so w0,
the init's weights, means the same thing), b is a free intercept refit on the new labels, and
lam is the prior's strength. lam = inf keeps the centre c * w0 (the init's ranking); lam -> 0 is
least squares on the new labels alone. Three centres compete: c = 1 (the init as it is); c = the
least-squares slope of the new labels on the init's score (labels on another scale, e.g. another
small model's or metric's gains, keep the init's direction but not its size); and c = 0, a
plain ridge on the same inputs ("from scratch"). The strength and centre are chosen by grouped
k-fold cross-validation on the new labels only (mean squared error), so a user's test data never
tunes them (``selection="min"``, the default). ``selection="1se"`` is the
one-standard-error rule (Breiman et al., 1984): the candidate closest to the init (centre c = 1,
the largest strength) whose CV error is within one standard error of the best; it did not route
better than the minimum on the development streams (docs/benchmarks.md section 15), so it is an
option, not the default. The layer, the standardisations, the stage-2 input set and the QE
scorer are the init's and are not refit; the stage-2 head learns from inner out-of-fold
scores of the adapted stage 1, as in training from scratch.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from routelmt.errors import ConfigError, InputError
from routelmt.heads import RidgeHead, _as_matrix, _ridge_path
from routelmt.routers.two_stage import TwoStageHeads
from routelmt.splits import fold_ids

log = logging.getLogger(__name__)

#: how the CV picks a candidate: "1se" (the one-standard-error rule toward the init) or "min"
SELECTIONS = ("1se", "min")
DEFAULT_SELECTION = "min"

#: prior strengths tried by cross-validation; inf keeps the init's weights
DEFAULT_STRENGTHS: tuple[float, ...] = (*(float(a) for a in np.logspace(-2, 6, 17)), math.inf)
RULE = (
    "ridge toward the init's weights: argmin ||y - Zw - b||^2 + lam ||w - c w0||^2, Z "
    "standardised with the init's mean/scale, b refit; lam (inf = keep the centre), the centre "
    "(c = 1, c = the slope of y on Z w0, or zero) chosen by grouped CV on the new labels"
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


Center = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _candidates(prior: RidgeHead, scratch: bool, rescale: bool) -> list[tuple[str, Center]]:
    """The prior's centres, each a function of the training rows (Z, y): the init's weights;
    the init's weights rescaled by the least-squares slope of y on the init's score (new labels
    on another scale, e.g. another metric or small model, keep the init's direction); zero."""
    assert prior.coef_ is not None
    w0 = prior.coef_.astype(np.float64)

    def rescaled(Z: np.ndarray, y: np.ndarray) -> np.ndarray:
        u = Z @ w0
        var = float(((u - u.mean()) ** 2).sum())
        return w0 * (float(((u - u.mean()) * (y - y.mean())).sum()) / var if var > 0 else 0.0)

    centers: list[tuple[str, Center]] = [("init", lambda Z, y: w0)]
    if rescale:
        centers.append(("init-rescaled", rescaled))
    if scratch:
        centers.append(("zero", lambda Z, y: np.zeros_like(w0)))
    return centers


def _cv_errors(
    Z: np.ndarray,
    y: np.ndarray,
    folds: np.ndarray,
    centers: list[tuple[str, Center]],
    strengths: Sequence[float],
) -> np.ndarray:
    """Squared CV error of each fold, shape (folds, centres, strengths), per test row."""
    errors = np.zeros((len(np.unique(folds)), len(centers), len(strengths)))
    for i, f in enumerate(np.unique(folds)):
        test, train = folds == f, folds != f
        for c, (_, center) in enumerate(centers):
            w = center(Z[train], y[train])
            coefs, intercepts = _paths(Z[train], y[train], w, strengths)
            pred = Z[test] @ coefs.T + intercepts[None, :]
            errors[i, c] = ((pred - y[test, None]) ** 2).mean(axis=0)
    return errors


def _choose(errors: np.ndarray, strengths: Sequence[float], selection: str) -> tuple[int, int]:
    """(centre, strength) indices: the CV minimum, or the one-standard-error rule's candidate
    nearest the init (centre 0 = the init's weights; a larger strength is nearer)."""
    mean = errors.mean(axis=0)
    c, s = np.unravel_index(int(np.argmin(mean)), mean.shape)
    if selection == "min" or errors.shape[0] < 2:
        return int(c), int(s)
    se = float(errors[:, c, s].std(ddof=1)) / math.sqrt(errors.shape[0])
    near = [j for j in np.argsort(strengths)[::-1] if mean[0, j] <= mean[c, s] + se]
    return (0, int(near[0])) if near else (int(c), int(s))


def adapt_head(
    prior: RidgeHead,
    X: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray | Sequence[Any],
    *,
    strengths: Sequence[float] = DEFAULT_STRENGTHS,
    scratch: bool = True,
    rescale: bool = True,
    n_folds: int = 5,
    seed: int = 0,
    selection: str = DEFAULT_SELECTION,
) -> RidgeHead:
    """A new head refit on (X, y) toward ``prior``'s weights (see the module docstring).

    ``scratch``: ridge toward zero competes; ``rescale``: toward the init's weights times the
    slope of y on the init's score. One strength and one centre skip the cross-validation;
    ``selection`` is how the CV chooses (``SELECTIONS``). The choice and its CV errors are
    recorded in the head's ``prior_`` (saved in ``head.json``).
    """
    if selection not in SELECTIONS:
        raise ConfigError(f"selection must be one of {', '.join(SELECTIONS)}, got {selection!r}")
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
    centers = _candidates(prior, scratch, rescale)
    record: dict[str, Any] = {"rule": RULE, "n": len(y)}
    if len(strengths) == 1 and len(centers) == 1:
        c, s = 0, 0
    else:
        groups_arr = np.asarray(groups)
        k = min(int(n_folds), len(np.unique(groups_arr)))
        if k < 2:
            raise InputError("choosing the prior strength needs at least 2 source groups")
        per_fold = _cv_errors(Z, y, fold_ids(groups_arr, k, seed), centers, strengths)
        c, s = _choose(per_fold, strengths, selection)
        errors = per_fold.mean(axis=0)
        record["cv_folds"], record["selection"] = k, selection
        record["cv_mse"] = {name: errors[i].tolist() for i, (name, _) in enumerate(centers)}
        record["cv_mse_keep"] = float(errors[0, -1]) if math.isinf(strengths[-1]) else None
    w_center = centers[c][1](Z, y)
    coefs, intercepts = _paths(Z, y, w_center, [strengths[s]])
    head = RidgeHead()
    head.mean_, head.scale_ = prior.mean_.copy(), prior.scale_.copy()
    head.coef_, head.intercept_ = coefs[0], float(intercepts[0])
    head.alpha_ = strengths[s] if math.isfinite(strengths[s]) else None
    head.alphas_, head.n_train_, head.seed_ = [], len(y), seed
    chosen = "keep" if math.isinf(strengths[s]) else strengths[s]
    record |= {"center": centers[c][0], "strength": chosen}
    if centers[c][0] == "init-rescaled":
        record["rescale"] = float(w_center @ prior.coef_) / max(
            float(prior.coef_ @ prior.coef_), 1e-300
        )
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
    rescale: bool = True,
    selection: str = DEFAULT_SELECTION,
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
    options = {
        "strengths": strengths,
        "scratch": scratch,
        "rescale": rescale,
        "selection": selection,
    }
    oof = np.zeros(len(y))
    for f in range(folds):
        part = inner != f
        head = adapt_head(init.stage1, layer_features[part], y[part], groups[part], **options)
        oof[~part] = head.predict(layer_features[~part])
    stage1 = adapt_head(init.stage1, layer_features, y, groups, **options)
    Q = init.stage2_matrix(oof, rest)
    stage2 = adapt_head(init.stage2, Q, y, groups, **options)
    return TwoStageHeads(init.layer, stage1, stage2, init.center.copy(), init.scale.copy())
