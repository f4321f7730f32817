"""Routing evaluation (docs/method.md section 4): ranking metrics, quality-budget curves, APGR, CPT,
group-bootstrap intervals, breakdowns, and a JSON + Markdown + PNG report."""

from routelmt.evaluation.evaluate import SCHEMA, evaluate_routers
from routelmt.evaluation.report import render_markdown, write_report

__all__ = ["SCHEMA", "evaluate_routers", "render_markdown", "write_report"]
