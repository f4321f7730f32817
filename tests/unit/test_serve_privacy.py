"""Secrets and user text: keys and URL credentials never printed; the decision log is private."""

from __future__ import annotations

import hashlib
import json
import stat

import httpx
import pytest
from serve_fixtures import make_service, serve

from routelmt.backends.openai import OpenAITranslator
from routelmt.cli import main
from routelmt.errors import ConfigError
from routelmt.redact import redact
from routelmt.serve.config import load_config
from routelmt.serve.log import read_decision_log, resolve_log_path
from routelmt.serve.security import load_api_keys

SECRET = "sk-very-secret-123456"


def test_print_config_masks_keys_and_url_credentials(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ROUTELMT_API_KEY", SECRET)
    keys = tmp_path / "keys"
    keys.write_text("# ops\nanother-secret-key-42\n")
    url = f"openai:https://admin:{SECRET}@llm.example/v1#big"
    argv = ["serve", "--large", url, "--api-key-file", str(keys), "--print-config"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert SECRET not in out and "another-secret-key-42" not in out
    shown = json.loads(out)
    assert shown["large"] == "openai:https://***@llm.example/v1#big"
    assert shown["server"]["api_keys_loaded"] == 2


def test_api_key_sources_and_bad_keys(tmp_path, monkeypatch):
    monkeypatch.setenv("ROUTELMT_API_KEY", "env-key-12345678,env-key-2-abcdefgh")
    assert load_api_keys(["cfg-key-12345678"]) == (
        "cfg-key-12345678",
        "env-key-12345678",
        "env-key-2-abcdefgh",
    )
    monkeypatch.setenv("ROUTELMT_API_KEY", "short")
    with pytest.raises(ConfigError, match="at least 8") as err:
        load_api_keys()
    assert "short" not in str(err.value)


def test_endpoint_credentials_never_reach_the_client(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    large = OpenAITranslator(base_url=f"http://user:{SECRET}@127.0.0.1:{port}/v1", model="m")
    service = make_service(large=large, log_path=tmp_path / "log.jsonl")
    srv = serve(service)
    try:
        r = httpx.post(srv.url + "/v1/translate", json={"text": "hello", "policy": "large"})
        body = r.json()
        assert body["fallback"] and body["error"] == "large model call failed (unreachable)"
        assert SECRET not in r.text
        logged = (tmp_path / "log.jsonl").read_text()
        assert SECRET not in logged and "***@127.0.0.1" in logged
    finally:
        srv.stop()
    assert redact(f"GET http://u:{SECRET}@h/x Bearer {SECRET} api_key={SECRET}").count(SECRET) == 0


def test_decision_log_is_private_and_texts_are_a_choice(tmp_path, monkeypatch):
    monkeypatch.setenv("ROUTELMT_STATE", str(tmp_path / "state"))
    path = resolve_log_path(load_config(None)["server"]["log_path"])
    assert path == tmp_path / "state" / "decisions.jsonl"  # not the working directory
    service = make_service(log_path=path, log_text=False)
    srv = serve(service)
    try:
        httpx.post(srv.url + "/v1/translate", json={"text": "private words", "policy": "small"})
    finally:
        srv.stop()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    (record,) = read_decision_log(path)
    assert "source" not in record and "translation" not in record
    assert "private words" not in path.read_text()
    assert record["source_sha256"] == hashlib.sha256(b"private words").hexdigest()
    assert record["source_chars"] == 13 and record["translation_chars"] == 13
