"""Save and load any trained router: the artifact's ``router.json`` names its registered class."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from routelmt.errors import ConfigError, InputError
from routelmt.routers.base import ROUTERS, Router, capabilities, require
from routelmt.routers.locations import (  # noqa: F401  (re-exported: the public place)
    ROUTER_CONFIG,
    SHIPPED_DIR,
    SHIPPED_PREFIX,
    resolve_artifact,
    shipped_routers,
)
from routelmt.routers.provenance import write_training_sources
from routelmt.storage import read_json, write_json


def save_router(router: Router, directory: str | os.PathLike[str]) -> Path:
    """Write a trained router's artifact; routers without state cannot be saved."""
    require(router, "save", "a trained artifact (it has no trained state to save)")
    return Path(router.save(directory))  # type: ignore[attr-defined]


def load_router(directory: str | os.PathLike[str]) -> Router:
    """Load the router class named in ``<directory>/router.json`` (which checks its own model);
    ``shipped:NAME`` loads an artifact that ships inside the package."""
    directory = resolve_artifact(directory)
    config_path = directory / ROUTER_CONFIG
    if not config_path.is_file():
        raise InputError(
            "not a router artifact (no router.json); make one with `routelmt train`",
            path=str(directory),
        )
    config = read_json(config_path)
    name = config.get("router") if isinstance(config, dict) else None
    if not isinstance(name, str) or not name:
        raise InputError("router.json names no router", path=str(config_path), field="router")
    try:
        klass = ROUTERS.get(name)  # names a module that failed to import, if that is why
    except ConfigError as exc:
        raise InputError(str(exc), path=str(config_path), field="router") from None
    if "load" not in capabilities(klass):  # type: ignore[arg-type]
        raise InputError(f"router '{name}' cannot be loaded from disk", path=str(config_path))
    return klass.load(directory)  # type: ignore[attr-defined]


# -- the artifact contract every trainable router follows -------------------------------------


def write_artifact(
    router: Any,
    directory: str | os.PathLike[str],
    *,
    trained: bool,
    write_state: Callable[[Path], Any],
) -> Path:
    """Save a trained router: its own state (``write_state``), the training-source record and
    ``router.json`` (``router.config()``) last, so a folder with a config is a whole artifact."""
    if not trained:
        raise ConfigError(f"cannot save router '{router.name}': it is not trained")
    directory = Path(directory)
    write_state(directory)
    write_training_sources(directory, router.train_sources)
    write_json(directory / ROUTER_CONFIG, router.config())
    return directory


def read_artifact_config(
    directory: str | os.PathLike[str], *, valid: Callable[[dict[str, Any]], bool], what: str
) -> tuple[Path, dict[str, Any], str]:
    """``(directory, config, where)`` of an artifact whose ``router.json`` is an object that
    ``valid`` accepts; anything else is an InputError ``not a {what} artifact``."""
    directory = Path(directory)
    where = str(directory / ROUTER_CONFIG)
    config = read_json(directory / ROUTER_CONFIG)
    if not isinstance(config, dict) or not valid(config):
        raise InputError(f"not a {what} artifact", path=where)
    return directory, config, where


def check_trained_on(directory: Path, config: Mapping[str, Any], have: Mapping[str, Any]) -> None:
    """Refuse a small model, prompt template or pooling other than the artifact was trained on
    (its features would mean something else)."""
    for key in ("model", "template_fingerprint", "pooling"):
        if have[key] != config[key]:
            raise ConfigError(
                f"router artifact {directory} was trained with {key} {config[key]!r} but the "
                f"loaded small model/prompt gives {have[key]!r}; retrain it for this model/prompt"
            )
