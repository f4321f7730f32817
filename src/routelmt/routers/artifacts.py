"""Save and load any trained router: the artifact's ``router.json`` names its registered class."""

from __future__ import annotations

import os
from pathlib import Path

from routelmt.errors import ConfigError, InputError
from routelmt.routers.base import ROUTERS, Router, get_router
from routelmt.storage import read_json

ROUTER_CONFIG = "router.json"
SHIPPED_PREFIX = "shipped:"
SHIPPED_DIR = Path(__file__).parent / "shipped"  # package data: trained for the embedded model


def shipped_routers() -> list[str]:
    """Names of the router artifacts that ship inside the package (``shipped:NAME``)."""
    if not SHIPPED_DIR.is_dir():
        return []
    return sorted(p.name for p in SHIPPED_DIR.iterdir() if (p / ROUTER_CONFIG).is_file())


def resolve_artifact(location: str | os.PathLike[str]) -> Path:
    """A folder, or ``shipped:NAME`` for an artifact inside the package."""
    text = str(location)
    if not text.startswith(SHIPPED_PREFIX):
        return Path(location)
    name = text.removeprefix(SHIPPED_PREFIX)
    if name not in shipped_routers():
        raise InputError(
            f"no shipped router '{name}'; shipped: {', '.join(shipped_routers()) or 'none'}",
            path=text,
        )
    return SHIPPED_DIR / name


def save_router(router: Router, directory: str | os.PathLike[str]) -> Path:
    """Write a trained router's artifact; routers without state cannot be saved."""
    save = getattr(router, "save", None)
    if save is None:
        raise ConfigError(f"router '{router.name}' has no trained state to save")
    return Path(save(directory))


def load_router(directory: str | os.PathLike[str]) -> Router:
    """Load the router class named in ``<directory>/router.json`` (which checks its own model);
    ``shipped:NAME`` loads an artifact that ships inside the package."""
    get_router("random")  # import the built-in routers so that their names resolve
    directory = resolve_artifact(directory)
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
