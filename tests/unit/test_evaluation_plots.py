"""The curve figures: one colour per router everywhere, the oracle line visible, the intervals
drawn, a legend that sits outside the data; and a report without Python reprs."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import to_hex
from test_evaluation_report import gains_of, make_examples

from routelmt.evaluation import evaluate_routers
from routelmt.evaluation.plots import breakdown_figure, curves_figure, router_color
from routelmt.evaluation.report import plain, render_markdown

NINE = [
    "gain-oracle",
    "quality-oracle",
    "random",
    "length",
    "entropy",
    "external-difficulty",
    "external-delta",
    "routelmt-q",
    "routelmt",
]


def _result(names, n_boot=50, run_info=None):
    examples = make_examples(n_sources=40)
    g = gains_of(examples)
    rng = np.random.default_rng(0)
    scores = {name: g + rng.normal(0, 3 + 3 * i, g.size) for i, name in enumerate(names)}
    if "gain-oracle" in scores:
        scores["gain-oracle"] = g
    budgets = [0.1, 0.3, 0.5]
    return evaluate_routers(examples, scores, budgets, n_boot=n_boot, seed=0, run_info=run_info)


def _line_colors(fig):
    out = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            if not line.get_label().startswith("_"):
                out.setdefault(line.get_label(), set()).add(to_hex(line.get_color()))
    return out


@pytest.fixture(scope="module")
def nine():
    return _result(NINE)


def test_a_router_keeps_its_colour_across_figures_and_router_sets(nine):
    colors = [router_color(n) for n in NINE]
    assert len(set(colors)) == len(NINE)  # nine routers, nine colours
    pooled = _line_colors(curves_figure(nine))
    panels = _line_colors(breakdown_figure(nine, "direction"))
    fewer = _line_colors(curves_figure(_result(["length", "routelmt"], n_boot=0)))
    for name in NINE:
        assert pooled[name] == panels[name] == {to_hex(router_color(name))}
    assert fewer["routelmt"] == pooled["routelmt"] and fewer["length"] == pooled["length"]
    assert router_color("routelmt@my-run") == router_color("routelmt@my-run")


def test_oracle_line_is_drawn_above_gain_oracle(nine):
    ax = curves_figure(nine).axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    oracle, gain_oracle = lines["oracle (true gain)"], lines["gain-oracle"]
    np.testing.assert_allclose(oracle.get_ydata(), gain_oracle.get_ydata())  # same curve
    assert oracle.get_zorder() > gain_oracle.get_zorder()
    assert oracle.get_linewidth() < gain_oracle.get_linewidth()  # gain-oracle shows around it


def test_bootstrap_intervals_are_drawn_from_the_reported_numbers(nine):
    ax = curves_figure(nine).axes[0]
    bars = [c for c in ax.collections if c.get_segments()]
    assert len(bars) == len(NINE) - 1  # every router but gain-oracle (it is the oracle)
    colors = {to_hex(c.get_color()[0]) for c in bars}
    assert colors == {to_hex(router_color(n)) for n in NINE if n != "gain-oracle"}
    ci = nine["routers"]["routelmt"]["budgets"]["0.3"]["hybrid_quality"]
    red = next(c for c in bars if to_hex(c.get_color()[0]) == to_hex(router_color("routelmt")))
    spans = sorted((seg[:, 1].min(), seg[:, 1].max()) for seg in red.get_segments())
    assert any(np.allclose(span, (ci["ci_low"], ci["ci_high"])) for span in spans)
    none = curves_figure(_result(["length"], n_boot=0)).axes[0]
    assert not [c for c in none.collections if c.get_segments()]


def test_legend_lists_nine_routers_outside_the_axes_best_first(nine):
    fig = curves_figure(nine)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    ax = fig.axes[0]
    legend = ax.get_legend()
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels[: len(NINE)] == sorted(NINE, key=lambda n: -nine["routers"][n]["auc"]["value"])
    assert labels[len(NINE) :] == [
        "large only",
        "small only",
        "random (expected)",
        "oracle (true gain)",
    ]
    renderer = canvas.get_renderer()
    box, axes_box = legend.get_window_extent(renderer), ax.get_window_extent(renderer)
    assert box.x0 >= axes_box.x1  # beside the plot, covering no data


def test_report_settings_have_no_python_reprs():
    result = _result(
        ["length"],
        n_boot=0,
        run_info={
            "command": "routelmt evaluate",
            "input": None,
            "pairs": ["en-es", "en-de"],
            "router_args": {"length": {}, "routelmt": {"layer": 9}},
            "router_dirs": [],
            "router_seconds": {"length": 0.000123456},
            "folds": 5,
        },
    )
    text = render_markdown(result)
    settings = text.split("\n## ")[0]  # the lines before the first section
    for repr_bit in ("None", "[", "{", "'"):
        assert repr_bit not in settings, (repr_bit, settings)
    assert "- pairs: en-es, en-de" in settings
    assert "- router args: routelmt (layer=9)" in settings
    assert "- router seconds: length 0.0001235" in settings
    assert "input" not in settings and "router dirs" not in settings
    assert plain(True) == "yes" and plain([]) == "" and plain({"a": None}) == ""
