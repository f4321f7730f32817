"""A circuit breaker in front of the large model: stop calling an endpoint that keeps failing.

Without it, every request routed to a dead large endpoint pays the full timeout before it falls
back to the small model. With it: after ``failures`` failed calls in a row the circuit opens and
calls fail at once (the request falls back immediately, and is refunded as before); after
``cooldown_s`` one probe call is let through (half-open); if it succeeds the circuit closes, if
it fails the circuit stays open for another cooldown.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from routelmt.backends.base import Translator
from routelmt.errors import BackendError, ConfigError
from routelmt.records import Segment

__all__ = ["BreakerTranslator", "CircuitBreaker", "CircuitOpenError", "breakers_of"]

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitOpenError(BackendError):
    """The call was not made: the circuit is open."""


class CircuitBreaker:
    """Thread-safe consecutive-failure breaker with a single half-open probe."""

    def __init__(
        self,
        failures: int = 5,
        cooldown_s: float = 30.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(failures, bool) or not isinstance(failures, int) or failures < 1:
            raise ConfigError(f"breaker failures must be an integer >= 1, got {failures!r}")
        if isinstance(cooldown_s, bool) or not float(cooldown_s) > 0:
            raise ConfigError(f"breaker cooldown must be a positive number, got {cooldown_s!r}")
        self.failures = failures
        self.cooldown_s = float(cooldown_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._state = CLOSED
        self._in_a_row = 0
        self._opened_at = 0.0
        self._probing = False
        self.opened = 0  # times the circuit opened
        self.rejected = 0  # calls not made because it was open
        self.probes = 0

    @property
    def state(self) -> str:
        with self._lock:
            return self._state

    def allow(self) -> bool:
        """May a call go out now? (In half-open, only one probe at a time.)"""
        with self._lock:
            if self._state == CLOSED:
                return True
            if self._state == OPEN and self._clock() - self._opened_at >= self.cooldown_s:
                self._state = HALF_OPEN
            if self._state == HALF_OPEN and not self._probing:
                self._probing = True
                self.probes += 1
                return True
            self.rejected += 1
            return False

    def record(self, ok: bool) -> None:
        """The outcome of a call that ``allow`` let through."""
        with self._lock:
            self._probing = False
            if ok:
                self._state = CLOSED
                self._in_a_row = 0
                return
            self._in_a_row += 1
            if self._state == HALF_OPEN or self._in_a_row >= self.failures:
                if self._state != OPEN:
                    self.opened += 1
                self._state = OPEN
                self._opened_at = self._clock()

    def retry_in(self) -> float:
        with self._lock:
            if self._state != OPEN:
                return 0.0
            return max(0.0, self.cooldown_s - (self._clock() - self._opened_at))

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "state": self._state,
                "failures_in_a_row": self._in_a_row,
                "opened": self.opened,
                "rejected": self.rejected,
                "probes": self.probes,
            }


class BreakerTranslator(Translator):
    """``inner`` behind a ``CircuitBreaker``: while the circuit is open, calls fail at once."""

    def __init__(self, inner: Translator, breaker: CircuitBreaker) -> None:
        self.inner = inner
        self.breaker = breaker
        self.name = inner.name

    def translate(self, segments: Sequence[Segment]) -> list[str]:
        if not self.breaker.allow():
            raise CircuitOpenError(
                f"large model '{self.name}' not called: circuit open after "
                f"{self.breaker.failures} failures in a row "
                f"(next probe in {self.breaker.retry_in():.1f} s)"
            )
        try:
            out = self.inner.translate(segments)
        except BaseException:
            self.breaker.record(False)
            raise
        self.breaker.record(True)
        return out

    def close(self) -> None:
        self.inner.close()


def breakers_of(hybrid: Any) -> list[tuple[str, CircuitBreaker]]:
    """(tier, breaker) for each tier above the small model that has a circuit breaker."""
    translators = [(t.spec.name, t.translator) for t in hybrid.tiers] or [("large", hybrid.large)]
    return [(tier, t.breaker) for tier, t in translators if isinstance(t, BreakerTranslator)]
