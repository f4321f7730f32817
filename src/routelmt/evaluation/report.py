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
    ("hc", "HC@p (%)"),
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
            rows.append(
                [name, fmt_stat(res["spearman"], 3)] + [fmt_stat(b.get(f) or {}) for f, _ in FIELDS]
            )
        for label, ref_key in (
            ("*oracle (true gain)*", "oracle"),
            ("*random (expected)*", "random"),
        ):
            b = ref[ref_key][key]
            spear = "1.000" if ref_key == "oracle" else "0.000"
            rows.append([label, spear] + [fmt_stat(b.get(f) or {}) for f, _ in FIELDS])
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


def fmt_diff(stat: dict[str, Any] | None, digits: int = 2) -> str:
    """``+3.10 [0.50, 5.70]``, in bold when the interval lies above zero (the router beats)."""
    if not stat or stat.get("value") is None:
        return "n/a"
    text = f"{stat['value']:+.{digits}f}"
    if stat.get("ci_low") is not None and stat.get("ci_high") is not None:
        text += f" [{stat['ci_low']:+.{digits}f}, {stat['ci_high']:+.{digits}f}]"
    return f"**{text}**" if stat.get("beats") else text


def headline_budget(budgets: list[float]) -> float:
    """The budget a short summary shows: the paper's 0.3 when evaluated, else the middle one."""
    return 0.3 if 0.3 in budgets else budgets[len(budgets) // 2]


def _direction_blocks(result: dict[str, Any]) -> dict[str, Any]:
    return (result.get("breakdowns") or {}).get("direction") or {}


def _per_direction_section(result: dict[str, Any], budgets: list[float]) -> list[str]:
    """Mean over directions first, then each direction, then pooled (labelled)."""
    mean = result.get("direction_mean")
    blocks = _direction_blocks(result)
    if mean is None or len(blocks) < 2:
        return []
    dirs = list(blocks)
    lines = [
        "",
        f"## Per direction (mean over {len(dirs)} directions, as the paper reports)",
        "",
        "Each direction is routed on its own (its own top-k). *mean* is the mean over the "
        "directions of each per-direction value; *pooled* ranks all directions together (one "
        "budget for all traffic), which adds the easy signal of telling directions apart, so "
        "it is shown last and is not comparable with the paper's per-direction averages. "
        "HC@p = headroom closed, 100 (MeanDelta@p - mean gain) / (oracle MeanDelta@p - mean "
        "gain): random 0, oracle 100. Cells: value [95% CI].",
    ]
    for p in budgets:
        key = format(p, "g")
        header = ["router", "Spearman (mean)", f"HC@{key} (mean)", f"MeanDelta@{key} (mean)"]
        header += [f"HC {d}" for d in dirs] + ["HC pooled"]
        rows = []
        for name, res in mean["routers"].items():
            cell = res["budgets"][key]
            row = [
                name,
                fmt_stat(res["spearman"], 3),
                fmt_stat(cell["hc"]),
                fmt_stat(cell["mean_delta"]),
            ]
            row += [fmt_stat(blocks[d]["routers"][name]["budgets"][key]["hc"]) for d in dirs]
            row.append(fmt_stat(result["routers"][name]["budgets"][key]["hc"]))
            rows.append(row)
        oracle_md = mean["reference"]["oracle"][key]["mean_delta"]
        rows.append(
            ["*oracle*", "1.000", "100.00", fmt_stat(oracle_md)] + ["100.00"] * (len(dirs) + 1)
        )
        rows.append(
            ["*random*", "0.000", "0.00", fmt_stat(mean["reference"]["mean_gain"])]
            + ["0.00"] * (len(dirs) + 1)
        )
        lines += ["", f"### Budget p = {key}", ""] + _table(header, rows)
        lines += _paired_direction_table(result, key, dirs)
    return lines


def _paired_direction_table(result: dict[str, Any], key: str, dirs: list[str]) -> list[str]:
    mean_paired = result["direction_mean"].get("paired") or {}
    if not mean_paired:
        return []
    blocks = _direction_blocks(result)
    header = ["router", "baseline", f"ΔHC@{key} (mean)"]
    header += [f"ΔHC {d}" for d in dirs] + ["ΔHC pooled", f"ΔMeanDelta@{key} (mean)"]
    header += ["ΔSpearman (mean)"]
    rows = []
    for base, against in mean_paired.items():
        for name, diff in against.items():
            row = [name, base, fmt_diff(diff["budgets"][key]["hc"])]
            row += [fmt_diff(blocks[d]["paired"][base][name]["budgets"][key]["hc"]) for d in dirs]
            row.append(fmt_diff(result["paired"][base][name]["budgets"][key]["hc"]))
            row += [fmt_diff(diff["budgets"][key]["mean_delta"]), fmt_diff(diff["spearman"], 3)]
            rows.append(row)
    return [
        "",
        f"Paired differences at p = {key} (router - baseline on the same resamples; **bold**: "
        "the 95% interval lies above zero, the router beats the baseline):",
        "",
    ] + _table(header, rows)


def _paired_pooled_table(result: dict[str, Any], budgets: list[float]) -> list[str]:
    paired = result.get("paired") or {}
    if not paired:
        return []
    header = ["router", "baseline", "ΔSpearman"]
    for p in budgets:
        key = format(p, "g")
        header += [f"ΔHC@{key}", f"ΔMeanDelta@{key}"]
    rows = []
    for base, against in paired.items():
        for name, diff in against.items():
            row = [name, base, fmt_diff(diff["spearman"], 3)]
            for p in budgets:
                cell = diff["budgets"][format(p, "g")]
                row += [fmt_diff(cell["hc"]), fmt_diff(cell["mean_delta"])]
            rows.append(row)
    return [
        "",
        "### Paired differences, pooled",
        "",
        "Router - baseline on the same resamples; **bold**: the 95% interval lies above zero.",
        "",
    ] + _table(header, rows)


def _breakdown_section(key: str, subsets: dict[str, Any], budgets: list[float]) -> list[str]:
    """One breakdown key: a table per value, with the oracle's row last."""
    lines = ["", f"## Breakdown by {key}", ""]
    header = ["router"] + ["Spearman", "APGR"]
    header += [f"HitRate@{format(p, 'g')}" for p in budgets]
    header += [f"MeanDelta@{format(p, 'g')}" for p in budgets]
    header += [f"HC@{format(p, 'g')}" for p in budgets]
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
            cells = [res["budgets"][format(p, "g")] for p in budgets]
            row += [fmt(c["hit_rate"]["value"]) for c in cells]
            row += [fmt(c["mean_delta"]["value"]) for c in cells]
            row += [fmt(c.get("hc", {}).get("value")) for c in cells]
            rows.append(row)
        oracle = ["*oracle*", "1.000", "1.000"]
        oracle += [fmt(ref["oracle"][format(p, "g")]["hit_rate"]["value"]) for p in budgets]
        oracle += [fmt(ref["oracle"][format(p, "g")]["mean_delta"]["value"]) for p in budgets]
        oracle += ["100.00"] * len(budgets)
        rows.append(oracle)
        lines += _table(header, rows)
    return lines


def render_markdown(result: dict[str, Any], figures: list[str] | None = None) -> str:
    """The report as Markdown: settings, per-direction numbers (mean over directions first,
    with paired differences against the baselines), then pooled tables per budget, the curve
    summary and the breakdowns."""
    metric = result.get("metric", "quality")
    settings = result.get("settings", {})
    boot = settings.get("bootstrap", {})
    budgets = result["budgets"]
    paired = settings.get("paired", {})
    dirs = list(_direction_blocks(result))
    lines = [
        "# Routing evaluation",
        "",
        f"- test set: {result['n']} segments in {result['n_groups']} source groups"
        + (f", {len(dirs)} directions ({', '.join(dirs)})" if dirs else ""),
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
    if paired:
        line = f"- paired baselines: {', '.join(paired.get('baselines') or []) or 'none'}"
        if paired.get("missing"):
            line += f" (not among the routers, so not compared: {', '.join(paired['missing'])})"
        lines.append(line)
    for key, value in (result.get("run") or {}).items():
        text = plain(value)
        if text:  # nothing to say (None, empty): no line, rather than a Python repr
            lines.append(f"- {key.replace('_', ' ')}: {text}")
    lines += _per_direction_section(result, budgets)
    pooled_title = "## Pooled: all directions ranked together"
    if len(dirs) == 1:
        pooled_title = f"## All segments (one direction, {dirs[0]}: pooled = per direction)"
    lines += ["", pooled_title, "", "### Reference", ""] + _reference_lines(result, metric)
    lines += ["", "### Metrics per budget (pooled)", "", "Cells: value [95% CI]."]
    lines += _budget_tables(result, budgets, metric)
    lines += _paired_pooled_table(result, budgets)
    lines += ["", "### Quality-budget curves (pooled)", ""]
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
        lines += _breakdown_section(key, subsets, budgets)
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


BUDGET_METRICS = ("hit_rate", "mean_delta", "hc", "hybrid_quality", "severe_loss")


def summary(result: dict) -> dict:
    """The headline numbers (what the CLI prints with ``--json``): per router and budget, the
    pooled values, and with several directions the per-direction view of ``headline``."""
    from routelmt.evaluation.compare import headline

    out: dict = {"n": result["n"], "metric": result["metric"], "routers": {}}
    for name, router in result["routers"].items():
        row = {"spearman": router["spearman"]["value"], "apgr": router["apgr"]["value"]}
        for key, cell in router["budgets"].items():
            row[f"p={key}"] = {m: (cell.get(m) or {}).get("value") for m in BUDGET_METRICS}
        out["routers"][name] = row
    if "paired" in result:
        out["headline"] = headline(result)
    return out


def _num(value: float | None, width: int, digits: int, sign: bool = False) -> str:
    if value is None:
        return f"{'-':>{width}}"
    return f"{value:>+{width}.{digits}f}" if sign else f"{value:>{width}.{digits}f}"


def _interval(stat: dict | None, digits: int = 1, sign: bool = False) -> str:
    """``45.1 [40.2, 50.0]`` (with a trailing ``*`` when a paired interval lies above zero)."""
    if not stat or stat.get("value") is None:
        return "-"
    f = f"+.{digits}f" if sign else f".{digits}f"
    text = format(stat["value"], f)
    if stat.get("ci_low") is not None and stat.get("ci_high") is not None:
        text += f" [{format(stat['ci_low'], f)}, {format(stat['ci_high'], f)}]"
    return text + (" *" if stat.get("beats") else "")


def headline_table(result: dict) -> str:
    """Per direction first, for terminals: HC at the headline budget per router (mean over
    directions with its interval, each direction, pooled last), then the paired differences in
    HC against each baseline. Empty when the result has fewer than two directions and no
    baseline to compare with."""
    budgets = result["budgets"]
    p = headline_budget(budgets)
    key = format(p, "g")
    blocks = _direction_blocks(result)
    mean = result.get("direction_mean")
    dirs = list(blocks) if mean is not None and len(blocks) >= 2 else []
    lines: list[str] = []
    width = max([22] + [len(n) + 2 for n in result["routers"]])
    if dirs:
        lines.append(
            f"HC@{key} (headroom closed, %): mean over {len(dirs)} directions [95% CI], "
            "each direction, then pooled"
        )
        head = f"{'router':<{width}}{'mean [95% CI]':<24}"
        head += "".join(f"{d:>9}" for d in dirs) + f"{'pooled':>9}"
        lines += [head, "-" * len(head)]
        for name, res in mean["routers"].items():
            line = f"{name:<{width}}{_interval(res['budgets'][key]['hc']):<24}"
            for d in dirs:
                line += _num(blocks[d]["routers"][name]["budgets"][key]["hc"]["value"], 9, 1)
            line += _num(result["routers"][name]["budgets"][key]["hc"]["value"], 9, 1)
            lines.append(line)
    paired = (mean or {}).get("paired") if dirs else result.get("paired")
    for base, against in (paired or {}).items():
        scope = f"mean over {len(dirs)} directions" if dirs else "pooled"
        lines += [
            "",
            f"paired vs {base}, HC@{key} points ({scope} [95% CI]; * = interval above zero)",
        ]
        head = f"{'router':<{width}}{'difference':<26}"
        if dirs:
            head += "".join(f"{d:>9}" for d in dirs) + f"{'pooled':>9}"
        lines += [head, "-" * len(head)]
        for name, diff in against.items():
            line = f"{name:<{width}}{_interval(diff['budgets'][key]['hc'], sign=True):<26}"
            if dirs:
                for d in dirs:
                    cell = blocks[d]["paired"][base][name]["budgets"][key]["hc"]
                    line += f"{_num(cell['value'], 8, 1, sign=True)}{'*' if cell['beats'] else ' '}"
                cell = result["paired"][base][name]["budgets"][key]["hc"]
                line += f"{_num(cell['value'], 8, 1, sign=True)}{'*' if cell['beats'] else ' '}"
            lines.append(line)
    return "\n".join(lines)


def summary_table(result: dict) -> str:
    """A compact text table for terminals: the per-direction headline first (when there are
    several directions or baselines), then one pooled row per router and budget."""
    head = f"{'router':<22}{'p':>5}{'Spearman':>10}{'HitRate':>9}{'MeanDelta':>11}{'HC%':>8}"
    head += f"{'Hybrid':>9}{'Severe%':>9}{'APGR':>7}"
    lines = [f"n = {result['n']}, metric = {result['metric']}"]
    top = headline_table(result) if "paired" in result else ""
    if top:
        lines += [top, ""]
    n_dirs = len(_direction_blocks(result))
    lines.append("pooled (all directions ranked together)" if n_dirs > 1 else "all segments")
    lines += [head, "-" * len(head)]

    def fmt(value: float | None, width: int, digits: int) -> str:
        return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"

    for name, router in result["routers"].items():
        for key, cell in router["budgets"].items():
            lines.append(
                f"{name:<22}{key:>5}"
                + fmt(router["spearman"]["value"], 10, 3)
                + fmt(cell["hit_rate"]["value"], 9, 2)
                + fmt(cell["mean_delta"]["value"], 11, 2)
                + fmt((cell.get("hc") or {}).get("value"), 8, 1)
                + fmt(cell["hybrid_quality"]["value"], 9, 2)
                + fmt(cell["severe_loss"]["value"], 9, 2)
                + fmt(router["apgr"]["value"], 7, 3)
            )
    return "\n".join(lines)
