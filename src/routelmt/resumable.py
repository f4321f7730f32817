"""Resumable translation: translate what an append-only output does not hold yet, one fsynced
batch at a time, so an interrupted job resumes per segment (``routelmt translate`` and the
bench's translate stages share it).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from routelmt.backends.base import Translator, generated_tokens
from routelmt.errors import ConfigError, InputError
from routelmt.progress import bar
from routelmt.records import Segment, Translation, translation_from_dict, write_records
from routelmt.storage import stable_hash

log = logging.getLogger(__name__)


def read_partial_translations(path: str | os.PathLike[str]) -> list[Translation]:
    """Translations already in an append-only output, repairing what a crash can leave behind.

    A last line without its newline (a write cut short), or a last line that is not JSON (e.g.
    zeros after a power loss), is dropped and the file truncated before it; a bad line anywhere
    else is real corruption and an error naming the line.
    """
    path = Path(path)
    if not path.is_file():
        return []
    data = path.read_bytes()
    keep = len(data)
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        log.warning("%s: dropping a torn last line (%d bytes)", path, len(data) - keep)
    lines = data[:keep].split(b"\n")[:-1] if keep else []
    records: list[Translation] = []
    offsets = 0
    for index, raw in enumerate(lines):
        line_start = offsets
        offsets += len(raw) + 1
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
            if not isinstance(obj, dict):
                raise ValueError("not an object")
            records.append(translation_from_dict(obj, path=str(path), line=index + 1))
        except (ValueError, UnicodeDecodeError, InputError) as exc:
            if index == len(lines) - 1:
                log.warning("%s: dropping an unreadable last line %d", path, index + 1)
                keep = line_start
                break
            raise InputError(
                f"unreadable translation record ({exc}); remove the line or the file to "
                "translate it again",
                path=str(path),
                line=index + 1,
            ) from None
    if keep < len(data):
        os.truncate(path, keep)
    return records


def source_hash(segment: Segment) -> str:
    """What a translation depends on in its segment: the direction and the source text."""
    return stable_hash(segment.direction, segment.source, length=12)


def salvage_translations(
    carried: Path, segments: Sequence[Segment], system: str, path: Path
) -> int:
    """Seed ``path`` with the translations in ``carried`` (an earlier job's output, same system
    and settings) whose segment is still in ``segments`` with the same direction and source;
    returns how many. Unreadable lines are skipped: this only saves work."""
    wanted = {s.id: source_hash(s) for s in segments}
    kept: dict[str, dict[str, Any]] = {}
    with open(carried, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if not isinstance(row, dict) or row.get("system") != system:
                continue
            sid, text = row.get("segment_id"), row.get("text")
            if isinstance(text, str) and sid in wanted and row.get("source_hash") == wanted[sid]:
                kept.setdefault(sid, row)
    write_records(path, kept.values())
    carried.unlink()
    return len(kept)


@dataclass
class TranslateResult:
    """Outputs aligned with the input segments, and what this run did."""

    texts: list[str]
    reused: int
    translated: int
    seconds: float
    tokens: int | None = None

    @property
    def segments_per_second(self) -> float | None:
        return self.translated / self.seconds if self.translated and self.seconds > 0 else None

    @property
    def tokens_per_second(self) -> float | None:
        return self.tokens / self.seconds if self.tokens and self.seconds > 0 else None


BatchRunner = Callable[[list[list[Segment]]], Iterable[tuple[list[str], int | None]]]


def _translate_here(
    translator: Translator, batches: list[list[Segment]]
) -> Iterator[tuple[list[str], int | None]]:
    for batch in batches:
        yield translator.translate(batch), generated_tokens(translator)


def _store_stream(
    translator: Translator,
    results: Iterator[tuple[int, str]],
    todo: list[Segment],
    handle: Any,
    done: dict[str, str],
    progress: Any,
    started: float,
    every: int,
    source_hashes: bool,
) -> int | None:
    """Append each ``(index, text)`` as it comes; flush and fsync every ``every`` records and at
    the end (a crash loses at most the ``every`` rows not yet synced; a rerun redoes only
    those)."""
    unsynced = 0
    for index, text in results:
        segment = todo[index]
        _append(handle, translator.name, segment, text, source_hashes)
        done[segment.id] = text
        progress.update(1)
        unsynced += 1
        if unsynced >= every:
            _sync(handle)
            unsynced = 0
            _show_rate(translator, progress, started)
    _sync(handle)
    missing = [s.id for s in todo if s.id not in done]
    if missing:
        raise InputError(
            f"backend {translator.name} returned no translation for {len(missing)} segments "
            f"(first: {missing[0]})"
        )
    return generated_tokens(translator)


def _store_batches(
    translator: Translator,
    batches: list[list[Segment]],
    results: Iterable[tuple[list[str], int | None]],
    handle: Any,
    done: dict[str, str],
    progress: Any,
    started: float,
    source_hashes: bool,
) -> int | None:
    """Append each batch's translations and fsync them before the next batch."""
    tokens: int | None = None
    for batch, (texts, batch_tokens) in zip(batches, results):
        if len(texts) != len(batch):
            raise InputError(
                f"backend {translator.name} returned {len(texts)} outputs for {len(batch)} segments"
            )
        for segment, text in zip(batch, texts):
            _append(handle, translator.name, segment, text, source_hashes)
            done[segment.id] = text
        _sync(handle)
        progress.update(len(batch))
        if batch_tokens is not None:
            tokens = (tokens or 0) + batch_tokens
            elapsed = max(time.perf_counter() - started, 1e-9)
            progress.set_postfix(tok_s=f"{tokens / elapsed:.1f}")
    return tokens


