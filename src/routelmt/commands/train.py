"""``routelmt train``: fit a router on gain labels and save its artifact."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from routelmt.commands._common import add_label_args, load_examples, parse_router_args


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "train",
        help="train a router (routelmt, routelmt-q, routelmt-lora, external-delta, ...)",
        description="Fit a trainable router on all the given labels and save it as an artifact "
        "(router.json + safetensors). For held-out numbers use `routelmt evaluate`, which "
        "cross-validates trainable routers by source group.",
    )
    add_label_args(parser)
    parser.add_argument("--router", default="routelmt", help="registered router name")
    parser.add_argument(
        "--router-arg",
        action="append",
        metavar="KEY=VALUE",
        help="router setting, e.g. layer=9, pooling=mean, model=smollm2-135m (repeatable)",
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="artifact folder")
    return parser


def run(args: argparse.Namespace) -> int:
    from routelmt.errors import ConfigError
    from routelmt.routers import get_router, require
    from routelmt.routers.artifacts import save_router

    examples = load_examples(args)
    router_args = parse_router_args(args.router_arg, default_router=args.router)
    router = get_router(args.router, **router_args.get(args.router, {}))
    if not router.trainable:
        raise ConfigError(f"router '{args.router}' has nothing to train")
    require(router, "save", "routelmt train (its artifact could not be written)")
    started = time.perf_counter()
    router.prepare(examples)
    router.fit(examples)
    seconds = time.perf_counter() - started
    path = save_router(router, args.output)
    summary = json.loads((path / "router.json").read_text(encoding="utf-8"))
    summary["train_seconds"] = round(seconds, 1)
    summary["n_train"] = len(examples)
    print(json.dumps(summary, indent=2))
    print(f"saved {path}")
    return 0
