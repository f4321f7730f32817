"""The ``routelmt bench`` configuration: its schema (``DEFAULTS`` and the types of every key),
the files and ``--set`` flags merged over it, and the checks a config passes before any work.

Precedence, lowest first: the defaults, each config file in order, each ``--set key=value`` in
order, then ``--full`` (no per-pair limit) and ``--output``.
"""

from __future__ import annotations

import copy
import difflib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from routelmt.backends.resolve import slug
from routelmt.errors import ConfigError
from routelmt.executors import DEFAULTS as EXECUTOR_DEFAULTS
from routelmt.executors import check_settings

DEFAULTS: dict[str, Any] = {
    "name": "bench",
    "output": None,  # null: runs/<name>
    "data": {"root": None, "pairs": ["en-es"], "limit": None, "reference": "refA"},
    "small": "replay:Phi-3-Medium",
    "small_options": {},
    "large": ["replay:GPT-4"],
    "large_options": {},
    "translate": {"batch_size": 16},
    # where the heavy stages run: local, or {kind: ray, address, workers, threads, stages}
    "executor": dict(EXECUTOR_DEFAULTS),
    "metric": {"name": "chrf", "args": {}},
    "routers": ["gain-oracle", "quality-oracle", "random", "length"],
    "router_args": {},
    "evaluation": {
        "budgets": [0.1, 0.2, 0.3, 0.4, 0.5],
        "folds": 5,
        "cv": "kfold",
        "baselines": ["length", "entropy"],
        "seed": 0,
        "bootstrap": 1000,
        "severe_delta": 10.0,
        "plots": True,
    },
    # the guards (docs/method.md section 6) on the gain router's ranking; gain_router null: off
    "guards": {
        "gain_router": None,  # e.g. routelmt: the ranking the guards protect (in 'routers')
        "quality_router": "routelmt-q",  # quality-predict: its quality head (in 'routers')
        "qe": "qe-embed",  # quality-hypo: the reference-free QE scorer of the small output
        "p": 0.3,  # the budget, per direction
        "quantile": 0.8,  # rule q<quantile>: that quantile of the training guard scores
        "max_drop": 0.5,  # rule chosen: the largest MeanDelta drop allowed (chrF)
        "timing_sample": 32,  # segments timed for the guard's and the small decode's cost
    },
}

_NULL = type(None)
_NUMBER = (int, float)
_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "output": (str, _NULL),
    "data.root": (str, _NULL),
    "data.pairs": (list, str),
    "data.limit": (int, _NULL),
    "data.reference": (str, _NULL),
    "small": (str,),
    "small_options": (dict,),
    "large": (str, list),
    "large_options": (dict,),
    "translate.batch_size": (int,),
    "executor.kind": (str,),
    "executor.address": (str, _NULL),
    "executor.workers": (int,),
    "executor.threads": (int,),
    "executor.stages": (list,),
    "metric.name": (str,),
    "metric.args": (dict,),
    "routers": (list,),
    "router_args": (dict,),
    "evaluation.budgets": (list,),
    "evaluation.folds": (int,),
    "evaluation.cv": (str,),
    "evaluation.baselines": (list,),
    "evaluation.seed": (int,),
    "evaluation.bootstrap": (int,),
    "evaluation.severe_delta": _NUMBER,
    "evaluation.plots": (bool,),
    "guards.gain_router": (str, _NULL),
    "guards.quality_router": (str, _NULL),
    "guards.qe": (str, _NULL),
    "guards.p": _NUMBER,
    "guards.quantile": _NUMBER,
    "guards.max_drop": _NUMBER,
    "guards.timing_sample": (int,),
}
_OPEN = {"small_options", "large_options", "metric.args", "router_args"}  # free-form maps


def _unknown_key(dotted: str, allowed: Sequence[str], where: str) -> ConfigError:
    key = dotted.rpartition(".")[2]
    close = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return ConfigError(
        f"{where}: unknown key '{dotted}'{hint}; allowed here: {', '.join(sorted(allowed))}"
    )


def _merge(base: dict[str, Any], update: Mapping[str, Any], where: str, prefix: str = "") -> None:
    for key, value in update.items():
        dotted = f"{prefix}{key}"
        if key not in base:
            raise _unknown_key(dotted, list(base), where)
        if isinstance(base[key], dict) and dotted not in _OPEN:
            if not isinstance(value, Mapping):
                raise ConfigError(
                    f"{where}: '{dotted}' must be a mapping with keys "
                    f"{', '.join(sorted(base[key]))}; got {value!r:.60}"
                )
            _merge(base[key], value, where, dotted + ".")
        else:
            base[key] = copy.deepcopy(value)


def _type_names(kinds: tuple[type, ...]) -> str:
    names = {"NoneType": "null", "str": "a string", "int": "an integer", "float": "a number"}
    names |= {"list": "a list", "dict": "a mapping", "bool": "true/false"}
    return " or ".join(names.get(k.__name__, k.__name__) for k in kinds)


def _check_types(config: dict[str, Any], where: str) -> None:
    for dotted, kinds in _TYPES.items():
        value: Any = config
        for part in dotted.split("."):
            value = value[part]
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            raise ConfigError(
                f"{where}: '{dotted}' must be {_type_names(kinds)}, got {value!r:.60}"
            )

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
        if isinstance(p, bool) or not isinstance(p, _NUMBER) or not 0.0 < p < 1.0:
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
    for key in ("gain_router", "quality_router"):
        name = guards[key]
        if guards["gain_router"] and name and name not in config["routers"]:
            raise ConfigError(
                f"{where}: 'guards.{key}' is '{name}', which is not in 'routers' "
                f"({', '.join(config['routers'])})"
            )
    if not 0.0 < guards["p"] < 1.0 or not 0.0 < guards["quantile"] <= 1.0:
        raise ConfigError(f"{where}: 'guards.p' must be in (0, 1) and 'guards.quantile' in (0, 1]")
    if guards["max_drop"] < 0 or guards["timing_sample"] < 0:
        raise ConfigError(f"{where}: 'guards.max_drop' and 'guards.timing_sample' must be >= 0")


def parse_set(item: str) -> dict[str, Any]:
    """``data.limit=50`` -> {"data": {"limit": 50}}; the value is read as YAML (lists work)."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set: expected KEY=VALUE (e.g. data.limit=50), got '{item}'")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    out: dict[str, Any] = {}
    node = out
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


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


def _read_yaml(path: Path) -> Mapping[str, Any]:
    if not path.is_file():
        shipped = ", ".join(shipped_configs())
        hint = f" (or a shipped config by name: {shipped})" if shipped else ""
        raise ConfigError(f"config file not found: {path}{hint}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    return data


def load_bench_config(
    paths: Sequence[str | os.PathLike[str]],
    sets: Sequence[str] = (),
    *,
    full: bool = False,
    output: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Defaults <- each file in order <- each ``--set`` in order <- ``--full`` / ``--output``."""
    config = copy.deepcopy(DEFAULTS)
    sources = []
    for given in paths:
        path = _resolve_config(Path(given))
        _merge(config, _read_yaml(path), str(path))
        sources.append(str(path))
    for item in sets:
        _merge(config, parse_set(item), f"--set {item}")
    if full:
        config["data"]["limit"] = None
    if output is not None:
        config["output"] = str(output)
    where = " + ".join(sources + (["--set flags"] if sets else [])) or "defaults"
    _check_types(config, where)
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
