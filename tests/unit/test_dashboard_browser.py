"""The operator's dashboard as an operator sees it: ``routelmt serve`` started from a config
(replay small model, a real OpenAI-compatible large endpoint on loopback, an API key), traffic,
then the large endpoint dies so the breaker opens; headless Chromium logs in (Basic, the key
as password), runs the page's script, and every number on the page is checked against a
scrape of /metrics and against the decision log. Nothing the users sent is on the page."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
import yaml
from headless import Page, chromium, dump_dom, screenshot
from prometheus_client.parser import text_string_to_metric_families
from serve_fixtures import FaultyServer
from test_serve_crash import _free_port, _write_replay

from routelmt.serve.log import read_decision_log

KEY = "dash-test-key-123"
N = 60  # answered while the large endpoint is up
SECRET = "PRIVATE-SOURCE-TEXT"


def _config(tmp_path, port: int, large_url: str) -> dict:
    _write_replay(tmp_path / "small.jsonl", "tiny", N + 12, lambda i: f"small {i}")
    return {
        "small": str(tmp_path / "small.jsonl"),
        "large": f"openai:{large_url}#big-model",
        "large_options": {"timeout": 5.0, "max_retries": 0},
        "router": {"name": "length"},
        "budget": {"share": 0.3, "hard_cap": 40, "warmup": 5},
        "server": {
            "port": port,
            "log_path": str(tmp_path / "decisions.jsonl"),
            "directions": ["en-es", "en-de"],
            "breaker_failures": 3,
            "breaker_cooldown_s": 600.0,
            "dashboard_decisions": 500,
        },
    }


def _start(tmp_path, config: dict) -> subprocess.Popen:
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "ROUTELMT_API_KEY": KEY}
    cmd = [sys.executable, "-m", "routelmt.cli", "-q", "serve", "--config", str(path)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait(url: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.2)


def _traffic(client: httpx.Client, first: int, count: int) -> None:
    for i in range(first, first + count):
        lang = ("es", "de")[i % 2]
        text = f"{SECRET} {i} " + "word " * (i % 11)
        r = client.post("/v1/translate", json={"text": text, "id": f"s{i}", "target_lang": lang})
        assert r.status_code == 200, r.text


def _scrape(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _total(samples: dict, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= set(lab))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A service that answered N segments, then lost its large endpoint; the page's DOM."""
    chromium()  # skip before starting anything when there is no browser
    tmp = tmp_path_factory.mktemp("dash")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with FaultyServer("ok") as big:
        proc = _start(tmp, _config(tmp, port, big.url))
        try:
            _wait(url, proc)
            client = httpx.Client(
                base_url=url, timeout=30, headers={"Authorization": f"Bearer {KEY}"}
            )
            _traffic(client, 0, N)
            big.httpd.shutdown()  # the large endpoint goes away: fallbacks, then the breaker
            big.httpd.server_close()
            _traffic(client, N, 12)
            dom = dump_dom(f"http://ops:{KEY}@127.0.0.1:{port}/dashboard", tmp / "profile")
            shot = screenshot(
                f"http://ops:{KEY}@127.0.0.1:{port}/dashboard",
                tmp / "dashboard.png",
                tmp / "profile",
            )
            yield {
                "url": url,
                "client": client,
                "page": Page(dom),
                "dom": dom,
                "screenshot": shot,
                "log": read_decision_log(tmp / "decisions.jsonl"),
            }
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def test_page_numbers_match_metrics(served):
    page, client = served["page"], served["client"]
    assert page.text["status"].startswith("updated"), page.text["status"]
    m = _scrape(client.get("/metrics").text)
    assert page.value("segments-total") == _total(m, "routelmt_segments_total") == N + 12
    assert page.text["segments-total"] == str(N + 12)
    translated = _total(m, "routelmt_requests_total", endpoint="/v1/translate", status="200")
    assert page.value("requests-translate") == translated == N + 12
    for element, name in [
        ("routed-share", "routelmt_routed_share"),
        ("target-share", "routelmt_budget_target"),
        ("cost-saved-share", "routelmt_cost_saved_share"),
    ]:
        assert page.value(element) == pytest.approx(_total(m, name), abs=1e-12), element
        assert page.text[element] == f"{100 * _total(m, name):.1f}%", element
    for element, name in [
        ("budget-spent", "routelmt_budget_spent"),
        ("budget-remaining", "routelmt_budget_remaining"),
        ("cost-total", "routelmt_cost_total"),
        ("cost-all-large", "routelmt_cost_all_large_total"),
        ("cost-saved", "routelmt_cost_saved"),
    ]:
        assert page.value(element) == pytest.approx(_total(m, name), abs=1e-9), element
        assert page.text[element] == f"{_total(m, name):.2f}", element
    stage1 = _total(m, "routelmt_stage_routed_share", stage="1")
    assert page.text["stage-shares"] == f"stage 1 {100 * stage1:.1f}%"
    threshold = _total(m, "routelmt_budget_threshold")
    assert page.text["threshold-now"] == f"{threshold:.3f}"
    assert page.text["hard-cap"] == "40.00"
    fallbacks = _total(m, "routelmt_fallbacks_total")
    assert fallbacks >= 3 and page.value("fallbacks-total") == fallbacks


