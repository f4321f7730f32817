"""The model-free routers and their registry entries."""

from __future__ import annotations

import numpy as np
import pytest

from routelmt.errors import ConfigError, InputError
from routelmt.records import ScoredExample, Segment
from routelmt.routers import ROUTERS, get_router


def seg(i: int, source: str = "a b c") -> Segment:
    return Segment(id=f"s{i}", direction="en-de", source=source)


def scored(i: int, q_small: float, q_large: float, source: str = "x") -> ScoredExample:
    return ScoredExample(seg(i, source), "S", "L", "s", "l", "chrF2", q_small, q_large)


def test_builtins_registered():
    get_router("random")
    assert {"random", "length", "gain-oracle", "quality-oracle"} <= set(ROUTERS.names())
    with pytest.raises(ConfigError, match="unknown router 'nope'"):
        get_router("nope")


def test_random_is_seeded_per_segment_and_order_free():
    batch = [seg(i) for i in range(200)]
    a = get_router("random", seed=3).score(batch)
    b = get_router("random", seed=3).score(batch[::-1])[::-1]
    np.testing.assert_array_equal(a, b)
    c = get_router("random", seed=4).score(batch)
    assert not np.allclose(a, c)
    assert a.min() >= 0 and a.max() < 1 and 0.4 < a.mean() < 0.6
    with pytest.raises(ConfigError):
        get_router("random", seed="x")


def test_length_counts_characters_by_default():
    batch = [seg(0, "a" * 10), seg(1, "bb cc dd"), scored(2, 1, 2, "一二三四五六七八九十十一")]
    np.testing.assert_array_equal(get_router("length").score(batch), [10, 8, 12])
    np.testing.assert_array_equal(get_router("length", unit="words").score(batch), [1, 3, 1])
    with pytest.raises(ConfigError, match="unit"):
        get_router("length", unit="tokens")


def test_oracles_read_labels_and_refuse_plain_segments():
    batch = [scored(0, 50, 70), scored(1, 60, 55), scored(2, 30, 40)]
    np.testing.assert_allclose(get_router("gain-oracle").score(batch), [20, -5, 10])
    np.testing.assert_allclose(get_router("quality-oracle").score(batch), [-50, -60, -30])
    assert get_router("gain-oracle").oracle and not get_router("length").oracle
    for name in ("gain-oracle", "quality-oracle"):
        with pytest.raises(InputError, match=f"'{name}'.*item 1 is a plain Segment"):
            get_router(name).score([batch[0], seg(1)])
