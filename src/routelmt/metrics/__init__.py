"""Quality metrics behind one registry; see ``metrics.base``."""

from routelmt.metrics.base import METRICS, Metric, get_metric

__all__ = ["METRICS", "Metric", "get_metric"]
