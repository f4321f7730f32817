"""``routelmt train``: fit a router on gain labels and save its artifact; with ``--init``,
refit a trained router on the new labels (``routelmt.routers.adapt``)."""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from routelmt.commands._common import add_label_args, load_examples, parse_router_args


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "train",
        help="train a router (routelmt, routelmt-q, routelmt-lora, external-delta, ...)",
        description="Fit a trainable router on all the given labels and save it as an artifact "
        "(router.json + safetensors). For held-out numbers use `routelmt evaluate`, which "
        "cross-validates trainable routers by source group. With --init ARTIFACT (a folder or "
        "shipped:NAME) the artifact's ridge heads are refit toward its own weights on these "
        "labels (strength chosen by grouped CV on them): few labels of a new direction or "
        "domain go further than training from scratch.",
    )
    add_label_args(parser)
    parser.add_argument("--router", default=None, help="registered router name (default: routelmt)")
    parser.add_argument(
        "--router-arg",
        action="append",
        metavar="KEY=VALUE",
        help="router setting, e.g. layer=9, pooling=mean, model=smollm2-135m (repeatable)",
    )
    parser.add_argument(
        "--init",
        metavar="ARTIFACT",
        help="adapt this trained router (folder or shipped:NAME: routelmt, routelmt-q, "
        "routelmt-2stage) instead of training from scratch; it keeps the artifact's model, "
        "layer and inputs",
    )
    parser.add_argument(
        "--init-strength",
        default="auto",
        metavar="auto|keep|LAMBDA",
        help="with --init: the prior's strength; auto (default) chooses it by grouped CV on "
        "the new labels, keep keeps the init's weights (refits only the intercept), a number "
        "fixes it",
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="artifact folder")
    return parser


def _strengths(text: str) -> tuple[tuple[float, ...], bool]:
    """``--init-strength`` -> (strengths to try, whether the rescaled and from-scratch centres
    compete with the init's weights as they are)."""
    from routelmt.adaptation import DEFAULT_STRENGTHS
    from routelmt.errors import ConfigError

    if text == "auto":
        return DEFAULT_STRENGTHS, True
    if text == "keep":
        return (math.inf,), False
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0 or not math.isfinite(value):
        raise ConfigError(
            f"--init-strength: expected auto, keep or a positive number, got '{text}'"
        )
    return (value,), False


def _adapt(args: argparse.Namespace, examples: list) -> object:
    from routelmt.errors import ConfigError
    from routelmt.routers.adapt import adapt_router
    from routelmt.routers.artifacts import load_router

    if args.router_arg:
        raise ConfigError(
            "--router-arg does not apply with --init: the adapted router keeps "
            "the init's settings (model, layer, inputs)"
        )
    strengths, scratch = _strengths(args.init_strength)
    init = load_router(args.init)
    if args.router is not None and args.router != init.name:
        raise ConfigError(f"--router {args.router} but the --init artifact is a '{init.name}'")
    init.prepare(examples)
    return adapt_router(
        init,
        examples,
        init_name=str(args.init),
        strengths=strengths,
        scratch=scratch,
        rescale=scratch,
    )


def run(args: argparse.Namespace) -> int:
    from routelmt.errors import ConfigError
    from routelmt.routers import get_router, require
    from routelmt.routers.artifacts import save_router

    if args.init is None and args.init_strength != "auto":
        raise ConfigError("--init-strength needs --init")
    examples = load_examples(args)
    started = time.perf_counter()
    if args.init is not None:
        router = _adapt(args, examples)
    else:
        name = args.router or "routelmt"
        router_args = parse_router_args(args.router_arg, default_router=name)
        router = get_router(name, **router_args.get(name, {}))
        if not router.trainable:
            raise ConfigError(f"router '{name}' has nothing to train")
        require(router, "save", "routelmt train (its artifact could not be written)")
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
