"""A target-language output head for llama.cpp: the same GGUF, its vocabulary cut to the tokens
the target languages write, so a decode step scores tens of thousands of rows instead of 262k.

Gemma-3's output head is its tied 262,144-row embedding matrix, 56-58% of a decode step on two
cores (docs/benchmarks.md, section 17b), and a translation into Spanish never uses most of those
rows (other scripts, other languages' words). The cut file keeps the rows of: every token the
tokenizer makes of the most frequent words of each target language and of English's (names and
terms; wordfreq's lists, written four ways: as is and capitalised, with and without a leading
space), every byte token (so any text can still be written), every special token and every
token of punctuation, symbols or digits. Prompts are not cut: the engine prefills them as
embedding rows taken from the full matrix (``FullEmbeddings``, the very values llama.cpp would
look up), so a prefill and its router features are those of the full model and only the greedy
choice is limited to the kept tokens. The cut file is derived from the local GGUF and cached;
nothing is downloaded.

Measured (docs/benchmarks.md, section 17d): 1.99x plain llama-cpp-python's out-tokens/s at 2
threads, but 1.1-1.9 chrF points below the full head on every given direction, because the
model's own choices often fall outside any word list; so it is an option, not the default.
"""

from __future__ import annotations

import hashlib
import logging
import os
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from routelmt.errors import ConfigError, MissingDependencyError
from routelmt.languages import target_language
from routelmt.storage import models_dir, read_json, write_json

log = logging.getLogger(__name__)

DEFAULT_WORDS = 20000  # most frequent words a target language keeps (four forms each)
ENGLISH_WORDS = 5000  # and English's, for the names and terms a translation keeps
EMBEDDING_KEY = "token_embd.weight"
# architectures whose prefill-by-embeddings was checked to give the full model's hidden states;
# the value is the factor llama.cpp applies to looked-up rows only (gemma3: sqrt(n_embd))
EMBEDDING_SCALE = {"gemma3": "sqrt"}
_NORMAL = 1  # the GGUF token type of an ordinary token (others: control, byte, ...)
_PER_TOKEN = ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type")
_VERSION = 1  # bump when the rule for the kept tokens changes (the cache key includes it)


