"""evaluate_guards: the guard table on labelled examples (synthetic, made here)."""

from __future__ import annotations

import numpy as np

from routelmt.evaluation.guards import evaluate_guards, format_guard_table
from routelmt.records import ScoredExample, Segment


def _examples(n: int = 600, seed: int = 0):
    rng = np.random.default_rng(seed)
    q_small = rng.uniform(0, 100, n)
    q_large = np.clip(q_small + rng.normal(15, 12, n) - 0.3 * q_small, 0, 100)
    examples = [
        ScoredExample(
            segment=Segment(id=f"s{i}", direction=("en-es", "en-de")[i % 2], source=f"src {i}"),
            small_system="S",
            large_system="L",
            small_text="s",
            large_text="l",
            metric="chrf",
            q_small=float(q_small[i]),
            q_large=float(q_large[i]),
        )
        for i in range(n)
    ]
    gains = q_large - q_small
    gain_scores = gains + rng.normal(0, 15, n)  # a noisy gain router
    qe = q_small + rng.normal(0, 5, n)  # a good QE of the small output
    predicted = q_small + rng.normal(0, 40, n)  # a weak quality head
    return examples, gain_scores, predicted, qe


def test_guard_rows_budget_costs_and_the_informative_guard_helping():
    examples, gain_scores, predicted, qe = _examples()
    out = evaluate_guards(
        examples,
        gain_scores,
        predicted,
        qe,
        p=0.3,
        folds=5,
        n_boot=200,
        seconds={"quality-hypo": 0.05, "small_decode": 0.5, "quality-predict": 1e-6},
    )
    rows = {(r["guard"], r["rule"]): r for r in out["rows"]}
    assert set(rows) == {
        ("none", "-"),
        *(
            (g, rule)
            for g in ("quality-predict", "quality-hypo", "both")
            for rule in ("q0.8", "chosen")
        ),
    }
    base = rows[("none", "-")]
    # the budget is spent in every row (freed budget goes to the next candidates)
    assert all(r["routed"] == base["routed"] == 180 for r in out["rows"])
    assert base["guard_evaluations_per_request"] == 0 and base["guard_seconds_per_request"] == 0
    hypo = rows[("quality-hypo", "q0.8")]
    assert hypo["vetoed"] > 0 and hypo["severe_loss"] <= base["severe_loss"]
    assert hypo["hybrid_quality"] > base["hybrid_quality"]
    # the hypo guard's cost: QE per evaluation, and a decode for each candidate that went large
    wasted = hypo["hypo_evaluations_per_request"] - hypo["vetoed"] / 600
    assert np.isclose(hypo["wasted_small_decodes_per_request"], wasted)
    assert np.isclose(
        hypo["guard_seconds_per_request"],
        hypo["hypo_evaluations_per_request"] * 0.05 + wasted * 0.5,
    )
    both = rows[("both", "q0.8")]
    assert both["hypo_evaluations_per_request"] < both["guard_evaluations_per_request"]
    table = format_guard_table(out)
    assert table.count("\n") == len(out["rows"]) + 1 and "quality-hypo" in table
