"""Registers the built-in metrics; imported by ``get_metric`` on first use."""

from routelmt.metrics import comet, qe, sacre  # noqa: F401  (registration happens on import)