def parse_languages(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"de,es"`` or ``["de", "es"]`` -> ``("de", "es")`` (sorted, deduplicated)."""
    if value is None or value == "":
        return ()
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    languages = sorted({item.strip().lower() for item in items if item.strip()})
    if not languages:
        raise ConfigError(f"output_languages: no language in {value!r}")
    return tuple(languages)


def _wordfreq() -> Any:
    try:
        import wordfreq
    except ImportError as exc:
        raise MissingDependencyError(
            f"a cut output vocabulary needs wordfreq: pip install wordfreq ({exc})"
        ) from None
    return wordfreq


def language_words(language: str, words: int) -> list[str]:
    """The ``words`` most frequent words of ``language`` (a wordfreq code such as ``es``)."""
    wordfreq = _wordfreq()
    available = wordfreq.available_languages()
    code = language.split("_")[0].split("-")[0].lower()
    if code not in available:
        known = ", ".join(sorted(available))
        raise ConfigError(
            f"no word list for target language '{language}' (wordfreq has: {known}); "
            "leave output_languages unset for this direction"
        )
    return list(wordfreq.top_n_list(code, words))


def _forms(word_list: Iterable[str]) -> list[str]:
    forms: set[str] = set()
    for word in word_list:
        for form in (word, word.capitalize()):
            forms.update((form, " " + form))
    return sorted(forms)


def _writes_no_word(piece: str) -> bool:
    """A token of punctuation, symbols, digits or spaces only (any script's: ``¿``, ``，``)."""
    text = piece.replace("\u2581", " ")
    return bool(text) and all(unicodedata.category(c)[0] in "PSNZ" or c in "\n\t" for c in text)


def output_token_ids(
    tokenizer: Any,
    pieces: Sequence[str],
    token_types: Sequence[int],
    languages: Sequence[str],
    *,
    words: int = DEFAULT_WORDS,
    english_words: int = ENGLISH_WORDS,
) -> np.ndarray:
    """The full-vocabulary ids a cut head keeps (sorted): every non-normal token (bytes,
    control and user-defined ones) but ``<unused..>`` slots, every token of punctuation, symbols
    or digits, and the tokens of the languages' ``words`` most frequent words and of English's
    ``english_words`` (the names and terms translations keep)."""
    if not languages:
        raise ConfigError("output_languages is empty: name at least one target language")
    texts: list[str] = []
    for language in languages:
        texts += _forms(language_words(language, words))
    if english_words:
        texts += _forms(language_words("en", english_words))
    keep: set[int] = set()
    for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        keep.update(int(i) for i in ids)
    for i, (piece, kind) in enumerate(zip(pieces, token_types, strict=True)):
        special = kind != _NORMAL and not piece.startswith("<unused")
        if special or (kind == _NORMAL and _writes_no_word(piece)):
            keep.add(i)
    return np.asarray(sorted(i for i in keep if 0 <= i < len(pieces)), dtype=np.int64)


@dataclass(frozen=True)
class CutVocabulary:
    """A cut GGUF and its ids: ``keep[i]`` is the full-vocabulary id of the cut file's token i."""

    path: Path
    keep: np.ndarray
    source: Path
    languages: tuple[str, ...] = ()
    embedding: dict[str, Any] | None = None  # where the source's full rows lie (``rows_at``)

    def check_direction(self, direction: str) -> None:
        """Refuse a direction whose target language the cut head cannot write."""
        if target_language(direction) not in self.languages:
            raise ConfigError(
                f"direction {direction}: the small model's output head is cut to "
                f"{', '.join(self.languages)} (output_languages); add its target language there"
            )

    @property
    def to_cut(self) -> np.ndarray:
        """full id -> cut id (-1 where the token was cut)."""
        table = np.full(int(self.keep.max()) + 1, -1, dtype=np.int64)
        table[self.keep] = np.arange(len(self.keep))
        return table


def write_cut_gguf(
    source: Path,
    keep: np.ndarray | None,
    dest: Path,
    reader: Any = None,
    *,
    extra: Sequence[tuple[str, np.ndarray, Any]] = (),
) -> None:
    """Write ``source`` with only the tokens ``keep`` (its token rows, tokenizer arrays and
    special ids remapped; None: every token) and the ``extra`` tensors (name, raw data, ggml
    type) added, atomically (a temporary file renamed into place). ``reader``: the source
    already open (parsing a 262k-token GGUF takes seconds)."""
    import gguf

    reader = reader or gguf.GGUFReader(str(source))
    arch = str(reader.fields["general.architecture"].contents())
    position = None if keep is None else {int(full): cut for cut, full in enumerate(keep)}
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    writer = gguf.GGUFWriter(str(tmp), arch)
    try:
        for field in reader.fields.values():
            if field.name.startswith("GGUF.") or field.name == "general.architecture":
                continue
            kind = field.types[0]
            sub = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
            value = field.contents()
            if position is None:  # every token kept: the field as it is
                pass
            elif field.name in _PER_TOKEN:
                value = [value[int(i)] for i in keep]  # type: ignore[union-attr]
            elif field.name.startswith("tokenizer.ggml.") and field.name.endswith("_token_id"):
                if int(value) not in position:
                    raise ConfigError(f"the cut vocabulary lost {field.name} ({value})")
                value = position[int(value)]
            writer.add_key_value(field.name, value, kind, sub_type=sub)
        tensors = []
        for tensor in reader.tensors:
            data = tensor.data
            if tensor.name == EMBEDDING_KEY and keep is not None:
                data = np.ascontiguousarray(data[keep])
            tensors.append((tensor.name, data, tensor.tensor_type))
        for name, data, kind in [*tensors, *extra]:
            writer.add_tensor_info(name, data.shape, data.dtype, data.nbytes, kind)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for _, data, _ in [*tensors, *extra]:
            writer.write_tensor_data(data)
        writer.close()
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _cache_key(source: Path, languages: Sequence[str], words: int, english_words: int) -> str:
    """What the kept ids follow from: the source file, the settings, wordfreq's version (its
    lists), so a warm load reads the ids instead of tokenising the word lists again."""
    from importlib.metadata import version

    stat = source.stat()
    identity = [_VERSION, source.resolve(), stat.st_size, stat.st_mtime_ns, ",".join(languages)]
    identity += [words, english_words, version("wordfreq")]
    return hashlib.sha256("\0".join(map(str, identity)).encode()).hexdigest()[:16]


def rows_at(reader: Any) -> dict[str, Any]:
    """Where an open GGUF's input rows lie in its file, and llama.cpp's scale for them: enough
    to map them again without parsing the file (``FullEmbeddings``)."""
    arch = str(reader.fields["general.architecture"].contents())
    tensor = next(t for t in reader.tensors if t.name == EMBEDDING_KEY)
    width, rows = (int(n) for n in tensor.shape)  # ggml order: a row's width first
    scale = float(np.float32(np.sqrt(width))) if EMBEDDING_SCALE.get(arch) == "sqrt" else 1.0
    return {
        "offset": int(tensor.data_offset),
        "type": int(tensor.tensor_type),
        "rows": rows,
        "row_bytes": int(tensor.n_bytes) // rows,
        "width": width,
        "scale": scale,
    }


def cut_vocabulary(
    source: Path,
    tokenizer: Any,
    languages: Sequence[str],
    *,
    words: int = DEFAULT_WORDS,
    english_words: int = ENGLISH_WORDS,
) -> CutVocabulary:
    """The cut GGUF for ``languages``, its kept ids and where the full rows lie: built once, then
    read from the model cache (the file and ``<file>.json`` beside it) without parsing the
    source again."""
    import gguf

    languages = tuple(sorted(languages))
    key = _cache_key(source, languages, words, english_words)
    dest = models_dir() / "gguf" / "cut" / f"{source.stem}-{key}.gguf"
    sidecar = dest.with_name(dest.name + ".json")
    if dest.exists() and sidecar.exists():
        meta = read_json(sidecar)
        keep = np.asarray(meta["keep"], dtype=np.int64)
        return CutVocabulary(dest, keep, source, languages, meta["embedding"])
    reader = gguf.GGUFReader(str(source))
    arch = str(reader.fields["general.architecture"].contents())
    if arch not in EMBEDDING_SCALE:
        raise ConfigError(
            f"output_languages is supported for {', '.join(EMBEDDING_SCALE)} GGUFs, not {arch}"
        )
    pieces = reader.fields["tokenizer.ggml.tokens"].contents()
    token_types = reader.fields["tokenizer.ggml.token_type"].contents()
    keep = output_token_ids(
        tokenizer, pieces, token_types, languages, words=words, english_words=english_words
    )
    dest.parent.mkdir(parents=True, exist_ok=True)
    log.info(
        "cutting %s to %d of %d tokens for %s",
        source.name,
        len(keep),
        len(token_types),
        ",".join(languages),
    )
    write_cut_gguf(source, keep, dest, reader)
    embedding = rows_at(reader)
    # the sidecar last: a cut file without one is built again
    write_json(sidecar, {"keep": keep.tolist(), "embedding": embedding})
    return CutVocabulary(dest, keep, source, languages, embedding)


class FullEmbeddings:
    """Input rows of the full vocabulary, as llama.cpp would look them up (dequantised, times
    the architecture's input scale), so a cut model prefills any prompt exactly. ``where`` is
    ``rows_at``'s answer (cached with the cut file); without it the source is parsed."""

    def __init__(self, source: Path, where: dict[str, Any] | None = None) -> None:
        import gguf

        if where is None:
            where = rows_at(gguf.GGUFReader(str(source)))
        self._raw = np.memmap(  # the rows, quantised as in the file, read on demand
            source, dtype=np.uint8, mode="r", offset=where["offset"],
            shape=(where["rows"], where["row_bytes"]),
        )  # fmt: skip
        self._type = gguf.GGMLQuantizationType(where["type"])
        self.width = int(where["width"])
        self._scale = np.float32(where["scale"])
        self._dequantize = gguf.quants.dequantize

    def rows(self, ids: Sequence[int]) -> np.ndarray:
        raw = np.asarray(self._raw[np.asarray(ids, dtype=np.int64)])
        out = self._dequantize(raw, self._type).astype(np.float32, copy=False)
        return (out.reshape(len(ids), self.width) * self._scale).astype(np.float32, copy=False)
