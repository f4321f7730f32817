"""One budget shared by several server processes on one host: the pacer's state in SQLite.

Each replica keeps a local ``budget.Pacer`` as its calculator; the state of record lives in one
SQLite row. Every decision is a ``BEGIN IMMEDIATE`` transaction (one writer at a time across
processes): load the row if another replica changed it since we last saw it, decide, store,
commit. So the share and the hard cap hold across replicas exactly as within one process, and
sequence numbers stay unique. WAL mode keeps readers (``state()``) off the writers' path.
For several hosts, keep the state in Redis or a Ray actor instead (see docs/deployment.md).
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from routelmt.budget.pacer import BudgetSpec, Decision, Pacer
from routelmt.errors import ConfigError
from routelmt.storage import check_output_path

_HANDLES: dict[int, str] = {}  # local pacer id -> the store it belongs to


def _enable_wal(db: sqlite3.Connection, path: Path, timeout_s: float) -> None:
    """Switch the store to WAL, waiting out replicas that open it at the same moment.

    SQLite answers "database is locked" at once, without its busy handler, when two connections
    change the journal mode of a new file together; so retry here, within the same timeout.
    """
    deadline = time.monotonic() + timeout_s
    delay = 0.005
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            busy = "locked" in str(exc) or "busy" in str(exc)
            if not busy or time.monotonic() >= deadline:
                raise ConfigError(
                    f"cannot open the budget store {path} ({exc}); another process holds it"
                ) from exc
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


class SQLitePacer:
    """A ``Pacer`` whose state is shared through ``path`` by every process that opens it.

    All replicas must open it with the same budget; a different one is a ConfigError (the
    first opener's budget wins). Thread-safe within a process, process-safe across them.
    """

    def __init__(
        self, spec: BudgetSpec, path: str | Path, *, timeout_s: float = 30.0, **pacer_options: Any
    ) -> None:
        self.spec = spec
        self.path = Path(path)
        self._pacer = Pacer(spec, **pacer_options)
        self._key = str(self.path.resolve())
        _HANDLES[self._pacer._id] = self._key
        self._lock = threading.Lock()
        self._version = -1
        try:
            check_output_path(self.path)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                str(self.path), timeout=timeout_s, isolation_level=None, check_same_thread=False
            )
            _enable_wal(self._db, self.path, timeout_s)
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._open(json.dumps(spec.to_dict(), sort_keys=True))
        except (OSError, sqlite3.Error) as exc:  # unwritable, a directory, not a database
            raise ConfigError(f"cannot use {self.path} as the budget store: {exc}") from None

    def _open(self, spec_json: str) -> None:
        """Create the row, or check that the store's budget is ours and its state is sound."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "CREATE TABLE IF NOT EXISTS pacer (id INTEGER PRIMARY KEY CHECK (id = 1), "
                    "version INTEGER NOT NULL, spec TEXT NOT NULL, state TEXT NOT NULL)"
                )
                row = self._db.execute("SELECT spec FROM pacer WHERE id = 1").fetchone()
                if row is None:
                    self._db.execute(
                        "INSERT INTO pacer VALUES (1, 0, ?, ?)", (spec_json, self._dump())
                    )
                elif row[0] != spec_json:
                    raise ConfigError(
                        f"budget store {self.path} holds budget {row[0]}, but this replica was "
                        f"started with {spec_json}; use the same budget or another store"
                    )
                else:
                    self._sync()  # a tampered state fails here, at startup
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _dump(self) -> str:
        return json.dumps(self._pacer.state_dict(), separators=(",", ":"))

    def _load(self, text: str) -> None:
        try:
            state = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"budget store {self.path}: the state is not JSON ({exc})") from None
        try:
            self._pacer.load_state_dict(state)
        except ConfigError as exc:
            raise ConfigError(f"budget store {self.path}: {exc}") from None

    def _sync(self) -> None:
        """Inside a transaction: pull the shared state unless we wrote it last."""
        query = "SELECT version, state FROM pacer WHERE id = 1"
        row = self._db.execute(query).fetchone()
        if row is None or not isinstance(row[1], str):
            raise ConfigError(f"budget store {self.path}: the pacer row is missing or damaged")
        version, state = row
        if version != self._version:
            self._load(state)
            self._version = version

    def _transaction(self, fn: Any) -> Any:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._sync()
                out = fn()
                self._db.execute(
                    "UPDATE pacer SET version = version + 1, state = ? WHERE id = 1",
                    (self._dump(),),
                )
                self._db.execute("COMMIT")
                self._version += 1
                return out
            except BaseException:
                self._db.execute("ROLLBACK")
                self._version = -1
                raise

    def decide(
        self, score: float | None, cost: float | None = None, *, force: bool = False
    ) -> Decision:
        return self._transaction(lambda: self._pacer.decide(score, cost=cost, force=force))

    def decide_many(
        self,
        scores: Sequence[float | None],
        costs: Sequence[float | None] | None = None,
        *,
        forced: Sequence[bool] | None = None,
    ) -> list[Decision]:
        """Several decisions in one transaction (a batch)."""
        return self._transaction(lambda: self._pacer.decide_many(scores, costs, forced=forced))

    def refund(self, decision: Decision) -> bool:
        """Refund a decision made through any handle on this store in this process."""
        if _HANDLES.get(decision.pacer_id) != self._key:
            raise ValueError("this decision was made by a pacer on another budget store")
        mine = dataclasses.replace(decision, pacer_id=self._pacer._id)
        return self._transaction(lambda: self._pacer.refund(mine))

    def state(self) -> dict[str, Any]:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._sync()
            finally:
                self._db.execute("COMMIT")
            out = self._pacer.state()
        out["store"] = str(self.path)
        return out

    @property
    def threshold(self) -> float | None:
        return self.state()["next_threshold"]

    def close(self) -> None:
        with self._lock:
            self._db.close()
