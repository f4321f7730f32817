"""Routing evaluation (docs/method.md section 4): ranking metrics, headroom closed (HC@p),
quality-budget curves, APGR, CPT, group-bootstrap intervals, paired differences against baseline
routers, per-direction numbers with their mean, breakdowns, and a JSON + Markdown + PNG report."""

from routelmt.evaluation.compare import compare_routers, headline
from routelmt.evaluation.evaluate import SCHEMA, evaluate_arrays, evaluate_routers
from routelmt.evaluation.report import render_markdown, write_report

__all__ = [
    "SCHEMA",
    "compare_routers",
    "evaluate_arrays",
    "evaluate_routers",
    "headline",
    "render_markdown",
    "write_report",
]
