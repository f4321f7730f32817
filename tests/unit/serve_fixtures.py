"""Cheap translators and real loopback HTTP servers for the serving tests (no mocks)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from routelmt.backends.base import Translator
from routelmt.budget import BudgetSpec, Pacer
from routelmt.hybrid import HybridTranslator
from routelmt.records import Segment
from routelmt.routers import get_router
from routelmt.serve.app import create_app
from routelmt.serve.runner import ServerThread
from routelmt.serve.service import TranslationService


class Upper(Translator):
    """The 'small model': upper-cases; records every batch it was given."""

    def __init__(self, name: str = "small-upper", delay: float = 0.0) -> None:
        self.name = name
        self.delay = delay
        self.batches: list[int] = []
        self._lock = threading.Lock()

    def translate(self, segments: Sequence[Segment]) -> list[str]:
        with self._lock:
            self.batches.append(len(segments))
        if self.delay:
            time.sleep(self.delay)
        for s in segments:
            if "FAIL-SMALL" in s.source:
                raise RuntimeError(f"cannot translate {s.id}")
        return [s.source.upper() for s in segments]


class Reverse(Translator):
    """The 'large model' when served in-process: reverses the text."""

    name = "large-reverse"

    def translate(self, segments: Sequence[Segment]) -> list[str]:
        return [s.source[::-1] for s in segments]


def make_service(
    small: Translator | None = None,
    large: Translator | None = None,
    *,
    share: float = 0.3,
    log_path: Path | None = None,
    **options: Any,
) -> TranslationService:
    pacer = Pacer(BudgetSpec(share=share), warmup=5)
    hybrid = HybridTranslator(small or Upper(), large or Reverse(), get_router("length"), pacer)
    options.setdefault("directions", ["en-es", "en-de"])
    options.setdefault("allow_policy_override", True)  # the tests force tiers
    options.setdefault("log_text", True)  # and read the texts back from the log
    return TranslationService(hybrid, log_path=log_path, **options)


def serve(service: TranslationService) -> ServerThread:
    return ServerThread(create_app(service)).start()


class _Handler(BaseHTTPRequestHandler):
    mode = "garbage-json"
    delay = 0.0

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        if self.delay:
            time.sleep(self.delay)
        mode = self.mode
        status = 500 if mode == "http-500" else 200
        if mode == "not-json":
            body = b"<html>oops</html>"
        elif mode == "empty-content":
            body = json.dumps({"choices": [{"message": {"content": "  "}}]}).encode()
        elif mode == "null-content":
            body = json.dumps({"choices": [{"message": {"content": None}}]}).encode()
        elif mode == "no-choices":
            body = json.dumps({"object": "chat.completion"}).encode()
        else:  # "ok" (used slow) or "http-500"
            body = json.dumps({"choices": [{"message": {"content": "slow but fine"}}]}).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if mode == "trickle":  # one byte every 0.2 s: each read is quick, the whole is slow
                for i in range(len(body)):
                    self.wfile.write(body[i : i + 1])
                    self.wfile.flush()
                    time.sleep(0.2)
            else:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass


class FaultyServer:
    """A real HTTP server on 127.0.0.1 that is slow or answers garbage."""

    def __init__(self, mode: str, delay: float = 0.0) -> None:
        handler = type("H", (_Handler,), {"mode": mode, "delay": delay})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FaultyServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def closed_port_url() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"  # nothing listens there any more
