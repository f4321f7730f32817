"""Where the heavy batch stages run: in this process (``local``) or on a Ray cluster (``ray``).

An executor maps a function over batches with one worker object per worker (built once by a
factory, e.g. a translator that loads its model), and hands the results back *in batch order*,
so the caller (``translate_resumable``) writes the same staged outputs, durably, one batch at a
time, whichever executor ran them. ``make_executor`` imports Ray only for ``kind: ray``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from routelmt.errors import ConfigError
from routelmt.registry import Registry
from routelmt.settings import defaults, key


@dataclass
class ExecutorSettings:
    """The ``executor:`` section of the bench config: where the heavy stages run."""

    kind: str = key("local", "local (this process) or ray (a Ray cluster)")
    address: str | None = key(None, "ray: 'auto', host:port, or null for Ray's default")
    workers: int = key(2, "ray: workers, each loading the model (or metric) once")
    threads: int = key(1, "ray: torch threads per worker")
    stages: list[str] = key(["translate"], "the stages sent out: translate (live backends), score")


DEFAULTS: dict[str, Any] = defaults(ExecutorSettings)
STAGES = ("translate", "score")


class Executor(Protocol):
    """Maps ``call(worker, batch)`` over ``batches``; ``worker = factory()`` once per worker."""

    name: str
    stages: frozenset[str]  # the bench stages it runs (``DEFAULTS["stages"]``)

    def map_batches(
        self,
        factory: Callable[[], Any],
        call: Callable[[Any, Any], Any],
        batches: Sequence[Any],
    ) -> Iterator[Any]:
        """Each batch's result, in the order of ``batches``, as soon as it (and those before
        it) are done."""
        ...

    def close(self) -> None: ...


EXECUTORS: Registry[Executor] = Registry("executor")


@EXECUTORS.register
class LocalExecutor:
    """Everything in this process, one batch after another (the default)."""

    name = "local"
    stages: frozenset[str] = frozenset()

    def __init__(self, **_: Any) -> None:
        pass

    def map_batches(
        self,
        factory: Callable[[], Any],
        call: Callable[[Any, Any], Any],
        batches: Sequence[Any],
    ) -> Iterator[Any]:
        worker = factory()
        for batch in batches:
            yield call(worker, batch)

    def close(self) -> None:
        pass


@EXECUTORS.register("ray")
def _ray(**settings: Any) -> Executor:
    from routelmt.executors.ray_data import RayExecutor  # imports ray: only when asked for

    return RayExecutor(**settings)


def check_settings(settings: Mapping[str, Any], where: str) -> None:
    """The ``executor:`` mapping of a config: known kind, positive worker and thread counts."""
    kind = settings.get("kind")
    if kind not in EXECUTORS.names():
        raise ConfigError(
            f"{where}: 'executor.kind' must be one of {', '.join(EXECUTORS.names())}, got {kind!r}"
        )
    for name in ("workers", "threads"):
        value = settings.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(
                f"{where}: 'executor.{name}' must be a positive integer, got {value!r}"
            )
    stages = settings.get("stages")
    if not isinstance(stages, list) or not stages or not set(stages) <= set(STAGES):
        raise ConfigError(
            f"{where}: 'executor.stages' must list some of {', '.join(STAGES)}, got {stages!r}"
        )


def make_executor(settings: Mapping[str, Any] | None) -> Executor:
    """The executor a config's ``executor:`` mapping names (None: local)."""
    settings = {**DEFAULTS, **(settings or {})}
    check_settings(settings, "executor")
    kind = settings.pop("kind")
    stages = frozenset(settings.pop("stages"))
    if kind == "local":
        return LocalExecutor()
    executor = EXECUTORS.create(kind, **settings)
    executor.stages = stages
    return executor


def _translate_call(translator: Any, batch: list[Any]) -> tuple[list[str], int | None]:
    """One batch on a worker: its texts, and the tokens generated where the backend says."""
    from routelmt.backends.base import generated_tokens

    texts = list(translator.translate(batch))
    return texts, generated_tokens(translator)


def translate_batches(
    executor: Executor, factory: Callable[[], Any]
) -> Callable[[list[list[Any]]], Iterator[tuple[list[str], int | None]]] | None:
    """The ``run_batches`` of ``translate_resumable`` for ``executor`` (None: the local path,
    with the caller's translator); ``factory`` builds the translator on each worker."""
    if "translate" not in executor.stages:
        return None
    return lambda batches: executor.map_batches(factory, _translate_call, batches)


def _score_call(metric: Any, chunk: tuple[list[Any], list[str]]) -> list[float]:
    from routelmt.labels import score_pairs

    return score_pairs(metric, *chunk)


def score_batches(
    executor: Executor,
    factory: Callable[[], Any],
    segments: Sequence[Any],
    hypotheses: Sequence[str],
    *,
    chunk: int = 256,
) -> list[float] | None:
    """Sentence scores computed by ``executor``'s workers (each builds the metric once), in
    order; None when the executor does not run the score stage (the caller scores locally)."""
    if "score" not in executor.stages:
        return None
    chunks = [
        (list(segments[i : i + chunk]), list(hypotheses[i : i + chunk]))
        for i in range(0, len(segments), chunk)
    ]
    return [v for part in executor.map_batches(factory, _score_call, chunks) for v in part]
