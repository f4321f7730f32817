"""Bad, hostile and broken HTTP input against a real uvicorn server: a clear 4xx for each, and
the server healthy afterwards (no 5xx, no 'internal' error counted, the next request served)."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest
from serve_fixtures import make_service

from routelmt.serve.app import create_app
from routelmt.serve.protocol import Limits
from routelmt.serve.runner import ConnectionLimits, ServerThread
from routelmt.serve.security import Security

KEY = "test-key-0123456789"
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def srv():
    service = make_service(allow_policy_override=False)
    app = create_app(
        service,
        security=Security(allowed_hosts=("localhost", "127.0.0.1", "::1")),
        limits=Limits(max_body_bytes=100_000, body_timeout_s=1.0),
    )
    server = ServerThread(app, limits=ConnectionLimits(header_timeout_s=1.0)).start()
    yield server
    server.stop()


def _healthy(url: str) -> None:
    assert httpx.get(url + "/health", timeout=10).status_code == 200
    r = httpx.post(url + "/v1/translate", json={"text": "still here"}, timeout=10)
    assert r.status_code == 200 and r.json()["translation"] in ("STILL HERE", "ereh llits")
    assert 'kind="internal"' not in httpx.get(url + "/metrics", timeout=10).text


def _post(url: str, raw: bytes, headers: dict | None = None, path: str = "/v1/translate"):
    return httpx.post(
        url + path, content=raw, headers=JSON if headers is None else headers, timeout=30
    )


def _user(text: str = "hi", **extra):
    return {"messages": [{"role": "user", "content": text}], **extra}


# -- malformed and hostile bodies ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "status", "param"),
    [
        (b"[" * 50_000 + b"]" * 50_000, 400, "body"),  # deep nesting: not a RecursionError 500
        (b'{"a":' * 15_000 + b"1" + b"}" * 15_000, 400, "body"),
        (b'{"text": "\\ud800"}', 400, "text"),  # a lone surrogate: not a 502 small-model error
        (b'{"texts": ["ok", "\\udfff x"]}', 400, "texts[1]"),
        (b"\xff\xfe{}", 400, "body"),  # not UTF-8
        (b"", 400, "body"),
        (b"null", 400, "body"),
        (b'"text"', 400, "body"),
        (b'{"text": "hi", "id": "' + b"x" * 5000 + b'"}', 400, "id"),
        (b'{"text": "hi", "id": true}', 400, "id"),
        (b'{"texts": ["a", "b"], "ids": ["1"]}', 400, "ids"),
        (b'{"text": "hi", "source_lang": "' + b"e" * 100 + b'"}', 400, "source_lang"),
        (b'{"text": "hi", "policy": ["large"]}', 400, "policy"),
        (b'{"text": "   "}', 400, "text"),
        (b'{"text": "x", "texts": ["y"]}', 400, "text"),
        # an integer past Python's 4,300-digit conversion limit, even in an ignored field
        (b'{"text": "hi", "unused": ' + b"9" * 5000 + b"}", 400, "body"),
        (b'{"text": "hi", "id": -' + b"1" * 4500 + b"}", 400, "body"),
        # an empty language is not "the default" (it was answered in the default direction)
        (b'{"text": "hi", "target_lang": ""}', 400, "target_lang"),
        (b'{"text": "hi", "source_lang": " ", "target_lang": "es"}', 400, "source_lang"),
        (b'{"text": "hi", "direction": ""}', 400, "direction"),
        (b'{"text": "hi", "direction": "en-es", "target_lang": ""}', 400, "direction"),
        (b'{"text": "hi", "target_lang": "tlh"}', 400, "target_lang"),
    ],
)
def test_bad_translate_bodies_are_400(srv, raw, status, param):
    r = _post(srv.url, raw)
    assert r.status_code == status, r.text[:300]
    err = r.json()["error"]
    assert err["param"] == param and err["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (_user(max_tokens=-1), "max_tokens"),
        (_user(max_tokens=10**12), "max_tokens"),
        (_user(max_tokens="abc"), "max_tokens"),
        (_user(max_tokens=True), "max_tokens"),
        (_user(temperature=-5), "temperature"),
        (_user(temperature="hot"), "temperature"),
        (_user(top_p=3), "top_p"),
        (_user(n=2), "n"),
        (_user(stream="yes"), "stream"),
        (_user(metadata=[1]), "metadata"),
        (_user(metadata={"target_lang": 5}), "metadata.target_lang"),
        (_user(user="u" * 1000), "user"),
        (_user(model="m" * 1000), "model"),
        ({"messages": "hi"}, "messages"),
        ({"messages": [{"role": 5, "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
            "messages[0].content",
        ),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": "x"}] * 100}, "messages"),
        (
            {
                "messages": [
                    {"role": "system", "content": "Translate from English to German."},
                    {"role": "user", "content": "hi"},
                ],
                "target_lang": "es",
            },
            "messages",
        ),
        # a language the system message names that we do not know: not the default direction
        (
            {
                "messages": [
                    {"role": "system", "content": "Translate to Klingon."},
                    {"role": "user", "content": "hi"},
                ]
            },
            "messages",
        ),
        (
            {
                "messages": [
                    {"role": "system", "content": "Translate from Elvish into English"},
                    {"role": "user", "content": "hi"},
                ]
            },
            "messages",
        ),
        (_user(target_lang=""), "target_lang"),
        (_user(metadata={"target_lang": ""}), "metadata.target_lang"),
    ],
)
def test_bad_chat_bodies_are_400(srv, body, param):
    r = _post(srv.url, json.dumps(body).encode(), path="/v1/chat/completions")
    assert r.status_code == 400, r.text[:300]
    err = r.json()["error"]
    assert err["param"] == param and f"'{param}'" in err["message"]


def test_forced_policy_is_refused_by_default(srv):
    r = _post(srv.url, b'{"text": "hi", "policy": "large"}')
    assert r.status_code == 403 and r.json()["error"]["param"] == "policy"
    r = _post(srv.url, json.dumps(_user(model="large")).encode(), path="/v1/chat/completions")
    assert r.status_code == 403


# -- size, type and origin, checked before parsing ----------------------------------------------
def test_oversized_bodies_are_413_before_parsing(srv):
    big = json.dumps({"text": "hi", "id": "x" * 200_000}).encode()
    r = _post(srv.url, big)
    assert r.status_code == 413 and r.json()["error"]["param"] == "body"

    def chunks():  # no Content-Length: counted while reading
        for _ in range(30):
            yield b" " * 10_000

    r = httpx.post(srv.url + "/v1/translate", content=chunks(), headers=JSON, timeout=30)
    assert r.status_code == 413


@pytest.mark.parametrize("kind", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_non_json_content_types_are_415(srv, kind):
    headers = {} if kind is None else {"content-type": kind}
    r = _post(srv.url, b'{"text": "hi"}', headers=headers)
    assert r.status_code == 415 and r.json()["error"]["param"] == "body"


def test_a_foreign_host_header_is_refused(srv):
    for host in ("evil.example", "evil.example:8000", "127.0.0.1.evil.example"):
        r = httpx.post(srv.url + "/v1/translate", json={"text": "hi"}, headers={"host": host})
        assert r.status_code == 421, host
    ok = httpx.post(srv.url + "/v1/translate", json={"text": "hi"}, headers={"host": "localhost"})
    assert ok.status_code == 200


# -- broken connections -------------------------------------------------------------------------
def _raw(srv, data: bytes) -> socket.socket:
    sock = socket.create_connection((srv.host, srv.port), timeout=10)
    sock.sendall(data)
    return sock


def test_a_body_shorter_than_its_length_times_out_with_408(srv):
    head = (
        b"POST /v1/translate HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    )
    with _raw(srv, head + b'{"text": "h') as sock:
        reply = sock.recv(65536)
    assert reply.startswith(b"HTTP/1.1 408")


def test_a_slow_request_head_is_cut_off(srv):
    with _raw(srv, b"POST /v1/translate HTTP/1.1\r\nHost: 127.0.0.1\r\n") as sock:
        t0 = time.monotonic()
        sock.settimeout(10)
        assert sock.recv(65536) == b""  # closed by the server
        assert time.monotonic() - t0 < 5


def test_clients_that_disconnect_are_not_internal_errors(srv):
    head = (
        b"POST /v1/translate HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    )
    for _ in range(5):
        _raw(srv, head + b'{"text": "hal').close()  # gone mid-body
        body = b'{"texts": ["one", "two"]}'
        full = head.replace(b"1000", str(len(body)).encode()) + body
        _raw(srv, full).close()  # gone before the answer
    time.sleep(1.5)
    assert 'kind="client_disconnect"' in httpx.get(srv.url + "/metrics").text
    _healthy(srv.url)


def test_server_is_healthy_after_all_of_it(srv):
    _healthy(srv.url)


# -- API keys -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def keyed():
    service = make_service()
    app = create_app(service, security=Security(api_keys=(KEY,), metrics_need_key=True))
    server = ServerThread(app).start()
    yield server
    server.stop()


def test_api_keys(keyed):
    url = keyed.url + "/v1/translate"
    for headers in ({}, {"authorization": "Bearer wrong-key-0000"}, {"authorization": KEY}):
        r = httpx.post(url, json={"text": "hi"}, headers=headers)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert KEY not in r.text and "wrong-key" not in r.text
    ok = httpx.post(url, json={"text": "hi"}, headers={"authorization": f"Bearer {KEY}"})
    assert ok.status_code == 200
    assert httpx.get(keyed.url + "/health").status_code == 200  # open
    assert httpx.get(keyed.url + "/metrics").status_code == 401
    auth = {"authorization": f"Bearer {KEY}"}
    assert httpx.get(keyed.url + "/metrics", headers=auth).status_code == 200
    import openai

    client = openai.OpenAI(base_url=keyed.url + "/v1", api_key=KEY, max_retries=0)
    reply = client.chat.completions.create(
        model="routelmt", messages=[{"role": "user", "content": "x"}]
    )
    assert reply.choices[0].message.content == "X"
    bad = openai.OpenAI(base_url=keyed.url + "/v1", api_key="nope-nope-nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="routelmt", messages=[{"role": "user", "content": "x"}])
