"""A cheap screen of llama.cpp's output head, with an exact re-check of every token it cannot
rule out: the full head's greedy choice at a fraction of the head's cost.

Gemma-3's output head is its tied 262,144-row Q8_0 embedding matrix, 53-58% of a decode step on
two cores (docs/benchmarks.md, section 17b). Cutting rows is faster but changes the choice
whenever the model wants a cut token (section 17d). The screen keeps every row: the GGUF gets a
Q4_0 copy of the head as its own ``output.weight`` (half the bytes, and llama.cpp's repacked Q4_0
kernels), while the input rows stay the file's Q8_0 ones, so prefills and the router's features
do not change. llama.cpp scores all tokens with the copy; the engine then scores again, as
llama.cpp's own Q8_0 head computes them (the hidden row rounded to Q8_0 blocks, integer block
sums times the two fp16 scales) the screen's best token and then every token that could beat
it: whose screen logit plus ``z`` standard deviations of its own screen error (the RMS of its
row's Q4_0 rounding error, times the hidden row's norm) reaches the best one's exact logit. A
token left out would need an error of more than ``z`` sigma to win. ``screen_errors`` measures
how many sigma the error really reaches; ``bench/small_anchor.py`` counts the outputs that
differ.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from routelmt.errors import ConfigError
from routelmt.output_vocab import EMBEDDING_KEY, rows_at, write_cut_gguf
from routelmt.storage import atomic_open, models_dir, read_json, stable_hash, write_json

log = logging.getLogger(__name__)

OUTPUT_KEY = "output.weight"
BLOCK = 32  # values per Q8_0 / Q4_0 block
Q8_BLOCK_BYTES = 2 + BLOCK  # an fp16 scale, then 32 int8
DEFAULT_Z = 6.0  # above the largest error seen on a direction not reported (5.3 sigma, 17e)
_CHUNK = 16384  # rows quantised at a time while building
_VERSION = 3  # bump when the screen file's recipe changes (the cache key includes it)


@dataclass(frozen=True)
class ScreenedFile:
    """The screened GGUF, and where the exact head rows lie (its sigmas beside it)."""

    path: Path
    source: Path  # the GGUF it was made from, whose head rows the re-check reads
    head: dict[str, Any]  # ``output_vocab.rows_at`` of ``source``: where those rows lie

    @property
    def sigma_path(self) -> Path:
        """Each token's RMS of (screen - head) per weight (float32, ``np.save``)."""
        return self.path.with_name(self.path.name + ".sigma.npy")


def _cache_key(source: Path) -> str:
    stat = source.stat()
    return stable_hash(_VERSION, str(source.resolve()), stat.st_size, stat.st_mtime_ns, "q4_0")


def _screen_rows(raw: np.ndarray, kind: Any) -> tuple[np.ndarray, np.ndarray]:
    """The Q4_0 copy of Q8_0 head rows, and each row's per-weight error RMS."""
    import gguf
    from gguf.quants import dequantize, quantize

    parts, sigmas = [], []
    for start in range(0, len(raw), _CHUNK):
        exact = dequantize(raw[start : start + _CHUNK], kind).astype(np.float32)
        screen = quantize(exact, gguf.GGMLQuantizationType.Q4_0)
        error = dequantize(screen, gguf.GGMLQuantizationType.Q4_0) - exact
        sigmas.append(np.sqrt((error.astype(np.float64) ** 2).mean(axis=1)).astype(np.float32))
        parts.append(screen)
    return np.concatenate(parts), np.concatenate(sigmas)


def screened_file(source: Path) -> ScreenedFile:
    """The screened GGUF for ``source``: built once (about half a minute), then read from the
    model cache (the file and ``<file>.json`` beside it) without parsing anything."""
    import gguf

    dest = models_dir() / "gguf" / "screen" / f"{source.stem}-{_cache_key(source)}.gguf"
    sidecar = dest.with_name(dest.name + ".json")
    if dest.exists() and sidecar.exists():
        return ScreenedFile(dest, source, read_json(sidecar)["head"])
    reader = gguf.GGUFReader(str(source))
    names = {t.name: t for t in reader.tensors}
    if OUTPUT_KEY in names:
        raise ConfigError(f"{source.name} has its own output head; head_screen needs a tied one")
    head = names[EMBEDDING_KEY]
    if head.tensor_type != gguf.GGMLQuantizationType.Q8_0:
        raise ConfigError(
            f"head_screen re-checks Q8_0 heads; {source.name}'s is {head.tensor_type.name}"
        )
    log.info("screening %s's output head (a Q4_0 copy of %d rows)", source.name, len(head.data))
    screen, sigma = _screen_rows(np.asarray(head.data), head.tensor_type)
    dest.parent.mkdir(parents=True, exist_ok=True)
    extra = [(OUTPUT_KEY, screen, gguf.GGMLQuantizationType.Q4_0)]
    write_cut_gguf(source, None, dest, reader, extra=extra)
    file = ScreenedFile(dest, source, rows_at(reader))
    with atomic_open(file.sigma_path, "wb") as out:
        np.save(out, sigma)
    write_json(sidecar, {"head": file.head})  # last: a file without it is built again
    return file


