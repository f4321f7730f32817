"""The hybrid translation service: FastAPI app (``app``), serving core (``service``), micro-batcher,
Prometheus metrics, crash-safe decision log, config loading and a shared multi-process pacer."""
