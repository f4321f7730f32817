"""How many labels of a new direction a router needs: leave-one-direction-out protocols on
plain arrays (the router's features, computed once), for ``bench/learning_curve.py``
and ``bench/reffree_labels.py``.

Folds are by source group over every direction, so one English source sits in the same fold in
all en-xx pairs. For a left-out direction d and fold f: the test rows are d's rows in fold f;
the *pool* a user could label is d's other rows; the zero-shot router is trained on the other
directions' rows outside fold f (it never saw a test source). Every method scores every test
row once, so all methods are compared on the same segments (each out-of-fold), paired.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from routelmt.adaptation import DEFAULT_SELECTION, adapt_head, adapt_two_stage_heads
from routelmt.errors import InputError
from routelmt.evaluation.hc_bootstrap import HCBootstrap, paired, summary
from routelmt.heads import RidgeHead
from routelmt.routers.inmodel import choose_probe_head
from routelmt.routers.two_stage import TwoStageHeads, fit_two_stage_heads
from routelmt.splits import fold_ids

log = logging.getLogger(__name__)

ZERO_SHOT = "zero-shot (other directions)"
ALL_LABELS = "all labels of the direction"


@dataclass
class ProbeHead:
    """The prefill probe alone (``routelmt``): one layer's ridge head."""

    layer: int
    head: RidgeHead

    def score(self, layer_features: np.ndarray, rest: np.ndarray | None = None) -> np.ndarray:
        return self.head.predict(layer_features)


Heads = TwoStageHeads | ProbeHead


@dataclass
class CurveData:
    """Row-aligned arrays: a direction and source group per segment, the reference gain, the
    prefill features of each candidate layer, the other stage-2 inputs (``STAGE2_INPUTS[1:]``;
    None: the prefill probe ``routelmt`` alone, no small output read), and fixed scores of
    routers that are not refit (``length``, a shipped artifact)."""

    directions: np.ndarray
    groups: np.ndarray
    gain: np.ndarray
    layers: dict[int, np.ndarray]
    rest: np.ndarray | None
    fixed: dict[str, np.ndarray] = field(default_factory=dict)
    selection: str = DEFAULT_SELECTION  # how adaptation's CV picks (adaptation.SELECTIONS)

    def __post_init__(self) -> None:
        n = len(self.gain)
        sizes = [len(self.directions), len(self.groups)]
        sizes += [] if self.rest is None else [len(self.rest)]
        sizes += [len(x) for x in self.layers.values()] + [len(x) for x in self.fixed.values()]
        if any(size != n for size in sizes):
            raise InputError(f"curve data: every array needs {n} rows, got {sizes}")

    def fit(self, rows: np.ndarray, y: np.ndarray | None = None) -> Heads:
        """The router trained from scratch on ``rows`` (label ``y``, default the gain)."""
        target = (self.gain if y is None else y)[rows]
        layers = {k: X[rows] for k, X in self.layers.items()}
        if self.rest is None:
            chosen = {k: (lambda X=X: X) for k, X in layers.items()}
            layer, head, _ = choose_probe_head(chosen, target, self.groups[rows])
            return ProbeHead(layer, head)
        return fit_two_stage_heads(layers, self.rest[rows], target, self.groups[rows])

    def adapt(self, init: Heads, rows: np.ndarray) -> Heads:
        """``init`` refit toward its own weights on the gains of ``rows``."""
        X, y, g = self.layers[init.layer][rows], self.gain[rows], self.groups[rows]
        if isinstance(init, ProbeHead):
            return ProbeHead(init.layer, adapt_head(init.head, X, y, g, selection=self.selection))
        assert self.rest is not None
        return adapt_two_stage_heads(init, X, self.rest[rows], y, g, selection=self.selection)

    def score(self, heads: Heads, rows: np.ndarray) -> np.ndarray:
        rest = None if self.rest is None else self.rest[rows]
        return heads.score(self.layers[heads.layer][rows], rest)


