"""Service configuration: embedded defaults <- YAML file <- command-line overrides.

``DEFAULTS`` is the schema: every key a config may set, with its default. ``configs/serve.yaml``
ships the same values with comments. An unknown key, or a value of the wrong type, is a
ConfigError naming the key and the file.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from routelmt.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    # first spec that loads is used: the live model when its backend exists, else a replay
    "small": ["hf:gemma3-270m", "replay:Phi-3-Medium"],
    "small_options": {},
    "large": "replay:GPT-4",
    "large_options": {},
    "data": {"root": None, "pairs": ["en-es", "en-de"]},
    # the learned router that ships for the embedded model: the prefill probe, then a second
    # look at the small translation (docs/router-ablation.md); {name: length} needs no model
    "router": {"path": "shipped:routelmt-2stage"},
    "budget": {
        "share": 0.3,
        "cost_share": None,
        "cost_small": 0.0,
        "cost_large": 1.0,
        "hard_cap": None,
        "window": 1000,
        "gain": 0.2,
        "warmup": 50,
        "initial_threshold": None,
        "store": None,
        # with a two-stage router: the part of the budget spent right after the prefill (no
        # small decode wasted); the rest goes after the small decode (docs/router-ablation.md)
        "stage1_share": 0.25,
    },
    # the guard on requests the pacer sends large (docs/method.md section 6); name null: none
    "guard": {
        "name": None,  # null | quality-predict | quality-hypo
        "threshold": None,  # the guard's quality scale: qe-embed 0-100, routelmt-q chrF
        "router": None,  # quality-predict: a trained quality router (folder or shipped:NAME)
        "qe": "qe-embed",  # quality-hypo: the registered reference-free QE scorer
    },
    # tiers above the small model, cheapest first: [{name, backend, options, cost, gain_scale}];
    # empty: the small model and ``large``. With tiers, ``large`` is not used.
    "tiers": [],
    "server": {
        "host": "127.0.0.1",
        "port": 8000,
        "log_path": "auto",
        "log_text": False,
        "batching": True,
        "max_batch_size": 16,
        "max_wait_ms": 5.0,
        "large_concurrency": 64,
        "max_chars": 4000,
        "max_items": 64,
        "directions": ["en-es", "en-de", "en-zh", "en-uk", "en-hi", "en-is"],
        "default_direction": "en-es",
        "allow_policy_override": False,
        "shared_prefill": None,
        "continuous": True,
        "max_share": 0.75,
        "api_keys": [],
        "api_key_file": None,
        "metrics_need_key": False,
        "allowed_hosts": None,
        "max_body_bytes": 1_000_000,
        "body_timeout_s": 30.0,
        "header_timeout_s": 10.0,
        "keep_alive_s": 5.0,
        "limit_concurrency": 1000,
        "breaker_failures": 5,
        "breaker_cooldown_s": 30.0,
    },
}

# the type each leaf must have (None means: also allowed to be null)
_TYPES: dict[str, tuple[type, ...]] = {
    "small": (str, list),
    "small_options": (dict,),
    "large": (str,),
    "large_options": (dict,),
    "data.root": (str, type(None)),
    "data.pairs": (list, str, type(None)),
    "router": (dict,),
    "budget.share": (float, int, type(None)),
    "budget.cost_share": (float, int, type(None)),
    "budget.cost_small": (float, int),
    "budget.cost_large": (float, int),
    "budget.hard_cap": (float, int, type(None)),
    "budget.window": (int,),
    "budget.gain": (float, int),
    "budget.warmup": (int,),
    "budget.initial_threshold": (float, int, type(None)),
    "budget.store": (str, type(None)),
    "budget.stage1_share": (float, int),
    "guard.name": (str, type(None)),
    "guard.threshold": (float, int, type(None)),
    "guard.router": (str, type(None)),
    "guard.qe": (str,),
    "tiers": (list,),
    "server.host": (str,),
    "server.port": (int,),
    "server.log_path": (str, type(None)),
    "server.batching": (bool,),
    "server.max_batch_size": (int,),
    "server.max_wait_ms": (float, int),
    "server.large_concurrency": (int,),
    "server.max_chars": (int,),
    "server.max_items": (int,),
    "server.directions": (list, type(None)),
    "server.default_direction": (str,),
    "server.allow_policy_override": (bool,),
    "server.shared_prefill": (bool, type(None)),
    "server.continuous": (bool,),
    "server.max_share": (float, int),
    "server.log_text": (bool,),
    "server.api_keys": (list,),
    "server.api_key_file": (str, type(None)),
    "server.metrics_need_key": (bool,),
    "server.allowed_hosts": (list, type(None)),
    "server.max_body_bytes": (int,),
    "server.body_timeout_s": (float, int),
    "server.header_timeout_s": (float, int),
    "server.keep_alive_s": (float, int),
    "server.limit_concurrency": (int,),
    "server.breaker_failures": (int,),
    "server.breaker_cooldown_s": (float, int),
}

# (key, lowest allowed, highest allowed): numbers outside are a ConfigError naming the key
_RANGES: tuple[tuple[str, float, float], ...] = (
    ("server.port", 0, 65535),
    ("server.max_batch_size", 1, 4096),
    ("server.max_wait_ms", 0, 10_000),
    ("server.large_concurrency", 1, 4096),
    ("server.max_chars", 1, 1_000_000),
    ("server.max_items", 1, 100_000),
    ("server.max_body_bytes", 1024, 1 << 30),
    ("server.body_timeout_s", 0.001, 3600),
    ("server.header_timeout_s", 0.001, 3600),
    ("server.keep_alive_s", 0.001, 3600),
    ("server.limit_concurrency", 1, 1_000_000),
    ("server.breaker_failures", 0, 1_000_000),
    ("server.breaker_cooldown_s", 0.001, 86_400),
    ("budget.window", 1, 10_000_000),
    ("budget.warmup", 0, 10_000_000),
)
_OPEN = {"small_options", "large_options", "router"}  # free-form option maps (tiers: a list)


def embedded_config_path() -> Path | None:
    """The shipped ``serve.yaml`` (package data: ``routelmt/configs``, ``configs/`` in the repo)."""
    candidate = Path(__file__).resolve().parents[1] / "configs" / "serve.yaml"
    return candidate if candidate.is_file() else None


def _merge(base: dict[str, Any], update: Mapping[str, Any], where: str, prefix: str = "") -> None:
    for key, value in update.items():
        dotted = f"{prefix}{key}"
        if key not in base:
            known = ", ".join(sorted(base))
            raise ConfigError(f"{where}: unknown key '{dotted}'; known here: {known}")
        if isinstance(base[key], dict) and dotted not in _OPEN:
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}: '{dotted}' must be a mapping, got {value!r:.60}")
            _merge(base[key], value, where, dotted + ".")
        else:
            base[key] = copy.deepcopy(value)


def _check_types(config: dict[str, Any], where: str) -> None:
    for dotted, kinds in _TYPES.items():
        value: Any = config
        for part in dotted.split("."):
            value = value[part]
        bad_bool = isinstance(value, bool) and bool not in kinds
        if bad_bool or not isinstance(value, kinds):
            names = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
            raise ConfigError(f"{where}: '{dotted}' must be {names}, got {value!r:.60}")
    for dotted, low, high in _RANGES:
        section, key = dotted.split(".")
        value = config[section][key]
        if not low <= value <= high:
            raise ConfigError(
                f"{where}: '{dotted}' must be between {low} and {high}, got {value!r}"
            )
    for dotted in ("server.api_keys", "server.allowed_hosts"):
        section, key = dotted.split(".")
        values = config[section][key] or []
        if not all(isinstance(v, str) and v for v in values):
            raise ConfigError(f"{where}: '{dotted}' must be a list of non-empty strings")
    _check_guard(config["guard"], where)
    _check_tiers(config["tiers"], where)
    if "name" not in config["router"] and "path" not in config["router"]:
        raise ConfigError(
            f"{where}: 'router' needs 'name' (e.g. length, random) or 'path' (a trained router)"
        )


GUARD_NAMES = ("quality-predict", "quality-hypo")
TIER_KEYS = {"name": (str,), "backend": (str,), "options": (dict,)}
TIER_KEYS |= {"cost": (float, int), "gain_scale": (float, int)}


def _check_guard(guard: dict[str, Any], where: str) -> None:
    if guard["name"] is None:
        return
    if guard["name"] not in GUARD_NAMES:
        raise ConfigError(
            f"{where}: 'guard.name' must be null or one of {', '.join(GUARD_NAMES)}, "
            f"got {guard['name']!r:.60}"
        )
    if guard["threshold"] is None:
        raise ConfigError(
            f"{where}: 'guard.threshold' is needed with guard '{guard['name']}' (the small "
            "quality at or above which a candidate stays small; docs/benchmarks.md, guards)"
        )
    if guard["name"] == "quality-predict" and not guard["router"]:
        raise ConfigError(f"{where}: 'guard.router' (a trained quality router) is needed")


def _check_tiers(tiers: list[Any], where: str) -> None:
    """Each tier: name, backend, cost > 0; options and gain_scale (> 0) optional."""
    names = set()
    for i, tier in enumerate(tiers):
        at = f"{where}: 'tiers[{i}]'"
        if not isinstance(tier, Mapping):
            raise ConfigError(f"{at} must be a mapping with name, backend and cost")
        unknown = sorted(set(tier) - set(TIER_KEYS))
        if unknown:
            raise ConfigError(f"{at}: unknown key '{unknown[0]}'; known: {', '.join(TIER_KEYS)}")
        for key in ("name", "backend", "cost"):
            if key not in tier:
                raise ConfigError(f"{at} needs '{key}'")
        for key, kinds in TIER_KEYS.items():
            value = tier.get(key)
            if key in tier and (isinstance(value, bool) or not isinstance(value, kinds)):
                raise ConfigError(f"{at}.{key}: wrong type, got {value!r:.60}")
            if key in ("cost", "gain_scale") and key in tier and not value > 0:
                raise ConfigError(f"{at}.{key} must be > 0, got {value!r}")
        if tier["name"] in names or tier["name"] == "small":
            raise ConfigError(f"{at}.name: '{tier['name']}' is taken (names must differ)")
        names.add(tier["name"])


def load_config(
    path: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Defaults, then the embedded or given YAML file, then ``overrides`` (same nesting)."""
    config = copy.deepcopy(DEFAULTS)
    source = Path(path) if path is not None else embedded_config_path()
    where = str(source) if source is not None else "defaults"
    if source is not None:
        if not source.is_file():
            raise ConfigError(f"config file not found: {source}")
        try:
            data = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source}: invalid YAML: {exc}") from None
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: expected a mapping at the top level")
        _merge(config, data, where)
    if overrides:
        _merge(config, overrides, "command-line flags")
        where += " + flags"
    _check_types(config, where)
    return config


def http_settings(config: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(Security, Limits, ConnectionLimits) from a loaded config's ``server`` section."""
    from routelmt.serve.protocol import Limits
    from routelmt.serve.runner import ConnectionLimits
    from routelmt.serve.security import Security, default_allowed_hosts, load_api_keys

    server = config["server"]
    security = Security(
        api_keys=load_api_keys(server["api_keys"], server["api_key_file"]),
        allowed_hosts=default_allowed_hosts(server["host"], server["allowed_hosts"]),
        metrics_need_key=server["metrics_need_key"],
    )
    limits = Limits(
        max_body_bytes=server["max_body_bytes"],
        max_chars=server["max_chars"],
        max_items=server["max_items"],
        body_timeout_s=float(server["body_timeout_s"]),
    )
    connections = ConnectionLimits(
        header_timeout_s=float(server["header_timeout_s"]),
        keep_alive_s=float(server["keep_alive_s"]),
        limit_concurrency=server["limit_concurrency"],
    )
    return security, limits, connections
