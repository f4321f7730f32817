"""Registers the built-in routers (imported on first ``get_router`` call): one line each."""

from __future__ import annotations

from routelmt.routers.base import ROUTERS
from routelmt.routers.simple import (
    GainOracleRouter,
    LengthRouter,
    QualityOracleRouter,
    RandomRouter,
)

ROUTERS.register("random")(RandomRouter)
ROUTERS.register("length")(LengthRouter)
ROUTERS.register("gain-oracle")(GainOracleRouter)
ROUTERS.register("quality-oracle")(QualityOracleRouter)

# These modules register their routers where they are defined; importing them is enough.
from routelmt.routers import external, inmodel, lora, two_stage  # noqa: E402, F401
