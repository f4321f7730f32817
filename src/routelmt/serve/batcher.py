"""Micro-batching: concurrent requests share the small model's forward passes.

A worker thread takes the first waiting item, then keeps collecting until ``max_batch_size``
items or ``max_wait_s`` since that first item, and hands the batch to ``fn`` in one call. Each
item's Future is resolved exactly once: with its own result, or with the batch's exception.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

from routelmt.errors import ConfigError

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")
_STOP: Any = object()


class MicroBatcher(Generic[T, R]):
    """``submit(item) -> Future``; ``fn(items) -> results`` runs on one worker thread."""

    def __init__(
        self,
        fn: Callable[[Sequence[T]], Sequence[R]],
        *,
        max_batch_size: int = 16,
        max_wait_s: float = 0.005,
        on_batch: Callable[[int, float], None] | None = None,
        name: str = "batcher",
    ) -> None:
        if isinstance(max_batch_size, bool) or int(max_batch_size) < 1:
            raise ConfigError(f"max_batch_size must be >= 1, got {max_batch_size!r}")
        if float(max_wait_s) < 0:
            raise ConfigError(f"max_wait must be >= 0, got {max_wait_s!r}")
        self.fn = fn
        self.max_batch_size = int(max_batch_size)
        self.max_wait_s = float(max_wait_s)
        self.on_batch = on_batch
        self._queue: queue.Queue[Any] = queue.Queue()
        self._closed = False
        self.batches = 0
        self.items = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: T) -> Future[R]:
        fut: Future[R] = Future()
        if self._closed:
            fut.set_exception(RuntimeError("the batcher is shut down"))
            return fut
        self._queue.put((item, fut))
        return fut

    def _collect(self, first: Any) -> tuple[list[Any], bool]:
        batch = [first]
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch_size:
            left = deadline - time.monotonic()
            try:
                got = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if got is _STOP:
                return batch, True
            batch.append(got)
        return batch, False

    def _run(self) -> None:
        try:
            self._loop()
        finally:  # nothing submitted is ever left unanswered
            while True:
                try:
                    got = self._queue.get_nowait()
                except queue.Empty:
                    break
                if got is not _STOP:
                    got[1].set_exception(RuntimeError("the batcher shut down"))

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch, stop = self._collect(first)
            # a waiter that gave up (cancelled) before its turn is skipped; once running, the
            # item is processed and its Future resolved exactly once
            batch = [(item, fut) for item, fut in batch if fut.set_running_or_notify_cancel()]
            if not batch:
                if stop:
                    return
                continue
            items = [item for item, _ in batch]
            t0 = time.perf_counter()
            try:
                results = list(self.fn(items))
                if len(results) != len(items):
                    raise RuntimeError(f"batch function returned {len(results)} for {len(items)}")
            except BaseException as exc:
                for _, fut in batch:
                    fut.set_exception(exc)
            else:
                for (_, fut), result in zip(batch, results, strict=True):
                    fut.set_result(result)
            self.batches += 1
            self.items += len(items)
            if self.on_batch is not None:
                try:
                    self.on_batch(len(items), time.perf_counter() - t0)
                except Exception:  # metrics must never break serving
                    log.exception("on_batch callback failed")
            if stop:
                return

    def close(self) -> None:
        """Finish what is queued, then stop."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join(timeout=60)
