"""Adapting a trained ridge head to new labels: ridge toward the init's weights."""

from __future__ import annotations

import math

import numpy as np
import pytest

from routelmt.adaptation import adapt_head, adapt_two_stage_heads
from routelmt.errors import ConfigError, InputError
from routelmt.heads import RidgeHead
from routelmt.routers.two_stage import fit_two_stage_heads


def _task(rng, w, n, noise=1.0):
    X = rng.normal(size=(n, len(w))) * 3.0 + 5.0
    return X, X @ w + rng.normal(0, noise, n) + 7.0


def _corr(a, b):
    return float(np.corrcoef(a, b)[0, 1])


def test_keep_only_moves_the_intercept():
    rng = np.random.default_rng(0)
    w = rng.normal(size=20)
    prior = RidgeHead().fit(*_task(rng, w, 500))
    X, y = _task(rng, -w, 40)  # new labels that disagree completely
    head = adapt_head(
        prior, X, y + 100.0, np.arange(40), strengths=[math.inf], scratch=False, rescale=False
    )
    np.testing.assert_allclose(head.coef_, prior.coef_)
    diff = head.predict(X) - prior.predict(X)
    np.testing.assert_allclose(diff, diff[0])  # same ranking, shifted level
    assert head.prior_["strength"] == "keep" and head.prior_["center"] == "init"


def test_few_labels_of_a_nearby_task_beat_training_from_scratch():
    rng = np.random.default_rng(1)
    w0 = rng.normal(size=60)
    w_new = w0 + 0.3 * rng.normal(size=60)  # a related direction: most of the init still holds
    prior = RidgeHead().fit(*_task(rng, w0, 3000))
    X, y = _task(rng, w_new, 30, noise=3.0)
    X_test, y_test = _task(rng, w_new, 2000, noise=0.0)
    adapted = adapt_head(prior, X, y, np.arange(30))
    scratch = RidgeHead().fit(X, y, np.arange(30))
    assert _corr(adapted.predict(X_test), y_test) > _corr(scratch.predict(X_test), y_test) + 0.2
    assert adapted.prior_["center"] == "init" and adapted.prior_["n"] == 30


