"""The OpenAI-compatible backend against real loopback servers: ours, down, slow, garbage."""

from __future__ import annotations

import time

import pytest
from serve_fixtures import (
    FaultyServer,
    Reverse,
    closed_port_url,
    make_service,
    serve,
)

from routelmt.backends.openai import OpenAITranslator, parse_spec
from routelmt.backends.resolve import make_translator
from routelmt.errors import BackendError, ConfigError
from routelmt.records import Segment

SEG = Segment(id="s1", direction="en-de", source="good morning")


def test_spec_parsing_and_errors():
    assert parse_spec("http://h:1/v1/#m-1") == ("http://h:1/v1", "m-1")
    for bad in ("http://h:1/v1", "#m", "ftp://h#m"):
        with pytest.raises(ConfigError):
            parse_spec(bad)
    with pytest.raises(ConfigError, match="timeout"):
        OpenAITranslator(base_url="http://h/v1", model="m", timeout=0)


def test_translates_through_a_second_instance_of_our_service():
    """Our own service, forced to its small model, is the OpenAI-compatible 'large' endpoint."""
    service = make_service(small=Reverse(), directions=None)
    srv = serve(service)
    try:
        backend = make_translator(f"openai:{srv.url}/v1#small", timeout=10)
        segs = [SEG, Segment(id="s2", direction="en-es", source="thank you")]
        assert backend.translate(segs) == ["gninrom doog", "uoy knaht"]
        # the system prompt carried the languages: the server saw en-de and en-es
        health = service.health()
        assert health["batching"]["items"] == 2
        backend.close()
    finally:
        srv.stop()


def test_endpoint_down_is_a_backend_error():
    backend = OpenAITranslator(base_url=closed_port_url(), model="m", timeout=2)
    with pytest.raises(BackendError, match="unreachable"):
        backend.translate([SEG])


def test_slow_endpoint_times_out():
    with FaultyServer("ok", delay=3.0) as srv:
        backend = OpenAITranslator(base_url=srv.url, model="m", timeout=0.5)
        t0 = time.perf_counter()
        with pytest.raises(BackendError, match="timed out"):
            backend.translate([SEG])
        assert time.perf_counter() - t0 < 2.5


def test_a_trickling_answer_times_out_in_total():
    with FaultyServer("trickle") as srv:
        backend = OpenAITranslator(base_url=srv.url, model="m", timeout=1.0)
        t0 = time.perf_counter()
        with pytest.raises(BackendError, match="timed out"):
            backend.translate([SEG])
        assert time.perf_counter() - t0 < 2.0


def test_retries_stop_at_the_deadline():
    with FaultyServer("http-500") as srv:
        backend = OpenAITranslator(base_url=srv.url, model="m", timeout=5, max_retries=2)
        with pytest.raises(BackendError, match="HTTP 500"):
            backend.translate([SEG])


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("not-json", "not JSON"),
        ("empty-content", "empty translation"),
        ("null-content", "expected a string"),
        ("no-choices", "no 'choices'"),
        ("http-500", "HTTP 500"),
    ],
)
def test_garbage_answers_are_backend_errors(mode, message):
    with FaultyServer(mode) as srv:
        backend = OpenAITranslator(base_url=srv.url, model="m", timeout=5)
        with pytest.raises(BackendError, match=message):
            backend.translate([SEG])
