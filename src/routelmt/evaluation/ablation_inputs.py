"""What the router ablations read and fit: row-aligned data (prefill signals, the small model's
translations, sentence qualities of the recorded systems), the prefill feature matrices, and
the heads the candidates are built from (ridge with the probe's layer choice, PCA, MLP,
gradient-boosted trees, a pairwise ranking loss).

The prefill file is ``bench/ablation_prefill.py``'s ``.npz`` (``ids``, ``directions``, ``groups``,
``last`` and ``mean`` of shape (n, layers + 1, hidden), ``entropy``, ``source_tokens``,
``prompt_tokens``, ``source_chars``). Qualities are scored once with the project's metric and
cached next to it. scikit-learn and torch are imported only by the heads that need them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from routelmt.errors import InputError, MissingDependencyError
from routelmt.heads import RidgeHead
from routelmt.splits import fold_ids
from routelmt.storage import atomic_open, stable_hash

__all__ = [
    "STRONG",
    "AblationData",
    "PrefillInputs",
    "gbt_head",
    "inner_out_of_fold",
    "load_ablation_data",
    "mlp_head",
    "pairwise_head",
    "pca",
    "read_translations",
    "ridge_predict",
    "standardise_within",
]

STRONG = ("GPT-4", "Claude-3.5", "Gemini-1.5-Pro", "Llama3-70B", "Mistral-Large", "Aya23")


@dataclass
class AblationData:
    """Row-aligned arrays for every segment of the chosen directions."""

    ids: np.ndarray
    directions: np.ndarray
    groups: np.ndarray
    sources: list[str]
    small_texts: list[str]
    q_small: np.ndarray
    q: dict[str, np.ndarray]  # recorded system -> sentence quality
    prefill: dict[str, np.ndarray] = field(default_factory=dict)

    def gain(self, large: str) -> np.ndarray:
        return self.q[large] - self.q_small

    def mask(self, direction: str) -> np.ndarray:
        return self.directions == direction


def read_translations(paths: Sequence[Path]) -> dict[str, str]:
    """segment id -> text from translations.jsonl files (the first file that has it wins)."""
    out: dict[str, str] = {}
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                row = json.loads(line)
                out.setdefault(row["segment_id"], row["text"])
    return out


def _recorded(dataset: Any, pairs: list[str], system: str, ids: np.ndarray) -> list[str]:
    outputs: dict[str, str] = {}
    for pair in pairs:
        outputs |= dataset.system_outputs(pair, system)
    return [outputs[i] for i in ids]


def load_ablation_data(
    prefill_path: Path,
    small: str,
    systems: Sequence[str] = STRONG,
    metric_name: str = "chrf",
    dataset: Any = None,
) -> AblationData:
    """``small``: comma-separated translations.jsonl files of the live small model, or
    ``replay:SYSTEM`` for a recorded system (the decoupled setting); ``dataset``: a
    ``WMTDataset`` (default: the configured WMT24 location)."""
    from routelmt.datasets.wmt import WMTDataset
    from routelmt.labels import score_pairs
    from routelmt.metrics.base import get_metric

    with np.load(prefill_path) as data:
        prefill = {k: data[k] for k in data.files}
    ids = prefill.pop("ids").astype(str)
    directions = prefill.pop("directions").astype(str)
    groups = prefill.pop("groups").astype(str)
    dataset = dataset if dataset is not None else WMTDataset()
    pairs = list(dict.fromkeys(directions))
    segments = {s.id: s for pair in pairs for s in dataset.segments(pair)}
    segs = [segments[i] for i in ids]
    metric = get_metric(metric_name)
    cache = prefill_path.parent / "quality-cache"
    cache.mkdir(parents=True, exist_ok=True)

    def quality(name: str, texts: list[str]) -> np.ndarray:
        key = stable_hash(metric.signature(), list(ids), texts, length=16)
        path = cache / f"{name.replace(':', '_').replace('/', '_')}-{key}.npy"
        if path.exists():
            return np.load(path)
        values = np.asarray(score_pairs(metric, segs, texts), dtype=np.float64)
        with atomic_open(path, "wb") as handle:
            np.save(handle, values)
        return values

    q = {system: quality(system, _recorded(dataset, pairs, system, ids)) for system in systems}
    if small.startswith("replay:"):
        small_texts = _recorded(dataset, pairs, small.removeprefix("replay:"), ids)
    else:
        found = read_translations([Path(p) for p in small.split(",")])
        missing = [i for i in ids if i not in found]
        if missing:
            raise InputError(
                f"{len(missing)} segments have no small translation, e.g. {missing[0]}"
            )
        small_texts = [found[i] for i in ids]
    return AblationData(
        ids=ids,
        directions=directions,
        groups=groups,
        sources=[s.source for s in segs],
        small_texts=small_texts,
        q_small=quality("small", small_texts),
        q=q,
        prefill=prefill,
    )


class PrefillInputs:
    """Feature matrices built from the prefill signals (all free at serving time), and the
    paper probe's layer choice on training rows (memoised per training set)."""

    def __init__(self, data: AblationData) -> None:
        p = data.prefill
        self.last = p["last"]  # (n, L+1, H)
        self.mean = p["mean"]
        self.n_layers = self.last.shape[1] - 1
        self.candidate_layers = list(range(1, self.n_layers + 1))
        dirs = sorted(set(data.directions))
        onehot = (data.directions[:, None] == np.asarray(dirs)[None, :]).astype(np.float64)
        self.scalars = np.column_stack(
            [np.log1p(p["source_tokens"]), p["entropy"], np.log1p(p["prompt_tokens"]), onehot]
        )
        self.length = p["source_chars"].astype(np.float64)  # the `length` router's unit
        self.length_tokens = p["source_tokens"].astype(np.float64)
        self.entropy = p["entropy"].astype(np.float64)
        self._choices: dict[tuple[str, str, bytes], int] = {}

    def layer(self, layer: int, pooling: str = "last") -> np.ndarray:
        return (self.last if pooling == "last" else self.mean)[:, layer, :].astype(np.float64)

    def choose_layer(
        self,
        y: np.ndarray,
        groups: np.ndarray,
        train: np.ndarray,
        pooling: str = "last",
        tag: str = "",
    ) -> int:
        """The layer whose ridge head has the lowest grouped-CV MSE on the training rows only;
        ``tag`` names the target, so different targets on the same rows are chosen apart."""
        key = (tag, pooling, train.tobytes())
        if key not in self._choices:
            best: tuple[float, int] | None = None
            for layer in self.candidate_layers:
                head = RidgeHead().fit(self.layer(layer, pooling)[train], y[train], groups[train])
                mse = min(head.cv_mse_)
                if best is None or mse < best[0]:
                    best = (mse, layer)
            assert best is not None
            self._choices[key] = best[1]
        return self._choices[key]


