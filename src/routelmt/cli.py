"""``routelmt <command>``: parses arguments, configures logging, and calls the library.

Each subcommand lives in ``routelmt.commands.<name>`` with ``add_parser`` and ``run``.
Errors the user can fix (``RouteLMTError``) print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from routelmt import __version__
from routelmt.errors import RouteLMTError

COMMANDS: list[str] = [
    "data",
    "evaluate",
    "featurize",
    "train",
    "calibrate",
    "translate",
    "bench",
    "serve",
]

log = logging.getLogger("routelmt")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="routelmt",
        description="Budgeted hybrid LLM translation with a learned in-model router.",
    )
    parser.add_argument("--version", action="version", version=f"routelmt {__version__}")
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bars, warnings only"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"routelmt.commands.{name.replace('-', '_')}")
        sub_parser = module.add_parser(sub)
        sub_parser.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    if args.quiet:
        from routelmt import progress

        progress.set_enabled(False)
    try:
        return int(args._run(args) or 0)
    except RouteLMTError as exc:
        print(f"routelmt {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"routelmt {args.command}: interrupted; finished stages are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