def test_many_labels_of_an_unrelated_task_leave_the_init_behind():
    rng = np.random.default_rng(2)
    w0, w_new = rng.normal(size=10), rng.normal(size=10)
    prior = RidgeHead().fit(*_task(rng, w0, 1000))
    X, y = _task(rng, w_new, 800)
    X_test, y_test = _task(rng, w_new, 1000, noise=0.0)
    adapted = adapt_head(prior, X, y, np.arange(800) // 2)  # pairs share a group
    assert adapted.prior_["strength"] != "keep"
    assert _corr(adapted.predict(X_test), y_test) > 0.99
    assert _corr(prior.predict(X_test), y_test) < 0.8
    cv = adapted.prior_["cv_mse"]
    assert set(cv) == {"init", "init-rescaled", "zero"}
    assert min(map(min, cv.values())) < adapted.prior_["cv_mse_keep"]


def test_the_prior_record_survives_save_and_load(tmp_path):
    rng = np.random.default_rng(3)
    prior = RidgeHead().fit(*_task(rng, rng.normal(size=5), 100))
    head = adapt_head(prior, *_task(rng, rng.normal(size=5), 30), np.arange(30))
    head.save(tmp_path / "h")
    loaded = RidgeHead.load(tmp_path / "h")
    assert loaded.prior_ == head.prior_
    X = rng.normal(size=(7, 5))
    np.testing.assert_allclose(loaded.predict(X), head.predict(X))


def test_bad_adaptation_inputs():
    rng = np.random.default_rng(4)
    prior = RidgeHead().fit(*_task(rng, rng.normal(size=5), 100))
    X, y = _task(rng, rng.normal(size=5), 10)
    with pytest.raises(InputError, match="reads 5 features"):
        adapt_head(prior, X[:, :4], y, np.arange(10))
    with pytest.raises(InputError, match="at least 2 source groups"):
        adapt_head(prior, X, y, np.zeros(10))
    with pytest.raises(ConfigError, match="positive"):
        adapt_head(prior, X, y, np.arange(10), strengths=[0.0])
    with pytest.raises(InputError, match="finite"):
        adapt_head(prior, X, np.full(10, np.nan), np.arange(10))
    with pytest.raises(ConfigError, match="not fitted"):
        adapt_head(RidgeHead(), X, y, np.arange(10))


def _two_stage_task(rng, w, n):
    layers = {3: rng.normal(size=(n, 12)), 5: rng.normal(size=(n, 12))}
    rest = rng.normal(size=(n, 7))
    y = layers[5] @ w + 4.0 * (rest[:, 0] > 1.0) + rng.normal(0, 0.5, n)
    return layers, rest, y


def test_two_stage_heads_fit_and_adapt_on_arrays():
    rng = np.random.default_rng(5)
    w = rng.normal(size=12)
    layers, rest, y = _two_stage_task(rng, w, 600)
    init = fit_two_stage_heads(layers, rest, y, np.arange(600) // 3)
    assert init.layer == 5
    new_layers, new_rest, new_y = _two_stage_task(rng, w + 0.3 * rng.normal(size=12), 400)
    few = np.arange(40)
    adapted = adapt_two_stage_heads(
        init, new_layers[5][few], new_rest[few], new_y[few], few, inner_folds=5
    )
    held = np.arange(40, 400)
    score = adapted.score(new_layers[5][held], new_rest[held])
    assert _corr(score, new_y[held]) > 0.8
    assert adapted.layer == 5 and adapted.stage2.prior_ and adapted.stage1.prior_
    np.testing.assert_allclose(adapted.center, init.center)
    with pytest.raises(InputError, match="at least 3 sources"):
        adapt_two_stage_heads(init, new_layers[5][:4], new_rest[:4], new_y[:4], [0, 0, 1, 1])


def test_labels_on_another_scale_keep_the_inits_direction():
    """Another small model's gains: the same direction, a tenth of the size, a new level."""
    rng = np.random.default_rng(6)
    w0 = rng.normal(size=60)
    prior = RidgeHead().fit(*_task(rng, w0, 3000))
    X, y = _task(rng, 0.1 * w0, 40, noise=0.3)
    X_test, y_test = _task(rng, 0.1 * w0, 1000, noise=0.0)
    adapted = adapt_head(prior, X, y - 20.0, np.arange(40))
    assert adapted.prior_["center"] == "init-rescaled"
    assert 0.05 < adapted.prior_["rescale"] < 0.2
    err = np.mean((adapted.predict(X_test) - (y_test - 20.0)) ** 2)
    assert err < 0.1 * np.var(y_test)
    fixed = adapt_head(prior, X, y - 20.0, np.arange(40), rescale=False, scratch=False)
    assert fixed.prior_["center"] == "init"


def test_one_standard_error_rule_stays_nearer_the_init_than_the_minimum():
    rng = np.random.default_rng(5)
    w0 = rng.normal(size=40)
    prior = RidgeHead().fit(*_task(rng, w0, 3000))
    X, y = _task(rng, w0, 25, noise=6.0)  # a few noisy labels of the init's own task
    groups = np.arange(25)
    chosen = adapt_head(prior, X, y, groups, selection="1se")
    minimum = adapt_head(prior, X, y, groups)
    assert chosen.prior_["selection"] == "1se" and minimum.prior_["selection"] == "min"
    assert chosen.prior_["center"] == "init"
    strength = chosen.prior_["strength"]
    low = minimum.prior_["strength"]
    # never further from the init than the minimum's candidate (keep is the nearest)
    if minimum.prior_["center"] == "init" and low != "keep":
        assert strength == "keep" or strength >= low
    X_test, y_test = _task(rng, w0, 2000, noise=0.0)
    assert _corr(chosen.predict(X_test), y_test) > 0.95


def test_unknown_selection_is_refused():
    rng = np.random.default_rng(6)
    prior = RidgeHead().fit(*_task(rng, rng.normal(size=5), 200))
    X, y = _task(rng, rng.normal(size=5), 20)
    with pytest.raises(ConfigError, match="selection"):
        adapt_head(prior, X, y, np.arange(20), selection="best")