def standardise_within(y: np.ndarray, directions: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``y`` standardised within each direction, on the statistics of ``rows`` only."""
    out = y.astype(np.float64).copy()
    for d in np.unique(directions[rows]):
        sel = rows[directions[rows] == d]
        out[sel] = (y[sel] - y[sel].mean()) / (y[sel].std() + 1e-9)
    return out


def ridge_predict(
    X: np.ndarray, y: np.ndarray, groups: np.ndarray, train: np.ndarray, test: np.ndarray
) -> np.ndarray:
    """A ridge head (penalty by grouped CV) fitted on the training rows, scoring the test rows."""
    return RidgeHead().fit(X[train], y[train], groups[train]).predict(X[test])


def inner_out_of_fold(
    fit_predict: Any, groups: np.ndarray, train: np.ndarray, folds: int = 5, seed: int = 1
) -> np.ndarray:
    """Scores of the training rows, each from ``fit_predict(fit_rows, held_rows)`` on the
    other inner folds (grouped), so a head stacked on them sees honest scores."""
    inner = fold_ids(groups[train], folds, seed)
    out = np.zeros(len(train))
    for g in range(folds):
        out[inner == g] = fit_predict(train[inner != g], train[inner == g])
    return out


def pca(X_train: np.ndarray, X_test: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``k`` principal components, fitted on standardised training rows."""
    mu = X_train.mean(0)
    sd = X_train.std(0) + 1e-6
    A = (X_train - mu) / sd
    _, _, vt = np.linalg.svd(A, full_matrices=False)
    W = vt[:k].T
    return A @ W, ((X_test - mu) / sd) @ W


def _need_sklearn(what: str) -> None:
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise MissingDependencyError(
            f"{what} needs scikit-learn: pip install 'routelmt[ablation]'"
        ) from None


def mlp_head(Xtr: np.ndarray, ytr: np.ndarray, Xte: np.ndarray, seed: int = 0) -> np.ndarray:
    """One hidden layer of 64, early stopping on 15% of the training rows."""
    _need_sklearn("the MLP head")
    from sklearn.neural_network import MLPRegressor
    from sklearn.preprocessing import StandardScaler

    sc = StandardScaler().fit(Xtr)
    model = MLPRegressor(
        hidden_layer_sizes=(64,),
        alpha=1.0,
        early_stopping=True,
        validation_fraction=0.15,
        max_iter=300,
        random_state=seed,
    )
    model.fit(sc.transform(Xtr), (ytr - ytr.mean()) / (ytr.std() + 1e-9))
    return model.predict(sc.transform(Xte))


def gbt_head(Xtr: np.ndarray, ytr: np.ndarray, Xte: np.ndarray, seed: int = 0) -> np.ndarray:
    """Histogram gradient-boosted trees, early stopping on 15% of the training rows."""
    _need_sklearn("the gradient-boosted trees head")
    from sklearn.ensemble import HistGradientBoostingRegressor

    model = HistGradientBoostingRegressor(
        max_iter=300,
        learning_rate=0.05,
        max_leaf_nodes=15,
        min_samples_leaf=40,
        l2_regularization=1.0,
        early_stopping=True,
        validation_fraction=0.15,
        random_state=seed,
    )
    model.fit(Xtr, ytr)
    return model.predict(Xte)


def pairwise_head(
    Xtr: np.ndarray,
    ytr: np.ndarray,
    dtr: np.ndarray,
    Xte: np.ndarray,
    seed: int = 0,
    epochs: int = 60,
    pairs: int = 20000,
    decay: float = 1e-2,
) -> np.ndarray:
    """Linear scorer trained with a logistic pairwise ranking loss within each direction."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    mu, sd = Xtr.mean(0), Xtr.std(0) + 1e-6
    A = torch.tensor((Xtr - mu) / sd, dtype=torch.float32)
    B = torch.tensor((Xte - mu) / sd, dtype=torch.float32)
    w = torch.zeros(A.shape[1], requires_grad=True)
    opt = torch.optim.Adam([w], lr=0.01, weight_decay=decay)
    by_dir = [np.flatnonzero(dtr == d) for d in np.unique(dtr)]
    for _ in range(epochs):
        i_all, j_all = [], []
        for rows in by_dir:  # i then j per direction: the draw order fixes the numbers
            i_all.append(rng.choice(rows, pairs // len(by_dir)))
            j_all.append(rng.choice(rows, pairs // len(by_dir)))
        i, j = np.concatenate(i_all), np.concatenate(j_all)
        keep = ytr[i] != ytr[j]
        i, j = i[keep], j[keep]
        sign = torch.tensor(np.sign(ytr[i] - ytr[j]), dtype=torch.float32)
        loss = torch.nn.functional.softplus(-sign * ((A[i] - A[j]) @ w)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return (B @ w).numpy()
