"""The stage runner of ``routelmt bench``: a stage runs unless its ``stage.json`` says it
finished with the same hash (its settings and the hashes of the stages it reads), and one run
holds an output folder at a time.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from routelmt.errors import ConfigError, InputError
from routelmt.storage import read_json, stable_hash, write_json

log = logging.getLogger(__name__)

PIPELINE_FORMAT = 1  # bump when a stage's output layout changes, to invalidate old stages
STAGE_FILE = "stage.json"


@dataclass
class StageRecord:
    """One stage of one run: ``status`` is "ran" or "cached"."""

    name: str
    status: str
    seconds: float
    hash: str
    path: Path
    info: dict[str, Any] = field(default_factory=dict)


class StageRunner:
    """Runs a stage unless ``<output>/<name>/stage.json`` says it finished with the same hash."""

    def __init__(self, output: Path) -> None:
        self.output = output
        self.records: list[StageRecord] = []
        self.hashes: dict[str, str] = {}

    def run(
        self,
        name: str,
        settings: Mapping[str, Any],
        depends: Sequence[str],
        outputs: Sequence[str],
        work: Callable[[Path], dict[str, Any] | None],
        *,
        carry: Sequence[str] = (),
    ) -> StageRecord:
        """``carry``: outputs kept as ``carried-<name>`` when only upstream stages changed (the
        stage's own settings are the same), for work that can salvage part of them."""
        directory = self.output / name
        upstream = {dep: self.hashes[dep] for dep in depends}
        digest = stable_hash(PIPELINE_FORMAT, name, dict(settings), upstream)
        self.hashes[name] = digest
        stage_file = directory / STAGE_FILE
        previous = _read_stage(stage_file)
        if (
            previous is not None
            and previous.get("status") == "complete"
            and previous.get("hash") == digest
            and all((directory / out).exists() for out in outputs)
        ):
            log.info("stage %s: cached (%s)", name, digest)
            record = StageRecord(name, "cached", 0.0, digest, directory, previous.get("info", {}))
            self.records.append(record)
            return record
        if previous is not None and previous.get("hash") != digest:
            log.info("stage %s: inputs changed, recomputing", name)
            same = _canonical(previous.get("settings")) == _canonical(dict(settings))
            keep = set()
            for out in carry if same else ():
                if (directory / out).exists():
                    os.replace(directory / out, directory / f"carried-{out}")
                if (directory / f"carried-{out}").exists():
                    keep.add(f"carried-{out}")
            for child in directory.iterdir():  # ours: the folder holds a stage.json
                if child.name in keep:
                    continue
                if child.is_dir():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        elif previous is not None and previous.get("status") != "complete":
            log.info("stage %s: resuming an interrupted run", name)
        started_at = _now()
        state = {
            "stage": name,
            "hash": digest,
            "status": "running",
            "settings": dict(settings),
            "depends": upstream,
            "outputs": list(outputs),
            "started": started_at,
        }
        write_json(stage_file, state)
        started = time.perf_counter()
        info = work(directory) or {}
        seconds = time.perf_counter() - started
        missing = [out for out in outputs if not (directory / out).exists()]
        if missing:  # a programming error, never a user one
            raise RuntimeError(f"stage {name} did not write {', '.join(missing)}")
        state |= {"status": "complete", "finished": _now(), "seconds": seconds, "info": info}
        write_json(stage_file, state)
        log.info("stage %s: done in %.1fs", name, seconds)
        record = StageRecord(name, "ran", seconds, digest, directory, info)
        self.records.append(record)
        return record


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _read_stage(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = read_json(path)
    except InputError:
        return {}  # unreadable: treat as unfinished work of unknown inputs
    return data if isinstance(data, dict) else {}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@contextlib.contextmanager
def exclusive(output: Path) -> Iterator[None]:
    """One run per output folder: two runs appending to the same files would interleave."""
    import fcntl

    output.mkdir(parents=True, exist_ok=True)
    with open(output / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                f"another routelmt bench is running on {output}; wait for it or use --output"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