def quantize_q8_0(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """llama.cpp's Q8_0 rounding of activations: per block of 32, the scale max|x| / 127 kept
    as fp16, the values times 127 / max|x| rounded half to even. (int8 blocks, fp32 scales)"""
    x = np.asarray(rows, dtype=np.float32).reshape(len(rows), -1, BLOCK)
    amax = np.abs(x).max(axis=2)
    inverse = np.divide(np.float32(127.0), amax, out=np.zeros_like(amax), where=amax > 0)
    q = np.rint(x * inverse[:, :, None]).astype(np.int8)
    scale = (amax / np.float32(127.0)).astype(np.float16).astype(np.float32)
    return q, scale


class HeadScreen:
    """The exact re-check: which tokens the screen cannot rule out, and their exact logits."""

    def __init__(self, file: ScreenedFile, z: float = DEFAULT_Z) -> None:
        if not z > 0:
            raise ConfigError(f"head_screen's z must be positive, got {z}")
        where = file.head
        self._rows = np.memmap(  # the source's Q8_0 head rows, read on demand
            file.source, dtype=np.uint8, mode="r", offset=where["offset"],
            shape=(where["rows"], where["row_bytes"]),
        )  # fmt: skip
        self.sigma = np.load(file.sigma_path, mmap_mode="r")
        self.sigma_max = float(self.sigma.max())
        self.z = float(z)
        self.rows_checked = 0
        self.tokens_checked = 0

    def exact_logits(self, hidden: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """The Q8_0 head's logits of ``tokens`` for one hidden row each (as llama.cpp computes
        them, up to the order of float additions). ``hidden``: raw rows, or ``quantize_q8_0``'s
        (blocks, scales) of them."""
        hq, hd = quantize_q8_0(hidden) if isinstance(hidden, np.ndarray) else hidden
        raw = np.asarray(self._rows[tokens]).reshape(len(tokens), -1, Q8_BLOCK_BYTES)
        scale = np.ascontiguousarray(raw[:, :, :2]).view(np.float16)[:, :, 0].astype(np.float32)
        weights = np.ascontiguousarray(raw[:, :, 2:]).view(np.int8)
        sums = np.einsum("tbi,tbi->tb", weights.astype(np.int32), hq.astype(np.int32))
        return ((hd * scale) * sums.astype(np.float32)).sum(axis=1)

    @staticmethod
    def norms(hq: np.ndarray, hd: np.ndarray) -> np.ndarray:
        """The norm of each hidden row as the head sees it (``quantize_q8_0``'s rounding)."""
        return np.sqrt(((hq.astype(np.float32) * hd[:, :, None]) ** 2).sum(axis=(1, 2)))

    def choose(self, logits: np.ndarray, hidden: np.ndarray) -> list[int]:
        """The full head's greedy token for each row, from its screen ``logits`` ((rows,
        vocabulary)) and its hidden (final-norm) row."""
        hq, hd = quantize_q8_0(hidden)
        best = logits.argmax(axis=1)
        floor = self.exact_logits((hq, hd), best)  # the winner's exact logit is at least this
        spread = self.z * self.norms(hq, hd)  # times a token's sigma: its error bound
        wide = floor - spread * self.sigma_max  # cheap, then per token (2-D nonzero is slow)
        found = [np.flatnonzero(row >= low) for row, low in zip(logits, wide, strict=True)]
        rows = np.repeat(np.arange(len(found)), [len(f) for f in found])
        tokens = np.concatenate(found)
        keep = logits[rows, tokens] + spread[rows] * self.sigma[tokens] >= floor[rows]
        rows, tokens = rows[keep], tokens[keep]
        exact = self.exact_logits((hq[rows], hd[rows]), tokens)
        self.rows_checked += len(logits)
        self.tokens_checked += len(tokens)
        chosen = best.copy()  # a row whose best has no rival keeps it
        # per row, the first of its highest exact logits (rows and tokens come sorted), as an
        # arg-max over the whole row would pick
        order = np.lexsort((-exact, rows))
        first = np.ones(len(order), dtype=bool)
        first[1:] = rows[order][1:] != rows[order][:-1]
        chosen[rows[order][first]] = tokens[order][first]
        return chosen.tolist()


def screen_errors(screen: HeadScreen, logits: np.ndarray, hidden: np.ndarray) -> np.ndarray:
    """Per row, the largest |screen - exact| logit over the whole vocabulary, in standard
    deviations of the screen's error (what ``z`` must exceed for the re-check to be exact)."""
    out = np.empty(len(logits))
    sigma = np.asarray(screen.sigma, dtype=np.float64)
    hq, hd = quantize_q8_0(hidden)
    for i, (row, norm) in enumerate(zip(logits, screen.norms(hq, hd), strict=True)):
        exact = np.concatenate(
            [
                screen.exact_logits((hq[[i] * len(part)], hd[[i] * len(part)]), part)
                for part in np.array_split(np.arange(len(sigma)), 64)
            ]
        )
        out[i] = (np.abs(np.asarray(row) - exact) / (sigma * norm)).max()
    return out