def test_tier_table_matches_metrics_and_the_decision_log(served):
    page, client, log = served["page"], served["client"], served["log"]
    m = _scrape(client.get("/metrics").text)
    rows = {r[0]: r for r in page.rows["by-tier"]}
    assert set(rows) == {"small", "large"}
    for tier, row in rows.items():
        assert int(row[1]) == _total(m, "routelmt_segments_total", tier=tier)
        assert float(row[2]) == pytest.approx(_total(m, "routelmt_cost_total", tier=tier))
        count = _total(m, "routelmt_segment_latency_seconds_count", tier=tier)
        assert int(row[3]) == count  # every decision is still in the ring
        latencies = [r["latency_ms"] for r in log if r["tier"] == tier]
        for cell, q in zip(row[4:7], (50, 95, 99), strict=True):
            assert cell == f"{np.percentile(latencies, q):.1f}", (tier, q)
    by_direction = {r[0]: r for r in page.rows["by-direction"]}
    for direction, row in by_direction.items():
        mine = [r for r in log if r["direction"] == direction]
        assert int(row[1]) == len(mine)
        large = sum(r["tier"] != "small" for r in mine)
        assert row[2] == f"{100 * large / len(mine):.1f}%"
    assert set(by_direction) == {"en-es", "en-de"}
    assert [r[0] for r in page.rows["by-stage"]] == ["stage 1"]
    note = f"the last {N + 12} of {N + 12} decisions this process answered (keeps 500)"
    assert note in page.text["recent-note"]


def test_breaker_open_and_last_decisions_without_text(served):
    page, dom, log = served["page"], served["dom"], served["log"]
    health = served["client"].get("/health").json()
    assert health["large_breaker"]["state"] == "open"
    breaker = page.attrs["breaker-large"]
    assert breaker["data-state"] == "open"
    assert "open" in page.text["breakers"] and "next probe in" in page.text["breakers"]
    m = _scrape(served["client"].get("/metrics").text)
    assert _total(m, "routelmt_breaker_state", tier="large", state="open") == 1
    opened = _total(m, "routelmt_breaker_opened", tier="large")
    assert opened == 1 and f"opened {opened:.0f}x" in page.text["breakers"]
    last = page.rows["last-decisions"]
    assert len(last) == 50
    newest = log[-1]
    assert last[0][1] == newest["source_sha256"][:16]  # the page's hash is the log's
    assert int(last[0][2]) == newest["source_chars"]
    assert SECRET not in dom and "word word" not in dom
    data = served["client"].get("/dashboard/data").json()
    assert SECRET not in json.dumps(data)


def test_screenshot_and_first_render_time(served):
    assert served["screenshot"].stat().st_size > 50_000  # charts and tables, not a blank page
    first = float(served["page"].attrs["dashboard"]["data-first-render-ms"])
    assert first > 0


def test_the_key_is_needed(served):
    url = served["url"]
    for path in ("/dashboard", "/dashboard/data", "/dashboard/dashboard.js"):
        r = httpx.get(url + path)
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
        assert httpx.get(url + path, auth=("ops", "wrong-key-123")).status_code == 401
        assert httpx.get(url + path, auth=("anyone", KEY)).status_code == 200
    r = httpx.get(url + "/dashboard", auth=("ops", KEY))
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert "http" not in r.text.replace("http-equiv", "")  # nothing loaded from elsewhere
