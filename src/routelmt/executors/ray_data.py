"""The Ray executor: batches go out as blocks of a Ray Dataset to a pool of actors that each
build their worker (e.g. load the small model) once, and come back in order to the driver.

Only imported when a run asks for Ray (``--ray`` or ``executor: {kind: ray}``). The driver
keeps writing the staged outputs itself, so a run on Ray caches and resumes exactly like a
local one; a batch in flight when the driver dies is simply done again on the next run.
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from routelmt.errors import BackendError, ConfigError, MissingDependencyError, RouteLMTError

log = logging.getLogger(__name__)

# settings the workers need to find the same models and caches as the driver
_FORWARDED_ENV = ("ROUTELMT_CACHE", "ROUTELMT_MODELS", "ROUTELMT_STATE", "HF_HOME")


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise MissingDependencyError(
            "Ray is not installed; pip install 'routelmt[ray]' (or drop --ray)"
        ) from None
    return ray


def ray_address_file() -> Path:
    """Where ``ray start`` records the cluster that Ray joins by default."""
    try:
        from ray._common.utils import get_ray_address_file
    except ImportError:  # older Ray
        from ray._private.utils import get_ray_address_file  # type: ignore[no-redef]
    return Path(get_ray_address_file(None))


def _answers(address: str, timeout_s: float) -> bool:
    """Does something listen at ``host:port``? (A dead cluster's GCS port does not.)"""
    host, _, port = address.strip().rpartition(":")
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout_s):
            return True
    except (OSError, ValueError):
        return False


def resolve_address(
    address: str | None, *, address_file: Path | None = None, timeout_s: float = 2.0
) -> str | None:
    """The address to give ``ray.init``. Ray joins the cluster recorded by the last ``ray
    start`` when given none (or "auto"); a stopped cluster leaves its address there, and
    joining a dead address waits forever, deaf to SIGTERM. So check it answers first: if not,
    None starts a new local instance (with a warning), "auto" is a ConfigError."""
    if address not in (None, "auto") or os.environ.get("RAY_ADDRESS"):
        return address
    path = address_file if address_file is not None else ray_address_file()
    try:
        recorded = path.read_text(encoding="utf-8").strip()
    except OSError:  # no file: Ray starts a local instance (None) or says it found none
        return address
    if not recorded or _answers(recorded, timeout_s):
        return address
    if address is None:
        log.warning(
            "Ray: the cluster recorded in %s (%s) does not answer (a stopped `ray start` leaves "
            "its address behind); starting a new local Ray instance",
            path,
            recorded,
        )
        return "local"
    raise ConfigError(
        f"cannot join the Ray cluster: 'auto' means the one recorded in {path} ({recorded}), "
        f"which does not answer within {timeout_s:g} s (a stopped `ray start` leaves its "
        "address behind); start one (`ray start --head`), give its address, or use 'local' "
        f"for a new local instance (deleting {path} clears the stale record)"
    )


def connect(address: str | None) -> bool:
    """Join the cluster at ``address`` ("auto": the one started on this host with ``ray start``;
    "local": a new local instance; None: Ray's default, ``$RAY_ADDRESS``, else a cluster on
    this host, else a new local instance; a recorded cluster that is gone: ``resolve_address``).
    Returns whether this call connected (and so should disconnect at the end)."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    address = resolve_address(address)
    env = {key: os.environ[key] for key in _FORWARDED_ENV if key in os.environ}
    options: dict[str, Any] = {"runtime_env": {"env_vars": env}, "logging_level": logging.WARNING}
    if address in (None, "local"):  # ignored when this joins a running cluster
        options["include_dashboard"] = False
    try:
        ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        hint = ""
        if address not in (None, "auto") and os.environ.get("RAY_AUTH_MODE") != "token":
            hint = " (a cluster with token authentication needs RAY_AUTH_MODE=token here)"
        raise ConfigError(
            f"cannot join the Ray cluster at {address or 'the default address'}: {exc}{hint}"
        ) from None
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # our own progress bar says it
    log.info("Ray: %s", ray.cluster_resources())
    return True


def _limit_threads(threads: int) -> None:
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if "torch" in sys.modules:
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


class _BatchWorker:
    """One actor of the pool: builds its worker once, then maps ``call`` over pickled batches."""

    def __init__(self, factory: Callable[[], Any], call: Callable[[Any, Any], Any], threads: int):
        _limit_threads(threads)
        self.threads = threads
        self.worker = factory()
        self.call = call

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        batch = pickle.loads(row["batch"])
        result = self.call(self.worker, batch)
        _limit_threads(self.threads)  # a lazily loaded model has imported torch by now
        return {"index": row["index"], "result": pickle.dumps(result)}


def _user_error(exc: BaseException) -> RouteLMTError | None:
    """The RouteLMTError a worker raised, under Ray's wrappers."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, RouteLMTError):
            return current
        stack += [current.__cause__, current.__context__, getattr(current, "cause", None)]
    return None


class RayExecutor:
    """``workers`` actors with ``threads`` CPU threads each, on the cluster at ``address``."""

    name = "ray"
    stages: frozenset[str] = frozenset({"translate"})

    def __init__(self, address: str | None = None, workers: int = 2, threads: int = 1) -> None:
        self.address = address
        self.workers = int(workers)
        self.threads = int(threads)
        self._owns_connection = connect(address)

    def map_batches(
        self,
        factory: Callable[[], Any],
        call: Callable[[Any, Any], Any],
        batches: Sequence[Any],
    ) -> Iterator[Any]:
        if not batches:
            return
        import ray.data

        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True  # results in batch order
        context.enable_progress_bars = False  # the caller shows its own
        rows = [{"index": i, "batch": pickle.dumps(b)} for i, b in enumerate(batches)]
        dataset = ray.data.from_items(rows, override_num_blocks=len(rows)).map(
            _BatchWorker,
            fn_constructor_args=(factory, call, self.threads),
            compute=ray.data.ActorPoolStrategy(size=min(self.workers, len(rows))),
            num_cpus=self.threads,
        )
        expected = 0
        try:
            for row in dataset.iter_rows():
                if row["index"] != expected:  # preserve_order promises this
                    raise RuntimeError(f"Ray returned batch {row['index']}, expected {expected}")
                expected += 1
                yield pickle.loads(row["result"])
        except RouteLMTError:
            raise
        except Exception as exc:
            error = _user_error(exc)
            if error is not None:
                raise error from None
            raise BackendError(f"a Ray worker failed: {type(exc).__name__}: {exc}") from None

    def close(self) -> None:
        if self._owns_connection:
            import ray

            ray.shutdown()
            self._owns_connection = False
