"""Run an app with uvicorn: in the foreground (the CLI) or on a thread (tests, benchmarks).

Slow clients are cut off: uvicorn times out idle keep-alive connections, but not a client that
sends its request head slowly (or never finishes it); ``GuardedH11Protocol`` closes such a
connection after ``header_timeout_s``. ``limit_concurrency`` caps open connections and tasks
(beyond it, 503). The body's own timeout is the app's (``serve.protocol.Limits``).
"""

from __future__ import annotations

import asyncio
import errno
import socket
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from routelmt.redact import install_log_hygiene


@dataclass(frozen=True)
class ConnectionLimits:
    """Per-connection limits given to uvicorn."""

    header_timeout_s: float = 10.0  # the request line and headers must arrive within this
    keep_alive_s: float = 5.0  # an idle keep-alive connection is closed after this
    limit_concurrency: int = 1000  # open connections + tasks; more are answered 503
    backlog: int = 2048

    def uvicorn_options(self) -> dict[str, Any]:
        header = self.header_timeout_s
        protocol = type("GuardedH11", (GuardedH11Protocol,), {"header_timeout_s": header})
        return {
            "http": protocol,
            "timeout_keep_alive": self.keep_alive_s,
            "limit_concurrency": self.limit_concurrency,
            "backlog": self.backlog,
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, plus a deadline for each request's head."""

    header_timeout_s: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_timer()  # the next request's head on a kept-alive connection

    def _arm_header_timer(self) -> None:
        old = getattr(self, "_header_timer", None)
        if old is not None:
            old.cancel()
        self._header_timer: asyncio.TimerHandle | None = self.loop.call_later(
            self.header_timeout_s, self._header_deadline
        )

    def _header_deadline(self) -> None:
        self._header_timer = None
        # still waiting for (the rest of) a request head: not in the middle of a request
        waiting = self.conn.their_state in (h11.IDLE,) and (
            self.cycle is None or self.cycle.response_complete
        )
        if waiting and not self.transport.is_closing():
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
        super().connection_lost(exc)


def bind(host: str = "127.0.0.1", port: int = 0, backlog: int = 2048) -> socket.socket:
    """A listening socket; port 0 picks a free one with no race. A host that does not resolve,
    or an address in use or not ours, is a ConfigError naming it (before anything is served)."""
    from routelmt.errors import ConfigError

    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise ConfigError(
            f"cannot listen on {host}:{port}: the host does not resolve ({exc})"
        ) from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        why = exc.strerror or str(exc)
        hint = "; another process holds it" if exc.errno == errno.EADDRINUSE else ""
        raise ConfigError(f"cannot listen on {host}:{port}: {why}{hint}") from None
    sock.set_inheritable(True)
    return sock


class ServerThread:
    """``with ServerThread(app) as srv: httpx.get(srv.url + "/health")``."""

    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        limits: ConnectionLimits | None = None,
        **options: Any,
    ) -> None:
        self.sock = bind(host, port)
        self.host, self.port = self.sock.getsockname()[:2]
        options = {**(limits or ConnectionLimits()).uvicorn_options(), **options}
        options.setdefault("log_level", "warning")
        options.setdefault("timeout_graceful_shutdown", 5)
        self.server = uvicorn.Server(uvicorn.Config(app, lifespan="on", **options))
        self.thread = threading.Thread(target=self._run, name="uvicorn", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        self.server.run(sockets=[self.sock])

    def start(self, timeout: float = 20.0) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_forever(
    app: Any,
    sock: socket.socket,
    *,
    log_level: str = "info",
    limits: ConnectionLimits | None = None,
) -> None:
    """Foreground server on a socket already bound (``bind``: a bad address fails before the
    service claims to serve), with uvicorn's signal handling (SIGINT/SIGTERM drain and exit).
    uvicorn's own log handlers get the same hygiene as ours (``redact.LogHygiene``): a
    query-string key is masked in the access log."""
    config = uvicorn.Config(
        app,
        log_level=log_level,
        timeout_graceful_shutdown=10,
        **(limits or ConnectionLimits()).uvicorn_options(),
    )  # configures uvicorn's logging, so the filters go on after it
    install_log_hygiene("uvicorn", "uvicorn.access", "uvicorn.error")
    uvicorn.Server(config).run(sockets=[sock])
