"""A reentrant lock granted in arrival order.

A model's lock is taken by two loops in a server: the decoder, which releases it after each
step and asks for it again at once, and the routing prefill. ``threading.RLock`` makes no
promise about order, and in CPython the thread that releases usually gets it back before a
waiter wakes up (it still holds the GIL), so a decode loop can keep a waiting prefill, and the
request behind it, out for many steps. ``FairLock`` hands the lock to waiters first come, first
served, so decode steps and prefills take turns. No library lock offers this (``threading``
has none; asyncio's are for coroutines), hence the few lines here.
"""

from __future__ import annotations

import threading
from collections import deque
from types import TracebackType


class FairLock:
    """``with lock:`` like ``threading.RLock``, but waiters get it in the order they asked."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._owner: int | None = None
        self._depth = 0
        self._queue: deque[int] = deque()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        me = threading.get_ident()
        with self._cond:
            if self._owner == me:
                self._depth += 1
                return True
            if self._owner is None and not self._queue:
                self._owner, self._depth = me, 1
                return True
            if not blocking:
                return False
            self._queue.append(me)
            try:
                granted = self._cond.wait_for(
                    lambda: self._owner is None and self._queue[0] == me,
                    None if timeout is None or timeout < 0 else timeout,
                )
            finally:
                if not (self._owner is None and self._queue and self._queue[0] == me):
                    self._queue.remove(me)
                    self._cond.notify_all()  # the head of the queue may have changed
            if not granted:
                return False
            self._queue.popleft()
            self._owner, self._depth = me, 1
            return True

    def release(self) -> None:
        with self._cond:
            if self._owner != threading.get_ident():
                raise RuntimeError("cannot release a FairLock this thread does not hold")
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
                self._cond.notify_all()

    def waiting(self) -> int:
        """How many threads are queued for the lock (for tests and metrics)."""
        with self._cond:
            return len(self._queue)

    def __enter__(self) -> FairLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