def sample_by_group(rows: np.ndarray, groups: np.ndarray, n: int, rng: np.random.Generator):
    """Whole source groups of ``rows`` in random order until at least ``n`` rows are taken."""
    names, inverse = np.unique(groups[rows], return_inverse=True)
    taken: list[int] = []
    for g in rng.permutation(len(names)):
        taken.extend(np.flatnonzero(inverse == g).tolist())
        if len(taken) >= n:
            break
    return rows[np.sort(taken)]


def _curve_fold(
    data: CurveData, test: np.ndarray, pool: np.ndarray, other: np.ndarray, **opts: Any
) -> dict[str, list[np.ndarray]]:
    """Every method's scores of ``test`` for one left-out direction and fold."""
    init = data.fit(other)
    out: dict[str, list[np.ndarray]] = {
        ZERO_SHOT: [data.score(init, test)],
        ALL_LABELS: [data.score(data.fit(pool), test)],
    }
    for n in opts["sizes"]:
        if n <= 0 or n > len(pool):
            continue
        for seed in range(opts["seeds"]):
            rng = np.random.default_rng([seed, n, int(test[0])])
            rows = sample_by_group(pool, data.groups, n, rng)
            adapted = data.adapt(init, rows)
            out.setdefault(f"adapted n={n}", []).append(data.score(adapted, test))
            out.setdefault(f"scratch n={n}", []).append(data.score(data.fit(rows), test))
            if opts["union"]:
                union = np.concatenate([other, rows])
                out.setdefault(f"union n={n}", []).append(data.score(data.fit(union), test))
    return out


def lodo_learning_curve(
    data: CurveData,
    *,
    sizes: Sequence[int] = (25, 50, 100, 200, 400),
    seeds: int = 5,
    folds: int = 5,
    budget: float = 0.3,
    n_boot: int = 1000,
    union: bool = False,
    directions: Sequence[str] | None = None,
) -> dict[str, Any]:
    """HC@p per left-out direction of: the zero-shot router, adapted with n labels of the
    direction (``CurveData.adapt``), trained from scratch on the same n labels (and, with
    ``union``, retrained on the other directions plus them), trained on all the pool's labels,
    and the fixed routers; paired against the all-labels router, length and zero-shot."""
    fold = fold_ids(data.groups, folds, 0)
    result: dict[str, Any] = {"budget": budget, "sizes": list(sizes), "seeds": seeds}
    result["folds"], result["directions"] = folds, {}
    for d in directions or sorted(set(data.directions)):
        started = time.perf_counter()
        in_d = data.directions == d
        scores: dict[str, list[np.ndarray]] = {}
        for f in range(folds):
            test = np.flatnonzero(in_d & (fold == f))
            pool, other = np.flatnonzero(in_d & (fold != f)), np.flatnonzero(~in_d & (fold != f))
            part = _curve_fold(data, test, pool, other, sizes=sizes, seeds=seeds, union=union)
            for name, vectors in part.items():
                full = scores.setdefault(name, [np.full(len(data.gain), np.nan) for _ in vectors])
                for target, v in zip(full, vectors, strict=True):
                    target[test] = v
            log.info("learning curve %s: fold %d done", d, f)
        rows = np.flatnonzero(in_d)
        named = {name: [v[rows] for v in vs] for name, vs in scores.items()}
        named |= {name: [s[rows]] for name, s in data.fixed.items()}
        versus = [ALL_LABELS, "length", ZERO_SHOT]
        block = _evaluate(data, rows, named, versus, budget, n_boot)
        block["seconds"] = round(time.perf_counter() - started, 1)
        block["pool_size"] = int(in_d.sum() * (folds - 1) / folds)
        result["directions"][d] = block
    return result


def _evaluate(
    data: CurveData,
    rows: np.ndarray,
    named: Mapping[str, list[np.ndarray]],
    versus: Sequence[str],
    budget: float,
    n_boot: int,
) -> dict[str, Any]:
    boot = HCBootstrap(data.gain[rows], data.groups[rows], budget, n_boot)
    hc = {name: boot.hc(vectors) for name, vectors in named.items()}
    routers: dict[str, Any] = {}
    for name, values in hc.items():
        cell = summary(values) | {"vs": {}}
        for base in versus:
            if base in hc and base != name:
                cell["vs"][base] = paired(values, hc[base])
        routers[name] = cell
    return {"n": int(len(rows)), "routers": routers}


