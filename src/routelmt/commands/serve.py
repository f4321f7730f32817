"""``routelmt serve``: the hybrid translation service (FastAPI + uvicorn)."""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from routelmt.commands._common import add_help_config

log = logging.getLogger(__name__)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "serve",
        help="serve hybrid translation over HTTP (OpenAI-compatible)",
        description="Routes each request to the small or the large translator under a budget. "
        "Settings: embedded defaults (configs/serve.yaml) <- --config <- flags.",
    )
    parser.add_argument("--config", type=Path, help="YAML config (default: the embedded one)")
    parser.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=_port, help="port (default 8000)")
    parser.add_argument("--small", help="small backend spec, e.g. hf:gemma3-270m")
    parser.add_argument("--large", help="large backend spec, e.g. openai:http://h:8000/v1#model")
    parser.add_argument("--router", help="router name (length, random, routelmt, ...)")
    parser.add_argument("--router-path", help="a trained router artifact (from routelmt train)")
    parser.add_argument("--budget", type=float, help="share of requests for the large model")
    parser.add_argument(
        "--hard-cap",
        type=float,
        help="the most large-model requests ever sent, an absolute count (a whole number; with "
        "cost_share or tiers, cost units); not a share: that is --budget",
    )
    parser.add_argument(
        "--budget-store", help="SQLite file holding the budget shared by several replicas"
    )
    parser.add_argument(
        "--log", dest="log_path", help="decision log (JSONL; default: in the state directory)"
    )
    parser.add_argument("--no-log", action="store_true", help="keep no decision log")
    parser.add_argument(
        "--log-text",
        action="store_true",
        help="write source and translation texts into the decision log (default: hashes)",
    )
    parser.add_argument(
        "--api-key-file",
        help="file with the API keys clients must send (one per line); "
        "or set $ROUTELMT_API_KEY (comma-separated)",
    )
    parser.add_argument(
        "--allowed-host",
        action="append",
        dest="allowed_hosts",
        help="a Host name to answer (repeatable; '*' for any; default: loopback names when "
        "bound to loopback)",
    )
    parser.add_argument(
        "--allow-policy-override",
        action="store_true",
        help="let requests force the small or the large model (still under the hard cap)",
    )
    parser.add_argument("--no-batching", action="store_true", help="one segment per forward pass")
    parser.add_argument("--max-batch-size", type=int, help="segments per small-model batch")
    parser.add_argument("--max-wait-ms", type=float, help="how long a batch waits to fill")
    parser.add_argument("--large-timeout", type=_positive, help="seconds before a large call fails")
    parser.add_argument(
        "--print-config", action="store_true", help="print the merged config and exit"
    )
    add_help_config(
        parser, "routelmt.serve.config:ServeSettings", "ROUTELMT_SERVE__SERVER__PORT=9000"
    )
    parser.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="serve on Ray Serve (pip install 'routelmt[ray]'): --replicas copies behind "
        "Serve's HTTP proxy on --host/--port, one budget actor for all; ADDRESS: 'auto', "
        "host:port, 'local' for a new local instance, or none for Ray's default",
    )
    parser.add_argument(
        "--replicas", type=_count, default=2, help="replicas with --ray (default 2)"
    )
    parser.add_argument(
        "--replica-cpus", type=_cpus, default=1.0, help="CPUs per replica with --ray"
    )
    return parser


def _bounded(convert: Callable[[str], Any], ok: Callable[[Any], bool], what: str):
    """An argparse type: ``convert`` the text and accept the value only where ``ok``."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
        return value

    return parse


_cpus = _bounded(float, lambda v: 0 < v < math.inf, "a positive number of CPUs")
_count = _bounded(int, lambda v: v >= 1, "a whole number of at least 1")
_port = _bounded(int, lambda v: 0 <= v <= 65535, "a port number between 0 and 65535")
_positive = _bounded(float, lambda v: 0 < v < math.inf, "a positive number of seconds")


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    server: dict[str, Any] = {}
    budget: dict[str, Any] = {}
    for key in ("host", "port", "log_path", "max_batch_size", "max_wait_ms"):
        if getattr(args, key, None) is not None:
            server[key] = getattr(args, key)
    if args.no_batching:
        server["batching"] = False
    if getattr(args, "no_log", False):
        if args.log_path:
            from routelmt.errors import ConfigError

            raise ConfigError("give --log or --no-log, not both")
        server["log_path"] = None
    for key in ("log_text", "allow_policy_override"):
        if getattr(args, key, False):
            server[key] = True
    if getattr(args, "api_key_file", None):
        server["api_key_file"] = args.api_key_file
    if getattr(args, "allowed_hosts", None):
        server["allowed_hosts"] = args.allowed_hosts
    if args.small:
        out["small"] = args.small
    if args.large:
        out["large"] = args.large
    if args.large_timeout is not None:
        out["large_options"] = {"timeout": args.large_timeout}
    if args.router and args.router_path:
        from routelmt.errors import ConfigError

        raise ConfigError("give --router (a name) or --router-path (a trained router), not both")
    if args.router:
        out["router"] = {"name": args.router}
    if args.router_path:
        out["router"] = {"path": args.router_path}
    if args.budget is not None:
        budget["share"] = args.budget
    if args.hard_cap is not None:
        budget["hard_cap"] = args.hard_cap
    if args.budget_store:
        budget["store"] = args.budget_store
    if server:
        out["server"] = server
    if budget:
        out["budget"] = budget
    return out


def run(args: argparse.Namespace) -> int:
    from routelmt.redact import redact_config
    from routelmt.serve.config import http_settings, load_config

    config = load_config(args.config, overrides_from_args(args))
    security, limits, connections = http_settings(config)  # a bad key file fails here
    if args.print_config:  # never the keys themselves
        shown = redact_config(config)
        shown["server"]["api_keys_loaded"] = len(security.api_keys)
        print(json.dumps(shown, indent=2))
        return 0
    if args.ray is not None:  # replicas on Ray Serve, sharing one budget actor
        from routelmt.serve.ray_deploy import serve_on_ray

        serve_on_ray(
            config, address=args.ray or None, replicas=args.replicas, cpus=args.replica_cpus
        )
        return 0
    from routelmt.serve.app import create_app
    from routelmt.serve.runner import bind, serve_forever
    from routelmt.serve.service import build_service

    server = config["server"]
    service = build_service(config)
    # a port in use or a host that does not resolve is an error (exit 2) before anything
    # claims to serve (the service's own errors come first, as they always did)
    try:
        sock = bind(server["host"], server["port"], connections.backlog)
    except BaseException:
        service.close()
        raise
    log.info(
        "serving small=%s large=%s router=%s budget=%s on http://%s:%s (log: %s; keys: %d)",
        service.hybrid.small.name,
        service.hybrid.large.name,
        service.router_name,
        config["budget"]["share"],
        server["host"],
        sock.getsockname()[1],
        service.log.path if service.log else None,
        len(security.api_keys),
    )
    app = create_app(service, security=security, limits=limits)
    serve_forever(app, sock, limits=connections)
    return 0
