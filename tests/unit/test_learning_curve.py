"""The leave-one-direction-out learning curve and label comparison on synthetic arrays."""

from __future__ import annotations

import numpy as np

from routelmt.evaluation.hc_bootstrap import HCBootstrap, paired
from routelmt.evaluation.learning_curve import (
    ALL_LABELS,
    ZERO_SHOT,
    CurveData,
    curve_table,
    label_table,
    lodo_label_comparison,
    lodo_learning_curve,
    sample_by_group,
)


def _data(n_per: int = 50, seed: int = 0) -> CurveData:
    """Three directions sharing sources; the gain follows one layer, with a direction-specific
    part (so a few labels of the left-out direction help) and a signal in ``rest``."""
    rng = np.random.default_rng(seed)
    dirs = np.repeat(["en-de", "en-es", "en-zh"], n_per)
    groups = np.tile([f"src{i}" for i in range(n_per)], 3)
    X = rng.normal(size=(3 * n_per, 8))
    w = rng.normal(size=8)
    shift = {d: rng.normal(size=8) for d in ("en-de", "en-es", "en-zh")}
    gain = np.array([X[i] @ (w + shift[d]) for i, d in enumerate(dirs)])
    rest = rng.normal(size=(3 * n_per, 7))
    gain = gain + rng.normal(0, 0.5, len(gain))
    length = gain + rng.normal(0, 3.0, len(gain))  # a weak baseline
    return CurveData(dirs, groups, gain, {4: X}, rest, fixed={"length": length})


def test_hc_bootstrap_oracle_random_and_pairing():
    rng = np.random.default_rng(1)
    g = rng.normal(size=200)
    boot = HCBootstrap(g, [str(i // 2) for i in range(200)], 0.3, n_boot=50)
    oracle = boot.hc(g)
    assert oracle[0] == 100.0 and np.allclose(oracle, 100.0)
    assert abs(boot.hc([rng.normal(size=200) for _ in range(20)])[0]) < 10
    diff = paired(boot.hc(-g), oracle)
    assert diff["below"] and not diff["beats"] and diff["value"] < -150


def test_sample_by_group_takes_whole_groups():
    groups = np.array(["a", "a", "b", "c", "c", "d"])
    rows = sample_by_group(np.arange(6), groups, 3, np.random.default_rng(0))
    assert len(rows) >= 3 and set(groups[rows]) <= set(groups)
    for g in set(groups[rows]):
        assert set(np.flatnonzero(groups == g)) <= set(rows)


def test_learning_curve_adapts_and_tables_render():
    data = _data()
    result = lodo_learning_curve(data, sizes=(15, 30), seeds=1, n_boot=50)
    for d, block in result["directions"].items():
        routers = block["routers"]
        assert {ZERO_SHOT, ALL_LABELS, "adapted n=30", "scratch n=15", "length"} <= set(routers)
        # labels of the direction help over zero-shot (its weights differ by direction)
        assert routers["adapted n=30"]["value"] > routers[ZERO_SHOT]["value"], d
        assert routers["adapted n=30"]["vs"][ALL_LABELS]["value"] < 40
    table = curve_table(result)
    assert "adapted n=15" in table and "minus all labels" in table


def test_label_comparison_ranks_a_noisy_label_below_the_reference():
    data = _data()
    rng = np.random.default_rng(2)
    labels = {
        "reference": data.gain,
        "noise": rng.normal(size=len(data.gain)),
        "close": data.gain + rng.normal(0, 0.5, len(data.gain)),
    }
    result = lodo_label_comparison(data, labels, n_boot=50)
    for block in result["directions"].values():
        routers = block["routers"]
        assert routers["reference"]["share"] == 1.0
        assert routers["noise"]["share"] < 0.5 < routers["close"]["share"]
    assert "noise" in label_table(result)


def test_the_probe_alone_without_stage_two_inputs():
    full = _data()
    data = CurveData(full.directions, full.groups, full.gain, full.layers, None, full.fixed)
    result = lodo_learning_curve(data, sizes=(30,), seeds=1, n_boot=50, union=True)
    for block in result["directions"].values():
        routers = block["routers"]
        assert routers["adapted n=30"]["value"] > routers[ZERO_SHOT]["value"]
        assert "union n=30" in routers