def lodo_label_comparison(
    data: CurveData,
    labels: Mapping[str, np.ndarray],
    *,
    reference: str = "reference",
    folds: int = 5,
    budget: float = 0.3,
    n_boot: int = 1000,
) -> dict[str, Any]:
    """The router (two-stage, or the probe) trained on each candidate label (LODO by source
    fold), evaluated with the reference gain, per direction, paired against the router trained
    on ``labels[reference]``; ``share`` = HC / the reference-trained router's HC."""
    fold = fold_ids(data.groups, folds, 0)
    scores = {name: np.full(len(data.gain), np.nan) for name in labels}
    for name, y in labels.items():
        for d in sorted(set(data.directions)):
            for f in range(folds):
                test = np.flatnonzero((data.directions == d) & (fold == f))
                train = np.flatnonzero((data.directions != d) & (fold != f))
                scores[name][test] = data.score(data.fit(train, np.asarray(y, float)), test)
        log.info("label %s: done", name)
    result: dict[str, Any] = {"budget": budget, "folds": folds, "directions": {}}
    for d in sorted(set(data.directions)):
        rows = np.flatnonzero(data.directions == d)
        named = {name: [s[rows]] for name, s in scores.items()}
        named |= {name: [s[rows]] for name, s in data.fixed.items()}
        block = _evaluate(data, rows, named, [reference, "length"], budget, n_boot)
        ref_hc = block["routers"][reference]["value"]
        for cell in block["routers"].values():
            cell["share"] = cell["value"] / ref_hc if ref_hc else float("nan")
        result["directions"][d] = block
    result["scores"] = {name: s.tolist() for name, s in scores.items()}
    return result


def _cell(stat: Mapping[str, Any] | None, sign: bool = False) -> str:
    if stat is None:
        return "—"
    fmt = "{:+.1f}" if sign else "{:.1f}"
    low, high = (fmt.format(v) for v in stat["ci"])
    text = f"{fmt.format(stat['value'])} [{low}, {high}]"
    if sign and stat.get("beats"):
        return text + " **above**"
    return text + (" *below*" if sign and stat.get("below") else "")


def curve_table(result: Mapping[str, Any]) -> str:
    """A Markdown table per direction: HC@p with its interval, and the paired differences."""
    lines: list[str] = []
    versus = [ALL_LABELS, "length", ZERO_SHOT]
    for d, block in result["directions"].items():
        lines += [f"\n{d} (n = {block['n']}, pool {block['pool_size']} per fold)\n"]
        lines += ["| router | HC@p [95% CI] | " + " | ".join(f"minus {v}" for v in versus) + " |"]
        lines += ["|---|---|" + "---|" * len(versus)]
        for name, cell in block["routers"].items():
            diffs = [_cell(cell["vs"].get(v), sign=True) for v in versus]
            lines.append(f"| {name} | {_cell(cell)} | " + " | ".join(diffs) + " |")
    return "\n".join(lines) + "\n"


def label_table(result: Mapping[str, Any], reference: str = "reference") -> str:
    """One row per label: HC@p per direction, its share of the reference-trained router's
    HC, and the paired difference to it."""
    dirs = list(result["directions"])
    head = ["label"] + [f"{d} HC [CI]" for d in dirs] + [f"{d} share" for d in dirs]
    head += [f"{d} minus {reference}" for d in dirs]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in result["directions"][dirs[0]]["routers"]:
        cells = [result["directions"][d]["routers"][name] for d in dirs]
        row = [name] + [_cell(c) for c in cells] + [f"{100 * c['share']:.0f}%" for c in cells]
        row += [_cell(c["vs"].get(reference), sign=True) for c in cells]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"
