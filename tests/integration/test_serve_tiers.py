"""The service with three tiers and the quality-hypo guard, over real HTTP.

Small: in-process, it answers WMT24 en-es sources with their reference translation for half of
them and copies the English source for the other half (a small model's two typical outcomes).
Mid and large: two real OpenAI-compatible HTTP servers on loopback. They stand in for LLM
endpoints that cannot run here and answer a tagged echo; everything between them is the real
service: the length router, the tier pacer, the real ``qe-embed`` scorer as the guard, usage,
costs and metrics."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from routelmt.backends.base import Translator
from routelmt.datasets.wmt import WMTDataset
from routelmt.serve.app import create_app
from routelmt.serve.config import load_config
from routelmt.serve.runner import ServerThread
from routelmt.serve.service import build_service

pytestmark = pytest.mark.integration


class Endpoint:
    """A loopback OpenAI-compatible chat endpoint: answers '<tag> <user text>'."""

    def __init__(self, tag: str) -> None:
        self.calls = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.calls += 1
                text = f"{tag} {body['messages'][-1]['content']}"
                out = json.dumps({"choices": [{"message": {"content": text}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class HalfCopier(Translator):
    """Translates (the reference) the sources it knows as good, copies the others."""

    name = "small-half-copier"

    def __init__(self, good: dict[str, str]) -> None:
        self.good = good

    def translate(self, segments):
        return [self.good.get(s.source, s.source) for s in segments]


def _words(text: str) -> int:
    import re

    return len(re.findall(r"\w+|[^\w\s]", text))


def test_three_tiers_a_guard_costs_and_usage(wmt_root):
    # sentences long enough for the language check (a copied name or number is a fine "copy")
    every = WMTDataset(wmt_root).segments("en-es", reference="refA")
    segments = [s for s in every if len(s.source) >= 40 and s.source != s.reference][:240]
    good = {s.source: s.reference for i, s in enumerate(segments) if i % 2 == 0}
    mid, large = Endpoint("MID"), Endpoint("LARGE")
    config = load_config(
        None,
        {
            "router": {"name": "length"},
            "tiers": [
                {
                    "name": "mid",
                    "backend": f"openai:{mid.url}#mid-model",
                    "cost": 0.25,
                    "gain_scale": 0.6,
                },
                {"name": "large", "backend": f"openai:{large.url}#large-model", "cost": 1.0},
            ],
            "guard": {"name": "quality-hypo", "threshold": 50.0},
            "budget": {"share": 0.3, "warmup": 30},
            "server": {"log_path": None, "directions": ["en-es"], "allow_policy_override": True},
        },
    )
    service = build_service(config, small=HalfCopier(good))
    try:
        with ServerThread(create_app(service)) as srv:
            c = httpx.Client(base_url=srv.url, timeout=120)
            results, replies = [], []
            for start in range(0, len(segments), 10):
                chunk = segments[start : start + 10]
                r = c.post("/v1/translate", json={"texts": [s.source for s in chunk]})
                assert r.status_code == 200, r.text
                replies.append(r.json())
                results += r.json()["results"]
            calls = {"mid": mid.calls, "large": large.calls}
            metrics = c.get("/metrics").text
            health = c.get("/health").json()
            client = openai.OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0)
            models = {m.id for m in client.models.list()}
            chat = client.chat.completions.create(
                model="routelmt", messages=[{"role": "user", "content": segments[1].source}]
            )
            with pytest.raises(openai.BadRequestError, match="unknown model"):
                client.chat.completions.create(
                    model="gpt-4o", messages=[{"role": "user", "content": "Hello."}]
                )
            forced = client.chat.completions.create(
                model="large-model", messages=[{"role": "user", "content": "Hello."}]
            )
    finally:
        mid.close()
        large.close()
        service.close()

    by_source = {s.source: s for s in segments}
    tiers = [r["tier"] for r in results]
    # allocation: every tier answers, the budget (30% of all-large spend) holds, and the
    # predicted gain (the length router) buys the more expensive tiers
    assert {"small", "mid", "large"} <= set(tiers)
    late = results[80:]  # after the warm-up and the price settling with half vetoed
    spend = np.mean([r["cost"]["cost"] for r in late])
    assert abs(spend - 0.3) < 0.06, spend
    length = {
        t: np.mean([len(s.source) for s, r in zip(segments, results) if r["tier"] == t])
        for t in ("mid", "large")
    }
    assert length["large"] > length["mid"]
    assert calls == {"mid": tiers.count("mid"), "large": tiers.count("large")}
    for s, r in zip(segments, results, strict=True):
        assert (
            r["model"]
            == {"small": "small-half-copier", "mid": "mid-model", "large": "large-model"}[r["tier"]]
        )
        if r["tier"] != "small":
            assert r["translation"] == f"{r['tier'].upper()} {s.source}"
        # costs: per answer, against all-large (the large tier's cost), and the saving
        assert r["cost"] == {
            "cost": {"small": 0.0, "mid": 0.25, "large": 1.0}[r["tier"]],
            "all_large": 1.0,
            "saved": 1.0 - {"small": 0.0, "mid": 0.25, "large": 1.0}[r["tier"]],
        }
        # usage: the source and the answer in words and punctuation (no tokenizer here)
        assert r["usage"]["prompt_tokens"] == _words(s.source)
        assert r["usage"]["completion_tokens"] == _words(r["translation"])
        assert r["usage"]["total_tokens"] == r["usage"]["prompt_tokens"] + _words(r["translation"])
    # the guard: every candidate was decoded small and QE-scored; good translations stayed
    # small (vetoed), copies of the source went on to the tier the pacer chose
    checked = [(by_source[s.source], r) for s, r in zip(segments, results) if r["guard"]]
    assert checked
    for s, r in checked:
        is_good = s.source in good
        assert r["guard"]["vetoed"] == is_good, (r["guard"], is_good)
        assert (r["tier"] == "small") == is_good
        assert r["guard"]["name"] == "quality-hypo" and r["guard"]["threshold"] == 50.0
    vetoes = sum(r["guard"]["vetoed"] for _, r in checked)
    assert vetoes and health["guard"]["vetoes"] == vetoes
    assert health["guard"]["evaluations"] == len(checked)
    # request totals and /metrics
    for reply in replies:
        assert reply["usage"]["total_tokens"] == sum(
            r["usage"]["total_tokens"] for r in reply["results"]
        )
        assert reply["cost"]["cost"] == pytest.approx(
            sum(r["cost"]["cost"] for r in reply["results"])
        )
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line and not line.startswith("#")
    }
    assert samples['routelmt_cost_total{tier="mid"}'] == pytest.approx(0.25 * tiers.count("mid"))
    assert samples["routelmt_cost_all_large_total"] == pytest.approx(len(results))
    assert samples["routelmt_cost_saved_share"] == pytest.approx(1 - spend_all(results), abs=1e-9)
    assert samples['routelmt_guard_checks_total{guard="quality-hypo",vetoed="true"}'] == vetoes
    assert samples['routelmt_tokens_total{kind="prompt",tier="small"}'] == sum(
        r["usage"]["prompt_tokens"] for r in results if r["tier"] == "small"
    )
    assert 0.2 < samples["routelmt_routed_share"] < 0.4
    # models and chat conventions
    assert {"routelmt", "small", "mid", "large", "mid-model", "large-model"} <= models
    assert chat.usage is not None and chat.usage.prompt_tokens == _words(segments[1].source)
    assert chat.model_extra["routing"]["cost"]["all_large"] == 1.0
    assert forced.choices[0].message.content == "LARGE Hello." and forced.usage.total_tokens == 5


def spend_all(results: list[dict[str, Any]]) -> float:
    return sum(r["cost"]["cost"] for r in results) / len(results)
