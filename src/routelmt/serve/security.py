"""Who may call the service: API keys, the Host allow-list, and where keys come from.

Keys are compared in constant time and never logged, echoed in errors, or printed with the
config. The Host allow-list defends a service bound to loopback against DNS rebinding (a web
page on ``evil.example`` that resolves its own name to 127.0.0.1 and posts to it): by default,
a service bound to a loopback address answers only requests addressed to a loopback name.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from routelmt.errors import ConfigError

__all__ = ["API_KEY_ENV", "Security", "default_allowed_hosts", "load_api_keys"]

API_KEY_ENV = "ROUTELMT_API_KEY"  # one key, or several separated by commas
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class Security:
    """``api_keys`` empty: no authentication. ``allowed_hosts`` None: any Host header."""

    api_keys: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] | None = None
    metrics_need_key: bool = False

    def __repr__(self) -> str:  # never show the keys
        return (
            f"Security(api_keys=<{len(self.api_keys)}>, allowed_hosts={self.allowed_hosts!r}, "
            f"metrics_need_key={self.metrics_need_key})"
        )

    def host_allowed(self, host_header: str | None) -> bool:
        if self.allowed_hosts is None or "*" in self.allowed_hosts:
            return True
        if not host_header:
            return False
        host = host_header.strip().lower()
        if host.startswith("["):  # [::1]:8000
            host = host[1 : host.find("]")] if "]" in host else host
        elif host.count(":") == 1:
            host = host.rsplit(":", 1)[0]
        return host in self.allowed_hosts

    def key_ok(self, authorization: str | None) -> bool:
        if not self.api_keys:
            return True
        if not authorization:
            return False
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        given = token.strip().encode("utf-8", errors="replace")
        ok = False
        for key in self.api_keys:  # compare with every key: no early exit to time
            ok |= hmac.compare_digest(given, key.encode("utf-8"))
        return ok


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def default_allowed_hosts(
    bind_host: str, configured: Sequence[str] | None
) -> tuple[str, ...] | None:
    """The configured list; else the loopback names when bound to loopback; else any host."""
    if configured is not None:
        return tuple(h.lower() for h in configured)
    if _is_loopback(bind_host):
        return LOOPBACK_NAMES
    return None


def load_api_keys(
    keys: Iterable[str] = (), key_file: str | os.PathLike[str] | None = None
) -> tuple[str, ...]:
    """Keys from the config/flags, a file (one per line, '#' comments) and $ROUTELMT_API_KEY."""
    out = [k.strip() for k in keys if isinstance(k, str) and k.strip()]
    if key_file is not None:
        path = Path(key_file)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the API key file {path}: {exc}") from None
        out += [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]
        if not out:
            raise ConfigError(f"the API key file {path} holds no key")
    env = os.environ.get(API_KEY_ENV, "")
    out += [k.strip() for k in env.split(",") if k.strip()]
    for k in out:
        if len(k) < 8 or any(c.isspace() for c in k):
            raise ConfigError("an API key must be at least 8 characters, without spaces")
    return tuple(dict.fromkeys(out))
