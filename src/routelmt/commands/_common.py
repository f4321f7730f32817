"""Argument groups and loaders shared by several subcommands."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from routelmt.errors import ConfigError
from routelmt.records import ScoredExample

log = logging.getLogger(__name__)


def parse_budgets(text: str) -> list[float]:
    """``0.1,0.3`` -> [0.1, 0.3]; every budget must lie strictly between 0 and 1."""
    budgets: list[float] = []
    for part in text.split(","):
        try:
            value = float(part)
        except ValueError:
            raise ConfigError(f"--budgets: '{part}' is not a number") from None
        if not 0.0 < value < 1.0:
            raise ConfigError(f"--budgets: {part} is outside (0, 1); a budget is a share, e.g. 0.3")
        budgets.append(value)
    return budgets


def parse_kv(items: list[str] | None, flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{flag}: expected KEY=VALUE, got '{item}'")
        out[key.replace("-", "_") if "." not in key else key] = value
    return out


def _coerce(value: str) -> object:
    """CLI values: ints, floats, booleans and 'none' become Python values; the rest stay strings."""
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def parse_router_args(
    items: list[str] | None, *, default_router: str | None = None
) -> dict[str, dict[str, object]]:
    """``routelmt.layer=9`` -> {"routelmt": {"layer": 9}}; ``layer=9`` goes to default_router."""
    out: dict[str, dict[str, object]] = {}
    for key, value in parse_kv(items, "--router-arg").items():
        router, dot, setting = key.rpartition(".")
        if not dot:
            if default_router is None:
                raise ConfigError(f"--router-arg: name the router, e.g. routelmt.{key}={value}")
            router, setting = default_router, key
        out.setdefault(router, {})[setting] = _coerce(value)
    return out


def add_label_args(
    parser: argparse.ArgumentParser, *, required: bool = True, input_help: str | None = None
) -> None:
    group = parser.add_argument_group("labels (which data, which two systems, which metric)")
    group.add_argument(
        "-i",
        "--input",
        type=Path,
        help=input_help or "labelled JSONL from `routelmt data` (skips the rest)",
    )
    group.add_argument(
        "--wmt-root",
        type=Path,
        help="WMT system-outputs folder (default: ../shared/data/wmt24, "
        "else downloaded from the official repository)",
    )
    group.add_argument("--pairs", default="en-es", help="comma-separated pairs, or 'all'")
    group.add_argument("--small", default="Phi-3-Medium", help="small system (backend spec)")
    group.add_argument("--large", default="GPT-4", help="large system (backend spec)")
    group.add_argument("--metric", default="chrf", help="quality metric (chrf, bleu, comet, ...)")
    group.add_argument(
        "--metric-arg", action="append", metavar="KEY=VALUE", help="metric setting (repeatable)"
    )
    group.add_argument("--limit", type=int, help="first N segments of each pair (quick runs)")


def load_examples(args: argparse.Namespace) -> list[ScoredExample]:
    """Labelled examples from ``--input`` or built from the data flags (cached)."""
    from routelmt.labels import read_labels, wmt_labels

    if args.input is not None:
        return read_labels(args.input)
    return wmt_labels(
        pairs=args.pairs,
        small=args.small,
        large=args.large,
        metric=args.metric,
        metric_args=parse_kv(args.metric_arg, "--metric-arg"),
        root=args.wmt_root,
        limit=args.limit,
    )


def add_help_config(parser: argparse.ArgumentParser, schema: str, env_example: str) -> None:
    """``--help-config``: print every config key of ``schema`` (``module:Class``) with its
    default and help, then exit, like ``--help`` does for the flags."""

    class HelpConfig(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
            import importlib
            import json

            from routelmt.settings import describe

            module, _, name = schema.partition(":")
            rows = describe(getattr(importlib.import_module(module), name))
            width = max(len(dotted) for dotted, _, _ in rows)
            for dotted, text, default in rows:
                print(f"{dotted:<{width}}  {text} (default: {json.dumps(default)})")
            print(f"\nany key can also be set in the environment, e.g. {env_example}")
            parser.exit()

    parser.add_argument(
        "--help-config", nargs=0, action=HelpConfig, help="list every config key and exit"
    )
