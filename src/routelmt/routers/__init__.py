"""Routers behind one registry; see ``routers.base`` for the interface and its capabilities."""

from routelmt.routers.base import (
    CAPABILITIES,
    ROUTERS,
    FeatureRouter,
    LoadableRouter,
    Router,
    SavableRouter,
    SecondStageRouter,
    capabilities,
    get_router,
    require,
)

__all__ = [
    "CAPABILITIES",
    "ROUTERS",
    "FeatureRouter",
    "LoadableRouter",
    "Router",
    "SavableRouter",
    "SecondStageRouter",
    "capabilities",
    "get_router",
    "require",
]
