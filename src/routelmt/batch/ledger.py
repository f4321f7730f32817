"""The large-call ledger: one fsynced JSONL line per finished large call, written before the
next result is taken, so a restarted run never pays for an answer it already has.

A kill can leave a torn last line (a write cut short); reading drops it and truncates the file
before it. A bad line anywhere else is corruption and an error naming the line.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import IO, Any

from routelmt.errors import InputError

log = logging.getLogger(__name__)


def read_ledger(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Finished calls by segment id: the first answer of an id, else its first failure."""
    path = Path(path)
    if not path.is_file():
        return {}
    data = path.read_bytes()
    keep = data.rfind(b"\n") + 1 if not data.endswith(b"\n") else len(data)
    if keep < len(data):
        log.warning("%s: dropping a torn last line (%d bytes)", path, len(data) - keep)
    lines = data[:keep].split(b"\n")[:-1]
    done: dict[str, dict[str, Any]] = {}
    offset = 0
    for index, raw in enumerate(lines):
        start, offset = offset, offset + len(raw) + 1
        try:
            record = json.loads(raw.decode("utf-8"))
            if not isinstance(record, dict) or not isinstance(record.get("segment_id"), str):
                raise ValueError("not a ledger record")
        except (ValueError, UnicodeDecodeError) as exc:
            if index == len(lines) - 1:  # zeros or garbage after a power loss
                log.warning("%s: dropping an unreadable last line %d", path, index + 1)
                keep = start
                break
            raise InputError(
                f"unreadable large-call record ({exc}); the run's work folder is damaged",
                path=str(path),
                line=index + 1,
            ) from None
        earlier = done.get(record["segment_id"])
        if earlier is None or (not earlier.get("ok") and record.get("ok")):
            done[record["segment_id"]] = record  # a retried call that answered wins
    if keep < len(data):
        os.truncate(path, keep)
    return done


def append_record(handle: IO[str], record: dict[str, Any]) -> None:
    """Append one record and make it durable before returning."""
    handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    handle.flush()
    os.fsync(handle.fileno())
