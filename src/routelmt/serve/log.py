"""Append-only, crash-safe decision log (JSONL): the training data of the next router.

Privacy: the file is created private (mode 0600) in the state directory by default
(``storage.state_dir()``); the source and translation texts are written only when the service
is asked to (``server.log_text``), otherwise each is replaced by its SHA-256 and its length.

Each record is one JSON line. A writer thread commits whatever is pending as a group: one
``os.write`` of whole lines on an ``O_APPEND`` descriptor, then ``fsync``, under a lock; a
request is answered only after its lines are durable, so an answered request is never missing
from the log. A crash can at worst cut the very last line (the kernel may stop a write between
pages on SIGKILL); opening the log again moves such a torn tail aside (``<log>.torn``), so every
line in the file is always a complete record.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import threading
from collections.abc import Iterable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from routelmt.errors import ConfigError, InputError
from routelmt.storage import check_output_path, state_dir

log = logging.getLogger(__name__)

_STOP = object()
_TEXT_FIELDS = ("source", "translation")


def resolve_log_path(value: str | os.PathLike[str] | None) -> Path | None:
    """``"auto"`` -> ``<state dir>/decisions.jsonl``; None or "" -> no log; else the path."""
    if value is None or value == "":
        return None
    if value == "auto":
        return state_dir() / "decisions.jsonl"
    return Path(value)


def without_text(record: dict[str, Any]) -> dict[str, Any]:
    """The record with each text replaced by ``<field>_sha256`` and ``<field>_chars``."""
    out = dict(record)
    for key in _TEXT_FIELDS:
        text = out.pop(key, None)
        if isinstance(text, str):
            data = text.encode("utf-8", errors="surrogatepass")
            out[f"{key}_sha256"] = hashlib.sha256(data).hexdigest()
            out[f"{key}_chars"] = len(text)
    return out


def repair_tail(path: Path) -> int:
    """Cut an unterminated last line (a crash mid-write); returns the bytes moved aside."""
    if not path.exists():
        return 0
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "rb+") as handle:
        handle.seek(-1, os.SEEK_END)
        if handle.read(1) == b"\n":
            return 0
        block = 1 << 16
        pos = size
        keep = 0
        while pos > 0:
            start = max(0, pos - block)
            handle.seek(start)
            chunk = handle.read(pos - start)
            idx = chunk.rfind(b"\n")
            if idx >= 0:
                keep = start + idx + 1
                break
            pos = start
        handle.seek(keep)
        torn = handle.read()
        aside_fd = os.open(str(path) + ".torn", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with open(aside_fd, "ab") as aside:
            aside.write(torn + b"\n")
            aside.flush()
            os.fsync(aside.fileno())
        handle.truncate(keep)
        handle.flush()
        os.fsync(handle.fileno())
    log.warning("decision log %s: moved a torn last line (%d bytes) aside", path, len(torn))
    return len(torn)


class DecisionLog:
    """``append(records)`` returns a Future that resolves once the lines are on disk."""

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.path = Path(path)
        try:
            check_output_path(self.path)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            repair_tail(self.path)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:  # a directory, unwritable, ...
            raise ConfigError(f"cannot open the decision log {self.path}: {exc}") from None
        try:
            os.fchmod(self._fd, 0o600)  # an older, wider file is narrowed too
        except OSError:
            log.warning("decision log %s: could not make it private (0600)", self.path)
        self._fsync = fsync
        self._lock = threading.Lock()
        self._queue: queue.Queue[Any] = queue.Queue()
        self.lines = 0
        self.commits = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="decision-log", daemon=True)
        self._thread.start()

    @staticmethod
    def encode(records: Iterable[dict[str, Any]]) -> bytes:
        return b"".join(
            (json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
            for r in records
        )

    def write(self, records: Iterable[dict[str, Any]]) -> None:
        """Synchronously append: one write of whole lines, then fsync, under the lock."""
        self._commit(self.encode(records))

    def _commit(self, data: bytes) -> None:
        if not data:
            return
        with self._lock:
            view = memoryview(data)
            while view:  # a regular-file write is whole unless interrupted by a crash
                written = os.write(self._fd, view)
                view = view[written:]
            if self._fsync:
                os.fsync(self._fd)
            self.lines += data.count(b"\n")
            self.commits += 1

    def append(self, records: Iterable[dict[str, Any]]) -> Future[None]:
        """Queue records for the next group commit."""
        fut: Future[None] = Future()
        if self._closed:
            fut.set_exception(RuntimeError("decision log is closed"))
            return fut
        self._queue.put((self.encode(records), fut))
        return fut

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            batch = [item]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(b is _STOP for b in batch)
            # a cancelled waiter's lines are still written (the decision was made)
            pending = [b for b in batch if b is not _STOP]
            for _, fut in pending:
                fut.set_running_or_notify_cancel()
            pending_futs = [fut for _, fut in pending if not fut.cancelled()]
            if pending:
                try:
                    self._commit(b"".join(data for data, _ in pending))
                except BaseException as exc:  # disk full, ...: every waiter learns it
                    for fut in pending_futs:
                        fut.set_exception(exc)
                else:
                    for fut in pending_futs:
                        fut.set_result(None)
            if stop:
                return

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join(timeout=30)
        os.close(self._fd)


def read_decision_log(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every record; a torn last line (crash mid-write, not yet repaired) is skipped."""
    records: list[dict[str, Any]] = []
    data = Path(path).read_bytes()
    lines = data.split(b"\n")
    for lineno, line in enumerate(lines[:-1], start=1):  # the piece after the last \n is torn
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            msg = f"malformed log line ({exc.msg})"
            raise InputError(msg, path=str(path), line=lineno) from None
    return records
