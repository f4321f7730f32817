"""Save and load any trained router: the artifact's ``router.json`` names its registered class."""

from __future__ import annotations

import os
from pathlib import Path

from routelmt.errors import ConfigError, InputError
from routelmt.routers.base import ROUTERS, Router, get_router
from routelmt.storage import read_json

ROUTER_CONFIG = "router.json"


def save_router(router: Router, directory: str | os.PathLike[str]) -> Path:
    """Write a trained router's artifact; routers without state cannot be saved."""
    save = getattr(router, "save", None)
    if save is None:
        raise ConfigError(f"router '{router.name}' has no trained state to save")
    return Path(save(directory))


def load_router(directory: str | os.PathLike[str]) -> Router:
    """Load the router class named in ``<directory>/router.json`` (which checks its own model)."""
    get_router("random")  # import the built-in routers so that their names resolve
    directory = Path(directory)
    config_path = directory / ROUTER_CONFIG
    if not config_path.is_file():
        raise InputError(
            "not a router artifact (no router.json); make one with `routelmt train`",
            path=str(directory),
        )
    config = read_json(config_path)
    name = config.get("router") if isinstance(config, dict) else None
    if name not in ROUTERS:
        raise InputError(
            f"unknown router '{name}'; known: {', '.join(ROUTERS.names())}",
            path=str(config_path),
            field="router",
        )
    klass = ROUTERS.get(name)
    load = getattr(klass, "load", None)
    if load is None:
        raise InputError(f"router '{name}' cannot be loaded from disk", path=str(config_path))
    return load(directory)
