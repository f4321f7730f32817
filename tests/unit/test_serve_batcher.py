"""Micro-batcher: batches fill up to the limit, every Future is resolved exactly once."""

from __future__ import annotations

import threading
import time

import httpx
import numpy as np
import pytest
from serve_fixtures import Reverse, Upper, serve

from routelmt.budget import BudgetSpec, Pacer
from routelmt.errors import ConfigError
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


def test_a_batch_stops_at_its_cost_limit_and_an_oversized_item_goes_alone():
    seen: list[list[str]] = []
    b: MicroBatcher[str, str] = MicroBatcher(
        lambda items: seen.append(list(items)) or list(items),
        max_batch_size=8,
        max_wait_s=0.0,
        cost=len,
        max_batch_cost=10,
    )
    with b._cond:  # all queued before the worker takes any
        futures = [
            b.submit(x, owner=i) for i, x in enumerate(["aaaa", "bbbb", "cccc", "d" * 25, "e"])
        ]
    assert [f.result(5) for f in futures] == ["aaaa", "bbbb", "cccc", "d" * 25, "e"]
    assert seen == [["aaaa", "bbbb"], ["cccc"], ["d" * 25], ["e"]]
    b.close()
    with pytest.raises(ConfigError, match="max_batch_cost"):
        MicroBatcher(lambda items: items, max_batch_cost=0)


def test_a_gated_owner_waits_while_others_pass_and_goes_on_when_woken():
    held: dict[str, int] = {"big": 0}
    limit = 2
    seen: list[list[str]] = []

    def gate(owner, taken: int) -> bool:
        return owner != "big" or held["big"] + taken < limit

    def fn(items):
        seen.append(list(items))
        held["big"] += sum(1 for x in items if x.startswith("big"))
        return list(items)

    b: MicroBatcher[str, str] = MicroBatcher(fn, max_batch_size=8, max_wait_s=0.0, gate=gate)
    b._gate_poll_s = 60.0  # only wake() may open the gate in this test
    with b._cond:
        big = [b.submit(f"big{i}", owner="big") for i in range(5)]
    assert [f.result(5) for f in big[:2]] == ["big0", "big1"]
    lone = b.submit("lone", owner="lone")
    assert lone.result(5) == "lone"  # not held behind the gated request
    assert not big[2].done()
    held["big"] = 0  # the big request's rows left the decoder
    b.wake()
    assert [f.result(5) for f in big[2:4]] == ["big2", "big3"]
    time.sleep(0.05)
    assert not big[4].done()  # two more taken (the gate counts this batch's), then shut again
    held["big"] = 0
    b.wake()
    assert big[4].result(5) == "big4"
    assert seen == [["big0", "big1"], ["lone"], ["big2", "big3"], ["big4"]]
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
