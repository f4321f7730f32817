"""The record types that flow between stages, and their JSONL I/O with precise errors."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from routelmt.errors import InputError, RouteLMTError
from routelmt.languages import parse_direction
from routelmt.storage import atomic_open, open_text, utf8_errors


@dataclass(frozen=True)
class Segment:
    """One source text to translate. ``source_id`` groups the same source across directions,
    so splits and bootstrap resampling never leak a source between train and test."""

    id: str
    direction: str
    source: str
    reference: str | None = None
    domain: str | None = None
    doc_id: str | None = None
    source_id: str | None = None

    @property
    def group(self) -> str:
        return self.source_id or self.id


@dataclass(frozen=True)
class Translation:
    """A system's output for one segment."""

    segment_id: str
    system: str
    text: str


@dataclass(frozen=True)
class ScoredExample:
    """A segment with the small and large systems' translations, their qualities and the gain."""

    segment: Segment
    small_system: str
    large_system: str
    small_text: str
    large_text: str
    metric: str
    q_small: float
    q_large: float
    gain: float = field(default=math.nan)

    def __post_init__(self) -> None:
        if math.isnan(self.gain):
            object.__setattr__(self, "gain", self.q_large - self.q_small)

    @property
    def id(self) -> str:
        return self.segment.id


R = TypeVar("R", Segment, Translation, ScoredExample)

_SEGMENT_FIELDS = {f.name: f for f in dataclasses.fields(Segment)}


def segment_of(item: Segment | ScoredExample) -> Segment:
    """The segment of a plain request or of a labelled example (routers and features take both)."""
    return item.segment if isinstance(item, ScoredExample) else item


def _require(data: dict[str, Any], name: str, kind: type | tuple[type, ...], where: dict[str, Any]):
    if name not in data or data[name] is None:
        raise InputError("missing required field", field=name, **where)
    value = data[name]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool):
        expected = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise InputError(
            f"expected {expected}, got {type(value).__name__} ({value!r:.40})", field=name, **where
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(f"expected a finite number, got {value}", field=name, **where)
    return value


def _optional_str(data: dict[str, Any], name: str, where: dict[str, Any]) -> str | None:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise InputError(f"expected string, got {type(value).__name__}", field=name, **where)
    return value


def segment_from_dict(data: dict[str, Any], **where: Any) -> Segment:
    direction = _require(data, "direction", str, where)
    try:
        parse_direction(direction)
    except RouteLMTError as exc:
        raise InputError(str(exc), field="direction", **where) from None
    return Segment(
        id=str(_require(data, "id", (str, int), where)),
        direction=direction,
        source=_require(data, "source", str, where),
        reference=_optional_str(data, "reference", where),
        domain=_optional_str(data, "domain", where),
        doc_id=_optional_str(data, "doc_id", where),
        source_id=_optional_str(data, "source_id", where),
    )


def translation_from_dict(data: dict[str, Any], **where: Any) -> Translation:
    return Translation(
        segment_id=str(_require(data, "segment_id", (str, int), where)),
        system=_require(data, "system", str, where),
        text=_require(data, "text", str, where),
    )


def scored_from_dict(data: dict[str, Any], **where: Any) -> ScoredExample:
    segment = segment_from_dict(data, **where)
    example = ScoredExample(
        segment=segment,
        small_system=_require(data, "small_system", str, where),
        large_system=_require(data, "large_system", str, where),
        small_text=_require(data, "small_text", str, where),
        large_text=_require(data, "large_text", str, where),
        metric=_require(data, "metric", str, where),
        q_small=_require(data, "q_small", float, where),
        q_large=_require(data, "q_large", float, where),
    )
    if "gain" in data:
        gain = _require(data, "gain", float, where)
        if abs(gain - example.gain) > 1e-6:
            raise InputError(
                f"gain {gain} is not q_large - q_small = {example.gain}", field="gain", **where
            )
    return example


def to_dict(record: Segment | Translation | ScoredExample) -> dict[str, Any]:
    """Flat JSON form; ScoredExample inlines its segment's fields."""
    if isinstance(record, ScoredExample):
        out = {k: v for k, v in dataclasses.asdict(record.segment).items() if v is not None}
        rest = dataclasses.asdict(record)
        rest.pop("segment")
        out.update(rest)
        return out
    return {k: v for k, v in dataclasses.asdict(record).items() if v is not None}


_PARSERS = {Segment: segment_from_dict, Translation: translation_from_dict}
_PARSERS[ScoredExample] = scored_from_dict


def iter_jsonl_dicts(path: str | os.PathLike[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for each non-blank line; malformed lines name file and line."""
    path = Path(path)
    with open_text(path) as handle, utf8_errors(path):
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(
                    f"malformed JSON ({exc.msg})", path=str(path), line=lineno
                ) from None
            if not isinstance(data, dict):
                raise InputError(
                    f"expected a JSON object, got {type(data).__name__}",
                    path=str(path),
                    line=lineno,
                )
            yield lineno, data


def read_records(
    path: str | os.PathLike[str], kind: type[R], *, allow_empty: bool = False
) -> list[R]:
    """Read and validate a JSONL file of one record type; duplicate ids are an error."""
    parse = _PARSERS[kind]
    records: list[R] = []
    seen: dict[str, int] = {}
    for lineno, data in iter_jsonl_dicts(path):
        record = parse(data, path=str(path), line=lineno)
        key = (
            record.segment_id + "\t" + record.system
            if isinstance(record, Translation)
            else record.id
        )
        if key in seen:
            raise InputError(
                f"duplicate id '{record.id if not isinstance(record, Translation) else key}' "
                f"(first on line {seen[key]})",
                path=str(path),
                line=lineno,
                field="id",
            )
        seen[key] = lineno
        records.append(record)
    if not records and not allow_empty:
        raise InputError("no records: the file is empty", path=str(path))
    return records


def write_records(path: str | os.PathLike[str], records: Iterable[Any]) -> int:
    """Write records (or plain dicts) as JSONL, atomically; returns the count."""
    count = 0
    with atomic_open(path) as handle:
        for record in records:
            obj = record if isinstance(record, dict) else to_dict(record)
            handle.write(json.dumps(obj, ensure_ascii=False) + "\n")
            count += 1
    return count
