"""The budget actor on a real cluster: two handles (two replicas) share one pacer, and after an
actor restart that lost its state, a refund of an earlier decision changes nothing."""

from __future__ import annotations

import contextlib
import time

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.integration]
ray = pytest.importorskip("ray")

from routelmt.budget import BudgetSpec  # noqa: E402
from routelmt.executors.ray_data import connect  # noqa: E402
from routelmt.serve.ray_budget import NAMESPACE, UNAVAILABLE, RayPacer  # noqa: E402


@pytest.fixture()
def joined(ray_cluster):
    connect(ray_cluster.address)
    yield
    with contextlib.suppress(ValueError):
        ray.kill(ray.get_actor("test-budget", namespace=NAMESPACE))
    ray.shutdown()


def _fresh(pacer: RayPacer) -> dict:
    """The actor's state, not the last one seen (``stale``) while it is unreachable."""
    deadline = time.monotonic() + 60
    while (state := pacer.state()).get("stale"):
        assert time.monotonic() < deadline, "the budget actor did not come back"
        time.sleep(0.05)
    return state


def test_two_handles_share_one_pacer_and_refunds_stay_in_their_state(joined):
    spec = BudgetSpec(share=0.5, hard_cap=3)
    a = RayPacer(spec, "test-budget", warmup=0)
    b = RayPacer(spec, "test-budget", warmup=0)
    made = [a.decide(1.0, force=True), b.decide(1.0, force=True), a.decide(1.0, force=True)]
    assert [d.seq for d in made] == [1, 2, 3]  # one sequence over both handles
    assert b.decide(1.0, force=True).reason == "hard_cap"  # the cap counts both
    assert a.refund(made[0]) is True and _fresh(a)["spent"] == 2
    with pytest.raises(ValueError, match="another pacer"):
        b.refund(made[0])  # made through a, not b

    before = _fresh(a)["epoch"]
    ray.kill(ray.get_actor("test-budget", namespace=NAMESPACE), no_restart=False)
    attempts = 0
    deadline = time.monotonic() + 60
    # ray.kill is asynchronous, and calls made while Ray restarts the actor either fail (then
    # the request goes small) or wait for it: go on until the restarted actor answers
    while True:
        d = a.decide(1.0, force=True)
        attempts += 1
        if d.reason == UNAVAILABLE:  # while it is away: small, nothing charged
            assert not d.large and d.charged == 0
        state = a.state()
        if not state.get("stale") and state["epoch"] != before:
            break
        assert time.monotonic() < deadline, "the budget actor did not come back"
        time.sleep(0.05)
    a.decide(1.0, force=True)
    state = _fresh(a)
    # a fresh state (no store): none of the 4 decisions before the kill; a call that failed
    # may still have reached the new actor (Ray: "may or may not have been executed")
    assert 1 <= state["requests"] <= attempts + 1
    assert a.refund(made[2]) is False  # charged to the lost state: not refunded into this one
    after = _fresh(a)
    assert after["spent"] == state["spent"] and after["stale_refunds"] == 1
