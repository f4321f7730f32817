"""FairLock: waiters get the lock in the order they asked, so a thread that releases and asks
again at once (a decode loop) cannot keep another (a prefill) out."""

from __future__ import annotations

import threading
import time

import pytest

from routelmt.locks import FairLock


def _wait_until(predicate, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("condition not reached")
        time.sleep(0.001)


def test_waiters_get_the_lock_in_arrival_order():
    lock = FairLock()
    order: list[str] = []
    lock.acquire()
    threads = []
    for name in "bcd":

        def take(name: str = name) -> None:
            with lock:
                order.append(name)

        t = threading.Thread(target=take)
        t.start()
        threads.append(t)
        queued = len(threads)
        _wait_until(lambda queued=queued: lock.waiting() == queued)  # queued in this order
    lock.release()
    for t in threads:
        t.join(10)
    assert order == ["b", "c", "d"]


def test_a_thread_that_re_takes_the_lock_in_a_loop_cannot_starve_a_waiter():
    lock = FairLock()
    stop = threading.Event()
    queued = threading.Event()
    steps_after_queued: list[int] = []
    counter = [0]

    def loop() -> None:  # a decode loop: take, work a little, release, take again
        while not stop.is_set():
            with lock:
                counter[0] += 1
                time.sleep(0.0005)

    looper = threading.Thread(target=loop)
    looper.start()
    _wait_until(lambda: counter[0] > 5)

    def waiter() -> None:
        lock.acquire()  # goes into the queue behind the holder
        steps_after_queued.append(counter[0] - at_queue[0])
        lock.release()

    at_queue = [0]
    with lock:  # queue the waiter while we hold the lock, so the loop's next ask is behind it
        at_queue[0] = counter[0]
        w = threading.Thread(target=waiter)
        w.start()
        _wait_until(lambda: lock.waiting() == 2)  # the loop and the waiter, in either order
        queued.set()
    w.join(10)
    stop.set()
    looper.join(10)
    # the loop may have asked before the waiter queued (one step at most), never more
    assert steps_after_queued and steps_after_queued[0] <= 1


def test_reentrant_timeout_and_foreign_release():
    lock = FairLock()
    with lock, lock:  # the holder may take it again
        got: list[bool] = []
        t = threading.Thread(target=lambda: got.append(lock.acquire(timeout=0.05)))
        t.start()
        t.join(10)
        assert got == [False]  # timed out while held
        assert lock.waiting() == 0  # and left the queue
        assert lock.acquire(blocking=False)  # reentrant, non-blocking
        lock.release()
    assert lock.acquire(blocking=False)  # free again after the outer release
    other: list[BaseException] = []

    def foreign() -> None:
        try:
            lock.release()
        except RuntimeError as exc:
            other.append(exc)

    t = threading.Thread(target=foreign)
    t.start()
    t.join(10)
    lock.release()
    assert other and "does not hold" in str(other[0])
    with pytest.raises(RuntimeError, match="does not hold"):
        lock.release()