def _append(handle: Any, system: str, segment: Segment, text: str, source_hashes: bool) -> None:
    record = {"segment_id": segment.id, "system": system, "text": text}
    if source_hashes:
        record["source_hash"] = source_hash(segment)
    handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def _sync(handle: Any) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def _show_rate(translator: Translator, progress: Any, started: float) -> None:
    tokens = generated_tokens(translator)
    if tokens is not None:
        progress.set_postfix(tok_s=f"{tokens / max(time.perf_counter() - started, 1e-9):.1f}")


def translate_resumable(
    translator: Translator,
    segments: Sequence[Segment],
    path: str | os.PathLike[str],
    *,
    batch_size: int = 16,
    desc: str | None = None,
    source_hashes: bool = False,
    run_batches: BatchRunner | None = None,
) -> TranslateResult:
    """Translate what ``path`` does not hold yet, appending each batch durably (flush + fsync).

    Records in ``path`` by another system, or for segments not in ``segments``, are an error:
    the file belongs to a different job. ``source_hashes`` adds each segment's
    ``source_hash`` to its record, so a later job can tell which translations still apply.
    ``run_batches`` translates the batches elsewhere (``executors.translate_batches``: each
    batch's texts and generated tokens, in order); default: ``translator`` in this process,
    through its ``translate_iter`` where it has one (one running batch over every segment, each
    stored as it finishes) and batch by batch otherwise.
    """
    path = Path(path)
    if batch_size <= 0:
        raise ConfigError(f"batch size must be positive, got {batch_size}")
    ids = {s.id for s in segments}
    if len(ids) != len(segments):
        raise InputError("duplicate segment ids in the input")
    done: dict[str, str] = {}
    for record in read_partial_translations(path):
        if record.system != translator.name:
            raise InputError(
                f"holds translations by '{record.system}', not '{translator.name}'; "
                "write to another output file",
                path=str(path),
            )
        if record.segment_id not in ids:
            raise InputError(
                f"holds a translation of segment '{record.segment_id}', which is not in the "
                "input; write to another output file",
                path=str(path),
            )
        done.setdefault(record.segment_id, record.text)
    todo = [s for s in segments if s.id not in done]
    if done:
        log.info("%s: %d of %d segments already translated", path, len(done), len(segments))
    started = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        progress = bar(desc=desc or f"translate {translator.name}", total=len(todo), unit="seg")
        batches = [todo[start : start + batch_size] for start in range(0, len(todo), batch_size)]
        run = run_batches or (lambda batches: _translate_here(translator, batches))
        stream = getattr(translator, "translate_iter", None) if run_batches is None else None
        try:
            if stream is not None:  # one running batch over everything, stored as rows finish
                tokens = _store_stream(
                    translator, stream(todo), todo, handle, done, progress, started, batch_size,
                    source_hashes,
                )  # fmt: skip
            else:
                tokens = _store_batches(
                    translator, batches, run(batches), handle, done, progress, started,
                    source_hashes,
                )  # fmt: skip
        finally:
            progress.close()
    return TranslateResult(
        texts=[done[s.id] for s in segments],
        reused=len(segments) - len(todo),
        translated=len(todo),
        seconds=time.perf_counter() - started,
        tokens=tokens,
    )
