"""Service configuration: embedded defaults <- YAML file <- environment <- command-line flags.

``ServeSettings`` is the schema (``routelmt.settings``): every key a config may set, with its
default, type, help and range; ``DEFAULTS`` its defaults. ``configs/serve.yaml`` ships the same
values with comments. An unknown key, or a value of the wrong type or outside its range, is a
ConfigError naming the key and where it was set.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from routelmt import settings
from routelmt.errors import ConfigError
from routelmt.settings import key, section

log = logging.getLogger(__name__)


@dataclass
class DataSettings:
    root: str | None = key(None, "WMT folder of the recorded systems; null: the default WMT24")
    pairs: list[str] | str | None = key(["en-es", "en-de"], "pairs a replay backend loads")


@dataclass
class BudgetSettings:
    """The routing budget. Its checks beyond a type and a closed range (a share strictly inside
    (0, 1), ``stage1_share`` in [0, 1), the hard cap, the keys that tiers or a two-stage router
    refuse) are ``budget.plan.BudgetPlan``'s, the one place for them."""

    share: float | None = key(0.3, "share of requests sent to the large model")
    cost_share: float | None = key(None, "or: share of the all-large cost (with cost_small/large)")
    cost_small: float = key(0.0, "cost of one small translation (cost_share)")
    cost_large: float = key(1.0, "cost of one large translation (cost_share)")
    hard_cap: float | None = key(
        None,
        "an absolute count, not a share: the most large-model requests (a whole number; with "
        "cost_share or tiers, cost units) ever spent, on any path",
    )
    window: int = key(1000, "requests in the pacer's recent-score window", range=(1, 10_000_000))
    gain: float | None = key(
        None,
        "how fast the threshold follows the spent share (null: the rule's own; quantile 0.05 "
        "under a lead limit, else 0.1; integral 0.2)",
    )
    warmup: int = key(50, "requests before the threshold adapts", range=(0, 10_000_000))
    # 2 on the first 100 requests (lead_horizon): their overspend is at most 2 points of share by
    # construction; after them no lead limit, and the smaller gain that allows. Chosen on the
    # recorded streams (docs/benchmarks.md section 14f)
    max_lead: float | None = key(
        2.0,
        "the most mean requests the spend may run ahead of the share of those seen (null: no "
        "limit)",
    )
    lead_horizon: int | None = key(
        100,
        "how many of a stream's first requests the lead limit guards (null: all of them)",
        range=(1, 10_000_000),
    )
    initial_threshold: float | None = key(None, "a calibrated starting threshold")
    store: str | None = key(None, "shared budget store (SQLite path) for several processes")
    # with a two-stage router: the part of the budget spent right after the prefill (no
    # small decode wasted); the rest goes after the small decode. 0 by default: measured in
    # docs/benchmarks.md section 14, a weaker prefill score given a share costs the live routing
    stage1_share: float = key(
        0.0, "two-stage routers: the budget spent after the prefill, in [0, 1)"
    )
    rule: str = key("quantile", "the pacer's decision rule: quantile or integral")
    prior: bool = key(True, "start from the router artifact's shipped score distribution")


@dataclass
class GuardSettings:
    """The guard on requests the pacer sends large (docs/method.md section 6)."""

    name: str | None = key(None, "null, quality-predict or quality-hypo")
    threshold: float | None = key(
        None, "the guard's quality scale: qe-embed 0-100, routelmt-q chrF"
    )
    router: str | None = key(
        "shipped:routelmt-q",
        "quality-predict: a trained quality router (a folder or shipped:NAME; the shipped one "
        "reads Gemma-3-270M's layer 11, the shipped routers' layer, so it shares their prefill)",
    )
    qe: str = key("qe-embed", "quality-hypo: the registered reference-free QE scorer")


@dataclass
class ServerSettings:
    host: str = key("127.0.0.1", "address to listen on")
    port: int = key(8000, "port", range=(0, 65535))
    log_path: str | None = key("auto", "decision log (JSONL); auto: the state folder; null: none")
    log_text: bool = key(False, "keep source and translation text in the decision log")
    batching: bool = key(True, "route in micro-batches")
    max_batch_size: int = key(16, "segments per small-model batch", range=(1, 4096))
    max_wait_ms: float = key(5.0, "how long a batch waits to fill", range=(0, 10_000))
    large_concurrency: int = key(64, "large calls in flight", range=(1, 4096))
    max_chars: int = key(4000, "characters per text", range=(1, 1_000_000))
    max_items: int = key(64, "texts per request", range=(1, 100_000))
    directions: list[str] | None = key(
        None, "directions served; null: any pair of known languages (an untrained one zero-shot)"
    )
    default_direction: str = key("en-es", "direction of a request that names none")
    allow_policy_override: bool = key(False, "may a request force a tier")
    shared_prefill: bool | None = key(None, "one prefill for router and small model; null: auto")
    continuous: bool = key(True, "continuous batching of small-model decoding")
    max_share: float = key(0.75, "the most of the decode batch one request may hold")
    max_prefill_chars: int | None = key(
        2000,
        "source characters per routing prefill (bounds how long one stalls decoding)",
        range=(1, 100_000_000),
    )
    api_keys: list[str] = key([], "API keys (also $ROUTELMT_API_KEY); none: open")
    api_key_file: str | None = key(None, "a file of API keys, one per line")
    metrics_need_key: bool = key(False, "does /metrics need an API key")
    allowed_hosts: list[str] | None = key(None, "Host header allow-list; null: from host")
    max_body_bytes: int = key(1_000_000, "request body limit", range=(1024, 1 << 30))
    body_timeout_s: float = key(30.0, "seconds to receive a body", range=(0.001, 3600))
    header_timeout_s: float = key(10.0, "seconds to receive the head", range=(0.001, 3600))
    keep_alive_s: float = key(5.0, "idle keep-alive seconds", range=(0.001, 3600))
    limit_concurrency: int = key(1000, "connections at once", range=(1, 1_000_000))
    breaker_failures: int = key(5, "large failures that open the breaker", range=(0, 1_000_000))
    breaker_cooldown_s: float = key(30.0, "seconds the breaker stays open", range=(0.001, 86_400))
    dashboard_decisions: int = key(
        10_000, "last decisions the dashboard keeps in memory (no text)", range=(1, 1_000_000)
    )


