"""Write an evaluation result as ``metrics.json``, a readable ``report.md`` and PNG curves."""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Any

from routelmt.storage import atomic_open, write_json

FIELDS = (
    ("hit_rate", "HitRate@p (%)"),
    ("mean_delta", "MeanDelta@p"),
    ("hybrid_quality", "Hybrid quality@p"),
    ("severe_loss", "Severe loss@p (%)"),
)


def fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def plain(value: Any) -> str:
    """A run setting as a reader writes it: ``en-es, en-de``, ``routelmt (layer=9)``,
    ``length 0.01 s``; empty for None and empty containers (no Python reprs in a report)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(t for t in (plain(v) for v in value) if t)
    if isinstance(value, dict):
        parts = []
        for key, inner in value.items():
            if isinstance(inner, dict):
                text = ", ".join(f"{k}={plain(v)}" for k, v in inner.items())
                parts.append(f"{key} ({text})" if text else "")
            else:
                text = plain(inner)
                parts.append(f"{key} {text}" if text else "")
        return "; ".join(p for p in parts if p)
    return str(value)


def fmt_stat(stat: dict[str, Any], digits: int = 2) -> str:
    """``12.13 [10.50, 13.80]``, or just the value when there is no interval."""
    text = fmt(stat.get("value"), digits)
    if stat.get("ci_low") is not None or stat.get("ci_high") is not None:
        text += f" [{fmt(stat.get('ci_low'), digits)}, {fmt(stat.get('ci_high'), digits)}]"
    return text


def _cpt_text(stat: dict[str, Any]) -> str:
    if stat.get("value") is None:
        return "never"
    text = f"{stat['value']:.3f}"
    if stat.get("ci_low") is not None or stat.get("ci_high") is not None:
        low = "never" if stat.get("ci_low") is None else f"{stat['ci_low']:.3f}"
        high = "never" if stat.get("ci_high") is None else f"{stat['ci_high']:.3f}"
        text += f" [{low}, {high}]"
    return text


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _budget_tables(block: dict[str, Any], budgets: list[float], metric: str) -> list[str]:
    lines: list[str] = []
    ref = block["reference"]
    for p in budgets:
        key = format(p, "g")
        k = ref["oracle"][key]["k"]
        lines += ["", f"#### Budget p = {key} (k = {k} of {block['n']})", ""]
        header = ["router", "Spearman"] + [label for _, label in FIELDS]
        rows = []
        for name, res in block["routers"].items():
            b = res["budgets"][key]
            rows.append([name, fmt_stat(res["spearman"], 3)] + [fmt_stat(b[f]) for f, _ in FIELDS])
        for label, ref_key in (
            ("*oracle (true gain)*", "oracle"),
            ("*random (expected)*", "random"),
        ):
            b = ref[ref_key][key]
            spear = "1.000" if ref_key == "oracle" else "0.000"
            rows.append([label, spear] + [fmt_stat(b[f]) for f, _ in FIELDS])
        lines += _table(header, rows)
    return lines


def _curve_table(block: dict[str, Any]) -> list[str]:
    ref = block["reference"]
    levels = next(iter(block["routers"].values()), {}).get("cpt", {})
    header = ["router", "AUC", "APGR"] + [f"CPT({lvl}%)" for lvl in levels]
    rows = []
    for name, res in block["routers"].items():
        rows.append(
            [name, fmt_stat(res["auc"]), fmt_stat(res["apgr"], 3)]
            + [_cpt_text(res["cpt"][lvl]) for lvl in levels]
        )
    rows.append(["*oracle*", fmt_stat(ref["oracle_auc"]), "1.000"] + [""] * len(levels))
    rows.append(["*random*", fmt_stat(ref["random_auc"]), "0.000"] + [""] * len(levels))
    return _table(header, rows)


def _reference_lines(block: dict[str, Any], metric: str) -> list[str]:
    ref = block["reference"]
    return [
        f"- small-only quality: {fmt_stat(ref['small_only'])}",
        f"- large-only quality: {fmt_stat(ref['large_only'])}",
        f"- mean gain (large - small): {fmt_stat(ref['mean_gain'])}",
    ]


def render_markdown(result: dict[str, Any], figures: list[str] | None = None) -> str:
    """The report as Markdown: settings, one table per budget, curve summary, breakdowns."""
    metric = result.get("metric", "quality")
    settings = result.get("settings", {})
    boot = settings.get("bootstrap", {})
    budgets = result["budgets"]
    lines = [
        "# Routing evaluation",
        "",
        f"- test set: {result['n']} segments in {result['n_groups']} source groups",
        f"- quality metric: `{metric}`",
        f"- small system(s): {', '.join(result.get('small_systems', []))}; "
        f"large system(s): {', '.join(result.get('large_systems', []))}",
        f"- budgets: {', '.join(format(p, 'g') for p in budgets)}; {settings.get('k_rule', '')}",
        f"- ties: {settings.get('tie_break', '')}; seed {settings.get('seed')}",
        f"- severe loss: gain < -{result.get('severe_delta')} ({metric} points)",
        f"- intervals: {int(boot.get('level', 0.95) * 100)}% {boot.get('method', '')} bootstrap, "
        f"{boot.get('n')} resamples by {boot.get('unit', 'group')}",
        f"- random line: {settings.get('random_line', '')}",
    ]
    for key, value in (result.get("run") or {}).items():
        text = plain(value)
        if text:  # nothing to say (None, empty): no line, rather than a Python repr
            lines.append(f"- {key.replace('_', ' ')}: {text}")
    lines += ["", "## Reference", ""] + _reference_lines(result, metric)
    lines += ["", "## Metrics per budget", "", "Cells: value [95% CI]."]
    lines += _budget_tables(result, budgets, metric)
    lines += ["", "## Quality-budget curves", ""]
    lines += [
        "AUC: trapezoid area of hybrid quality over p in [0, 1]; APGR = (AUC - AUC_random) / "
        "(AUC_oracle - AUC_random); CPT(x%): smallest budget recovering x% of the "
        'small-to-large gap ("never" if it is not reached).',
        "",
    ]
    lines += _curve_table(result)
    for fig in figures or []:
        lines += ["", f"![{Path(fig).stem}]({fig})"]
    for key, subsets in (result.get("breakdowns") or {}).items():
        lines += ["", f"## Breakdown by {key}", ""]
        header = ["router"] + ["Spearman", "APGR"]
        header += [f"HitRate@{format(p, 'g')}" for p in budgets]
        header += [f"MeanDelta@{format(p, 'g')}" for p in budgets]
        for value, block in subsets.items():
            ref = block["reference"]
            lines += [
                "",
                f"### {key} = {value} (n = {block['n']})",
                "",
                f"small-only {fmt(ref['small_only']['value'])}, "
                f"large-only {fmt(ref['large_only']['value'])}, "
                f"mean gain {fmt(ref['mean_gain']['value'])}",
                "",
            ]
            rows = []
            for name, res in block["routers"].items():
                row = [name, fmt(res["spearman"]["value"], 3), fmt(res["apgr"]["value"], 3)]
                row += [fmt(res["budgets"][format(p, "g")]["hit_rate"]["value"]) for p in budgets]
                row += [fmt(res["budgets"][format(p, "g")]["mean_delta"]["value"]) for p in budgets]
                rows.append(row)
            oracle = ["*oracle*", "1.000", "1.000"]
            oracle += [fmt(ref["oracle"][format(p, "g")]["hit_rate"]["value"]) for p in budgets]
            oracle += [fmt(ref["oracle"][format(p, "g")]["mean_delta"]["value"]) for p in budgets]
            rows.append(oracle)
            lines += _table(header, rows)
    generated = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines += ["", f"_Generated {generated} by routelmt; numbers in metrics.json._", ""]
    return "\n".join(lines)


def write_report(
    result: dict[str, Any], out_dir: str | os.PathLike[str], *, plots: bool = True
) -> dict[str, Path]:
    """Write metrics.json, report.md and (unless ``plots=False``) curves PNGs; returns paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {"metrics": out / "metrics.json", "report": out / "report.md"}
    write_json(paths["metrics"], result)
    figures: list[str] = []
    if plots:
        from routelmt.evaluation.plots import plot_breakdown_curves, plot_curves

        paths["curves"] = plot_curves(result, out / "curves.png")
        figures.append("curves.png")
        if "direction" in (result.get("breakdowns") or {}):
            paths["curves_by_direction"] = plot_breakdown_curves(
                result, "direction", out / "curves_by_direction.png"
            )
            figures.append("curves_by_direction.png")
    with atomic_open(paths["report"]) as handle:
        handle.write(render_markdown(result, figures))
    return paths


