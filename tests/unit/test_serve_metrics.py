"""/metrics through prometheus_client: the exposition parses, the budget gauges read the live
state, process metrics and token counters are there, and multiprocess mode sums replicas."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from routelmt.serve.metrics import ServiceMetrics

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_exposition_parses_with_budget_gauges_tokens_and_process_metrics():
    state = {"spec": {"target": 0.3}, "next_threshold": 2.5, "spent": 3.0, "realised_share": 0.25}
    m = ServiceMetrics(lambda: state)
    m.requests.inc("/v1/translate", "200")
    m.segments.inc("small", "auto", amount=3)
    m.latency.observe(0.01, "small")
    m.observe_usage("large", 11, 13)
    samples = _samples(m.render())
    assert (
        samples[("routelmt_requests_total", (("endpoint", "/v1/translate"), ("status", "200")))]
        == 1
    )
    assert samples[("routelmt_segments_total", (("policy", "auto"), ("tier", "small")))] == 3
    assert samples[("routelmt_tokens_total", (("kind", "prompt"), ("tier", "large")))] == 11
    assert samples[("routelmt_tokens_total", (("kind", "completion"), ("tier", "large")))] == 13
    assert samples[("routelmt_segment_latency_seconds_count", (("tier", "small"),))] == 1
    assert samples[("routelmt_budget_target", ())] == 0.3
    assert samples[("routelmt_budget_threshold", ())] == 2.5
    state["next_threshold"] = 4.0  # read at scrape time
    assert _samples(m.render())[("routelmt_budget_threshold", ())] == 4.0
    assert ("process_resident_memory_bytes", ()) in samples
    assert m.requests.value("/v1/translate", "200") == 1 and m.latency.count("small") == 1
    # two services in one process do not collide (a registry each)
    assert ServiceMetrics().requests.value("/v1/translate", "200") == 0


REPLICA = textwrap.dedent(
    """
    import sys
    from routelmt.serve.metrics import ServiceMetrics
    m = ServiceMetrics(lambda: {"spec": {"target": 0.3}})
    n = int(sys.argv[1])
    m.requests.inc("/v1/translate", "200", amount=n)
    m.observe_usage("large", n, 2 * n)
    m.latency.observe(0.02, "large")
    if sys.argv[2:] == ["scrape"]:
        print(m.render())
    """
)


def test_multiprocess_mode_sums_the_replicas(tmp_path):
    folder = tmp_path / "prom"
    folder.mkdir()
    env = {**os.environ, "PYTHONPATH": SRC, "PROMETHEUS_MULTIPROC_DIR": str(folder)}

    def replica(*argv: str) -> str:
        cmd = [sys.executable, "-c", REPLICA, *argv]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    replica("2")
    replica("5")
    samples = _samples(replica("1", "scrape"))  # three processes, one scrape
    assert (
        samples[("routelmt_requests_total", (("endpoint", "/v1/translate"), ("status", "200")))]
        == 8
    )
    assert samples[("routelmt_tokens_total", (("kind", "completion"), ("tier", "large")))] == 16
    assert samples[("routelmt_segment_latency_seconds_count", (("tier", "large"),))] == 3
    assert samples[("routelmt_budget_target", ())] == 0.3
    assert len(list(folder.glob("*.db"))) >= 3  # one file per process and metric kind
