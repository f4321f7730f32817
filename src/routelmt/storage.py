"""Where files live and how they are written: atomically, so a crash never leaves half a file."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

CACHE_ENV = "ROUTELMT_CACHE"
MODELS_ENV = "ROUTELMT_MODELS"
DATA_ENV = "ROUTELMT_DATA"
STATE_ENV = "ROUTELMT_STATE"


def cache_dir(*parts: str) -> Path:
    """The cache root (``$ROUTELMT_CACHE`` or ``~/.cache/routelmt``), created on demand."""
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "routelmt")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def state_dir(*parts: str) -> Path:
    """Where the service keeps what it records (the decision log): ``$ROUTELMT_STATE``, else
    ``$XDG_STATE_HOME/routelmt``, else ``~/.local/state/routelmt``; created private (0700)."""
    env = os.environ.get(STATE_ENV)
    xdg = os.environ.get("XDG_STATE_HOME")
    root = (
        Path(env) if env else (Path(xdg) if xdg else Path.home() / ".local" / "state") / "routelmt"
    )
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def models_dir() -> Path:
    """Converted models (``$ROUTELMT_MODELS``, else ``<cache>/models``): large and slow to make,
    so they may live apart from the other caches (tests redirect those, not the models)."""
    env = os.environ.get(MODELS_ENV)
    path = Path(env) if env else cache_dir("models")
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_wmt_root() -> Path | None:
    """The WMT24 folder: ``$ROUTELMT_DATA``, else ``../shared/data/wmt24`` near cwd or package."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    candidates = [Path.cwd() / "../shared/data/wmt24"]
    candidates += [p / "shared/data/wmt24" for p in here.parents]
    for candidate in candidates:
        if (candidate / "txt" / "sources").is_dir():
            return candidate.resolve()
    return None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_output_path(path: str | os.PathLike[str]) -> Path:
    """A path an output file can be written to, or a ConfigError saying why not."""
    from routelmt.errors import ConfigError

    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory; expected a file path for the output")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{path}: {parent} is not a directory")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise ConfigError(f"{path}: no permission to write in {parent}")
            break
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"{path}: no permission to write this file")
    return path


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """Write to a temporary file beside ``path`` and rename it into place on success.

    An output that cannot be written (a directory, a parent that is a file, no permission)
    is a ConfigError naming the path, raised before anything is written.
    """
    from routelmt.errors import ConfigError

    path = check_output_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write here ({exc.strerror or exc})") from None
    try:
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def open_text(path: str | os.PathLike[str], *, newline: str | None = None) -> IO[str]:
    """Open an input text file; a missing file, a directory or an unreadable one is an
    InputError naming it (reading bytes that are not UTF-8 is caught by ``utf8_errors``)."""
    from routelmt.errors import InputError

    path = Path(path)
    if not path.exists():
        raise InputError("file not found", path=str(path))
    if path.is_dir():
        raise InputError("is a directory; expected a file", path=str(path))
    try:
        return open(path, encoding="utf-8", newline=newline)
    except OSError as exc:
        raise InputError(f"cannot read ({exc.strerror or exc})", path=str(path)) from None


@contextlib.contextmanager
def utf8_errors(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn a UnicodeDecodeError while reading ``path`` into an InputError naming it."""
    from routelmt.errors import InputError

    try:
        yield
    except UnicodeDecodeError as exc:
        raise InputError(
            f"not UTF-8 text (byte {exc.start}: {exc.reason}); expected a text file",
            path=str(path),
        ) from None


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    with atomic_open(path) as handle:
        json.dump(obj, handle, indent=2, ensure_ascii=False, sort_keys=False)
        handle.write("\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    from routelmt.errors import InputError

    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise InputError("file not found", path=str(path)) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON: {exc.msg}", path=str(path), line=exc.lineno) from None


def read_safetensors(path: str | os.PathLike[str], *, framework: str = "numpy") -> dict[str, Any]:
    """Every tensor of a safetensors file (``numpy`` arrays or ``torch`` tensors); a missing or
    corrupt file is an InputError that names it, never a bare library error."""
    from safetensors import SafetensorError

    from routelmt.errors import InputError

    if framework == "torch":
        from safetensors.torch import load_file
    else:
        from safetensors.numpy import load_file
    path = Path(path)
    if not path.exists():
        raise InputError("file not found", path=str(path))
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise InputError(f"unreadable safetensors file ({exc})", path=str(path)) from None


def stable_hash(*parts: Any, length: int = 16) -> str:
    """A short hash of JSON-serialisable settings, used as a cache key."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(json.dumps(part, sort_keys=True, default=str).encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()[:length]


def file_hash(path: str | os.PathLike[str], length: int = 16) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:length]
