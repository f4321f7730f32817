"""A bench run as one self-contained HTML file: curves, per-direction HC and paired differences.

Everything is inline (SVG charts, one ``<style>``, no script, no link out), so the file opens
offline, attaches to a mail, and shows the same numbers as the run's ``metrics.json``: each
table cell carries its value and interval as ``data-`` attributes beside the text.
"""

from __future__ import annotations

import datetime as _dt
import html
import os
from pathlib import Path
from typing import Any

from routelmt.errors import InputError
from routelmt.evaluation.html_svg import curves_svg, legend_html
from routelmt.evaluation.report import fmt, fmt_stat, headline_budget
from routelmt.storage import atomic_open, read_json

STYLE = """
body { font: 14px/1.45 system-ui, "DejaVu Sans", sans-serif; color: #1d2330; margin: 24px;
  max-width: 1280px; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 28px; } h3 { font-size: 15px; }
table { border-collapse: collapse; margin: 8px 0 16px; }
th, td { border-bottom: 1px solid #e1e5ec; padding: 3px 9px; text-align: right;
  font-variant-numeric: tabular-nums; }
th:first-child, td:first-child, td.name { text-align: left; }
th { background: #f4f6f9; }
td.beats { font-weight: 700; color: #136b13; }
.charts { display: flex; flex-wrap: wrap; gap: 14px; }
.chart { border: 1px solid #e1e5ec; padding: 6px; }
.chart h3 { margin: 2px 0 4px; }
svg.curves { width: 640px; max-width: 100%; height: auto; }
.small svg.curves { width: 400px; }
.grid { stroke: #eceff3; } .tick { font-size: 11px; fill: #5d6678; }
.label { font-size: 12px; fill: #3b465c; }
.curve { stroke-linejoin: round; } .band { opacity: 0.13; stroke: none; }
.ci { stroke-width: 1.2; opacity: 0.8; } .reference { stroke-width: 1.2; }
.legend { list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: 4px 16px; }
.swatch { display: inline-block; width: 14px; height: 10px; margin-right: 6px; }
.swatch.line { height: 0; width: 22px; vertical-align: middle; }
.note { color: #5d6678; font-size: 13px; }
"""


