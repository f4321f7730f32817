"""The hybrid service on Ray Serve: N replicas behind Serve's HTTP proxy, one budget actor.

Each replica is the ordinary service (``build_service`` + ``create_app``: the same API, limits,
keys and decision log) holding its own small model; its budget is a ``RayPacer`` on the named
budget actor, so the share and the hard cap hold over all replicas on all hosts. Per replica:
the small model, micro-batching, the decision log (``<log>.<replica>.jsonl``) and ``/metrics``
(request counters of the replica that answered the scrape; the budget gauges are the shared
budget's). Every answer carries ``x-routelmt-replica``.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import signal
import threading
from typing import Any

from routelmt.budget.plan import STAGE2_SUFFIX
from routelmt.serve.ray_budget import NAMESPACE

log = logging.getLogger(__name__)

APP = "routelmt"
BUDGET_ACTOR = "routelmt-budget"
_FORWARDED_ENV = ("ROUTELMT_CACHE", "ROUTELMT_MODELS", "ROUTELMT_STATE", "ROUTELMT_API_KEY")


def replica_config(config: dict[str, Any], actor: str = BUDGET_ACTOR) -> dict[str, Any]:
    """The service config every replica runs: its budget is the actor ``actor`` (persisted to
    ``budget.store`` on the actor's host when one is set)."""
    out = copy.deepcopy(config)
    store = out["budget"]["store"]
    if store and str(store).startswith("ray:"):
        return out
    out["budget"]["store"] = f"ray:{actor}" + (f"|{store}" if store else "")
    return out


class HybridReplica:
    """One Serve replica: the whole service, its own small model and decision log."""

    def __init__(self, config: dict[str, Any]) -> None:
        from ray import serve

        from routelmt.serve.app import create_app
        from routelmt.serve.config import http_settings
        from routelmt.serve.log import resolve_log_path
        from routelmt.serve.service import build_service

        self._routelmt_replica = serve.get_replica_context().replica_id.unique_id
        config = copy.deepcopy(config)
        path = resolve_log_path(config["server"]["log_path"])
        if path is not None:  # one log per replica: no two processes append to one file
            path = path.with_name(f"{path.stem}.{self._routelmt_replica}{path.suffix or '.jsonl'}")
            config["server"]["log_path"] = str(path)
        security, limits, _ = http_settings(config)
        self._routelmt_service = build_service(config)
        self._routelmt_app = create_app(self._routelmt_service, security=security, limits=limits)
        replica = self._routelmt_replica

        @self._routelmt_app.middleware("http")
        async def tag(request: Any, call_next: Any) -> Any:
            response = await call_next(request)
            response.headers["x-routelmt-replica"] = replica
            return response

        log.info("replica %s ready (log: %s)", replica, path)

    def __serve_build_asgi_app__(self) -> Any:
        return self._routelmt_app


def application(config: dict[str, Any], *, replicas: int, cpus: float = 1.0) -> Any:
    """The Serve application: ``replicas`` copies of the service, ``cpus`` CPUs each."""
    from ray import serve

    env = {key: os.environ[key] for key in _FORWARDED_ENV if key in os.environ}
    deployment = serve.deployment(
        name="HybridReplica",
        num_replicas=replicas,
        max_ongoing_requests=int(config["server"]["max_batch_size"]) * 8,
        ray_actor_options={"num_cpus": cpus, "runtime_env": {"env_vars": env}},
        health_check_period_s=2,
        graceful_shutdown_timeout_s=10,
    )(serve.ingress()(HybridReplica))
    return deployment.bind(config)


def deploy(
    config: dict[str, Any], *, replicas: int, cpus: float = 1.0, actor: str = BUDGET_ACTOR
) -> str:
    """Start (or update) the application on the connected cluster; returns the proxy's URL."""
    from ray import serve

    server = config["server"]
    serve.start(http_options={"host": server["host"], "port": server["port"]})
    app = application(replica_config(config, actor), replicas=replicas, cpus=cpus)
    serve.run(app, name=APP, route_prefix="/", blocking=False)
    return f"http://{server['host']}:{server['port']}"


def shutdown(actor: str = BUDGET_ACTOR, *, keep_budget: bool = False) -> None:
    """Delete the application and (unless ``keep_budget``) its budget actors."""
    import ray
    from ray import serve

    serve.delete(APP)
    if keep_budget:
        return
    for name in (actor, actor + STAGE2_SUFFIX):  # budget.plan.stage_store's names
        # ValueError: never created (a one-stage router has no second budget)
        with contextlib.suppress(ValueError):
            ray.kill(ray.get_actor(name, namespace=NAMESPACE))


def serve_on_ray(
    config: dict[str, Any], *, address: str | None, replicas: int, cpus: float = 1.0
) -> None:
    """``routelmt serve --ray``: deploy, then wait for SIGINT/SIGTERM and take it all down."""
    from routelmt.executors.ray_data import connect

    connect(address)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        url = deploy(config, replicas=replicas, cpus=cpus)
        log.info("serving %d replicas at %s (budget actor %s)", replicas, url, BUDGET_ACTOR)
        stop.wait()
    finally:
        shutdown()