def summary(result: dict) -> dict:
    """The headline numbers per router at each budget (what the CLI prints with ``--json``)."""
    out: dict = {"n": result["n"], "metric": result["metric"], "routers": {}}
    for name, router in result["routers"].items():
        row = {"spearman": router["spearman"]["value"], "apgr": router["apgr"]["value"]}
        for key, cell in router["budgets"].items():
            row[f"p={key}"] = {metric: cell[metric]["value"] for metric in BUDGET_METRICS}
        out["routers"][name] = row
    return out


BUDGET_METRICS = ("hit_rate", "mean_delta", "hybrid_quality", "severe_loss")


def summary_table(result: dict) -> str:
    """A compact text table for terminals: one row per router and budget."""
    head = f"{'router':<22}{'p':>5}{'Spearman':>10}{'HitRate':>9}{'MeanDelta':>11}"
    head += f"{'Hybrid':>9}{'Severe%':>9}{'APGR':>7}"
    lines = [f"n = {result['n']}, metric = {result['metric']}", head, "-" * len(head)]

    def fmt(value: float | None, width: int, digits: int) -> str:
        return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"

    for name, router in result["routers"].items():
        for key, cell in router["budgets"].items():
            lines.append(
                f"{name:<22}{key:>5}"
                + fmt(router["spearman"]["value"], 10, 3)
                + fmt(cell["hit_rate"]["value"], 9, 2)
                + fmt(cell["mean_delta"]["value"], 11, 2)
                + fmt(cell["hybrid_quality"]["value"], 9, 2)
                + fmt(cell["severe_loss"]["value"], 9, 2)
                + fmt(router["apgr"]["value"], 7, 3)
            )
    return "\n".join(lines)
