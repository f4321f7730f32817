"""Where router artifacts live: a folder, or ``shipped:NAME`` inside the package.

Its own module so that provenance (which reads a shipped artifact's training sources) and
artifacts (which writes them) both use it without importing each other.
"""

from __future__ import annotations

import os
from pathlib import Path

from routelmt.errors import InputError

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
