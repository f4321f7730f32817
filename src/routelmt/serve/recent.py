"""The last decisions of this process, in memory, for the operator's dashboard.

A bounded ring (``collections.deque`` with ``maxlen``): memory and the cost of a dashboard
refresh stay flat however long the service runs. A decision is kept without its text: the
source is its SHA-256 (the decision log's ``source_sha256``, shortened) and its length, so
the dashboard can never show what a user sent.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from typing import Any

from routelmt.serve.log import without_text

DEFAULT_CAPACITY = 10_000
SHA_CHARS = 16  # a prefix of the decision log's source_sha256: enough to find the line


@dataclass(frozen=True, slots=True)
class Decision:
    """One answered segment: who answered, why, how fast, at what cost (no text)."""

    time: float
    direction: str
    tier: str
    policy: str
    reason: str
    stage: int
    score: float | None
    stage2_score: float | None
    threshold: float | None
    fallback: bool
    guard: str | None  # the guard that looked at it, if any
    vetoed: bool
    latency_ms: float
    cost: float | None
    source_sha256: str
    source_chars: int

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _FIELDS}


_FIELDS = tuple(f.name for f in fields(Decision))


def source_digest(text: str) -> str:
    """The first characters of the text's hash, exactly as the decision log writes it
    (``log.without_text``), so a line of the page can be found in the log."""
    return str(without_text({"source": text}).get("source_sha256", ""))[:SHA_CHARS]


def decision_of(result: Any, source: str, when: float) -> Decision:
    """A ``HybridResult`` (and its source text, only hashed) as a ``Decision``."""
    guard = result.guard or {}
    return Decision(
        time=round(when, 3),
        direction=result.direction,
        tier=result.tier,
        policy=result.policy,
        reason=result.reason,
        stage=int(result.stage),
        score=result.score,
        stage2_score=result.stage2_score,
        threshold=result.threshold,
        fallback=bool(result.fallback),
        guard=str(guard["name"]) if guard.get("name") is not None else None,
        vetoed=bool(guard.get("vetoed", False)),
        latency_ms=round(float(result.timings["total"]) * 1000.0, 3),
        cost=(result.cost or {}).get("cost"),
        source_sha256=source_digest(source),
        source_chars=len(source),
    )


class DecisionRing:
    """The last ``capacity`` decisions; ``added`` counts every decision ever added."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"decision ring capacity must be an integer >= 1, got {capacity!r}")
        self.capacity = capacity
        self._items: deque[Decision] = deque(maxlen=capacity)
        self._lock = threading.Lock()
        self.added = 0
        self._memo: tuple[Any, Any] | None = None

    def extend(self, decisions: Iterable[Decision]) -> None:
        items = list(decisions)
        with self._lock:
            self._items.extend(items)
            self.added += len(items)

    def snapshot(self) -> list[Decision]:
        """A copy, oldest first (safe to read while requests keep adding)."""
        with self._lock:
            return list(self._items)

    def memo(self, key: Any, compute: Callable[[], Any]) -> Any:
        """``compute()``, reused until a decision is added (or ``key`` changes): an idle
        service answers every dashboard refresh without reading the ring again."""
        mark = (self.added, key)
        with self._lock:
            if self._memo is not None and self._memo[0] == mark:
                return self._memo[1]
        value = compute()
        with self._lock:
            self._memo = (mark, value)
        return value

    def __len__(self) -> int:
        return len(self._items)
