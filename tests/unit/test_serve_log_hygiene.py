"""What reaches the logs: no credential an upstream echoes, no query-string key, no line a client
forges. A real ``routelmt serve`` process, its stderr and its decision log read back."""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import yaml
from test_serve_crash import _free_port, _write_replay

from routelmt.redact import LogHygiene, escape_controls, redact

BEARER = "sk-upstream-secret-777"
BASIC = base64.b64encode(b"admin:hunter2-basic-secret").decode()
QUERY_KEY = "query-secret-4242"


class _EchoingAuthError(BaseHTTPRequestHandler):
    """An upstream that refuses every call and echoes the credentials in its error body (as
    some proxies and gateways do)."""

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        echo = {
            "error": "unauthorized",
            "received": f"Authorization: {self.headers.get('Authorization')}",
            "expected": f"Authorization: Basic {BASIC}",
        }
        body = json.dumps(echo).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def upstream():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _EchoingAuthError)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def _serve(tmp_path, upstream: str) -> tuple[subprocess.Popen, str]:
    _write_replay(tmp_path / "small.jsonl", "tiny", 4, lambda i: f"small {i}")
    port = _free_port()
    config = {
        "small": str(tmp_path / "small.jsonl"),
        "large": f"openai:{upstream}#big",
        # a second endpoint: the backend logs the first one's failure before trying it
        "large_options": {"fallbacks": [f"{upstream}#big"], "max_retries": 0},
        "router": {"name": "random"},
        "server": {
            "port": port,
            "log_path": str(tmp_path / "decisions.jsonl"),
            "directions": None,
            "allow_policy_override": True,
            "breaker_failures": 0,
        },
    }
    (tmp_path / "serve.yaml").write_text(yaml.safe_dump(config))
    proc = subprocess.Popen(
        [sys.executable, "-m", "routelmt.cli", "serve", "--config", str(tmp_path / "serve.yaml")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "ROUTELMT_OPENAI_API_KEY": BEARER},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"server did not start: {proc.communicate()[1][-2000:]}")
        time.sleep(0.1)


def test_no_credential_and_no_forged_line_reaches_any_log(tmp_path, upstream):
    proc, url = _serve(tmp_path, upstream)
    try:
        r = httpx.post(
            url + f"/v1/translate?api_key={QUERY_KEY}",
            json={"text": "x", "id": "s1", "policy": "large"},
            timeout=30,
        )
        assert r.status_code == 200 and r.json()["fallback"] is True, r.text
        forged = {"text": "x", "id": "s2\nINFO routelmt: FORGED admin logged in", "policy": "large"}
        r = httpx.post(url + "/v1/translate", json=forged, timeout=30)
        assert r.status_code == 400 and r.json()["error"]["param"] == "id", r.text
    finally:
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    server_log = stderr + stdout  # uvicorn writes its access log to stdout
    decisions = (tmp_path / "decisions.jsonl").read_text()
    (record,) = [json.loads(line) for line in decisions.splitlines()]
    assert record["fallback"] and "HTTP 401" in record["error"]
    assert "Authorization: ***" in record["error"]
    assert "trying the next endpoint" in server_log  # the backend's own warning was written
    assert "/v1/translate?api_key=*** HTTP/1.1" in server_log  # the access line, key masked
    for secret in (BEARER, BASIC, QUERY_KEY):
        assert secret not in decisions and secret not in server_log
    assert not any("FORGED" in line for line in server_log.splitlines())


def test_redact_masks_echoed_authorization_and_query_keys():
    cases = {
        f"Authorization: Basic {BASIC}": "Authorization: ***",
        f'{{"authorization": "Bearer {BEARER}"}}': '{"authorization": "***"}',
        f"proxy said Basic {BASIC} was wrong": "proxy said Basic *** was wrong",
        f"GET /v1/translate?api_key={QUERY_KEY}&x=1": "GET /v1/translate?api_key=***&x=1",
        f"/v1/x?key={QUERY_KEY}&sig=abc&page=2": "/v1/x?key=***&sig=***&page=2",
        "a basic sentence, with basic words": "a basic sentence, with basic words",
    }
    for given, expected in cases.items():
        assert redact(given) == expected


def test_log_hygiene_escapes_client_text_and_keeps_numbers(tmp_path):
    logger = logging.getLogger("test-hygiene")
    logger.propagate = False
    handler = logging.FileHandler(tmp_path / "out.log")
    handler.addFilter(LogHygiene())
    logger.addHandler(handler)
    try:
        error = RuntimeError(f"HTTP 401: Authorization: Basic {BASIC}")
        logger.warning("large call failed for %s: %s (%d ms)", "s1\nERROR forged", error, 12)
        logger.warning("%(who)s asked", {"who": "line\r\nbreak"})
    finally:
        logger.removeHandler(handler)
        handler.close()
    lines = (tmp_path / "out.log").read_text().splitlines()
    assert lines == [
        "large call failed for s1\\nERROR forged: HTTP 401: Authorization: *** (12 ms)",
        "line\\r\\nbreak asked",
    ]
    assert escape_controls("tab\tkept\u2028") == "tab\tkept\\u2028"
