from __future__ import annotations

import numpy as np
import pytest

from routelmt.errors import ConfigError, InputError
from routelmt.heads import RidgeHead
from routelmt.splits import fold_ids

W_TRUE = np.array([1.5, -2.0, 0.0, 0.7, 3.0, -0.4, 1.1, -1.3])


def _linear_data(n: int, d: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * np.linspace(0.5, 3.0, d) + np.arange(d)  # unequal scales
    y = X @ W_TRUE[:d] + 2.5 + noise * rng.normal(size=n)
    return X, y


def test_recovers_known_linear_function() -> None:
    X, y = _linear_data(400, 8, noise=0.01, seed=1)
    X_new, y_new = _linear_data(50, 8, noise=0.0, seed=2)  # same function, fresh rows
    head = RidgeHead().fit(X, y, alphas=[1e-4, 1e-2, 1.0, 100.0])
    np.testing.assert_allclose(head.predict(X_new), y_new, atol=0.05)
    np.testing.assert_allclose(head.coef_ / head.scale_, W_TRUE, atol=0.01)
    assert head.alpha_ is not None and head.alpha_ <= 1.0


def test_cv_picks_larger_alpha_on_noisier_data() -> None:
    rng = np.random.default_rng(0)
    n, d = 120, 60
    X = rng.normal(size=(n, d))
    w = rng.normal(size=d) * 0.3
    clean = RidgeHead().fit(X, X @ w + 0.01 * rng.normal(size=n))
    noisy = RidgeHead().fit(X, X @ w + 5.0 * rng.normal(size=n))
    assert noisy.alpha_ > clean.alpha_
    assert len(noisy.cv_mse_) == len(noisy.alphas_)


def test_save_load_round_trip(tmp_path) -> None:
    X, y = _linear_data(80, 5, noise=1.0, seed=3)
    head = RidgeHead().fit(X, y, groups=np.arange(80) // 4)
    head.save(tmp_path / "head")
    loaded = RidgeHead.load(tmp_path / "head")
    np.testing.assert_array_equal(loaded.predict(X), head.predict(X))
    assert loaded.alpha_ == head.alpha_ and loaded.n_train_ == 80


def test_grouped_folds_never_split_a_group() -> None:
    rng = np.random.default_rng(5)
    groups = rng.integers(0, 37, size=300).astype(str)
    folds = fold_ids(groups, 5, seed=2)
    for g in np.unique(groups):
        assert len(np.unique(folds[groups == g])) == 1
    sizes = np.bincount(folds, minlength=5)
    largest_group = np.unique(groups, return_counts=True)[1].max()
    assert sizes.min() > 0 and sizes.max() - sizes.min() <= largest_group


def test_grouped_cv_differs_from_ungrouped_when_groups_duplicate_rows() -> None:
    # Each group is one row copied 3 times: ungrouped CV sees its test rows in training and
    # prefers almost no penalty; grouped CV cannot, so it must pick a larger alpha.
    rng = np.random.default_rng(7)
    base = rng.normal(size=(40, 30))
    X = np.repeat(base, 3, axis=0)
    y = np.repeat(rng.normal(size=40), 3)  # pure noise: nothing to learn
    groups = np.repeat(np.arange(40), 3)
    leaky = RidgeHead().fit(X, y)
    grouped = RidgeHead().fit(X, y, groups=groups)
    assert grouped.alpha_ > leaky.alpha_


def test_errors_are_clear(tmp_path) -> None:
    head = RidgeHead()
    with pytest.raises(ConfigError, match="not fitted"):
        head.predict(np.zeros((1, 3)))
    with pytest.raises(InputError, match="rows"):
        head.fit(np.zeros((4, 2)), np.zeros(3))
    head.fit(np.random.default_rng(0).normal(size=(10, 3)), np.arange(10.0), alphas=[1.0])
    with pytest.raises(InputError, match="expected 3 features"):
        head.predict(np.zeros((2, 4)))
    with pytest.raises(InputError, match="not found"):
        RidgeHead.load(tmp_path / "nothing")


def test_missing_or_corrupt_weights_are_clear_errors(tmp_path) -> None:
    from routelmt.heads import WEIGHTS_FILE

    X, y = _linear_data(40, 3, noise=0.5, seed=1)
    RidgeHead().fit(X, y, alphas=[1.0]).save(tmp_path / "head")
    weights = tmp_path / "head" / WEIGHTS_FILE
    weights.write_bytes(b"not a safetensors file")
    with pytest.raises(InputError, match="unreadable safetensors file") as info:
        RidgeHead.load(tmp_path / "head")
    assert str(weights) in str(info.value)
    weights.unlink()
    with pytest.raises(InputError, match="file not found"):
        RidgeHead.load(tmp_path / "head")
