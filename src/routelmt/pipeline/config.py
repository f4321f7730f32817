"""The ``routelmt bench`` configuration: the schema (``BenchSettings``: every key with its
default, type and help), the files, environment and ``--set`` flags merged over it, and the
checks a config passes before any work.

Precedence, lowest first: the defaults, each config file in order, each
``ROUTELMT_BENCH__SECTION__KEY`` environment variable, each ``--set key=value`` in order, then
``--full`` (no per-pair limit) and ``--output``. ``routelmt bench --help-config`` lists the keys.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from routelmt import settings
from routelmt.backends.resolve import slug
from routelmt.errors import ConfigError
from routelmt.executors import ExecutorSettings, check_settings
from routelmt.settings import key, section

ENV_PREFIX = "ROUTELMT_BENCH"


@dataclass
class DataSettings:
    root: str | None = key(None, "WMT folder; null: $ROUTELMT_DATA or ../shared/data/wmt24")
    pairs: list[str] | str = key(["en-es"], "directions (a list, 'a,b', or all)")
    limit: int | None = key(None, "segments per pair (the first N); null: all")
    reference: str | None = key("refA", "which WMT reference the metric compares with")


@dataclass
class TranslateSettings:
    batch_size: int = key(16, "segments per durable append (resume granularity)")


@dataclass
class MetricSettings:
    name: str = key("chrf", "a registered metric (chrf, chrf++, bleu, comet, ...)")
    args: dict[str, Any] = key({}, "the metric's options", open=True)


@dataclass
class EvaluationSettings:
    budgets: list[float] = key([0.1, 0.2, 0.3, 0.4, 0.5], "shares sent to the large model")
    folds: int = key(5, "cross-validation folds (by source group)")
    cv: str = key("kfold", "kfold, or lodo: leave one direction out")
    baselines: list[str] = key(["length", "entropy"], "routers every router is compared with")
    seed: int = key(0, "seed of folds, ties and resamples")
    bootstrap: int = key(1000, "bootstrap resamples (by source group)")
    severe_delta: float = key(10.0, "a gain below minus this is a severe loss")
    plots: bool = key(True, "write the quality-budget curves as PNG")


@dataclass
class GuardsSettings:
    """The guards (docs/method.md section 6) on the gain router's ranking."""

    gain_router: str | None = key(None, "the ranking the guards protect (in routers); null: off")
    quality_router: str | None = key("routelmt-q", "quality-predict: its quality head (in routers)")
    qe: str | None = key("qe-embed", "quality-hypo: the reference-free QE scorer of the output")
    p: float = key(0.3, "the budget, per direction")
    quantile: float = key(0.8, "rule q<quantile>: that quantile of the training guard scores")
    max_drop: float = key(0.5, "rule chosen: the largest MeanDelta drop allowed (chrF)")
    timing_sample: int = key(32, "segments timed for the guard's and the small decode's cost")


@dataclass
class BenchSettings:
    """The ``routelmt bench`` schema; configs/default.yaml shows it with comments."""

    name: str = key("bench", "the run's name (its output folder: runs/<name>)")
    output: str | None = key(None, "output folder; null: runs/<name>")
    data: DataSettings = section(DataSettings, "the test data")
    small: str = key("replay:Phi-3-Medium", "the small system (a backend spec)")
    small_options: dict[str, Any] = key({}, "the small backend's options", open=True)
    large: str | list[str] = key(["replay:GPT-4"], "the large system(s)")
    large_options: dict[str, Any] = key({}, "the large backends' options", open=True)
    translate: TranslateSettings = section(TranslateSettings, "translation")
    executor: ExecutorSettings = section(ExecutorSettings, "where the heavy stages run")
    metric: MetricSettings = section(MetricSettings, "the quality metric")
    routers: list[str] = key(
        ["gain-oracle", "quality-oracle", "random", "length"], "the routers to evaluate"
    )
    router_args: dict[str, Any] = key({}, "per-router options: {router: {key: value}}", open=True)
    evaluation: EvaluationSettings = section(EvaluationSettings, "the evaluation")
    guards: GuardsSettings = section(GuardsSettings, "the guards; guards.gain_router null: off")


DEFAULTS: dict[str, Any] = settings.defaults(BenchSettings)


