"""User corpora in plain files: JSONL segment records, TSV (source[, reference]) or text.

Anything outside the WMT layout comes in through here. Ids default to ``<name>/<i>`` (0-based
row index, ``name`` defaulting to the file stem) and ``source_id`` to a hash of the source, so
the same source text shares a split/bootstrap group exactly as in WMT data.
"""

from __future__ import annotations

import os
from pathlib import Path

from routelmt.datasets.wmt import source_id
from routelmt.errors import ConfigError, InputError, RouteLMTError
from routelmt.languages import parse_direction
from routelmt.records import Segment, iter_jsonl_dicts, segment_from_dict
from routelmt.storage import open_text, utf8_errors

TSV_COLUMNS = ("id", "direction", "source", "reference", "domain", "doc_id", "source_id")


def load_segments(
    path: str | os.PathLike[str],
    *,
    direction: str | None = None,
    name: str | None = None,
) -> list[Segment]:
    """Read segments from ``.jsonl``, ``.tsv`` or ``.txt``.

    ``direction`` (e.g. ``en-es``) fills rows that do not carry one; a TSV may start with a
    header naming columns from ``TSV_COLUMNS``, else its columns are source and reference.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError("is a directory; expected a file", path=str(path))
    if not path.is_file():
        raise InputError("file not found", path=str(path))
    if direction is not None:
        try:
            parse_direction(direction)
        except RouteLMTError as exc:
            raise ConfigError(str(exc)) from None
    name = name or path.stem
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows = [(lineno, data) for lineno, data in iter_jsonl_dicts(path)]
    elif suffix in (".tsv", ".txt"):
        rows = _read_tsv(path, tabular=suffix == ".tsv")
    else:
        raise ConfigError(f"{path}: unsupported corpus format '{suffix}'; use .jsonl, .tsv or .txt")
    segments: list[Segment] = []
    seen: dict[str, int] = {}
    for index, (lineno, data) in enumerate(rows):
        # Empty optional cells mean "absent"; an empty source stays, to be reported below.
        data = {k: v for k, v in data.items() if v is not None and (v != "" or k == "source")}
        data.setdefault("id", f"{name}/{index}")
        if direction is not None:
            data.setdefault("direction", direction)
        elif "direction" not in data:
            raise InputError(
                "missing required field (or pass a default direction, e.g. en-es)",
                path=str(path),
                line=lineno,
                field="direction",
            )
        if isinstance(data.get("source"), str) and not data["source"].strip():
            raise InputError("empty source text", path=str(path), line=lineno, field="source")
        if isinstance(data.get("source"), str):
            data.setdefault("source_id", source_id(name, data["source"]))
        segment = segment_from_dict(data, path=str(path), line=lineno)
        if segment.id in seen:
            raise InputError(
                f"duplicate id '{segment.id}' (first on line {seen[segment.id]})",
                path=str(path),
                line=lineno,
                field="id",
            )
        seen[segment.id] = lineno
        segments.append(segment)
    if not segments:
        raise InputError("no segments: the file is empty", path=str(path))
    return segments


def _read_tsv(path: Path, *, tabular: bool) -> list[tuple[int, dict[str, str]]]:
    with open_text(path, newline="") as handle, utf8_errors(path):
        text = handle.read()
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    lines = [line.removesuffix("\r") for line in lines]
    if not tabular:
        return [(i, {"source": line}) for i, line in enumerate(lines, start=1)]
    columns = ["source", "reference"]
    start = 0
    if lines:
        head = lines[0].split("\t")
        if "source" in head and set(head) <= set(TSV_COLUMNS):
            columns, start = head, 1
    rows = []
    for lineno, line in enumerate(lines[start:], start=start + 1):
        cells = line.split("\t")
        if len(cells) > len(columns) or (len(cells) < len(columns) and start == 1):
            raise InputError(
                f"expected {len(columns)} tab-separated columns ({', '.join(columns)}), "
                f"got {len(cells)}",
                path=str(path),
                line=lineno,
            )
        rows.append((lineno, dict(zip(columns, cells, strict=False))))
    return rows