def find_results(run_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """The ``metrics.json`` of a run: ``RUN_DIR/metrics.json`` (``routelmt evaluate``) or one
    per large system, ``RUN_DIR/report/<large>/metrics.json`` (``routelmt bench``)."""
    root = Path(run_dir)
    if not root.is_dir():
        raise InputError(f"not a folder: {root}")
    if (root / "metrics.json").is_file():
        return {root.name: root / "metrics.json"}
    found = sorted((root / "report").glob("*/metrics.json"))
    if not found:
        raise InputError(
            f"no metrics.json in {root} (expected {root}/metrics.json from `routelmt evaluate` "
            f"or {root}/report/<large>/metrics.json from `routelmt bench`)"
        )
    return {path.parent.name: path for path in found}


def load_result(path: Path) -> dict[str, Any]:
    result = read_json(path)
    missing = [k for k in ("budgets", "routers", "curves", "n") if k not in (result or {})]
    if not isinstance(result, dict) or missing:
        raise InputError(f"not an evaluation result (missing {', '.join(missing)})", path=str(path))
    return result


def _attrs(stat: dict[str, Any] | None) -> str:
    stat = stat or {}
    keys = ("value", "ci_low", "ci_high")
    return " ".join(
        f'data-{k.replace("_", "-")}="{"" if stat.get(k) is None else stat[k]}"' for k in keys
    )


def _stat_cell(stat: dict[str, Any] | None, digits: int = 2) -> str:
    return f"<td {_attrs(stat)}>{html.escape(fmt_stat(stat or {}, digits))}</td>"


def _diff_cell(stat: dict[str, Any] | None, digits: int = 2) -> str:
    """A paired difference; bold green when its whole interval lies above zero."""
    if not stat or stat.get("value") is None:
        return "<td>n/a</td>"
    text = f"{stat['value']:+.{digits}f}"
    if stat.get("ci_low") is not None and stat.get("ci_high") is not None:
        text += f" [{stat['ci_low']:+.{digits}f}, {stat['ci_high']:+.{digits}f}]"
    cls = ' class="beats"' if stat.get("beats") else ""
    return f"<td{cls} {_attrs(stat)}>{html.escape(text)}</td>"


def _table(table_id: str, header: list[str], rows: list[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(rows)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _row(name: str, cells: list[str], **data: str) -> str:
    extra = "".join(f' data-{k}="{html.escape(v)}"' for k, v in data.items())
    return f'<tr{extra}><td class="name">{html.escape(name)}</td>{"".join(cells)}</tr>'


def _pooled_table(result: dict[str, Any], label: str) -> str:
    budgets = [format(p, "g") for p in result["budgets"]]
    header = ["router", "Spearman", "AUC", "APGR"]
    header += [f"HC@{p} (%)" for p in budgets] + [f"hybrid quality@{p}" for p in budgets]
    rows = []
    for name, res in result["routers"].items():
        cells = [_stat_cell(res["spearman"], 3), _stat_cell(res["auc"]), _stat_cell(res["apgr"], 3)]
        cells += [_stat_cell(res["budgets"][p].get("hc")) for p in budgets]
        cells += [_stat_cell(res["budgets"][p].get("hybrid_quality")) for p in budgets]
        rows.append(_row(name, cells, router=name))
    return _table(f"pooled-{label}", header, rows)


def _directions(result: dict[str, Any]) -> dict[str, Any]:
    """The per-direction blocks, when there are several (one direction: pooled says it all)."""
    blocks = (result.get("breakdowns") or {}).get("direction") or {}
    return blocks if len(blocks) >= 2 else {}


def _direction_table(result: dict[str, Any], key: str, label: str) -> str:
    """HC@p per direction, their mean (the paper's averaging) and the pooled value."""
    mean = result["direction_mean"]
    blocks = result["breakdowns"]["direction"]
    dirs = list(blocks)
    header = ["router", "Spearman (mean)", f"HC@{key} (mean)"]
    header += [f"HC {d}" for d in dirs] + ["HC pooled"]
    rows = []
    for name, res in mean["routers"].items():
        cells = [_stat_cell(res["spearman"], 3), _stat_cell(res["budgets"][key]["hc"])]
        cells += [_stat_cell(blocks[d]["routers"][name]["budgets"][key]["hc"]) for d in dirs]
        cells.append(_stat_cell(result["routers"][name]["budgets"][key]["hc"]))
        rows.append(_row(name, cells, router=name))
    return _table(f"hc-{label}-{key}", header, rows)


def _paired_table(result: dict[str, Any], key: str, label: str) -> str:
    """Router - baseline on the same resamples: the mean over directions, each direction and
    pooled, HC@p; empty without paired baselines."""
    mean_paired = (result.get("direction_mean") or {}).get("paired") or {}
    blocks = _directions(result)
    dirs = list(blocks) if mean_paired else []
    pooled = result.get("paired") or {}
    header = ["router", "baseline"]
    header += ([f"ΔHC@{key} (mean)"] if dirs else []) + [f"ΔHC {d}" for d in dirs]
    header += [f"ΔHC@{key} pooled", "ΔSpearman pooled"]
    rows = []
    for base, against in pooled.items():
        for name, diff in against.items():
            cells = [f'<td class="name">{html.escape(base)}</td>']
            if dirs:
                cells.append(_diff_cell(mean_paired[base][name]["budgets"][key]["hc"]))
                cells += [
                    _diff_cell(blocks[d]["paired"][base][name]["budgets"][key]["hc"]) for d in dirs
                ]
            cells += [_diff_cell(diff["budgets"][key]["hc"]), _diff_cell(diff["spearman"], 3)]
            rows.append(_row(name, cells, router=name, baseline=base))
    return _table(f"paired-{label}-{key}", header, rows) if rows else ""


def _charts(result: dict[str, Any]) -> str:
    names = list(result["curves"]["routers"])
    parts = ['<div class="charts">', '<div class="chart" id="chart-pooled">']
    parts += ["<h3>pooled</h3>", curves_svg(result), "</div>"]
    for direction, block in _directions(result).items():
        safe = html.escape(direction)
        parts += [f'<div class="chart small" id="chart-{safe}"><h3>{safe} (n = {block["n"]})</h3>']
        parts += [curves_svg(block, width=400, height=260), "</div>"]
    parts += ["</div>", legend_html(names)]
    return "\n".join(parts)


def _settings(result: dict[str, Any]) -> str:
    boot = (result.get("settings") or {}).get("bootstrap") or {}
    ref = result.get("reference") or {}
    items = [
        f"{result['n']} segments, {result.get('n_groups')} source groups",
        f"quality metric: {result.get('metric', 'quality')}",
        f"small: {', '.join(result.get('small_systems', []))}; "
        f"large: {', '.join(result.get('large_systems', []))}",
        f"small-only {fmt((ref.get('small_only') or {}).get('value'))}, large-only "
        f"{fmt((ref.get('large_only') or {}).get('value'))}",
        f"intervals: {int(boot.get('level', 0.95) * 100)}% bootstrap, {boot.get('n')} resamples "
        f"by {boot.get('unit', 'group')}",
    ]
    return "<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>"


def result_section(label: str, result: dict[str, Any]) -> str:
    """One large system's results: settings, charts, HC per direction, paired differences."""
    safe = html.escape(label)
    parts = [f'<section id="run-{safe}"><h2>{safe}</h2>', _settings(result), _charts(result)]
    parts.append(
        '<p class="note">Lines: hybrid quality against the budget. Band and bars: the 95% '
        "bootstrap interval of hybrid quality at each evaluated budget. A router has the same "
        "colour in every chart and in the PNG figures.</p>"
    )
    parts += ["<h3>Pooled</h3>", _pooled_table(result, label)]
    headline = format(headline_budget(result["budgets"]), "g")
    for key in [format(p, "g") for p in result["budgets"]]:
        if result.get("direction_mean") and _directions(result):
            parts += [f"<h3>HC@{key} per direction</h3>", _direction_table(result, key, label)]
        paired = _paired_table(result, key, label)
        if paired:
            parts += [f"<h3>Paired differences at p = {key}</h3>", paired]
    parts.append(
        f'<p class="note">HC@p: share of the oracle\'s headroom a router closes (random 0, oracle '
        f"100); headline budget {headline}. Paired: router - baseline on the same resamples; "
        "bold green: the whole interval lies above zero.</p></section>"
    )
    return "\n".join(parts)


def render_html(results: dict[str, dict[str, Any]], title: str) -> str:
    generated = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = "\n".join(result_section(label, res) for label, res in results.items())
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{body}"
        f'<p class="note">Generated {generated} by routelmt report from metrics.json.</p>'
        "</body></html>\n"
    )


def write_html_report(
    run_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None
) -> Path:
    """Write ``report.html`` (default: in ``run_dir``) from the run's metrics; returns it."""
    paths = find_results(run_dir)
    results = {label: load_result(path) for label, path in paths.items()}
    target = Path(out) if out is not None else Path(run_dir) / "report.html"
    with atomic_open(target) as handle:
        handle.write(render_html(results, f"Routing evaluation: {Path(run_dir).resolve().name}"))
    return target
