"""Checks on a backend before any work is spent: an endpoint that cannot be reached, a recorded
system that lacks some of the segments. Both are the user's to fix (exit 2), and both are cheaper
to find before a plan, a ledger or a half-translated store exists."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

from routelmt.backends.base import Translator
from routelmt.errors import ConfigError, InputError
from routelmt.records import Segment
from routelmt.redact import redact


def check_reachable(translator: Translator, role: str, timeout: float = 5.0) -> None:
    """A TCP connection to an endpoint backend (nothing is sent): an unreachable one fails the
    job before any work is spent. Backends without endpoints pass."""
    endpoints = getattr(translator, "endpoints", None)
    if not endpoints:
        return
    errors = []
    for endpoint in endpoints:
        parts = urlsplit(endpoint.base_url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            socket.create_connection((parts.hostname, port), timeout=timeout).close()
            return
        except OSError as exc:
            errors.append(f"{redact(endpoint.base_url)}: {exc.strerror or exc}")
    raise ConfigError(f"{role} endpoint unreachable ({'; '.join(errors)}); nothing was sent")


def check_covers(translator: Translator, segments: Sequence[Segment], role: str) -> None:
    """A recorded system must hold every segment (checked before anything is written)."""
    from routelmt.backends.replay import ReplayTranslator

    if isinstance(translator, ReplayTranslator):
        missing = [s.id for s in segments if s.id not in translator]
        if missing:
            raise InputError(
                f"{role} '{translator.name}' is a recording with no output for {len(missing)} "
                f"of your segments (first: {missing[0]}); give a live model or endpoint"
            )
