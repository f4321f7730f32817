"""One budget shared by two server processes through SQLite (WAL, BEGIN IMMEDIATE)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from routelmt.budget import BudgetSpec
from routelmt.errors import ConfigError
from routelmt.serve.shared_pacer import SQLitePacer

WORKER = """
import json, sys
import numpy as np
from routelmt.budget import BudgetSpec
from routelmt.serve.shared_pacer import SQLitePacer
path, seed, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
pacer = SQLitePacer(BudgetSpec(share=0.3, hard_cap=float(sys.argv[4])), path, warmup=20)
rng = np.random.default_rng(seed)
out = []
for i in range(n):
    d = pacer.decide(float(rng.normal()))
    if d.large and i % 10 == 0:
        pacer.refund(d)
        out.append([d.seq, False])
    else:
        out.append([d.seq, d.large])
print(json.dumps(out))
"""


def _run_two(path, n, cap):
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(path), str(seed), str(n), str(cap)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for seed in (1, 2)
    ]
    outs = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    return outs


def test_two_processes_share_one_budget(tmp_path):
    path = tmp_path / "budget.sqlite"
    n = 400
    a, b = _run_two(path, n, cap=10_000)
    seqs = [s for s, _ in a + b]
    assert sorted(seqs) == list(range(1, 2 * n + 1))  # one global sequence, no decision lost
    assert {s for s, _ in a}.isdisjoint(s for s, _ in b)
    state = SQLitePacer(BudgetSpec(share=0.3, hard_cap=10_000), path).state()
    routed = sum(large for _, large in a + b)
    assert state["requests"] == 2 * n and state["routed"] == routed == state["spent"]
    assert abs(state["realised_share"] - 0.3) < 0.05, state["realised_share"]
    assert state["refunds"] > 0


def test_hard_cap_holds_across_processes(tmp_path):
    path = tmp_path / "budget.sqlite"
    a, b = _run_two(path, 300, cap=25)
    state = SQLitePacer(BudgetSpec(share=0.3, hard_cap=25), path).state()
    assert state["spent"] <= 25 and sum(large for _, large in a + b) == state["spent"]
    assert state["capped"] > 0


def test_a_replica_with_another_budget_is_refused(tmp_path):
    path = tmp_path / "budget.sqlite"
    SQLitePacer(BudgetSpec(share=0.3), path).close()
    with pytest.raises(ConfigError, match="holds budget"):
        SQLitePacer(BudgetSpec(share=0.5), path)


def test_the_store_does_not_change_the_pacers_decisions(tmp_path):
    """Two handles on one store, alternating, decide exactly as one in-memory Pacer."""
    import numpy as np

    from routelmt.budget import Pacer

    spec = BudgetSpec(share=0.3, window=50)
    plain = Pacer(spec, warmup=10)
    a = SQLitePacer(spec, tmp_path / "b.sqlite", warmup=10)
    b = SQLitePacer(spec, tmp_path / "b.sqlite", warmup=10)
    scores = np.random.default_rng(5).normal(size=300)
    for i, s in enumerate(scores):
        expected = plain.decide(float(s))
        got = (a if i % 3 else b).decide(float(s))
        assert (got.large, got.threshold, got.seq) == (
            expected.large,
            expected.threshold,
            expected.seq,
        )
        if got.large and i % 7 == 0:
            assert (b if i % 3 else a).refund(got) == plain.refund(expected) is True
    shared, mine = a.state(), plain.state()
    shared.pop("store")
    assert shared == mine


OPENER = """
import sys, time
from routelmt.budget import BudgetSpec
from routelmt.serve.shared_pacer import SQLitePacer
path, start = sys.argv[1], float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))  # every opener at the same moment
pacer = SQLitePacer(BudgetSpec(share=0.3), path)
pacer.decide(0.0)
print("ok")
"""


def test_replicas_opening_a_new_store_at_once_all_start(tmp_path):
    """Two replicas creating the store together once failed with 'database is locked'."""
    import time

    for attempt in range(3):
        path = tmp_path / f"budget-{attempt}.sqlite"
        start = time.time() + 1.5  # after every interpreter has imported routelmt
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", OPENER, str(path), str(start)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(6)
        ]
        results = [p.communicate(timeout=120) for p in procs]
        assert all(p.returncode == 0 for p in procs), [err for _, err in results]
        state = SQLitePacer(BudgetSpec(share=0.3), path).state()
        assert state["requests"] == 6
