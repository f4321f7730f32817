"""Every endpoint over a real uvicorn server on 127.0.0.1, with httpx and the openai client."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from serve_fixtures import FaultyServer, Reverse, Upper, closed_port_url, make_service, serve

from routelmt.backends.openai import OpenAITranslator
from routelmt.serve.log import read_decision_log


@pytest.fixture
def server(tmp_path):
    service = make_service(log_path=tmp_path / "decisions.jsonl", max_wait_ms=20)
    srv = serve(service)
    yield srv, service, tmp_path / "decisions.jsonl"
    srv.stop()


@pytest.fixture(scope="module")
def shared_server():
    """One server for the many bad-request cases (they change no state)."""
    service = make_service()
    srv = serve(service)
    yield srv, service, None
    srv.stop()


def test_translate_single_and_batch_with_routing_metadata(server):
    srv, service, log_path = server
    c = httpx.Client(base_url=srv.url, timeout=30)
    one = c.post("/v1/translate", json={"text": "hello", "target_lang": "de", "id": "x1"}).json()
    assert one["translation"] == "HELLO" and one["id"] == "x1"
    assert one["direction"] == "en-de" and one["model"] == "small-upper"
    for key in ("score", "threshold", "tier", "fallback", "policy", "reason"):
        assert key in one
    assert one["budget"]["spec"]["target"] == 0.3 and "budget" not in one["budget"]
    # the threshold this request met (None while warming up), and the one the next meets
    assert one["reason"] == "warmup" and one["threshold"] is None
    assert one["budget"]["next_threshold"] == 5.0 and "threshold" not in one["budget"]
    texts = [f"text number {i} " * (i % 7 + 1) for i in range(30)]
    batch = c.post("/v1/translate", json={"texts": texts, "direction": "en-es"}).json()
    assert len(batch["results"]) == 30
    for r, t in zip(batch["results"], texts, strict=True):
        assert r["translation"] == (t[::-1] if r["tier"] == "large" else t.upper())
    assert {r["tier"] for r in batch["results"]} == {"small", "large"}
    forced = c.post("/v1/translate", json={"text": "hi", "policy": "large"}).json()
    assert forced["tier"] == "large" and forced["translation"] == "ih"
    # the log holds one line per answered segment, with what a retrain needs
    records = read_decision_log(log_path)
    assert len(records) == 32
    assert {r["id"] for r in records} >= {"x1"}
    rec = next(r for r in records if r["id"] == "x1")
    assert rec["source"] == "hello" and rec["translation"] == "HELLO" and rec["score"] == 5.0


def test_concurrent_requests_share_batches_and_none_is_lost_or_doubled(server):
    srv, service, log_path = server
    small = service.hybrid.small

    def one(i: int) -> dict:
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            return c.post("/v1/translate", json={"text": f"req {i}", "id": f"r{i}"}).json()

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(one, range(64)))
    assert sorted(a["id"] for a in answers) == sorted(f"r{i}" for i in range(64))
    assert all(
        a["translation"] in (f"REQ {a['id'][1:]}", f"req {a['id'][1:]}"[::-1]) for a in answers
    )
    assert max(small.batches) > 1, small.batches  # concurrent requests shared a forward pass
    ids = [r["id"] for r in read_decision_log(log_path)]
    assert sorted(ids) == sorted(f"r{i}" for i in range(64))  # each exactly once


def test_openai_client_plain_and_streaming(server):
    srv, service, _ = server
    client = openai.OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0)
    resp = client.chat.completions.create(
        model="routelmt",
        messages=[
            {"role": "system", "content": "Translate from English to German."},
            {"role": "user", "content": "good day"},
        ],
    )
    routing = resp.model_extra["routing"]
    expected = "GOOD DAY" if routing["tier"] == "small" else "yad doog"
    assert resp.choices[0].message.content == expected
    assert routing["direction"] == "en-de" and routing["model"] == resp.model
    assert {"score", "threshold", "budget", "fallback", "tier"} <= set(routing)

    forced = client.chat.completions.create(
        model="large",
        messages=[{"role": "user", "content": "abc"}],
        extra_body={"target_lang": "es"},
    )
    assert forced.choices[0].message.content == "cba"
    assert forced.model_extra["routing"]["tier"] == "large"

    stream = client.chat.completions.create(
        model="routelmt",
        messages=[{"role": "user", "content": "one two three four"}],
        metadata={"target_lang": "de"},
        stream=True,
    )
    chunks = list(stream)
    assert len(chunks) >= 4
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks)
    tier = chunks[0].model_extra["routing"]["tier"]
    src = "one two three four"
    assert text == (src.upper() if tier == "small" else src[::-1])
    for ch in chunks:  # routing metadata in every chunk
        r = ch.model_extra["routing"]
        assert r["model"] == ch.model and r["direction"] == "en-de" and "budget" in r
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_health_and_metrics(server):
    srv, service, _ = server
    c = httpx.Client(base_url=srv.url, timeout=30)
    c.post("/v1/translate", json={"texts": ["a", "bb", "ccc"]})
    c.post("/v1/translate", json={"text": 5})
    health = c.get("/health").json()
    assert health["status"] == "ok" and health["small"] == "small-upper"
    assert health["budget"]["requests"] == 3
    text = c.get("/metrics").text
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert samples['routelmt_requests_total{endpoint="/v1/translate",status="200"}'] == 1
    assert samples['routelmt_requests_total{endpoint="/v1/translate",status="400"}'] == 1
    seg_total = sum(v for k, v in samples.items() if k.startswith("routelmt_segments_total"))
    assert seg_total == 3
    assert 'routelmt_segment_latency_seconds_bucket{le="+Inf",tier="small"}' in samples
    assert "routelmt_routed_share" in samples and samples["routelmt_budget_target"] == 0.3
    assert "# TYPE routelmt_segment_latency_seconds histogram" in text


@pytest.mark.parametrize(
    ("endpoint", "body", "status", "field"),
    [
        ("/v1/translate", {}, 400, "text"),
        ("/v1/translate", {"text": 3}, 400, "text"),
        ("/v1/translate", {"texts": ["ok", 4]}, 400, "texts[1]"),
        ("/v1/translate", {"texts": []}, 400, "texts"),
        ("/v1/translate", {"text": "x" * 5000}, 413, "text"),
        ("/v1/translate", {"texts": ["a"] * 100}, 413, "texts"),
        ("/v1/translate", {"text": "hi", "target_lang": "fr"}, 400, "target_lang"),
        ("/v1/translate", {"text": "hi", "target_lang": "xx"}, 400, "target_lang"),
        ("/v1/translate", {"text": "hi", "target_lang": 7}, 400, "target_lang"),
        ("/v1/translate", {"text": "hi", "policy": "medium"}, 400, "policy"),
        ("/v1/translate", {"text": "hi", "direction": "en"}, 400, "direction"),
        ("/v1/translate", [1, 2], 400, "body"),
        ("/v1/chat/completions", {"model": "m"}, 400, "messages"),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "system", "content": "x"}]},
            400,
            "messages",
        ),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": 5}]},
            400,
            "messages[0].content",
        ),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "a"}], "stream": "yes"},
            400,
            "stream",
        ),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "a"}], "n": 2},
            400,
            "n",
        ),
    ],
)
def test_bad_requests_are_4xx_naming_the_field(shared_server, endpoint, body, status, field):
    srv, service, _ = shared_server
    r = httpx.post(srv.url + endpoint, json=body, timeout=30)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["param"] == field and f"'{field}'" in err["message"]


def test_malformed_json_and_openai_client_error(server):
    srv, _, _ = server
    r = httpx.post(
        srv.url + "/v1/translate",
        content=b"{not json",
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "body"
    client = openai.OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError, match="unsupported language pair"):
        client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}], extra_body={"target_lang": "ja"}
        )


def test_small_model_failure_is_502_and_does_not_hit_batch_mates(server):
    srv, _, _ = server
    r = httpx.post(srv.url + "/v1/translate", json={"text": "FAIL-SMALL", "policy": "small"})
    assert r.status_code == 502 and "cannot translate" in r.json()["error"]["message"]


def _fallback_run(large, tmp_path, reason):
    service = make_service(large=large, share=0.5, log_path=tmp_path / "log.jsonl")
    srv = serve(service)
    try:
        c = httpx.Client(base_url=srv.url, timeout=60)
        texts = [f"sentence {'x' * i}" for i in range(12)]
        out = c.post("/v1/translate", json={"texts": texts, "policy": "large"}).json()["results"]
        out += c.post("/v1/translate", json={"texts": texts}).json()["results"]
        assert all(r["tier"] == "small" and r["fallback"] for r in out[:12])
        routed = [r for r in out[12:] if r["fallback"]]
        assert routed and all(r["error"] and r["score"] is not None for r in routed)
        assert all(r["error"] is None for r in out[12:] if not r["fallback"])
        assert all(r["translation"] == t.upper() for r, t in zip(out[12:], texts, strict=True))
        state = service.hybrid.pacer.state()
        # not charged: the 12 forced-large calls are charged too (the hard cap holds for them)
        # and refunded like the routed ones
        assert state["spent"] == 0.0 and state["refunds"] == 12 + len(routed)
        metrics = c.get("/metrics").text
        line = f'routelmt_fallbacks_total{{reason="{reason}"}} {12 + len(routed)}'
        assert line in metrics
        logged = read_decision_log(tmp_path / "log.jsonl")
        assert sum(r["fallback"] for r in logged) == 12 + len(routed)
    finally:
        srv.stop()


def test_fallback_when_large_endpoint_is_down(tmp_path):
    large = OpenAITranslator(base_url=closed_port_url(), model="m", timeout=2)
    _fallback_run(large, tmp_path, "unreachable")


def test_fallback_when_large_endpoint_is_slow(tmp_path):
    with FaultyServer("ok", delay=5.0) as slow:
        large = OpenAITranslator(base_url=slow.url, model="m", timeout=0.3)
        _fallback_run(large, tmp_path, "timeout")


def test_fallback_when_large_endpoint_answers_garbage(tmp_path):
    with FaultyServer("empty-content") as bad:
        large = OpenAITranslator(base_url=bad.url, model="m", timeout=5)
        _fallback_run(large, tmp_path, "garbage")


def test_large_model_is_a_second_instance_of_our_service(tmp_path):
    """Front service -> OpenAI backend -> back service (forced to its own 'small', Reverse)."""
    back = make_service(small=Reverse(), directions=None)
    back_srv = serve(back)
    front_srv = None
    try:
        large = OpenAITranslator(base_url=back_srv.url + "/v1", model="small", timeout=10)
        front = make_service(large=large, log_path=tmp_path / "front.jsonl")
        front_srv = serve(front)
        c = httpx.Client(base_url=front_srv.url, timeout=30)
        r = c.post(
            "/v1/translate", json={"text": "ship it", "policy": "large", "target_lang": "de"}
        )
        body = r.json()
        assert body["translation"] == "ti pihs" and body["tier"] == "large"
        assert body["fallback"] is False and body["model"] == "small"
        assert back.health()["budget"]["requests"] == 0  # the back end honoured policy small
        assert json.loads((tmp_path / "front.jsonl").read_text().splitlines()[0])["tier"] == "large"
    finally:
        if front_srv:
            front_srv.stop()
        back_srv.stop()


def test_policy_override_can_be_disabled(tmp_path):
    service = make_service(allow_policy_override=False)
    srv = serve(service)
    try:
        r = httpx.post(srv.url + "/v1/translate", json={"text": "a", "policy": "large"})
        assert r.status_code == 403 and r.json()["error"]["param"] == "policy"
    finally:
        srv.stop()


class _LargeFailsOnMarker(Reverse):
    """The large model: reverses, except a text marked FAIL-LARGE, where its call fails."""

    def translate(self, segments):
        if any("FAIL-LARGE" in s.source for s in segments):
            raise RuntimeError("upstream down for this one")
        return super().translate(segments)


def test_a_paid_large_answer_survives_another_texts_small_failure(tmp_path):
    """A multi-text request: one text's large call succeeds (paid), another's large call fails
    and then its small model fails too. Before: 502, the paid answer lost, nothing logged."""
    service = make_service(large=_LargeFailsOnMarker(), log_path=tmp_path / "log.jsonl")
    srv = serve(service)
    try:
        texts = ["paid for", "FAIL-LARGE FAIL-SMALL"]
        r = httpx.post(
            srv.url + "/v1/translate", json={"texts": texts, "policy": "large"}, timeout=30
        )
        assert r.status_code == 200, r.text
        body = r.json()
        paid, failed = body["results"]
        assert paid["translation"] == "rof diap" and paid["tier"] == "large"
        assert failed["translation"] is None and failed["tier"] is None
        assert failed["error"] == "the small model failed on this text"
        assert body["failed"] == 1 and body["cost"]["cost"] == paid["cost"]["cost"]
        alone = httpx.post(
            srv.url + "/v1/translate", json={"text": "FAIL-SMALL", "policy": "small"}
        )
        assert alone.status_code == 502  # nothing to answer with: still a 502
        state = service.hybrid.pacer.state()
        assert state["spent"] == 1.0 and state["refunds"] == 1  # the paid call stays charged
        metrics = httpx.get(srv.url + "/metrics").text
        assert 'routelmt_errors_total{kind="small_model"} 2' in metrics
    finally:
        srv.stop()
        service.close()
    logged = read_decision_log(tmp_path / "log.jsonl")  # every decision, failed ones too
    assert [(x["tier"], x["decision"]) for x in logged] == [
        ("large", "forced_large"),
        ("none", "small_model_failed"),
        ("none", "small_model_failed"),
    ]
    assert "so did the small model" in logged[1]["error"] and logged[0]["translation"] == "rof diap"


def test_any_language_pair_is_served_and_an_untrained_one_says_zero_shot():
    """The default serves any pair of known languages; a pair the router was not trained on is
    routed all the same, and /health and each answer say so."""
    from routelmt.records import Segment
    from routelmt.routers.provenance import training_sources
    from routelmt.serve.config import load_config

    assert load_config(None)["server"]["directions"] is None  # the shipped default
    from routelmt.serve.service import router_directions

    class Trained:  # what a trained artifact carries: its training-sources record
        train_sources = training_sources(
            [Segment(id=str(i), direction="en-es", source=f"s {i}") for i in range(3)]
        )

    assert router_directions(Trained()) == ["en-es"]
    service = make_service(directions=None)
    service.trained_directions = router_directions(Trained())
    srv = serve(service)
    try:
        c = httpx.Client(base_url=srv.url, timeout=30)
        seen = c.post("/v1/translate", json={"text": "hello", "target_lang": "es"}).json()
        unseen = c.post("/v1/translate", json={"text": "hello", "direction": "fr-pt"}).json()
        assert seen["zero_shot"] is False and unseen["zero_shot"] is True
        assert unseen["direction"] == "fr-pt" and unseen["translation"] in ("HELLO", "olleh")
        chat = c.post(
            "/v1/chat/completions",
            json={
                "messages": [
                    {"role": "system", "content": "Translate from German into Japanese."},
                    {"role": "user", "content": "Guten Tag"},
                ]
            },
        ).json()
        assert chat["routing"]["direction"] == "de-ja" and chat["routing"]["zero_shot"] is True
        health = c.get("/health").json()["directions"]
        assert health["served"] == "any pair of known languages"
        assert health["router_trained_on"] == ["en-es"]
    finally:
        srv.stop()
        service.close()
    length_only = make_service(directions=None)  # a router that needs no training
    try:
        assert length_only.zero_shot("fr-pt") is None
        assert length_only.health()["directions"]["router_trained_on"] is None
    finally:
        length_only.close()


class _SpanishOnly(Upper):
    """A small model that can write Spanish only (as a llama.cpp head cut to ``es``)."""

    def writes(self, direction: str) -> str | None:
        return None if direction.endswith("-es") else "the small model's head is cut to es"


def test_a_pair_the_small_model_cannot_write_is_a_400_before_any_work():
    small = _SpanishOnly()
    srv = serve(make_service(small=small, directions=None))
    try:
        r = httpx.post(srv.url + "/v1/translate", json={"text": "hi", "target_lang": "de"})
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        assert err["param"] == "target_lang" and "cut to es" in err["message"]
        assert small.batches == []
        ok = httpx.post(srv.url + "/v1/translate", json={"text": "hi", "target_lang": "es"})
        assert ok.status_code == 200 and small.batches
    finally:
        srv.stop()
