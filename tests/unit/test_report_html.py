"""``routelmt report RUN_DIR``: one HTML file that opens offline in a browser and shows the run's
metrics.json numbers: curves with stable colours and bands, HC per direction, paired
differences. Opened in headless Chromium (a screenshot, and the tables read back)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from headless import Page, dump_dom, screenshot
from test_evaluation_report import gains_of, make_examples

from routelmt.cli import main
from routelmt.evaluation import evaluate_routers, write_report
from routelmt.evaluation.plots import router_color
from routelmt.evaluation.report import fmt_stat

LARGE = "replay-gpt-4"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A bench-shaped run folder: report/<large>/metrics.json."""
    examples = make_examples(n_sources=40, directions=("en-de", "en-es", "en-zh"))
    g = gains_of(examples)
    rng = np.random.default_rng(3)
    lengths = np.array([len(e.segment.source) for e in examples], dtype=float)
    scores = {
        "gain-oracle": g,
        "routelmt": g + rng.normal(0, 10, g.size),
        "length": lengths + rng.normal(0, 0.1, g.size),
        "random": rng.normal(size=g.size),
    }
    result = evaluate_routers(
        examples, scores, [0.1, 0.3, 0.5], n_boot=100, seed=0, baselines=["length"]
    )
    root = tmp_path_factory.mktemp("run")
    write_report(result, root / "report" / LARGE, plots=False)
    return root


@pytest.fixture(scope="module")
def report(run_dir):
    assert main(["-q", "report", str(run_dir)]) == 0
    path = run_dir / "report.html"
    return path, path.read_text(encoding="utf-8")


def _metrics(run_dir) -> dict:
    return json.loads((run_dir / "report" / LARGE / "metrics.json").read_text())


def test_self_contained(report):
    _, html = report
    assert not re.search(r"<(script|link|img|iframe)\b", html)
    assert not re.search(r"""(src|href)\s*=|url\(|@import""", html)
    assert html.count("<svg") == 4  # pooled and three directions


def test_stable_colours_and_bands(report, run_dir):
    _, html = report
    result = _metrics(run_dir)
    for name in result["routers"]:
        colour = router_color(name)
        curves = re.findall(rf'class="curve"[^>]*data-router="{name}" stroke="([^"]+)"', html)
        assert curves == [colour] * 4, name
        if name != "gain-oracle":  # its interval is a point: the band has no width
            assert len(re.findall(rf'class="band" fill="{colour}" data-router="{name}"', html)) == 4
    # the interval bars carry metrics.json's hybrid quality and its interval
    bars = re.findall(
        r'class="ci" data-router="routelmt"[^>]*data-p="0.3" data-value="([^"]+)" '
        r'data-low="([^"]+)" data-high="([^"]+)"',
        html,
    )
    stat = result["routers"]["routelmt"]["budgets"]["0.3"]["hybrid_quality"]
    assert [float(x) for x in bars[0]] == [stat["value"], stat["ci_low"], stat["ci_high"]]


def test_tables_in_the_browser_match_metrics_json(report, run_dir, tmp_path):
    path, _ = report
    result = _metrics(run_dir)
    page = Page(dump_dom(path.as_uri(), tmp_path / "profile", budget_ms=500))
    shot = screenshot(
        path.as_uri(), tmp_path / "report.png", tmp_path / "profile", size="1300,2600"
    )
    assert shot.stat().st_size > 50_000
    dirs = list(result["breakdowns"]["direction"])
    for key in ("0.1", "0.3", "0.5"):
        rows = {r[0]: r for r in page.rows[f"hc-{LARGE}-{key}"]}
        assert set(rows) == set(result["routers"])
        for name, row in rows.items():
            mean = result["direction_mean"]["routers"][name]["budgets"][key]["hc"]
            assert row[2] == fmt_stat(mean)
            for d, cell in zip(dirs, row[3:-1], strict=True):
                block = result["breakdowns"]["direction"][d]
                assert cell == fmt_stat(block["routers"][name]["budgets"][key]["hc"]), (d, name)
            assert row[-1] == fmt_stat(result["routers"][name]["budgets"][key]["hc"])
        paired = {r[0]: r for r in page.rows[f"paired-{LARGE}-{key}"]}
        assert set(paired) == set(result["routers"]) - {"length"}
        for name, row in paired.items():
            assert row[1] == "length"
            diff = result["paired"]["length"][name]["budgets"][key]["hc"]
            expected = f"{diff['value']:+.2f} [{diff['ci_low']:+.2f}, {diff['ci_high']:+.2f}]"
            assert row[-2] == expected


def test_bad_run_dirs_are_a_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "routelmt report: error: no metrics.json" in capsys.readouterr().err
    (tmp_path / "metrics.json").write_text("{not json")
    assert main(["report", str(tmp_path)]) == 2
    assert "invalid JSON" in capsys.readouterr().err
    (tmp_path / "metrics.json").write_text('{"n": 3}')
    assert main(["report", str(tmp_path)]) == 2
    assert "not an evaluation result" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_an_evaluate_folder_with_one_direction(tmp_path):
    """``routelmt evaluate`` writes RUN_DIR/metrics.json; one direction: no per-direction table,
    the pooled paired differences still shown."""
    examples = make_examples(n_sources=30, directions=("en-es",))
    g = gains_of(examples)
    scores = {"routelmt": g + np.random.default_rng(0).normal(0, 8, g.size), "length": -g}
    result = evaluate_routers(examples, scores, [0.3], n_boot=50, seed=0, baselines=["length"])
    write_report(result, tmp_path / "eval", plots=False)
    out = tmp_path / "elsewhere" / "r.html"
    assert main(["-q", "report", str(tmp_path / "eval"), "-o", str(out)]) == 0
    html = out.read_text(encoding="utf-8")
    assert 'id="hc-eval-0.3"' not in html and 'id="paired-eval-0.3"' in html
    diff = result["paired"]["length"]["routelmt"]["budgets"]["0.3"]["hc"]
    assert f"{diff['value']:+.2f} [{diff['ci_low']:+.2f}, {diff['ci_high']:+.2f}]" in html
