"""Routers behind one registry; see ``routers.base`` for the interface and its capabilities."""

from routelmt.routers.base import (
    CAPABILITIES,
    ROUTERS,
    FeatureRouter,
    LoadableRouter,
    Router,
    SavableRouter,
    SecondStageRouter,
    SharedQERouter,
    capabilities,
    get_router,
    require,
    stages,
)

__all__ = [
    "CAPABILITIES",
    "ROUTERS",
    "FeatureRouter",
    "LoadableRouter",
    "Router",
    "SavableRouter",
    "SecondStageRouter",
    "SharedQERouter",
    "capabilities",
    "get_router",
    "require",
    "stages",
]
