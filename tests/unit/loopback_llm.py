"""A real OpenAI-compatible chat server on 127.0.0.1 that counts what it is asked and answers.

It stands in for a hosted large model (none can run here): the answer is ``[L] <source>`` so a
test sees which tier translated a segment. ``received`` counts the requests per source text as
they arrive, ``answered`` the answers fully sent; ``hang_after`` makes every request after the
first N wait until ``release()`` (to kill a client while a call is in flight); ``fail_on``
answers HTTP 500 for sources containing one of its strings.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class LoopbackLLM:
    def __init__(self, *, hang_after: int | None = None, fail_on: tuple[str, ...] = ()) -> None:
        self.received: Counter[str] = Counter()
        self.answered: Counter[str] = Counter()
        self.hang_after = hang_after
        self.fail_on = fail_on
        self.lock = threading.Lock()
        self.released = threading.Event()
        self.arrived = threading.Condition(self.lock)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                self._send(200, {"object": "list", "data": [{"id": "big", "object": "model"}]})

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                source = body["messages"][-1]["content"]
                with outer.lock:
                    outer.received[source] += 1
                    order = sum(outer.received.values())
                    outer.arrived.notify_all()
                if outer.hang_after is not None and order > outer.hang_after:
                    outer.released.wait(30)
                if any(marker in source for marker in outer.fail_on):
                    self._send(500, {"error": {"message": "large model overloaded"}})
                    return
                answer = {
                    "choices": [{"message": {"role": "assistant", "content": f"[L] {source}"}}]
                }
                if self._send(200, answer):
                    with outer.lock:
                        outer.answered[source] += 1

            def _send(self, status: int, payload: dict[str, Any]) -> bool:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    self.wfile.flush()
                    return True
                except (BrokenPipeError, ConnectionResetError):
                    return False

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def spec(self) -> str:
        return f"openai:{self.url}#big"

    def wait_received(self, n: int, timeout: float = 30.0) -> bool:
        with self.lock:
            return self.arrived.wait_for(lambda: sum(self.received.values()) >= n, timeout)

    def release(self) -> None:
        self.hang_after = None
        self.released.set()

    def __enter__(self) -> LoopbackLLM:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        self.httpd.shutdown()
        self.httpd.server_close()