@dataclass
class ServeSettings:
    """The ``routelmt serve`` schema; configs/serve.yaml ships the same values with comments."""

    # first spec that loads is used: the live model when its backend exists, else a replay
    small: str | list[str] = key(
        ["llamacpp:gemma3-270m", "replay:Phi-3-Medium"], "small backends, the first that loads"
    )
    small_options: dict[str, Any] = key({}, "the small backend's options", open=True)
    large: str = key("replay:GPT-4", "the large backend")
    large_options: dict[str, Any] = key({}, "the large backend's options", open=True)
    data: DataSettings = section(DataSettings, "recorded data for replay backends")
    # the learned router that ships for the embedded model: the prefill probe, then a second
    # look at the small translation (docs/router-ablation.md); {name: length} needs no model
    router: dict[str, Any] = key(
        {"path": "shipped:routelmt-2stage"}, "{path: artifact} or {name: router, ...}", open=True
    )
    budget: BudgetSettings = section(BudgetSettings, "the routing budget")
    guard: GuardSettings = section(GuardSettings, "the guard; guard.name null: none")
    # tiers above the small model, cheapest first; empty: the small model and ``large``
    tiers: list[dict[str, Any]] = key(
        [], "[{name, backend, options, cost, gain_scale}], cheapest first; with tiers, no large"
    )
    server: ServerSettings = section(ServerSettings, "HTTP, batching and limits")


DEFAULTS: dict[str, Any] = settings.defaults(ServeSettings)
ENV_PREFIX = "ROUTELMT_SERVE"


def embedded_config_path() -> Path | None:
    """The shipped ``serve.yaml`` (package data: ``routelmt/configs``, ``configs/`` in the repo)."""
    candidate = Path(__file__).resolve().parents[1] / "configs" / "serve.yaml"
    return candidate if candidate.is_file() else None


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


def _check_budget(config: dict[str, Any], where: str) -> None:
    """The budget plan's checks (``budget.plan.BudgetPlan``), made here before any model loads
    so that ``--print-config`` and a bad deploy fail at once; the router's stages are known
    only once it loads, so what depends on them is checked again then."""
    from routelmt.budget.plan import BudgetPlan

    tiers = config["tiers"]
    try:
        BudgetPlan.from_settings(
            config["budget"], tier_costs=[t["cost"] for t in tiers] if tiers else None
        )
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


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
        for field_name in ("name", "backend", "cost"):
            if field_name not in tier:
                raise ConfigError(f"{at} needs '{field_name}'")
        for field_name, kinds in TIER_KEYS.items():
            value = tier.get(field_name)
            if field_name in tier and (isinstance(value, bool) or not isinstance(value, kinds)):
                raise ConfigError(f"{at}.{field_name}: wrong type, got {value!r:.60}")
            if field_name in ("cost", "gain_scale") and field_name in tier and not value > 0:
                raise ConfigError(f"{at}.{field_name} must be > 0, got {value!r}")
        if tier["name"] in names or tier["name"] == "small":
            raise ConfigError(f"{at}.name: '{tier['name']}' is taken (names must differ)")
        names.add(tier["name"])


def _check_values(config: dict[str, Any], where: str) -> None:
    """What the types and ranges alone do not say."""
    for dotted in ("server.api_keys", "server.allowed_hosts"):
        section_name, name = dotted.split(".")
        values = config[section_name][name] or []
        if not all(isinstance(v, str) and v for v in values):
            raise ConfigError(f"{where}: '{dotted}' must be a list of non-empty strings")
    _check_tiers(config["tiers"], where)  # before the budget, which reads the tiers' costs
    _check_budget(config, where)
    _check_guard(config["guard"], where)
    if "name" not in config["router"] and "path" not in config["router"]:
        raise ConfigError(
            f"{where}: 'router' needs 'name' (e.g. length, random) or 'path' (a trained router)"
        )


def load_config(
    path: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Defaults, then the embedded or given YAML file, then ``ROUTELMT_SERVE__SECTION__KEY``
    environment variables, then ``overrides`` (the command-line flags, same nesting)."""
    config = settings.defaults(ServeSettings)
    source = Path(path) if path is not None else embedded_config_path()
    where = str(source) if source is not None else "defaults"
    if source is not None:
        if not source.is_file():
            raise ConfigError(f"config file not found: {source}")
        settings.merge(ServeSettings, config, settings.read_yaml_mapping(source), where)
    for variable, update in settings.env_overrides(ENV_PREFIX):
        settings.merge(ServeSettings, config, update, variable)
        where += f" + {variable}"
    if overrides:
        settings.merge(ServeSettings, config, overrides, "command-line flags")
        where += " + flags"
    settings.check(ServeSettings, config, where)
    _check_values(config, where)
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
