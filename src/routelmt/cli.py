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
    "report",
    "serve",
]

log = logging.getLogger("routelmt")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="routelmt",
        description="Budgeted hybrid LLM translation with a learned in-model router.",
    )
    parser.add_argument("--version", action="version", version=f"routelmt {__version__}")
    _add_global_flags(parser, default=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"routelmt.commands.{name.replace('-', '_')}")
        sub_parser = module.add_parser(sub)
        # the same flags after the subcommand; SUPPRESS keeps a flag given before it
        _add_global_flags(sub_parser, default=argparse.SUPPRESS)
        sub_parser.set_defaults(_run=module.run)
    return parser


def _add_global_flags(parser: argparse.ArgumentParser, *, default: object) -> None:
    group = parser.add_argument_group("output")
    group.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=default,
        help="no progress bars, warnings and errors only",
    )
    group.add_argument(
        "-v", "--verbose", action="store_true", default=default, help="debug logging"
    )


def configure_logging(*, quiet: bool = False, verbose: bool = False) -> None:
    """Warnings from everyone; routelmt's own progress lines at INFO unless ``quiet``.

    Third-party loggers (matplotlib's font manager, httpx, urllib3, ...) stay at WARNING even
    with ``--verbose``, which turns on routelmt's DEBUG lines only. Every line goes through
    ``redact.LogHygiene``.
    """
    from routelmt.redact import install_log_hygiene

    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    install_log_hygiene()  # credentials masked, client text escaped, in every line
    logging.getLogger().setLevel(logging.WARNING)
    ours = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    log.setLevel(ours)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(quiet=args.quiet, verbose=args.verbose)
    if args.quiet:
        from routelmt import progress

        progress.set_enabled(False)
    try:
        return int(args._run(args) or 0)
    except RouteLMTError as exc:
        print(f"routelmt {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the environment, not a bug: a path, a permission, a full disk
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"routelmt {args.command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except UnicodeDecodeError as exc:
        print(f"routelmt {args.command}: error: input is not UTF-8 text ({exc})", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"routelmt {args.command}: interrupted; finished stages are kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
