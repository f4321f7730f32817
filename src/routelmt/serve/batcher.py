"""Batching for the service: micro-batches for routing, a continuous batch for decoding.

``MicroBatcher``: a worker thread takes the first waiting item, then keeps collecting until
``max_batch_size`` items or ``max_wait_s`` since that first item, and hands the batch to ``fn``
in one call. Items are taken round-robin across owners (requests), so a request with many
texts shares each batch with the others instead of filling the queue ahead of them. Two limits
keep one request from holding the model: ``max_batch_cost`` caps a batch's total ``cost``
(the service: source characters, so one prefill of long texts cannot stall decoding for long),
and ``gate(owner, taken)`` says whether an owner may have one more item in this batch (the
service: only as many prefilled rows as the decoder can take, see ``ContinuousDecoder.has_room``).
Each item's Future is resolved exactly once: with its own result, or with the batch's exception.

``ContinuousDecoder``: small-model decoding where rows join a running batch at every step.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

from routelmt.errors import ConfigError

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class _WorkerThread:
    """One daemon thread draining a queue guarded by ``_cond``; ``close`` lets it finish."""

    _join_timeout_s = 60.0
    _cond: threading.Condition
    _closed: bool
    _thread: threading.Thread

    def _start(self, name: str) -> None:
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Finish what is queued (and running), then stop."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=self._join_timeout_s)


class MicroBatcher(_WorkerThread, Generic[T, R]):
    """``submit(item, owner) -> Future``; ``fn(items) -> results`` runs on one worker thread."""

    _gate_poll_s = 0.5

    def __init__(
        self,
        fn: Callable[[Sequence[T]], Sequence[R]],
        *,
        max_batch_size: int = 16,
        max_wait_s: float = 0.005,
        on_batch: Callable[[int, float], None] | None = None,
        cost: Callable[[T], float] | None = None,
        max_batch_cost: float | None = None,
        gate: Callable[[Any, int], bool] | None = None,
        name: str = "batcher",
    ) -> None:
        if isinstance(max_batch_size, bool) or int(max_batch_size) < 1:
            raise ConfigError(f"max_batch_size must be >= 1, got {max_batch_size!r}")
        if float(max_wait_s) < 0:
            raise ConfigError(f"max_wait must be >= 0, got {max_wait_s!r}")
        if max_batch_cost is not None and not float(max_batch_cost) > 0:
            raise ConfigError(f"max_batch_cost must be > 0, got {max_batch_cost!r}")
        self.fn = fn
        self.max_batch_size = int(max_batch_size)
        self.max_wait_s = float(max_wait_s)
        self.on_batch = on_batch
        self.cost = cost
        self.max_batch_cost = None if max_batch_cost is None else float(max_batch_cost)
        self.gate = gate
        self._waiting: dict[Any, list[tuple[T, Future[R]]]] = {}  # owner -> items, in order
        self._count = 0
        self._cond = threading.Condition()
        self._closed = False
        self.batches = 0
        self.items = 0
        self._start(name)

    def submit(self, item: T, owner: Any = None) -> Future[R]:
        fut: Future[R] = Future()
        with self._cond:
            if self._closed:
                fut.set_exception(RuntimeError("the batcher is shut down"))
                return fut
            self._waiting.setdefault(owner, []).append((item, fut))
            self._count += 1
            self._cond.notify()
        return fut

    def wake(self) -> None:
        """Look at the queue again: a gate that was shut may have opened."""
        with self._cond:
            self._cond.notify_all()

    def _may_take(self, owner: Any, taken: int) -> bool:
        return self.gate is None or self.gate(owner, taken)

    def _take(self) -> list[tuple[T, Future[R]]]:
        """Up to max_batch_size items (and max_batch_cost), one per owner per round, skipping
        owners whose gate is shut (lock held)."""
        batch: list[tuple[T, Future[R]]] = []
        taken: dict[Any, int] = {}
        spent = 0.0
        full = False
        while not full and len(batch) < self.max_batch_size:
            before = len(batch)
            for owner in list(self._waiting):
                if not self._may_take(owner, taken.get(owner, 0)):
                    continue
                queue_ = self._waiting[owner]
                cost = 0.0 if self.cost is None else float(self.cost(queue_[0][0]))
                if batch and self.max_batch_cost is not None and spent + cost > self.max_batch_cost:
                    full = True
                    break
                batch.append(queue_.pop(0))
                spent += cost
                taken[owner] = taken.get(owner, 0) + 1
                if not queue_:
                    del self._waiting[owner]
                if len(batch) == self.max_batch_size:
                    break
            if len(batch) == before:
                break  # every waiting owner is gated (or nothing waits)
        for owner in taken:  # served owners go behind the others next time
            if owner in self._waiting:
                self._waiting[owner] = self._waiting.pop(owner)
        self._count -= len(batch)
        return batch

    def _ready(self) -> bool:
        return any(self._may_take(owner, 0) for owner in self._waiting)

    def _next(self) -> tuple[list[tuple[T, Future[R]]], bool]:
        with self._cond:
            while not self._ready() and (self._waiting or not self._closed):
                # a shut gate opens when the decoder finishes a row (it calls wake); the
                # timeout is only a safety net against a wake that never comes
                self._cond.wait(self._gate_poll_s if self._waiting else None)
            deadline = time.monotonic() + self.max_wait_s
            while self._count < self.max_batch_size and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            batch = self._take()
            return batch, self._closed and not self._waiting

    def _run(self) -> None:
        try:
            self._loop()
        finally:  # nothing submitted is ever left unanswered
            with self._cond:
                self._closed = True
                left = [fut for q in self._waiting.values() for _, fut in q]
                self._waiting.clear()
            for fut in left:
                if fut.set_running_or_notify_cancel():
                    fut.set_exception(RuntimeError("the batcher shut down"))

    def _loop(self) -> None:
        while True:
            batch, stop = self._next()
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


class _Ticket:
    __slots__ = ("state", "index", "owner", "future", "arrived")

    def __init__(self, state: Any, index: int, owner: Any, future: Future) -> None:
        self.state, self.index, self.owner, self.future = state, index, owner, future
        self.arrived = time.monotonic()


class ContinuousDecoder(_WorkerThread):
    """Small-model decoding as one running batch that rows join and leave at every step.

    ``submit(state, index, owner) -> Future[str]`` queues one prefilled segment (``state`` from
    ``LMGenerator.prefill``); a worker thread admits waiting rows into a
    ``generation.DecodeBatch`` before each step and resolves a row's Future as soon as it
    finishes, so a short request is never held behind long ones.

    Fairness: waiting rows are admitted from the request (``owner``) with the fewest rows in
    the batch first (then the earliest), and one request holds at most ``max_share`` of the
    ``max_rows`` slots, so the rest stay free for newcomers: a one-word request joins within a
    step of arriving even while a request with many long texts decodes. ``has_room`` is the
    back-pressure for whoever prefills: a request is prefilled only while it has fewer than
    ``max_rows`` rows here (running or waiting), so the prefills of a request with many texts
    come one free row at a time instead of all at once ahead of everybody else; ``on_room`` is
    called (without the lock) whenever a row leaves.
    """

    _join_timeout_s = 120.0

    def __init__(
        self,
        generator: Any,
        *,
        max_rows: int = 16,
        max_share: float = 0.75,
        on_step: Callable[[int, float], None] | None = None,
        name: str = "decoder",
    ) -> None:
        from routelmt.generation import DecodeBatch

        if isinstance(max_rows, bool) or int(max_rows) < 1:
            raise ConfigError(f"max_rows must be >= 1, got {max_rows!r}")
        if not 0 < float(max_share) <= 1:
            raise ConfigError(f"max_share must be in (0, 1], got {max_share!r}")
        # a generator may bring its own batch (llama.cpp: one sequence per row)
        factory = getattr(generator, "decode_batch", None)
        self.batch = factory() if callable(factory) else DecodeBatch(generator)
        self.max_rows = int(max_rows)
        self.per_owner = max(1, int(self.max_rows * float(max_share)))
        self.on_step = on_step
        self.on_room: Callable[[], None] | None = None
        self._waiting: dict[Any, list[_Ticket]] = {}  # owner -> its rows, oldest first
        self._running: dict[Any, int] = {}
        self._cond = threading.Condition()
        self._closed = False
        self.steps = 0
        self.step_s = 0.0  # time in decode steps, for the mean step time in /health
        self.admitted: list[Any] = []  # owners in the order their rows joined (for tests)
        self._start(name)

    def submit(self, state: Any, index: int, owner: Any = None) -> Future[str]:
        fut: Future[str] = Future()
        with self._cond:
            if self._closed:
                fut.set_exception(RuntimeError("the decoder is shut down"))
                return fut
            self._waiting.setdefault(owner, []).append(_Ticket(state, int(index), owner, fut))
            self._cond.notify()
        return fut

    def has_room(self, owner: Any, extra: int = 0) -> bool:
        """May ``owner`` have one more row prefilled, beside ``extra`` already on the way?"""
        with self._cond:
            if self._closed:
                return True  # let it through: submit answers that the decoder is shut down
            held = self._running.get(owner, 0) + len(self._waiting.get(owner, ()))
            return held + int(extra) < self.max_rows

    def pending(self) -> int:
        with self._cond:
            return sum(len(q) for q in self._waiting.values()) + len(self.batch)

    def _admit(self) -> list[_Ticket]:
        """Waiting rows that join now (called with the lock held)."""
        chosen: list[_Ticket] = []
        free = self.max_rows - len(self.batch)
        while free > 0:
            owners = [
                o for o, q in self._waiting.items() if self._running.get(o, 0) < self.per_owner
            ]
            if not owners:
                break
            owner = min(
                owners, key=lambda o: (self._running.get(o, 0), self._waiting[o][0].arrived)
            )
            ticket = self._waiting[owner][0]
            if not ticket.future.cancelled() and not self.batch.can_join_many(
                [(t.state, t.index) for t in chosen] + [(ticket.state, ticket.index)]
            ):
                break  # it could outgrow a sliding window beside these rows: it waits
            self._waiting[owner].pop(0)
            if not self._waiting[owner]:
                del self._waiting[owner]
            if not ticket.future.set_running_or_notify_cancel():
                continue  # the client gave up before its row started
            chosen.append(ticket)
            self._running[owner] = self._running.get(owner, 0) + 1
            self.admitted.append(owner)
            free -= 1
        return chosen

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # pragma: no cover - a bug: fail everything, loudly
            log.exception("decoder loop failed")
            self._fail_all(exc)
        finally:
            self._fail_all(RuntimeError("the decoder shut down"))

    def _fail_all(self, exc: BaseException) -> None:
        with self._cond:
            for queue_ in self._waiting.values():
                for t in queue_:
                    if not t.future.done():
                        t.future.set_exception(exc)
            self._waiting.clear()
            self._running.clear()
        for row in self.batch.rows:
            if not row.key.future.done():
                row.key.future.set_exception(exc)
        self.batch.clear()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not len(self.batch) and not self._waiting:
                    self._cond.wait()
                if self._closed and not len(self.batch) and not self._waiting:
                    return
                joining = self._admit()
            for ticket in joining:
                try:
                    self.batch.join(ticket.state, [ticket.index], keys=[ticket])
                except Exception as exc:
                    self._finish(ticket, exc=exc)
            if not len(self.batch):
                continue
            t0 = time.perf_counter()
            try:
                done = self.batch.step()
            except Exception as exc:  # the whole step failed: every row in it fails
                log.exception("decode step failed")
                rows = [row.key for row in self.batch.rows]
                self.batch.clear()
                for ticket in rows:
                    self._finish(ticket, exc=exc)
                continue
            took = time.perf_counter() - t0
            self.steps += 1
            self.step_s += took
            for ticket, text, _count in done:
                self._finish(ticket, text=text)
            if self.on_step is not None:
                try:
                    self.on_step(len(self.batch) + len(done), took)
                except Exception:  # metrics must never break serving
                    log.exception("on_step callback failed")

    def _finish(self, ticket: _Ticket, *, text: str | None = None, exc: Any = None) -> None:
        with self._cond:
            left = self._running.get(ticket.owner, 0) - 1
            if left > 0:
                self._running[ticket.owner] = left
            else:
                self._running.pop(ticket.owner, None)
        if exc is not None:
            ticket.future.set_exception(exc)
        else:
            ticket.future.set_result(text)
        self._room()

    def _room(self) -> None:
        if self.on_room is not None:
            try:
                self.on_room()
            except Exception:  # a waker must never break decoding
                log.exception("on_room callback failed")
