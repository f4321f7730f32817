"""Micro-batcher: batches fill up to the limit, every Future is resolved exactly once."""

from __future__ import annotations

import threading
import time

import httpx
import numpy as np
import pytest
from serve_fixtures import Reverse, Upper, serve

from routelmt.budget import BudgetSpec, Pacer
from routelmt.hybrid import HybridTranslator
from routelmt.routers.base import Router
from routelmt.serve.batcher import MicroBatcher
from routelmt.serve.service import TranslationService


def test_concurrent_items_share_a_batch_up_to_the_limit():
    gate = threading.Event()
    sizes = []

    def fn(items):
        gate.wait(5)
        sizes.append(len(items))
        return [x * 2 for x in items]

    b = MicroBatcher(fn, max_batch_size=4, max_wait_s=0.05)
    futures = [b.submit(i) for i in range(10)]
    gate.set()
    assert [f.result(5) for f in futures] == [i * 2 for i in range(10)]
    assert max(sizes) == 4 and sum(sizes) == 10
    b.close()


def test_a_failing_batch_fails_each_of_its_items_and_the_worker_lives_on():
    def fn(items):
        if "bad" in items:
            raise ValueError("boom")
        return items

    b = MicroBatcher(fn, max_batch_size=8, max_wait_s=0.05)
    futures = [b.submit(x) for x in ("a", "bad", "c")]
    for f in futures:
        with pytest.raises(ValueError, match="boom"):
            f.result(5)
    assert b.submit("d").result(5) == "d"
    b.close()


def test_cancelled_waiters_are_skipped_and_close_answers_everyone():
    gate = threading.Event()
    b = MicroBatcher(lambda items: (gate.wait(5), list(items))[1], max_batch_size=1)
    first = b.submit("first")  # the worker holds this one at the gate
    time.sleep(0.05)
    doomed = b.submit("doomed")
    assert doomed.cancel()
    later = b.submit("later")
    gate.set()
    assert first.result(5) == "first" and later.result(5) == "later"
    b.close()
    with pytest.raises(RuntimeError, match="shut down"):
        b.submit("too late").result(1)


def test_batching_off_means_one_segment_per_forward_pass():
    small = Upper(delay=0.01)
    pacer = Pacer(BudgetSpec(share=0.3), warmup=5)
    h = HybridTranslator(small, Reverse(), _Length(), pacer)
    srv = serve(TranslationService(h, batching=False, allow_policy_override=True))
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            r = c.post("/v1/translate", json={"texts": ["a", "b", "c", "d"], "policy": "small"})
        assert r.status_code == 200 and small.batches == [1, 1, 1, 1]
    finally:
        srv.stop()


class _Length(Router):
    name = "len"

    def score(self, batch):
        return np.array([len(s.source) for s in batch], dtype=float)


class _Broken(Router):
    name = "broken"

    def score(self, batch):
        raise RuntimeError("router exploded")


def test_an_internal_failure_is_a_json_500_and_counted():
    h = HybridTranslator(Upper(), Reverse(), _Broken(), Pacer(BudgetSpec(share=0.3)))
    srv = serve(TranslationService(h, allow_policy_override=True))
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            r = c.post("/v1/translate", json={"text": "a"})
            assert r.status_code == 500 and "router exploded" in r.json()["error"]["message"]
            ok = c.post("/v1/translate", json={"text": "a", "policy": "small"})
            assert ok.status_code == 500  # the router also scores forced requests (for the log)
            assert 'routelmt_errors_total{kind="routing"} 2' in c.get("/metrics").text
    finally:
        srv.stop()