def _check_values(config: dict[str, Any], where: str) -> None:
    """What the types alone do not say: non-empty lists of names, shares in (0, 1), ..."""

    def strings(dotted: str, values: Any) -> None:
        for item in values:
            if not isinstance(item, str) or not item:
                raise ConfigError(f"{where}: '{dotted}' must list strings, got {item!r:.60}")

    if isinstance(config["large"], list):
        strings("large", config["large"])
        if not config["large"]:
            raise ConfigError(f"{where}: 'large' lists no system")
    if isinstance(config["data"]["pairs"], list):
        strings("data.pairs", config["data"]["pairs"])
    strings("routers", config["routers"])
    if not config["routers"]:
        raise ConfigError(f"{where}: 'routers' lists no router")
    if len(set(config["routers"])) != len(config["routers"]):
        raise ConfigError(f"{where}: 'routers' names a router twice: {config['routers']}")
    limit = config["data"]["limit"]
    if limit is not None and limit <= 0:
        raise ConfigError(f"{where}: 'data.limit' must be a positive integer or null, got {limit}")
    if config["translate"]["batch_size"] <= 0:
        raise ConfigError(f"{where}: 'translate.batch_size' must be positive")
    check_settings(config["executor"], where)
    if config["evaluation"]["folds"] < 2:
        raise ConfigError(f"{where}: 'evaluation.folds' must be at least 2")
    from routelmt.splits import CV_SCHEMES

    if config["evaluation"]["cv"] not in CV_SCHEMES:
        raise ConfigError(
            f"{where}: 'evaluation.cv' must be one of {', '.join(CV_SCHEMES)}, "
            f"got {config['evaluation']['cv']!r}"
        )
    strings("evaluation.baselines", config["evaluation"]["baselines"])
    pairs = config["data"]["pairs"]
    if config["evaluation"]["cv"] == "lodo" and isinstance(pairs, list) and len(set(pairs)) < 2:
        raise ConfigError(
            f"{where}: 'evaluation.cv: lodo' (leave one direction out) needs at least two "
            f"pairs in 'data.pairs', got {pairs}"
        )
    if config["evaluation"]["bootstrap"] < 0:
        raise ConfigError(f"{where}: 'evaluation.bootstrap' must be >= 0")
    budgets = config["evaluation"]["budgets"]
    if not budgets:
        raise ConfigError(f"{where}: 'evaluation.budgets' lists no budget")
    for p in budgets:
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 < p < 1.0:
            raise ConfigError(
                f"{where}: 'evaluation.budgets' holds {p!r}; each budget is a share in (0, 1)"
            )
    _check_guards(config, where)
    for router, args in config["router_args"].items():
        if router not in config["routers"]:
            raise ConfigError(
                f"{where}: 'router_args' sets '{router}', which is not in 'routers' "
                f"({', '.join(config['routers'])})"
            )
        if not isinstance(args, dict):
            raise ConfigError(f"{where}: 'router_args.{router}' must be a mapping")


def _check_guards(config: dict[str, Any], where: str) -> None:
    guards = config["guards"]
    for field_name in ("gain_router", "quality_router"):
        name = guards[field_name]
        if guards["gain_router"] and name and name not in config["routers"]:
            raise ConfigError(
                f"{where}: 'guards.{field_name}' is '{name}', which is not in 'routers' "
                f"({', '.join(config['routers'])})"
            )
    if not 0.0 < guards["p"] < 1.0 or not 0.0 < guards["quantile"] <= 1.0:
        raise ConfigError(f"{where}: 'guards.p' must be in (0, 1) and 'guards.quantile' in (0, 1]")
    if guards["max_drop"] < 0 or guards["timing_sample"] < 0:
        raise ConfigError(f"{where}: 'guards.max_drop' and 'guards.timing_sample' must be >= 0")


def _dotted(variable: str) -> str:
    """``$ROUTELMT_BENCH__SMALL_OPTIONS__X`` -> ``small_options.x`` (``env_overrides``' key)."""
    return ".".join(p.lower() for p in variable.lstrip("$")[len(ENV_PREFIX) + 2 :].split("__"))


def parse_set(item: str) -> dict[str, Any]:
    """``data.limit=50`` -> {"data": {"limit": 50}}; the value is read as YAML (lists work)."""
    dotted, sep, raw = item.partition("=")
    dotted = dotted.strip()
    if not sep or not dotted or any(not part for part in dotted.split(".")):
        raise ConfigError(f"--set: expected KEY=VALUE (e.g. data.limit=50), got '{item}'")
    return settings.nested(dotted, settings.parse_value(raw))


def shipped_configs() -> dict[str, Path]:
    """The configs that ship inside the package (``routelmt/configs``, also ``configs/`` in the
    repo): name -> path, so ``routelmt bench default`` works from a wheel install."""
    folder = Path(__file__).resolve().parent.parent / "configs"
    found = sorted(folder.glob("*.yaml")) if folder.is_dir() else []
    return {p.stem: p for p in found if p.stem != "serve"}  # serve.yaml configures the server


def _resolve_config(path: Path) -> Path:
    """A file path, or the bare name of a shipped config (``default``, ``in-model``, ...)."""
    if path.is_file() or path.suffix or len(path.parts) != 1:
        return path
    return shipped_configs().get(str(path), path)


def _read_yaml(path: Path) -> Any:
    if not path.is_file():
        shipped = ", ".join(shipped_configs())
        hint = f" (or a shipped config by name: {shipped})" if shipped else ""
        raise ConfigError(f"config file not found: {path}{hint}")
    return settings.read_yaml_mapping(path)


def load_bench_config(
    paths: Sequence[str | os.PathLike[str]],
    sets: Sequence[str] = (),
    *,
    full: bool = False,
    output: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Defaults <- each file in order <- the environment <- each ``--set`` in order <-
    ``--full`` / ``--output``."""
    config = settings.defaults(BenchSettings)
    sources = []
    for given in paths:
        path = _resolve_config(Path(given))
        settings.merge(BenchSettings, config, _read_yaml(path), str(path))
        sources.append(str(path))
    for variable, update in settings.env_overrides(ENV_PREFIX):
        settings.merge(BenchSettings, config, update, variable, dotted=_dotted(variable))
        sources.append(variable)
    for item in sets:
        settings.merge(
            BenchSettings, config, parse_set(item), f"--set {item}", dotted=item.partition("=")[0]
        )
    if full:
        config["data"]["limit"] = None
    if output is not None:
        config["output"] = str(output)
    where = " + ".join(sources + (["--set flags"] if sets else [])) or "defaults"
    settings.check(BenchSettings, config, where)
    _check_values(config, where)
    if isinstance(config["large"], str):
        config["large"] = [config["large"]]
    folders: dict[str, str] = {}
    for spec in [config["small"], *config["large"]]:
        if slug(spec) in folders:
            raise ConfigError(
                f"{where}: '{spec}' and '{folders[slug(spec)]}' name the same system; "
                "list each system once (small is not also a large system)"
            )
        folders[slug(spec)] = spec
    return config
