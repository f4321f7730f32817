"""Compact Markdown tables from the ablation JSONs (router_ablation.py, two_stage_ablation.py).

    python bench/ablation_report.py runs/ablation/in-model-gpt4.json --versus length,entropy

Per direction first: HC@p with its 95% interval, then the paired difference to each baseline
(interval; **beats** when it lies above zero), then the mean over directions.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def tables(result: dict, versus: list[str], rows: list[str] | None = None) -> str:
    dirs = list(result["directions"])
    names = rows or sorted(result["mean_hc"], key=lambda n: -result["mean_hc"][n])
    head = ["router", *[f"{d} HC@0.3" for d in dirs], "mean HC"]
    for v in versus:
        head += [f"{d}: minus {v}" for d in dirs]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in names:
        cells = [name]
        for d in dirs:
            r = result["directions"][d]["routers"][name]
            cells.append(f"{r['hc']:.1f} [{r['hc_ci'][0]:.0f}, {r['hc_ci'][1]:.0f}]")
        cells.append(f"**{result['mean_hc'][name]:.1f}**")
        for v in versus:
            for d in dirs:
                vs = result["directions"][d]["routers"][name]["vs"].get(v)
                if vs is None:
                    cells.append("—")
                    continue
                text = f"{vs['hc']:+.1f} [{vs['hc_ci'][0]:+.0f}, {vs['hc_ci'][1]:+.0f}]"
                cells.append(f"**{text}**" if vs["beats"] else text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("--versus", default="length")
    parser.add_argument("--rows", default=None, help="router names to show, in order (| sep)")
    args = parser.parse_args()
    report = json.loads(args.report.read_text(encoding="utf-8"))
    rows = args.rows.split("|") if args.rows else None
    for key, result in report.items():
        if not isinstance(result, dict) or "directions" not in result:
            continue
        print(f"#### {key}\n")
        print(tables(result, args.versus.split(","), rows))
        split = result.get("split")
        if split:
            print("| stage-1 share of the budget | mean HC | small decodes / request | wasted |")
            print("|---|---|---|---|")
            for alpha, row in split.items():
                print(
                    f"| {alpha} | {row['mean_hc']:.1f} | {row['small_decodes_per_request']:.2f}"
                    f" | {row['wasted_small_decodes_per_request']:.2f} |"
                )
            print()


if __name__ == "__main__":
    main()
