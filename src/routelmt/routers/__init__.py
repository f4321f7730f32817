"""Routers behind one registry; see ``routers.base``."""

from routelmt.routers.base import ROUTERS, Router, get_router

__all__ = ["ROUTERS", "Router", "get_router"]
